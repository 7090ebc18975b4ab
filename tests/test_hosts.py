"""Several hosts, one story: ``osflow-post -r DIR -r DIR`` on real recordings of two hosts.

``tests/fixtures/multihost/two-netns/``: two network namespaces recorded at once by ``osflow
record`` (its README says how), each with an HTTP server on its own 127.0.0.1:5000 reached from
the same 4-tuple, the controller's server on 198.18.1.1:8778 reached from compute1 over a veth
whose controller end is in a bridge (a capture on ``any`` sees those segments twice);
``two-netns-shifted/``: the same with compute1's capture shifted by +0.35 s (``editcap -t``).
"""

from __future__ import annotations

import json
import shutil

import pytest

from support import FIXTURES, check_golden, run_post

pytestmark = pytest.mark.tshark

TWO = FIXTURES / "multihost" / "two-netns"
SHIFTED = FIXTURES / "multihost" / "two-netns-shifted"


def _folders(base=TWO) -> list[str]:
    return ["-r", str(base / "controller"), "-r", str(base / "compute1")]


def _json(argv: list[str]) -> tuple[list[dict], str]:
    status, out, err = run_post([*argv, "--format", "json", "--all"])
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def _story(pairs: list[dict]) -> list[tuple]:
    return [(p["client"], p["server"], p["client_host"], p["server_host"], p["request"], p["response"], p["parent"],
             p["stream"]) for p in pairs]


def test_two_hosts_merged_timeline_and_json_golden():
    status, out, err = run_post([*_folders(), "--all"])
    assert status == 0, err
    check_golden("post/multihost-two-netns.txt", out)
    pairs, err = _json(_folders())
    check_golden("post/multihost-two-netns.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    assert "clock offset compute1: +0.000 s ± 0.0000 s" in err


def test_every_participant_is_service_at_host():
    pairs, _ = _json(_folders())
    assert pairs
    for p in pairs:
        assert p["client"].split(" (")[0].endswith("@" + p["client_host"])
        assert p["server"].endswith("@" + p["server_host"])
    servers = {(p["server"], p["client_host"]) for p in pairs}
    assert ("placement@controller", "compute1") in servers  # across the veth
    assert ("keystone@compute1", "compute1") in servers and ("keystone@controller", "controller") in servers


def test_loopback_of_two_hosts_is_never_mixed():
    """127.0.0.1:40000 -> 127.0.0.1:5000 on both hosts, the same 4-tuple: two connections, each on its host."""
    pairs, _ = _json(_folders())
    same = [p for p in pairs if p["client_address"] == "127.0.0.1:40000" and p["server_address"] == "127.0.0.1:5000"]
    assert sorted(p["client_host"] for p in same) == ["compute1", "controller"]
    assert all(p["server_host"] == p["client_host"] for p in same)
    assert len({p["stream"] for p in same}) == 2


def test_a_segment_captured_twice_is_one_message():
    """compute1's three requests to the controller: in both captures (twice in the controller's, on the
    bridge and its port), each once in the merged flow and once from the controller's folder alone."""
    pairs, _ = _json(_folders())
    across = [p for p in pairs if p["client_host"] == "compute1" and p["server_host"] == "controller"]
    assert [p["request"] for p in across] == ["GET /v3", "GET /", "GET /v3"]
    assert all(p["response"] == "200 OK" for p in across)
    alone, _ = _json(["-r", str(TWO / "controller")])
    assert [p["request"] for p in alone if p["client_address"].startswith("198.18.1.2:")] == ["GET /v3", "GET /",
                                                                                             "GET /v3"]
    assert all("client_host" not in p for p in alone)  # one folder: one host, labels as before


def test_one_folder_reads_as_capture_with_its_tables():
    status, by_folder, err = run_post(["-r", str(TWO / "compute1"), "--all", "--format", "json"])
    assert status == 0, err
    d = TWO / "compute1"
    status, by_files, err = run_post(["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps",
                                      str(d / "ps.txt"), "--all", "--format", "json"])
    assert status == 0, err
    assert by_folder == by_files


def test_a_shifted_clock_is_found_and_the_story_is_the_same():
    pairs, err = _json(_folders(SHIFTED))
    assert "clock offset compute1: +0.350 s ± 0.0000 s" in err
    straight, _ = _json(_folders())
    assert _story(pairs) == _story(straight)
    for a, b in zip(pairs, straight, strict=True):
        assert abs(a["start"] - b["start"]) < 2e-6 and abs(a["end"] - b["end"]) < 2e-6


def test_the_first_folder_sets_the_clock():
    pairs, err = _json(["-r", str(SHIFTED / "compute1"), "-r", str(SHIFTED / "controller")])
    assert "clock offset controller: -0.350 s" in err
    assert {p["request"] for p in pairs} == {"GET /v3", "GET /"}


def test_clock_offset_given_overrides_and_is_said(tmp_path):
    status, out, err = run_post([*_folders(SHIFTED), "--all", "--clock-offset", "compute1=0.35", "--explain"])
    assert status == 0, err
    assert "clock offset compute1: +0.350 s (given by --clock-offset)" in err
    assert "clock offset compute1: +0.350 s (given by --clock-offset)" in out  # --explain says it too
    # a wrong offset given: still one message per segment (the window allows for it), times as given
    pairs, err = _json([*_folders(SHIFTED), "--clock-offset", "compute1=0.1"])
    assert len([p for p in pairs if p["client_host"] == "compute1" and p["server_host"] == "controller"]) == 3


@pytest.mark.parametrize("argv, says", [
    (["--clock-offset", "nowhere=1"], "expected the host of a -r folder after the first (compute1), found 'nowhere'"),
    (["--clock-offset", "compute1=soon"], "expected HOST=SECONDS"),
    (["--ss", "x"], "give no --ss, --ps or --meta"),
])
def test_bad_usage_is_one_line(argv, says):
    status, out, err = run_post([*_folders(), *argv])
    assert status == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_a_folder_without_capture_or_two_of_one_host(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run_post(["-r", str(empty)])
    assert status == 3 and "found no capture in it" in err, err
    twin = tmp_path / "twin"
    shutil.copytree(TWO / "controller", twin)
    status, _, err = run_post(["-r", str(TWO / "controller"), "-r", str(twin)])
    assert status == 3 and "a second folder of host 'controller'" in err, err


def test_from_capture_and_meta_alone(tmp_path):
    """Without ss/ps every end is still on its host, from the captures and meta.json's host names."""
    for host in ("controller", "compute1"):
        (tmp_path / host).mkdir()
        for name in ("capture.pcapng", "meta.json"):
            shutil.copy(TWO / host / name, tmp_path / host / name)
    bare, _ = _json(["-r", str(tmp_path / "controller"), "-r", str(tmp_path / "compute1")])
    full, _ = _json(_folders())
    ends = [(p["client_host"], p["server"], p["request"]) for p in full]
    assert [(p["client_host"], p["server"], p["request"]) for p in bare] == ends


def test_streamed_and_collected_formats_tell_the_same():
    pairs, _ = _json(_folders())
    status, out, err = run_post([*_folders(), "--all", "--no-group"])
    assert status == 0, err
    rows = [ln for ln in out.splitlines()[2:] if ln.strip() and ln.lstrip()[0].isdigit()]
    assert len(rows) == len(pairs)


@pytest.mark.mermaid
def test_chromium_draws_service_at_host_participants(tmp_path):
    """``@`` in every participant's name: the report's sequence diagram and map are still drawn."""
    import os

    from lxml import html as lxml_html

    import chromium
    import mermaid_cli

    reason = chromium.available()
    if reason:
        if os.environ.get("OSFLOW_REQUIRE_MERMAID"):
            pytest.fail(f"OSFLOW_REQUIRE_MERMAID is set but {reason}")
        pytest.skip(reason)
    out = tmp_path / "report.html"
    base = FIXTURES / "multihost" / "server-stop"
    status, _, err = run_post(["-r", str(base / "controller"), "-r", str(base / "compute1"), "-o", str(out)])
    assert status == 0, err
    doc = lxml_html.fromstring(chromium.dump_dom(out))
    body = doc.xpath("//body")[0]
    assert body.get("data-mermaid") == "drawn", body.get("data-script-error")
    svgs = doc.xpath('//section[@id="diagram"]//details[@open]//pre[@class="mermaid"]/svg')
    assert len(svgs) == 1 and svgs[0].get("aria-roledescription") == "sequence"
    assert mermaid_cli.svg_error(lxml_html.tostring(svgs[0], encoding="unicode")) is None
    drawn = "".join("".join(t.itertext()) for t in svgs[0].iter("text"))
    assert "nova-compute@compute1" in drawn and "nova-api@controller" in drawn


def test_otlp_resources_name_their_host():
    status, out, err = run_post([*_folders(), "--all", "--format", "otlp"])
    assert status == 0, err
    hosts = {}
    for line in out.splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            attrs = {a["key"]: a["value"].get("stringValue") for a in rs["resource"]["attributes"]}
            hosts[attrs["service.name"]] = attrs["host.name"]
    assert hosts["placement@controller"] == "controller" and hosts["keystone@compute1"] == "compute1"


def test_a_ring_of_capture_files_reads_as_the_one_capture(tmp_path):
    """A folder of ring files (``capture_<n>_<date>.pcapng``): read in order, one tshark each, a
    connection across two files one connection; the same requests as the whole capture (a response
    whose PDU a file boundary cuts is lost, as with each file read on its own)."""
    import subprocess

    from support import tshark

    ring = tmp_path / "controller"
    ring.mkdir()
    for name in ("ss.txt", "ps.txt", "meta.json"):
        shutil.copy(TWO / "controller" / name, ring / name)
    subprocess.run([str(shutil.which("editcap") or "editcap"), "-c", "20", str(TWO / "controller" / "capture.pcapng"),
                    str(tmp_path / "part.pcapng")], check=True, capture_output=True)
    parts = sorted(tmp_path.glob("part_*.pcapng"))
    assert len(parts) > 3 and tshark()
    for n, part in enumerate(parts, 1):
        part.rename(ring / f"capture_{n:05d}_20261207024300.pcapng")
    whole, _ = _json(["-r", str(TWO / "controller")])
    pieces, _ = _json(["-r", str(ring)])

    def asked(pairs):
        return [(p["start"], p["client"], p["server"], p["request"]) for p in pairs]

    assert asked(pieces) == asked(whole)
    assert len({p["stream"] for p in pieces}) == len({p["stream"] for p in whole})
    assert sum(p["response"] == "200 OK" for p in pieces) >= len(whole) - (len(parts) - 1)
    frames = [p["frames"][0] for p in pieces]
    assert frames == sorted(frames)  # one numbering across the files


def test_a_frame_read_again_is_not_a_duplicate(tmp_path):
    """The AMQP Connection.Start-Ok frames are read twice (``-T fields``, then as PDML for their client
    properties): the second reading of a frame is no copy of a segment, its connection_name names."""
    import subprocess

    whole = FIXTURES / "captures-compute" / "lab-service-start" / "capture.pcapng"
    (tmp_path / "rec").mkdir()
    src = tmp_path / "rec" / "capture.pcapng"
    # the 3 s around nova-conductor's two Start-Ok frames (at 1796165212.38 and .44): the second reading
    # comes while the first is still fresh (a copy of a segment is one within seconds)
    subprocess.run([str(shutil.which("editcap") or "editcap"), "-A", "1796165211", "-B", "1796165214", str(whole),
                    str(src)], check=True, capture_output=True)
    status, by_folder, err = run_post(["-r", str(tmp_path / "rec"), "--explain"])
    assert status == 0, err
    status, by_file, err = run_post(["-r", str(src), "--explain"])
    assert status == 0, err
    assert by_folder.count("AMQP connection_name 'nova-conductor:") == 2

    def connections(text):  # (the command differs: meta.json beside the capture is not in the folder)
        return text[text.index("Connections:"):text.index("The command")]

    assert connections(by_folder) == connections(by_file)

"""RPC over RabbitMQ on real captures of a compute control plane (tests/fixtures/captures-compute/).

What is checked is the boot story tests/fixtures/captures-compute/README.md tells, pair by pair: who
called whom, call / cast / fanout, results, parents; the same from PDML and from ``-r``; the
names without socket tables; no token or broker password in any output.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from functools import cache

import pytest

from osflow.decode import Decoder
from osflow.model import AmqpMessage
from osflow.source import PdmlReader
from support import FIXTURES, case_dir, check_golden, pdml_bytes, run_post, tshark

pytestmark = pytest.mark.tshark

COMPUTE = ("server-create", "image-create", "network-create")
#: Recorded in the project's own lab (tests/lab/), see tests/fixtures/captures-compute/README.md.
LAB = ("lab-server-create-novalidhost", "lab-server-delete", "lab-server-stop", "lab-service-start",
       "lab-frame-max", "lab-compressed")
STORIES = ("lab-server-create-novalidhost", "lab-server-delete", "lab-server-stop")


def _case(name: str) -> str:
    return f"captures-compute/{name}"


def _tables(name: str) -> list[str]:
    d = case_dir(_case(name))
    return ["--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt")]


@cache
def _post(name: str, *args: str, pdml: bool = False, tables: bool = True) -> str:
    argv = [*(_tables(name) if tables else []), *args]
    if pdml:  # -r finds the recording's meta.json beside the capture; PDML on stdin is told
        meta = case_dir(_case(name)) / "meta.json"
        argv += ["--meta", str(meta)] if meta.exists() else []
        status, out, err = run_post(argv, stdin=pdml_bytes(_case(name)))
    else:
        status, out, err = run_post(["-r", str(case_dir(_case(name)) / "capture.pcapng"), *argv])
    assert status == 0, err
    return out


def _pairs(name: str, tables: bool = True) -> list[dict]:
    return [json.loads(line) for line in _post(name, "--format", "json", tables=tables).splitlines()]


def _rpc(name: str) -> list[dict]:
    return [p for p in _pairs(name) if p["protocol"] == "rpc"]


def _one(pairs: list[dict], **want) -> dict:
    found = [p for p in pairs if all(p.get(k) == v for k, v in want.items())]
    assert len(found) == 1, (want, [(p["id"], p["request"]) for p in found])
    return found[0]


# ------------------------------------------------------------------ the boot story


def test_server_create_tells_the_boot_story():
    pairs = _pairs("server-create")
    by_id = {p["id"]: p for p in pairs}
    post = _one(pairs, client="OpenStackClient", server="nova-api", request="POST /v2.1/servers")
    assert post["response"] == "202 Accepted"

    cast = _one(pairs, request="cast schedule_and_build_instances")
    assert (cast["client"], cast["server"], cast["parent"]) == ("nova-api", "nova-conductor", post["id"])
    assert (cast["kind"], cast["exchange"], cast["routing_key"], cast["delivered"]) == ("cast", "nova", "conductor", 1)
    assert cast["response"] == "" and cast["via"] == "RabbitMQ" and cast["via_address"] == "127.0.0.1:5672"

    select = _one(pairs, request="call select_destinations")
    assert (select["client"], select["server"], select["parent"]) == ("nova-conductor", "nova-scheduler", cast["id"])
    assert select["response"] == "result [[Selection]]" and select["kind"] == "call"
    assert select["request_id"] == cast["request_id"] and select["request_id"].startswith("req-")

    # the scheduler asks placement, under the call it is answering
    candidates = [p for p in pairs if p["request"].startswith("GET /allocation_candidates")]
    assert candidates and all(p["parent"] == select["id"] and p["client"] == "nova-scheduler" for p in candidates)
    claim = [p for p in pairs if p["request"].startswith("PUT /allocations/") and p["client"] == "nova-scheduler"]
    assert claim and claim[0]["parent"] == select["id"] and claim[0]["response"] == "204 No Content"

    build = _one(pairs, request="cast build_and_run_instance")
    assert (build["client"], build["server"], build["parent"]) == ("nova-conductor", "nova-compute", cast["id"])
    assert build["routing_key"] == "compute.controller"

    # nova-compute calls the conductor back while it builds, every call answered
    back = [p for p in pairs if p["parent"] == build["id"] and p["protocol"] == "rpc" and p["kind"] == "call"]
    assert len(back) >= 10
    assert {(p["client"], p["server"]) for p in back} == {("nova-compute", "nova-conductor")}
    assert all(p["response"].startswith("result ") for p in back)
    assert any(p["request"] == "call object_action (Instance.save)" for p in back)

    fanout = _one(pairs, request="fanout update_instance_info")
    assert (fanout["client"], fanout["server"], fanout["exchange"], fanout["routing_key"]) == (
        "nova-compute", "nova-scheduler", "scheduler_fanout", "")
    assert fanout["delivered"] == 1 and fanout["parent"] == build["id"]

    # a call's children run while its callee handled it
    for p in pairs:
        if p["parent"] == select["id"]:
            assert select["start"] <= p["start"] and p["end"] <= select["end"]
    assert by_id[select["parent"]]["request"] == "cast schedule_and_build_instances"


def test_every_rpc_end_is_a_named_service():
    for name in COMPUTE:
        for p in _rpc(name):
            for end in ("client", "server"):
                assert not re.match(r"\d+\.\d+\.\d+\.\d+:", p[end]), (name, p["id"], end, p[end])
            assert p["request"].split()[0] in ("call", "cast", "fanout")


@pytest.mark.parametrize("name", COMPUTE + STORIES + ("lab-service-start",))
def test_with_tables_every_participant_is_named(name):
    labels = {p[end] for p in _pairs(name) for end in ("client", "server")}
    assert not [x for x in labels if re.match(r"\d+\.\d+\.\d+\.\d+:", x)], labels
    assert not [x for x in labels if re.fullmatch(r"nova-(conductor|scheduler|compute|api) DB", x)], labels


def test_a_publish_nobody_consumes_is_delivered_to_none():
    (push,) = _rpc("network-create")
    assert push["request"].startswith("fanout ") and push["exchange"].startswith("neutron-vo-")
    assert (push["client"], push["server"], push["delivered"], push["response"]) == (
        "neutron-server", "RabbitMQ", 0, "")
    assert push["server_stream"] is None


def test_image_create_holds_compute_s_periodic_calls_to_the_conductor():
    calls = _rpc("image-create")
    assert len(calls) == 5
    assert {(p["client"], p["server"], p["kind"]) for p in calls} == {("nova-compute", "nova-conductor", "call")}


def test_the_db_end_of_a_nova_component_is_nova_db():
    for name in COMPUTE:
        labels = {p["server"] for p in _pairs(name)} | {p["client"] for p in _pairs(name)}
        assert not any(re.fullmatch(r"nova-(conductor|scheduler|compute) DB", x) for x in labels), (name, labels)
    conductor = [p for p in _pairs("server-create") if p["client"] == "nova-conductor" and p["protocol"] == "mysql"]
    assert {p["server"] for p in conductor} == {"nova DB", "nova_api DB"}


# ------------------------------------------------------------------ PDML and -r


@pytest.mark.parametrize("name", COMPUTE + LAB)
def test_pdml_and_the_capture_give_the_same_json(name):
    assert _post(name, "--format", "json", pdml=True) == _post(name, "--format", "json")


def test_sql_with_newlines_and_backslash_escapes_reads_the_same_from_pdml_and_capture():
    # a real MariaDB query holding a raw newline, a raw tab and "\n" written as a backslash and n
    # (what a driver sends for a newline in a literal): tshark -T fields writes both as \n
    capture = FIXTURES / "captures-other" / "mysql-escapes" / "capture.pcapng"
    status, from_r, err = run_post(["-r", str(capture), "--format", "json"])
    assert status == 0, err
    pdml = subprocess.run([tshark(), "-r", str(capture), "-T", "pdml"], check=True, capture_output=True).stdout
    status, from_pdml, err = run_post(["--format", "json"], stdin=pdml)
    assert status == 0, err
    assert from_r == from_pdml
    (query,) = [json.loads(x)["request"] for x in from_r.splitlines() if "Traceback" in x]
    assert query.startswith('SELECT "Traceback (most recent call last): File \\"x.py\\"" AS tb, "raw newline tab"')


# ------------------------------------------------------------------ names without tables


def _same_names(name: str, rpc_only: bool) -> tuple[int, int]:
    named, plain = _pairs(name), _pairs(name, tables=False)
    assert [p["id"] for p in named] == [p["id"] for p in plain]
    rows = [(a, b) for a, b in zip(named, plain, strict=True) if not rpc_only or a["protocol"] == "rpc"]
    return sum((a["client"], a["server"]) == (b["client"], b["server"]) for a, b in rows), len(rows)


def test_without_tables_nine_in_ten_pairs_get_the_names_the_tables_give():
    same = total = rpc_same = rpc_total = 0
    for name in COMPUTE:
        s, t = _same_names(name, rpc_only=False)
        assert s >= 0.9 * t, (name, s, t)
        same, total = same + s, total + t
        s, t = _same_names(name, rpc_only=True)
        rpc_same, rpc_total = rpc_same + s, rpc_total + t
    assert rpc_total >= 20 and rpc_same >= 0.9 * rpc_total, (rpc_same, rpc_total)


def test_without_tables_no_wrong_service_names_a_nova_db_client():
    for name in COMPUTE:
        for p in _pairs(name, tables=False):
            if p["server"] in ("nova DB", "nova_cell0 DB"):
                assert p["client"] not in ("keystone", "nova-metadata", "neutron-server", "placement", "glance"), p


# ------------------------------------------------------------------ secrets and tokens


@cache
def _rpc_secrets(name: str) -> tuple[set[str], set[str]]:
    """(tokens in RPC contexts, AMQP Start-Ok responses) of a capture, read from its PDML."""
    tokens: set[str] = set()
    for m in Decoder().decode(PdmlReader(io.BytesIO(pdml_bytes(_case(name))), name)):
        if isinstance(m, AmqpMessage) and m.oslo is not None and m.oslo.token:
            tokens.add(m.oslo.token)
    return tokens, set()


@pytest.mark.parametrize("name", COMPUTE)
@pytest.mark.parametrize("fmt", ["json", "timeline", "mermaid", "md"])
def test_no_rpc_token_in_any_output(name, fmt):
    tokens, _ = _rpc_secrets(name)
    if name == "server-create":  # the others' RPC is nova-compute's periodic calls: no user, no token
        assert tokens, "this test would check nothing"
    for out in (_post(name, "--format", fmt), _post(name, "--format", fmt, "--explain")):
        for t in tokens:
            assert t not in out and t[:20] not in out


def test_the_user_s_token_is_followed_from_the_client_into_rpc():
    pairs = _pairs("server-create")
    post = _one(pairs, client="OpenStackClient", server="nova-api", request="POST /v2.1/servers")
    (user_token,) = [t for t in post["tokens"]]
    cast = _one(pairs, request="cast schedule_and_build_instances")
    assert cast["tokens"] == [user_token]
    build = _one(pairs, request="cast build_and_run_instance")
    assert build["tokens"] == [user_token]
    shown = _post("server-create", "--show-secrets", "--format", "timeline")
    tokens, _ = _rpc_secrets("server-create")
    assert any(t in shown for t in tokens)


# ------------------------------------------------------------------ drawings


def test_mermaid_draws_calls_solid_and_casts_async(mermaid_render):
    mmd = _post("server-create", "--format", "mermaid")
    assert re.search(r"^    nova_api-\)\+nova_conductor: cast schedule_and_build_instances \[T\d+\]$", mmd, re.M)
    assert re.search(r"^    nova_conductor->>\+nova_scheduler: call select_destinations \[T\d+\]$", mmd, re.M)
    assert re.search(r"^    nova_scheduler-->>-nova_conductor: result \[\[Selection\]\]$", mmd, re.M)
    mermaid_render(mmd)


def test_show_broker_draws_rabbitmq_between_caller_and_callee(mermaid_render):
    mmd = _post("server-create", "--format", "mermaid", "--show-broker")
    assert re.search(r"^    nova_conductor->>RabbitMQ: call select_destinations", mmd, re.M)
    assert re.search(r"^    RabbitMQ->>\+nova_scheduler: call select_destinations", mmd, re.M)
    assert re.search(r"^    nova_scheduler-->>-RabbitMQ: result", mmd, re.M)
    assert re.search(r"^    RabbitMQ-->>nova_conductor: result", mmd, re.M)
    assert "RabbitMQ" not in _post("server-create", "--format", "mermaid")  # without it, caller -> callee
    timeline = _post("server-create", "--show-broker")
    assert re.search(r"nova-conductor +nova-scheduler +rpc +· · call select_destinations \[T\d+\] \(via RabbitMQ\)",
                     timeline)
    assert "(via RabbitMQ)" not in _post("server-create")
    mermaid_render(mmd)


@pytest.mark.parametrize("name", COMPUTE + STORIES)
@pytest.mark.parametrize("fmt,ext", [("json", "jsonl"), ("timeline", "txt"), ("mermaid", "mmd")])
def test_golden(name, fmt, ext):
    check_golden(f"post/compute-{name}.{ext}", _post(name, "--format", fmt))


@pytest.mark.parametrize("name", STORIES)
def test_the_lab_s_stories_render_in_mermaid_cli(name, mermaid_render):
    mermaid_render(_post(name, "--format", "mermaid"))


# ------------------------------------------------------------------ the lab's recordings


def test_a_create_that_fails_tells_no_valid_host():
    pairs = _pairs("lab-server-create-novalidhost")
    post = _one(pairs, client="OpenStackClient", server="nova-api", request="POST /v2.1/servers")
    cast = _one(pairs, request="cast schedule_and_build_instances")
    select = _one(pairs, request="call select_destinations")
    assert cast["parent"] == post["id"] and select["parent"] == cast["id"]
    assert (select["client"], select["server"], select["response"]) == ("nova-conductor", "nova-scheduler",
                                                                        "failure NoValidHost")
    assert any(p["request"].startswith("GET /allocation_candidates") and p["parent"] == select["id"] for p in pairs)
    timeline = _post("lab-server-create-novalidhost", "--format", "timeline")
    assert "failure NoValidHost" in timeline
    # the conductor writes the fault with its traceback: one line of text, the same from PDML (checked above)
    faults = [p for p in pairs if p["request"].startswith("INSERT INTO instance_faults")]
    assert faults and all("Traceback (most recent call last):" in p["request"] and "\n" not in p["request"]
                          for p in faults)
    assert {p["client"] for p in faults} == {"nova-conductor"}


def test_delete_casts_terminate_instance_to_compute():
    pairs = _pairs("lab-server-delete")
    delete = [p for p in pairs if p["request"].startswith("DELETE /v2.1/servers/")]
    assert len(delete) == 1 and delete[0]["response"] == "204 No Content"
    cast = _one(pairs, request="cast terminate_instance")
    assert (cast["client"], cast["server"], cast["parent"]) == ("nova-api", "nova-compute", delete[0]["id"])
    assert cast["routing_key"] == "compute.controller"
    children = [p for p in pairs if p["parent"] == cast["id"]]
    assert _one(children, request="call object_action (Instance.destroy)")["server"] == "nova-conductor"
    fanout = _one(children, request="fanout delete_instance_info")
    assert (fanout["server"], fanout["exchange"]) == ("nova-scheduler", "scheduler_fanout")


def test_stop_casts_stop_instance_to_compute():
    pairs = _pairs("lab-server-stop")
    action = [p for p in pairs if p["request"].startswith("POST /v2.1/servers/") and p["request"].endswith("/action")]
    assert len(action) == 1 and action[0]["response"] == "202 Accepted"
    cast = _one(pairs, request="cast stop_instance")
    assert (cast["client"], cast["server"], cast["parent"]) == ("nova-api", "nova-compute", action[0]["id"])
    calls = [p for p in pairs if p["parent"] == cast["id"]]
    assert len(calls) >= 3 and all(p["kind"] == "call" and p["server"] == "nova-conductor" for p in calls)
    assert any(p["request"] == "call object_action (Instance.save)" for p in calls)


def test_bodies_split_over_amqp_frames_are_joined():
    # RabbitMQ's frame_max = 4096: every body over 4,088 bytes came in several body frames
    rpc = _rpc("lab-frame-max")
    big = _one(rpc, request="cast schedule_and_build_instances")
    assert len(big["frames"]) >= 2 and big["server"] == "nova-conductor"
    assert _one(rpc, request="call select_destinations")["response"] == "result [[Selection]]"
    assert not any("not read" in (p["request"] + (p["response"] or "")) for p in rpc)
    status, out, err = run_post(["-r", str(case_dir(_case("lab-frame-max")) / "capture.pcapng"), "--format", "json"])
    assert "not read" not in err


def test_compressed_bodies_are_read_and_said_so():
    # nova-conductor alone has kombu_compression = gzip: its publishes are zlib, the others plain
    pairs = _pairs("lab-compressed")
    select = _one(pairs, request="call select_destinations")
    assert select["client"] == "nova-conductor" and select["response"] == "result [[Selection]]"
    # the fixture holds only the AMQP of the recording (not the command's HTTP that caused it): background
    timeline = _post("lab-compressed", "--format", "timeline", "--all")
    md = _post("lab-compressed", "--format", "mermaid", "--all")
    assert "background" not in timeline and "background" not in md
    assert "background pairs left out" in _post("lab-compressed", "--format", "timeline")
    assert "compressed body (zlib)" in md
    cast = _one(pairs, request="cast schedule_and_build_instances")  # nova-api's: not compressed
    assert cast["server"] == "nova-conductor"
    assert "call select_destinations" in timeline


def test_connection_name_names_a_service_that_starts_during_the_capture():
    # nova-conductor restarted: its new connections' Start-Ok say nova-conductor:<pid>:<uuid>
    for tables in (True, False):
        names = _post("lab-service-start", "--explain", tables=tables)
        rows = [line for line in names.splitlines() if "AMQP connection_name 'nova-conductor:" in line]
        if not tables:
            assert len(rows) == 2, names
        for row in rows:
            assert row.split()[4] == "nova-conductor"
    pdml = _post("lab-service-start", "--explain", pdml=True, tables=False)
    assert pdml.count("AMQP connection_name 'nova-conductor:") == 2


def test_no_broker_password_in_any_output():
    # the Start-Ok's response holds the AMQPLAIN login (LOGIN guest PASSWORD guest)
    for fmt in ("json", "timeline", "mermaid", "md"):
        for tables in (True, False):
            out = _post("lab-service-start", "--format", fmt, "--explain", tables=tables)
            assert "PASSWORD" not in out and "AMQPLAIN" not in out and "0850415353574f5244" not in out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_corrupted_compute_capture_gives_pairs_not_a_traceback(seed, tmp_path):
    """One byte in 2,000 changed (editcap -E): AMQP, oslo JSON and the rest degrade, never raise."""
    import shutil

    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap not installed")
    out = tmp_path / "corrupted.pcapng"
    capture = case_dir(_case("server-create")) / "capture.pcapng"
    subprocess.run([editcap, "-E", "0.0005", "--seed", str(seed), str(capture), str(out)], check=True,
                   capture_output=True)
    for argv, stdin in ((["-r", str(out)], None),
                        ([], subprocess.run([tshark(), "-r", str(out), "-T", "pdml"], capture_output=True).stdout)):
        status, text, err = run_post([*argv, "--format", "json"], stdin=stdin)
        assert status in (0, 4) and "Traceback" not in err, err
        assert len(text.splitlines()) > 100

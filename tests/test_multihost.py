"""The lab's two-host recordings merged: ``server create``, ``delete`` and ``stop`` landing on compute1.

``tests/fixtures/multihost/<scenario>/`` holds, per host, the folder ``osflow record`` wrote
(controller and compute1 recorded at once; the scenario's README says how), and
``server-create-shifted`` the same ``server create`` with compute1's clock 0.35 s ahead.
The stories: every RPC between nova-conductor, nova-scheduler and nova-compute@compute1 paired
and nested, nova-compute@compute1's calls to placement and neutron named and nested under the
cast that caused them, the same from each folder's capture and meta.json alone (no ss, no ps),
where at least 95% of the pairs are named.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest

from support import FIXTURES, check_golden, run_post

pytestmark = pytest.mark.tshark

MULTI = FIXTURES / "multihost"
SCENARIOS = ("server-create", "server-delete", "server-stop")
#: the cast nova-compute@compute1's work goes under, per scenario
CAUSE = {"server-create": "cast build_and_run_instance", "server-delete": "cast terminate_instance",
         "server-stop": "cast stop_instance"}
NOVA = ("nova-conductor@controller", "nova-scheduler@controller", "nova-compute@compute1")


def _folders(base: Path) -> list[str]:
    return ["-r", str(base / "controller"), "-r", str(base / "compute1")]


@functools.cache
def _post(base: str, fmt: str) -> tuple[str, str]:
    status, out, err = run_post([*_folders(Path(base)), "--format", fmt])
    assert status == 0, err
    return out, err


def _pairs(base: Path) -> list[dict]:
    return [json.loads(line) for line in _post(str(base), "json")[0].splitlines()]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_timeline_and_json(scenario):
    base = MULTI / scenario
    check_golden(f"post/multihost-{scenario}.txt", _post(str(base), "timeline")[0])
    check_golden(f"post/multihost-{scenario}.jsonl", _post(str(base), "json")[0])
    assert "clock offset compute1: +0.000 s ± 0.0000 s" in _post(str(base), "json")[1]


def _ancestors(p: dict, by: dict) -> list[dict]:
    out = []
    while p["parent"] is not None:
        p = by[p["parent"]]
        out.append(p)
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rpc_across_hosts_is_paired_and_nested(scenario):
    pairs = _pairs(MULTI / scenario)
    by = {p["id"]: p for p in pairs}
    rpc = [p for p in pairs if p["protocol"] == "rpc" and p["client"] in NOVA + ("nova-api@controller",)
           and p["server"] in NOVA]
    fg = [p for p in rpc if not p["background"]]
    assert any(p["server"] == "nova-compute@compute1" for p in fg), "the command reached compute1"
    for p in rpc:
        assert p["delivered"] >= 1 and p["via"] == "RabbitMQ@controller"
        assert p["client_host"] == p["client"].rsplit("@", 1)[1] and p["server_host"] == p["server"].rsplit("@", 1)[1]
        if p["kind"] == "call":
            assert re.match(r"result|failure", p["response"] or ""), p  # the reply came back: paired
    for p in fg:
        assert p["parent"] is not None, p  # nested under the step that caused it
    cast = [p for p in fg if p["request"].startswith(CAUSE[scenario]) and p["server"] == "nova-compute@compute1"]
    assert len(cast) == 1
    below = [p for p in pairs if p["parent"] is not None and cast[0] in _ancestors(p, by)]
    mine = [p for p in fg if p["client"] == "nova-compute@compute1"]
    assert mine and all(p in below for p in mine), "every foreground call of nova-compute@compute1 under the cast"


@pytest.mark.parametrize("scenario, servers", [
    ("server-create", {"placement@controller"}),  # --nic none: no neutron
    ("server-delete", {"placement@controller", "neutron-server@controller"}),
])  # (a stop makes no HTTP call from compute1)
def test_compute1_http_calls_are_named_and_nested(scenario, servers):
    pairs = _pairs(MULTI / scenario)
    by = {p["id"]: p for p in pairs}
    http = [p for p in pairs if p["client"] == "nova-compute@compute1" and p["protocol"] == "http"
            and not p["background"]]
    assert http
    assert {p["server"] for p in http} == servers
    for p in http:
        assert any(a["request"].startswith(CAUSE[scenario]) for a in _ancestors(p, by)), p


def test_a_compute_node_350_ms_ahead_tells_the_same_story():
    shifted, err = _post(str(MULTI / "server-create-shifted"), "json")
    m = re.search(r"clock offset compute1: ([+-]\d\.\d{3}) s ± (\d\.\d{4}) s", err)
    assert m and abs(float(m.group(1)) - 0.35) < 0.0015 and float(m.group(2)) < 0.005, err
    # the same story, each end named from the same socket snapshot (compute1's tables are read at its time)
    story = [(p["client"], p["server"], p["request"], p["response"], p["parent"], p["background"],
              p["client_evidence"], p["server_evidence"]) for p in map(json.loads, shifted.splitlines())]
    straight = [(p["client"], p["server"], p["request"], p["response"], p["parent"], p["background"],
                 p["client_evidence"], p["server_evidence"]) for p in _pairs(MULTI / "server-create")]
    assert story == straight


def _named(p: dict) -> bool:
    """An end named after a process or service, not left an ``ip:port``."""
    return not any(re.match(r"^[\d.\[]", p[k]) for k in ("client", "server"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_from_capture_and_meta_alone(scenario, tmp_path):
    for host in ("controller", "compute1"):
        (tmp_path / host).mkdir()
        for name in ("capture.pcapng", "meta.json"):
            shutil.copy(MULTI / scenario / host / name, tmp_path / host / name)
    status, out, err = run_post([*_folders(tmp_path), "--format", "json"])
    assert status == 0, err
    bare = [json.loads(line) for line in out.splitlines()]
    full = _pairs(MULTI / scenario)
    assert len(bare) == len(full)
    share = sum(map(_named, bare)) / len(bare)
    assert share >= 0.95, f"{share:.1%} of the pairs named"

    def story(pairs):  # the RPC and compute1's calls, with their place in the tree
        return [(p["client"], p["server"], p["request"], p["parent"], p["background"]) for p in pairs
                if p["protocol"] == "rpc" or "compute1" in p["client"]]

    # the foreground too: without socket tables the command's requests are known by their User-Agent
    # (python-novaclient's for `server stop`, as the OpenStack client's library)
    assert story(bare) == story(full)


def test_streamed_json_is_the_whole_flows():
    """JSON Lines is written while the merged captures are read (pipeline.Stream); with --explain the
    stages run on the whole flow (analyse): the same lines."""
    streamed = _post(str(MULTI / "server-create"), "json")[0]
    status, whole, err = run_post([*_folders(MULTI / "server-create"), "--format", "json", "--explain"])
    assert status == 0, err
    assert whole == streamed


def test_no_shared_segment_is_a_warning():
    """Two hosts recorded at different times: no segment in both, the offset assumed 0 and said so."""
    status, out, err = run_post(["-r", str(MULTI / "two-netns" / "controller"), "-r",
                                 str(MULTI / "server-stop" / "compute1"), "--all"])
    assert status == 0, err
    assert ("warning: clock offset compute1: +0.000 s (no segment captured on both hosts: assumed): the hosts' "
            "clocks may disagree (--clock-offset compute1=SECONDS sets it)") in err


def test_the_service_map_groups_by_recorded_host():
    out = _post(str(MULTI / "server-create"), "map")[0]
    groups = re.findall(r'subgraph h\d+\["([^"]+)"\]', out)
    assert groups == ["controller", "compute1"], out
    compute1 = out[out.index('subgraph h2["compute1"]'):]
    assert '"nova-compute@compute1"' in compute1[:compute1.index("end")]

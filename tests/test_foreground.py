"""Foreground and background (osflow.foreground): what the command caused, on real recordings.

The compute lab's recordings were made by ``osflow record`` while nova ran: their meta.json
names the command's pid, and nova-compute's periodic tasks, the services' reports and the
neutron agents' checks run beside it.
"""

from __future__ import annotations

import json

import pytest

from osflow import foreground
from shapes import below
from support import FIXTURES, pdml_bytes, run_post

COMPUTE = FIXTURES / "captures-compute"
pytestmark = pytest.mark.tshark


def _json(case, *args: str, stdin: bytes | None = None) -> list[dict]:
    tables = ["--ss", str(case / "ss.txt"), "--ps", str(case / "ps.txt")]
    argv = [*tables, "--format", "json", *args] if stdin is not None else [
        "-r", str(case / "capture.pcapng"), *tables, "--format", "json", *args]
    status, out, err = run_post(argv, stdin=stdin)
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _ids(pairs: list[dict]) -> set[str]:
    return {p["request_id"] for p in pairs if p.get("request_id")}


@pytest.mark.parametrize("name, command", [
    ("lab-server-delete", "DELETE /v2.1/servers/"),
    ("lab-server-stop", "POST /v2.1/servers/"),
    ("lab-server-create-novalidhost", "POST /v2.1/servers"),
])
def test_the_command_s_story_is_foreground_and_periodic_work_background(name, command):
    pairs = _json(COMPUTE / name)  # -r: meta.json beside the capture names the command's pid
    by_id = {p["id"]: p for p in pairs}
    fg = [p for p in pairs if not p["background"]]
    bg = [p for p in pairs if p["background"]]
    assert fg and bg
    # every pair the openstack command made is foreground, and so is all below it
    meta = json.loads((COMPUTE / name / "meta.json").read_text())
    assert meta["command"][0].endswith("openstack")
    assert all(not p["background"] for p in pairs if p["client"] == "OpenStackClient")
    for p in pairs:
        if p["parent"] is not None and not by_id[p["parent"]]["background"]:
            assert not p["background"], p
    # the command's request ids reach the RPC the services made for it; no background RPC carries one
    assert any(p["protocol"] == "rpc" for p in fg)
    assert _ids(fg).isdisjoint(_ids(bg)), _ids(fg) & _ids(bg)
    # the background is the services' own: nothing of it comes from the command's process
    assert {p["client"] for p in bg} <= {"nova-compute", "nova-conductor", "nova-scheduler", "neutron-server",
                                         "placement", "nova-api", "keystone", "glance"}
    assert any(p["request"].startswith(command) for p in fg if p["client"] == "OpenStackClient")


def test_the_timeline_shows_the_foreground_and_says_what_it_left_out():
    case = COMPUTE / "lab-server-stop"
    pairs = _json(case)
    n = sum(p["background"] for p in pairs)
    args = ["-r", str(case / "capture.pcapng"), "--ss", str(case / "ss.txt"), "--ps", str(case / "ps.txt")]
    _, timeline, _ = run_post(args)
    _, everything, _ = run_post(args + ["--all"])
    _, mermaid, _ = run_post(args + ["--format", "mermaid"])
    line = f"{n} background pairs left out (--all shows them), by client: "
    assert line in timeline and "nova-conductor" in timeline.split(line)[1].splitlines()[0]
    assert "background" not in everything and len(everything.splitlines()) > len(timeline.splitlines())
    assert "Service.save" in everything and "Service.save" not in timeline  # compute's periodic report
    assert f"Note over OpenStackClient: {n} background pairs left out" in mermaid


def test_pdml_on_stdin_is_told_the_meta_json():
    case = COMPUTE / "lab-server-stop"
    from_capture = _json(case)
    told = _json(case, "--meta", str(case / "meta.json"), stdin=pdml_bytes("captures-compute/lab-server-stop"))
    assert told == from_capture
    # without it, every OpenStackClient end is the command: the same story here (one openstack process)
    untold = _json(case, stdin=pdml_bytes("captures-compute/lab-server-stop"))
    assert [p["background"] for p in untold] == [p["background"] for p in from_capture]


def test_a_service_the_command_started_is_the_command_s():
    # `osflow record -- restart.sh nova-conductor`: the conductor's parent was the command when the
    # socket log first saw it (meta.json), though ps found it reparented to init afterwards
    case = COMPUTE / "lab-service-start"
    meta = json.loads((case / "meta.json").read_text())
    (conductor,) = [p for p in meta["socket_owners_not_in_ps"] if p["comm"] == "nova-conductor"]
    assert conductor["ppid"] == meta["command_pid"]
    pairs = _json(case)
    roots = {(p["client"], p["background"]) for p in pairs if p["parent"] is None}
    assert roots == {("nova-conductor", False), ("nova-scheduler", True), ("neutron-server", True),
                     ("nova-compute", True)}
    status, out, _ = run_post(["-r", str(case / "capture.pcapng"), "--ss", str(case / "ss.txt"),
                               "--ps", str(case / "ps.txt")])
    n = sum(p["background"] for p in pairs)
    assert status == 0 and f"{n} background pairs left out" in out


def test_client_names_another_participant():
    case = COMPUTE / "lab-server-stop"
    pairs = _json(case, "--client", "nova-compute")
    fg = [p for p in pairs if not p["background"]]
    assert fg and all(p["client"] == "nova-compute" for p in fg if p["parent"] is None)
    assert all(p["background"] for p in pairs if p["client"] == "OpenStackClient")


def test_client_pid_follows_the_process_tree():
    case = COMPUTE / "lab-server-stop"
    meta = json.loads((case / "meta.json").read_text())
    by_pid = _json(case, "--client", str(meta["command_pid"]))
    assert [p["background"] for p in by_pid] == [p["background"] for p in _json(case)]
    parent = meta["socket_owners_not_in_ps"][0]["ppid"]  # osflow record's own pid: the command is its child
    assert [p["background"] for p in _json(case, "--client", str(parent))] == [p["background"] for p in by_pid]


def test_a_capture_without_any_openstack_client_shows_everything():
    # AMQP only (the fixture keeps the broker's traffic of a recording): without meta.json, no client
    # is known, so nothing is told apart
    case = COMPUTE / "lab-frame-max"
    status, out, err = run_post(["--format", "json", "--ss", str(case / "ss.txt"), "--ps", str(case / "ps.txt")],
                                stdin=pdml_bytes("captures-compute/lab-frame-max"))
    assert status == 0, err
    assert not any(json.loads(line)["background"] for line in out.splitlines())


def test_explain_says_who_the_command_is():
    case = COMPUTE / "lab-server-stop"
    meta = json.loads((case / "meta.json").read_text())
    status, out, err = run_post(["-r", str(case / "capture.pcapng"), "--ss", str(case / "ss.txt"),
                                 "--ps", str(case / "ps.txt"), "--explain"])
    assert status == 0, err
    assert (f"The command (foreground: what it caused): meta.json: the command's pid {meta['command_pid']} "
            f"(/usr/bin/openstack server stop vm2) and its descendants") in out


def test_novalidhost_cell0_writes_sit_under_the_cast():
    """After select_destinations fails, the conductor writes the instance, its actions, events and fault
    into nova_cell0 and deletes the build request: no request id, but the instance's UUID (in the cast's
    arguments and in the statements) and the connection's checkout place them under the cast."""
    pairs = _json(COMPUTE / "lab-server-create-novalidhost")
    cast = next(p for p in pairs if p["request"].startswith("cast schedule_and_build_instances"))
    under = below(pairs, cast)
    writes = [p for p in under if p["client"] == "nova-conductor" and p["server"] == "nova_cell0 DB"
              and p["request"].split()[0] in ("INSERT", "UPDATE")]
    tables = {p["request"].split()[2] for p in writes if p["request"].startswith("INSERT INTO")}
    assert {"instances", "instance_actions", "instance_faults"} <= tables, tables
    assert any(p["request"].startswith("DELETE FROM build_requests") for p in under)
    # and none of the conductor's cell0 writes is left in the background
    assert not [p for p in pairs if p["background"] and p["server"] == "nova_cell0 DB"
                and p["request"].split()[0] in ("INSERT", "DELETE")]



def test_without_socket_tables_a_command_that_names_no_service_is_every_openstackclient_end(tmp_path):
    """A recording of a script (``bash run.sh …`` that starts ``openstack`` several times): without
    ss.txt no end has a pid, and the script's line names no service, so the command's ends are the
    OpenStackClient ends, as without a recording's command; a command that names one keeps it."""
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"command": ["bash", "/tmp/x/run.sh", "/usr/bin/openstack", "server", "list"],
                                "command_pid": 4242}))
    by_pid = foreground.client_from_meta(str(meta))
    assert by_pid.pids == {4242} and not by_pid.names
    found = foreground.by_command_name(by_pid, str(meta))
    assert found.names == ("openstackclient",) and not found.pids
    assert found.why.endswith("a command that names no service: every OpenStackClient end")
    meta.write_text(json.dumps({"command": ["timeout", "300", "/usr/bin/openstack", "server", "list"],
                                "command_pid": 4242}))
    named = foreground.by_command_name(foreground.client_from_meta(str(meta)), str(meta))
    assert named.names == ("openstackclient",)
    assert named.why.endswith("without socket tables: every openstackclient end")

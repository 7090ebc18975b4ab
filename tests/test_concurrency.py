"""Several requests in flight in one service: whose database work is whose.

Real recordings of the project's lab: keystone's five mod_wsgi daemons behind Apache serving the
token requests of eight clients at once (`tests/fixtures/osprofiler/keystone-8-users`, what
OSProfiler's trace of the same recording says is in its README), and neutron-server's and the
conductor's pooled connections, each held by one request from its checkout ping to the rollback
that gives it back.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from support import FIXTURES, run_post, tshark

pytestmark = pytest.mark.tshark

KEYSTONE_8 = FIXTURES / "osprofiler" / "keystone-8-users"
SERVER_DELETE = FIXTURES / "captures-compute" / "lab-server-delete"
CONDUCTOR_8 = FIXTURES / "osprofiler" / "conductor-8-users"


def _pairs(folder) -> list[dict]:
    """Every pair of a recording: a folder with its socket tables, a capture file without."""
    status, out, err = run_post(["-r", str(folder), "--format", "json", "--all"])
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _pid(pair: dict) -> int:
    m = re.search(r"\bpid (\d+)", pair["client_evidence"])
    assert m, pair["client_evidence"]
    return int(m.group(1))


def test_workers_behind_apache_take_the_requests_in_the_order_they_came():
    pairs = _pairs(KEYSTONE_8)
    by_id = {p["id"]: p for p in pairs}
    sql = [p for p in pairs if p["protocol"] == "mysql" and p["client"] == "keystone"]
    assert len(sql) > 2000 and all(p["parent"] is not None for p in sql)
    served: dict[int, set[int]] = {}  # request -> the daemons whose statements it has
    for p in sql:
        served.setdefault(p["parent"], set()).add(_pid(p))
    # every token request has its statements (OSProfiler: sixteen), each from one daemon
    assert len(served) == 16
    assert all(len(pids) == 1 for pids in served.values()), served
    assert {by_id[r]["request"].split("?")[0] for r in served} == {"POST /v3/auth/tokens", "GET /v3/auth/tokens"}
    # a daemon works on one request at a time: its statements never go back to a request it left
    for pid in {_pid(p) for p in sql}:
        runs: list[int] = []
        for p in sql:
            if _pid(p) == pid and (not runs or runs[-1] != p["parent"]):
                runs.append(p["parent"])
        assert len(runs) == len(set(runs)), (pid, runs)
    # and the daemons took them in the order they came (nine in flight at most)
    first: dict[int, float] = {}
    for p in sql:
        first.setdefault(p["parent"], p["start"])
    arrival = sorted(first, key=lambda r: by_id[r]["start"])
    assert [first[r] for r in arrival] == sorted(first.values())


def test_a_database_connection_without_tables_is_who_served_at_every_statement_of_it():
    """Eight clients creating a server at once: nova-api serves their requests while the conductor
    serves nova-compute's calls and the casts, and both use the nova and nova_api schemas.  The
    conductor's three pooled connections (ss.txt: pid 8053) logged in before the recording; without the
    tables their client is who was serving at the moment of their statements.  Some of those moments
    nova-api was serving too (the innermost request at them, more often than not); only the conductor
    was serving at the moment of every statement, and the connections are its."""
    with_tables = {p["stream"]: p["client"] for p in _pairs(CONDUCTOR_8) if p["protocol"] == "mysql"}
    without = {p["stream"]: p["client"] for p in _pairs(CONDUCTOR_8 / "capture.pcapng") if p["protocol"] == "mysql"}
    assert len(with_tables) == 3 and set(with_tables.values()) == {"nova-conductor"}
    assert without == with_tables


def test_a_pooled_connection_is_its_holders_from_checkout_to_checkin():
    """The pool's ping opens a request's hold of a connection; the rollbacks that give it back (the
    driver's, then the pool's reset) close it: all of it under the one request."""
    pairs = _pairs(SERVER_DELETE)
    mysql = [p for p in pairs if p["protocol"] == "mysql" and p["parent"] is not None]
    on: dict[int, list[dict]] = {}
    for p in mysql:
        on.setdefault(p["stream"], []).append(p)
    holds = 0
    for run in on.values():
        hold: list[dict] = []
        for p in run + [None]:  # type: ignore[list-item]
            if p is None or p["request"] == "SELECT 1":
                if hold and hold[0]["request"] == "SELECT 1":  # (a new connection's set-up before: not a hold)
                    assert len({q["parent"] for q in hold}) == 1, [(q["id"], q["request"][:30], q["parent"])
                                                                    for q in hold]
                    holds += len(hold) > 2
                hold = []
            if p is not None:
                hold.append(p)
    assert holds > 20


def test_explain_says_which_evidence_placed_the_workers_statements():
    status, out, err = run_post(["-r", str(KEYSTONE_8), "--explain"])
    assert status == 0, err
    chosen = [line for line in out.splitlines() if " keystone → keystone DB " in line and ": under " in line]
    waiting = [line for line in chosen if "by the oldest request waiting for a worker" in line]
    held = [line for line in chosen if "by its connection's checkout" in line]
    # a daemon's first statement of a request (its pool's ping) by the order of the requests waiting; the
    # statements after it on that connection by the hold
    assert waiting and all(" SELECT 1: " in line for line in waiting)
    assert len(held) > 10 * len(waiting)


KEYSTONE_SWAP = FIXTURES / "osprofiler" / "keystone-swap-8-users"


def _audit_ids(capture) -> dict[int, set[str]]:
    """Frame -> the audit ids a keystone token response in it names (tshark reads the capture)."""
    r = subprocess.run([tshark() or "tshark", "-r", str(capture),
                        "-Y", 'http.response and http.file_data contains "audit_ids"',
                        "-T", "fields", "-e", "frame.number", "-e", "http.file_data"],
                       capture_output=True, text=True, check=True)
    out = {}
    for row in r.stdout.splitlines():
        frame, _, body = row.partition("\t")
        out[int(frame)] = set(json.loads(body)["token"]["audit_ids"])
    return out


def test_a_validation_is_the_daemons_that_checked_its_audit_id():
    """Two daemons start on two token requests within 0.1 ms (OSProfiler: the other way round from
    the order the requests came), and each goes on to take the next request waiting when it is done:
    the order alone had every later request of both daemons swapped.  Keystone checks a token it
    validates against its revocation events by the token's audit id, which the validation's response
    names: the daemon that ran that check served the validation, all of it."""
    pairs = _pairs(KEYSTONE_SWAP)
    audits = _audit_ids(KEYSTONE_SWAP / "capture.pcapng")
    validations = {p["id"]: audits[p["frames"][-1]] for p in pairs
                   if p["request"].startswith("GET /v3/auth/tokens") and p["frames"][-1] in audits}
    assert len(validations) == 8
    checked = 0
    for vid, ids in validations.items():
        sql = [p for p in pairs if p["parent"] == vid and p["protocol"] == "mysql"]
        checks = [p for p in pairs if p["protocol"] == "mysql" and "revocation_event" in p["request"]
                  and any(f"audit_id = '{a}'" in p["request"] for a in ids)]
        assert checks, vid
        daemon = {_pid(p) for p in checks}
        assert len(daemon) == 1 and all(p["parent"] == vid for p in checks), (vid, checks)
        assert len(sql) > 20 and {_pid(p) for p in sql} == daemon, (vid, sorted({_pid(p) for p in sql}))
        checked += 1
    assert checked == 8

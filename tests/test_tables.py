"""Tests of osflow.tables: ss / ps text -> SocketEntry / Process, and the lookups.

Inputs are real: the field samples of an OpenStack controller, the captures of
tests/fixtures/captures, and ss / ps run live on this machine around sockets
the test opens itself.  The few inputs that are *not* real are built with
``dataclasses.replace`` from parsed real entries and say so.

Golden files (tests/golden/tables/*.json) are rewritten by
``OSFLOW_UPDATE_GOLDEN=1 PYTHONPATH=postproc python3 -m pytest tests/test_tables.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osflow.model import Address, Process, SocketEntry, SocketUser
from osflow.tables import (
    ProcessTable,
    PsResult,
    SocketTable,
    SsResult,
    TableError,
    canonical_address,
    parse_address,
    parse_ps,
    parse_ss,
)
from support import check_golden

TESTS = Path(__file__).resolve().parent
FIELD = TESTS / "fixtures" / "field-samples"
CAPTURES = TESTS / "fixtures" / "captures"
COLD = CAPTURES / "resource-class-list-cold"

FIELD_SS = ("ss-lnp.txt", "ss-tlnp.txt", "ss-tp-idle.txt", "ss-tp-during-command.txt")


def A(host: str, port: int) -> Address:
    return Address(host, port)


def ss_file(path: Path, source: str | None = None) -> SsResult:
    return parse_ss(path.read_text(), source or path.name)


def ps_file(path: Path, source: str | None = None) -> PsResult:
    return parse_ps(path.read_text(), source or path.name)


def pids(entry: SocketEntry | None) -> list[int]:
    assert entry is not None
    return [u.pid for u in entry.users]


def markers(path: Path) -> list[tuple[int, float]]:
    """(line number, epoch) of every ``### <epoch>`` line: an oracle independent of the parser."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("#"):
            out.append((n, float(line.lstrip("#").split()[0])))
    return out


# --------------------------------------------------------------------------- field samples


@pytest.fixture(scope="module")
def field() -> tuple[SocketTable, ProcessTable]:
    results = [ss_file(FIELD / name) for name in FIELD_SS]
    for r in results:
        assert r.warnings == ()
    ps = ps_file(FIELD / "ps-aux.txt")
    assert ps.warnings == ()
    return SocketTable(e for r in results for e in r.entries), ProcessTable(ps.processes)


def test_field_placement_to_memcached(field):
    sockets, procs = field
    entry = sockets.owner(A("10.0.20.11", 59030), A("10.0.20.11", 11211), None)
    assert entry is not None and entry.state == "ESTAB"
    assert entry.users == (SocketUser("apache2", 6458, 17),)
    assert procs.get(6458).args == "(wsgi:placement-a -k start"
    # the other end: memcached
    assert pids(sockets.owner(A("10.0.20.11", 11211), A("10.0.20.11", 59030), None)) == [811]
    assert procs.get(811).args.startswith("/usr/bin/memcached -m 64 -p 11211")


def test_field_db_connections_by_service_name(field):
    sockets, procs = field
    # ss printed these peers as 10.0.20.11:mysql
    assert pids(sockets.owner(A("10.0.20.11", 43428), A("10.0.20.11", 3306), None)) == [6458]
    keystone = sockets.owner(A("10.0.20.11", 43424), A("10.0.20.11", 3306), None)
    assert pids(keystone) == [6451]
    assert procs.get(6451).args == "(wsgi:keystone-pu -k start"
    assert procs.get(6451).user == "keystone"
    # the server ends, local address 10.0.20.11:mysql
    assert pids(sockets.owner(A("10.0.20.11", 3306), A("10.0.20.11", 43424), None)) == [966]
    assert procs.get(966).args == "/usr/sbin/mariadbd"


def test_field_placement_to_keystone(field):
    sockets, procs = field
    assert pids(sockets.owner(A("10.0.20.11", 56250), A("10.0.20.11", 5000), None)) == [6458]


def test_field_openstack_client_is_named_by_ss_only(field):
    sockets, procs = field
    closing = sockets.owner(A("10.0.20.11", 41884), A("10.0.20.11", 5000), None)
    assert closing is not None and closing.state == "CLOSE-WAIT"
    assert closing.users == (SocketUser("openstack", 22082, 3),)
    placement = sockets.owner(A("10.0.20.11", 39544), A("10.0.20.11", 8778), None)
    assert placement.users == (SocketUser("openstack", 22082, 4),)
    assert procs.get(22082) is None


def test_field_service_names(field):
    sockets, _ = field
    (idle,) = ss_file(FIELD / "ss-tp-idle.txt").entries  # 127.0.0.1:epmd
    assert idle.peername == A("127.0.0.1", 4369)
    assert pids(sockets.owner(A("127.0.0.1", 54684), A("127.0.0.1", 4369), None)) == [814]
    first = ss_file(FIELD / "ss-tp-during-command.txt").entries[0]  # 10.0.20.11:mysql as local address
    assert first.sockname == A("10.0.20.11", 3306) and first.line == 1


def test_field_apache_owns_the_listeners(field):
    sockets, procs = field
    for port in (5000, 8778, 80):
        found = sockets.listeners(port)
        assert len(found) == 1, found  # ss-lnp.txt and ss-tlnp.txt hold the same listener
        (listener,) = found
        assert listener.state == "LISTEN" and listener.peername is None
        assert listener.sockname == A("*", port)
        assert pids(listener) == [6460, 6459, 869]
        for pid in (6460, 6459, 869):
            assert procs.get(pid).args == "/usr/sbin/apache2 -k start"
    assert procs.get(869).user == "root" and procs.get(6460).user == "www-data"
    assert sockets.listeners(9292)[0].sockname == A("*", 9292)  # 0.0.0.0:9292
    assert sockets.listeners(11211)[0].sockname == A("10.0.20.11", 11211)
    assert sockets.listeners(12345) == ()


def test_field_lnp_skips_unix_sockets():
    lnp = ss_file(FIELD / "ss-lnp.txt")
    tlnp = ss_file(FIELD / "ss-tlnp.txt")
    assert lnp.warnings == ()
    assert [e.line for e in lnp.entries] == list(range(5, 13))  # lines 1-4: u_str, u_dgr
    strip = lambda es: [(e.state, e.sockname, e.peername, e.users) for e in es]  # noqa: E731
    assert strip(lnp.entries) == strip(tlnp.entries)


def test_field_ps_aux_without_header():
    r = ps_file(FIELD / "ps-aux.txt")
    assert len(r.processes) == 25 and r.warnings == ()
    grep = r.processes[-1]
    assert grep.pid == 15673 and grep.user == "root" and grep.line == 25
    assert grep.args == "grep --color=auto -E keystone|placement|glance|rabbitmq|memcache|apache2|mysql"
    assert all(p.ppid is None and p.time is None for p in r.processes)  # ps aux has no PPID column
    beam = ProcessTable(r.processes).get(814)
    assert beam.args.endswith("-syslog syslog_error_logger false")  # long args, internal spaces kept
    assert "-pa  -noshell" in beam.args


def test_field_ipv4_mapped_query(field):
    sockets, _ = field
    entry = sockets.owner(A("::ffff:10.0.20.11", 59030), A("::ffff:10.0.20.11", 11211), None)
    assert pids(entry) == [6458]


# --------------------------------------------------------------------------- captures


@pytest.fixture(scope="module")
def cold_ss() -> SsResult:
    return ss_file(COLD / "ss.txt")


@pytest.fixture(scope="module")
def cold_ss_tp() -> SsResult:
    return ss_file(COLD / "ss-tp.txt")


def test_capture_snapshot_times(cold_ss):
    marks = markers(COLD / "ss.txt")
    assert len(marks) == 107
    assert cold_ss.warnings == ()
    assert {e.time for e in cold_ss.entries} == {t for _, t in marks}
    # each entry carries the time of the last marker above it
    for e in cold_ss.entries[::97]:
        assert e.time == max(m for m in marks if m[0] < e.line)[1]
    assert sum(1 for line in (COLD / "ss.txt").read_text().splitlines() if not line.startswith("#")) == len(
        cold_ss.entries
    )


def test_capture_nearest_snapshot_wins(cold_ss):
    """The client end 127.0.0.1:56474 -> :5000 is in many snapshots: the nearest one answers."""
    local, remote = A("127.0.0.1", 56474), A("127.0.0.1", 5000)
    marks = dict(markers(COLD / "ss.txt"))
    text = (COLD / "ss.txt").read_text().splitlines()
    where = [n for n, line in enumerate(text, 1) if line.split()[3:5] == ["127.0.0.1:56474", "127.0.0.1:5000"]]
    assert len(where) > 5
    times = [marks[max(m for m in marks if m < n)] for n in where]
    table = SocketTable(cold_ss.entries)
    for i in (0, len(times) // 2, len(times) - 1):
        got = table.owner(local, remote, times[i] + 0.001)
        assert got.time == times[i] and got.line == where[i]
        assert got.users == (SocketUser("openstack", 26512, 3),)
    assert table.owner(local, remote, times[0] - 100).line == where[0]
    assert table.owner(local, remote, times[-1] + 100).line == where[-1]
    # between two snapshots: the nearer one
    mid = (times[3] + times[4]) / 2
    assert table.owner(local, remote, mid - 0.002).line == where[3]
    assert table.owner(local, remote, mid + 0.002).line == where[4]


def test_capture_entry_with_users_beats_nearer_entry_without(cold_ss):
    """Snapshot 24 holds keystone's end of 127.0.0.1:56474 before apache accepted it: no users."""
    local, remote = A("127.0.0.1", 5000), A("127.0.0.1", 56474)
    table = SocketTable(cold_ss.entries)
    bare = [e for e in cold_ss.entries if e.sockname == local and e.peername == remote and not e.users]
    assert len(bare) == 1 and bare[0].state == "ESTAB"
    got = table.owner(local, remote, bare[0].time)
    assert got.users == (SocketUser("apache2", 26102, 17),)
    assert got.time > bare[0].time
    # an entry without users answers when it is all there is (FIN-WAIT-2 of an orphaned socket)
    hit = ss_file(CAPTURES / "resource-class-list-cache-hit" / "ss.txt")
    fin = next(e for e in hit.entries if e.state == "FIN-WAIT-2")
    assert fin.users == ()
    assert all(not e.users for e in hit.entries if (e.sockname, e.peername) == (fin.sockname, fin.peername))
    assert SocketTable([fin]).owner(fin.sockname, fin.peername, fin.time) is fin


def test_capture_same_socket_in_two_capture_files():
    """127.0.0.1:56486 -> :5000 (placement -> keystone, kept alive) is in two captures."""
    cold = ss_file(COLD / "ss.txt", "cold/ss.txt")
    later = ss_file(CAPTURES / "resource-provider-create" / "ss.txt", "create/ss.txt")
    table = SocketTable(cold.entries + later.entries)
    assert len(table) == len(cold.entries) + len(later.entries)
    local, remote = A("127.0.0.1", 56486), A("127.0.0.1", 5000)
    for result in (cold, later):
        times = [e.time for e in result.entries if e.sockname == local and e.peername == remote and e.users]
        got = table.owner(local, remote, times[len(times) // 2])
        assert got.source == result.entries[0].source
        assert pids(got) == [26408]


def test_port_reuse_picks_the_nearest_owner(cold_ss):
    """SYNTHETIC: no real capture reuses a 4-tuple for another process, so two real
    entries are given other users and times with dataclasses.replace."""
    real = next(e for e in cold_ss.entries if e.sockname == A("127.0.0.1", 56474) and e.users)
    first = dataclasses.replace(real, time=1000.0, users=(SocketUser("openstack", 111, 3),))
    second = dataclasses.replace(real, time=2000.0, users=(SocketUser("openstack", 222, 3),))
    untimed_bare = dataclasses.replace(real, time=None, users=(), state="TIME-WAIT")
    table = SocketTable([first, untimed_bare, second])
    assert pids(table.owner(real.sockname, real.peername, 1100.0)) == [111]
    assert pids(table.owner(real.sockname, real.peername, 1600.0)) == [222]
    assert pids(table.owner(real.sockname, real.peername, None)) == [111]  # no time: the first
    untimed = dataclasses.replace(real, time=None, users=(SocketUser("openstack", 333, 3),))
    assert pids(SocketTable([first, untimed]).owner(real.sockname, real.peername, 1900.0)) == [333]
    assert table.owner(real.peername, real.sockname, 1000.0) is None  # direction matters


def test_numeric_and_service_name_files_agree(cold_ss, cold_ss_tp):
    """ss.txt (ss -tnpH) and ss-tp.txt (ss -tp: header, :mysql) of one capture name the same owners."""
    assert cold_ss_tp.warnings == ()
    numeric, named = SocketTable(cold_ss.entries), SocketTable(cold_ss_tp.entries)
    assert any(e.peername == A("127.0.0.1", 3306) for e in cold_ss_tp.entries)
    assert "127.0.0.1:mysql" in (COLD / "ss-tp.txt").read_text()
    cases = {
        (A("127.0.0.1", 49514), A("127.0.0.1", 3306)): 26094,  # keystone -> DB (pooled)
        (A("127.0.0.1", 55264), A("127.0.0.1", 3306)): 26408,  # placement -> DB
        (A("127.0.0.1", 3306), A("127.0.0.1", 55264)): 25961,  # mariadbd
        (A("127.0.0.1", 55874), A("127.0.0.1", 11211)): 26408,  # placement -> memcached
        (A("127.0.0.1", 56474), A("127.0.0.1", 5000)): 26512,  # openstack -> keystone
        (A("127.0.0.1", 56486), A("127.0.0.1", 5000)): 26408,  # placement -> keystone
    }
    for (local, remote), pid in cases.items():
        a, b = numeric.owner(local, remote, None), named.owner(local, remote, None)
        assert pids(a) == pids(b) == [pid], (local, remote)
    # and every socket with users in both files, at every time of ss.txt
    tuples = {(e.sockname, e.peername) for e in cold_ss.entries if e.users}
    tuples &= {(e.sockname, e.peername) for e in cold_ss_tp.entries if e.users}
    assert len(tuples) > 20
    for local, remote in sorted(tuples):
        for t in sorted({e.time for e in cold_ss.entries})[::20]:
            assert numeric.owner(local, remote, t).users == named.owner(local, remote, t).users


def test_capture_ps_sections():
    r = ps_file(COLD / "ps.txt")
    assert r.warnings == ()
    sections = Counter((p.time, p.ppid is not None) for p in r.processes)
    marks = markers(COLD / "ps.txt")
    assert [t for _, t in marks] == sorted({p.time for p in r.processes})
    # -eo pid,ppid,user,args (PPID) and ps aux (no PPID) alternate
    assert [has_ppid for (_, has_ppid) in sorted(sections)] == [True, False, True, False]
    procs = ProcessTable(r.processes)
    assert len(procs) == len({p.pid for p in r.processes})
    placement = procs.get(26408)
    assert placement.args == "(wsgi:placement-a -k start" and placement.user == "placeme+"
    assert placement.ppid == 26089  # of the ps -eo snapshot, which knows the parent
    assert procs.get(26089).args == "/usr/sbin/apache2 -k start"
    assert procs.get(2).args == "[kthreadd]"
    assert procs.get(26512) is None  # the openstack client lives between the snapshots
    # a VSZ too wide for its column shifts the line: still read by shape
    assert procs.get(25961).args == "/usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306"


def test_capture_ps_without_sections_or_headers():
    """The same real lines, with the section and header lines taken out."""
    lines = (COLD / "ps.txt").read_text().splitlines()
    bare = [line for line in lines if not line.startswith("#") and not line.lstrip().startswith(("PID", "USER"))]
    assert len(bare) == len(lines) - 8
    r = parse_ps("\n".join(bare), "bare")
    assert r.warnings == ()
    assert [(p.pid, p.ppid, p.user, p.args) for p in r.processes] == [
        (p.pid, p.ppid, p.user, p.args) for p in ps_file(COLD / "ps.txt").processes
    ]


def test_process_table_prefers_longest_args():
    (p,) = parse_ps(
        "keystone    6449  0.0  0.1 108884 11456 ?        Sl   00:00   0:00 (wsgi:keystone-pu -k start"
    ).processes
    short = dataclasses.replace(p, args="(wsgi:keystone-pu")  # SYNTHETIC: a shorter command line
    assert ProcessTable([short, p]).get(6449) is p
    assert ProcessTable([p, short]).get(6449) is p
    assert len(ProcessTable([p, short])) == 1


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "parse, path, where, expected",
    [
        (parse_ss, COLD / "output.txt", "output.txt:1:", "expected an ss socket line"),
        (parse_ps, COLD / "output.txt", "output.txt:1:", "expected a ps process line"),
        (parse_ss, COLD / "ps.txt", "ps.txt:2:", "found 'PID  PPID USER     COMMAND'"),  # line 1: ##### marker
        (parse_ps, COLD / "ss.txt", "ss.txt:2:", "found 'ESTAB 0"),
    ],
)
def test_file_of_garbage_raises(parse, path, where, expected):
    with pytest.raises(TableError) as info:
        parse(path.read_text(), path.name)
    message = str(info.value)
    assert message.startswith(where) and expected in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_empty_input_is_no_error():
    assert parse_ss("", "empty") == SsResult((), ())
    assert parse_ps("\n\n", "empty") == PsResult((), ())
    assert parse_ss("### 1795628314.019138113 1 ss -tnpH\n### 1795628314.062418752 2 ss -tnpH\n").entries == ()


def test_garbage_line_in_the_middle_is_a_warning():
    ss = (FIELD / "ss-tp-during-command.txt").read_text().splitlines()
    ps = (FIELD / "ps-aux.txt").read_text().splitlines()
    garbage = (COLD / "output.txt").read_text().splitlines()[3]  # '| DISK_GB   ...|'
    r = parse_ss("\n".join(ss[:4] + [garbage] + ss[4:]), "ss.txt")
    assert len(r.entries) == 10
    assert r.warnings == (
        "ss.txt:5: expected an ss socket line (State Recv-Q Send-Q Local Peer), found '| DISK_GB"
        + " " * 32
        + "|'",
    )
    assert [e.line for e in r.entries] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    r = parse_ps("\n".join(ps[:2] + [garbage] + ps[2:]), "ps.txt")
    assert len(r.processes) == 25
    assert len(r.warnings) == 1 and r.warnings[0].startswith("ps.txt:3: expected a ps process line")


# --------------------------------------------------------------------------- single lines and addresses


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.0.20.11:mysql", A("10.0.20.11", 3306)),
        ("127.0.0.1:epmd", A("127.0.0.1", 4369)),
        ("127.0.0.1:amqp", A("127.0.0.1", 5672)),
        ("127.0.0.1:memcache", A("127.0.0.1", 11211)),
        ("127.0.0.1:http-alt", A("127.0.0.1", 8080)),
        ("*:5000", A("*", 5000)),
        ("0.0.0.0:9292", A("*", 9292)),
        ("[::]:5000", A("*", 5000)),
        ("[::1]:5000", A("::1", 5000)),
        ("[::ffff:127.0.0.1]:5000", A("127.0.0.1", 5000)),
        ("::ffff:127.0.0.1:5000", A("127.0.0.1", 5000)),
        ("127.0.0.53%lo:53", A("127.0.0.53", 53)),
        ("[fe80::1]%eth0:22", A("fe80::1", 22)),
    ],
)
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:*", "*:*", "127.0.0.1:no-such-service", "xyz", ":80"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_canonical_address():
    assert canonical_address(A("::ffff:127.0.0.1", 5000)) == A("127.0.0.1", 5000)
    assert canonical_address(A("127.0.0.1", 5000)) == A("127.0.0.1", 5000)
    assert canonical_address(A("0:0:0:0:0:0:0:1", 5000)) == A("::1", 5000)


def test_unknown_service_name_is_a_warning():
    line = ('ESTAB      0      0               10.0.20.11:43424          10.0.20.11:mysql '
            'users:(("apache2",pid=6451,fd=20))  ')
    r = parse_ss(line.replace(":mysql", ":no-such-service"), "x")  # SYNTHETIC: a name no services file has
    assert r.entries == ()
    assert r.warnings and r.warnings[0].startswith("x:1: cannot read the address '10.0.20.11:no-such-service'")


def test_pids_are_ascii_digits_only():
    line = ('ESTAB      0      0               10.0.20.11:43424          10.0.20.11:mysql '
            'users:(("apache2",pid=6451,fd=20))  ')
    # SYNTHETIC: a real line whose pid is written in Arabic-Indic digits, which int() would take for 6451
    (entry,) = parse_ss(line.replace("pid=6451", "pid=\u0666\u0664\u0665\u0661"), "x").entries
    assert entry.users == ()
    (entry,) = parse_ss(line, "x").entries
    assert entry.users == (SocketUser("apache2", 6451, 20),)


# --------------------------------------------------------------------------- live: ss and ps on this machine


def run(*cmd: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30, env=env).stdout


@pytest.fixture
def live_sockets():
    """A dual-stack listener with an IPv4 and an IPv6 client, and a listener bound to ``lo``."""
    opened: list[socket.socket] = []

    def keep(s: socket.socket) -> socket.socket:
        opened.append(s)
        return s

    try:
        dual = keep(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual.bind(("::", 0))
        dual.listen()
        port = dual.getsockname()[1]
        v4 = keep(socket.create_connection(("127.0.0.1", port)))
        keep(dual.accept()[0])
        v6 = keep(socket.create_connection(("::1", port)))
        keep(dual.accept()[0])
    except OSError as e:
        for s in opened:
            s.close()
        pytest.skip(f"no IPv6 loopback here: {e}")
    lo = keep(socket.socket())
    try:
        lo.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    except (OSError, AttributeError):
        lo_bound = False
    else:
        lo_bound = True
    lo.bind(("127.0.0.1", 0))
    lo.listen()
    yield {"port": port, "v4": v4, "v6": v6, "lo": lo, "lo_bound": lo_bound}
    for s in opened:
        s.close()


needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
needs_ps = pytest.mark.skipif(shutil.which("ps") is None, reason="ps (procps) is not installed")


@needs_ss
@pytest.mark.parametrize("options", ["-tnp", "-tp", "-tnpH", "-tanp", "-lnp", "-tlnp", "-anp", "-tnpi", "-tnpeo"])
def test_live_ss(live_sockets, options):
    out = run("ss", options)
    me = os.getpid()
    if f"pid={me}," not in out:
        pytest.skip("ss shows no process of this test (no permission?)")
    r = parse_ss(out, f"ss {options}")
    assert r.warnings == (), r.warnings[:5]
    table = SocketTable(r.entries)
    port = live_sockets["port"]
    (listener,) = [e for e in table.listeners(port) if me in pids(e)] or [None]
    if "l" in options or "a" in options:
        assert listener is not None and listener.sockname == A("*", port) and listener.peername is None
        lo_port = live_sockets["lo"].getsockname()[1]
        (lo,) = table.listeners(lo_port)
        assert lo.sockname == A("127.0.0.1", lo_port)  # '127.0.0.1%lo:43811' when bound to lo
    if "l" in options:  # listeners only
        return
    v4, v6 = live_sockets["v4"], live_sockets["v6"]
    local, remote = A(*v4.getsockname()[:2]), A(*v4.getpeername()[:2])
    assert pids(table.owner(local, remote, time.time())) == [me]
    # the server end: ss prints [::ffff:127.0.0.1]:port
    assert pids(table.owner(remote, local, None)) == [me]
    assert pids(table.owner(A("::ffff:127.0.0.1", remote.port), A("::ffff:127.0.0.1", local.port), None)) == [me]
    local6, remote6 = A(*v6.getsockname()[:2]), A(*v6.getpeername()[:2])
    assert local6.host == "::1"
    assert pids(table.owner(local6, remote6, None)) == [me]
    assert pids(table.owner(remote6, local6, None)) == [me]


@needs_ss
def test_live_time_wait_then_snapshots():
    """Two real ss -tanp snapshots, under ### markers: ESTAB with users, then TIME-WAIT without."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    local, remote = A(*client.getsockname()), A(*client.getpeername())
    try:
        before = run("ss", "-tanp")
        t0 = time.time()
        client.close()  # the active closer goes to TIME-WAIT
        accepted.close()
        deadline = time.time() + 5
        after = ""
        while time.time() < deadline:
            after = run("ss", "-tanp")
            if "TIME-WAIT" in after and f"{local}" in after:
                break
            time.sleep(0.05)
        t1 = time.time()
    finally:
        server.close()
        accepted.close()
    if f"pid={os.getpid()}," not in before:
        pytest.skip("ss shows no process of this test (no permission?)")
    text = f"### {t0:.6f} 1 ss -tanp\n{before}### {t1:.6f} 2 ss -tanp\n{after}"
    r = parse_ss(text, "live")
    assert r.warnings == ()
    mine = [e for e in r.entries if e.sockname == local and e.peername == remote]
    states = [e.state for e in mine]
    if "TIME-WAIT" not in states:
        pytest.skip("no TIME-WAIT seen")
    tw = mine[states.index("TIME-WAIT")]
    assert tw.users == () and tw.time == pytest.approx(t1)
    got = SocketTable(r.entries).owner(local, remote, t1)
    assert got.state == "ESTAB" and pids(got) == [os.getpid()]  # users beat the nearer TIME-WAIT


@needs_ps
@pytest.mark.parametrize(
    "argv, header",
    [
        (("ps", "auxww"), True),
        (("ps", "auxww"), False),
        (("ps", "-efww"), True),
        (("ps", "-efww"), False),
        (("ps", "-ww", "-eo", "pid,ppid,user,args"), True),
        (("ps", "-ww", "-eo", "pid,ppid,user,args"), False),
        (("ps", "-ww", "-eo", "user,pid,ppid,etime,args"), True),  # header only: columns split on blanks
        (("ps", "-e"), True),  # PID TTY TIME CMD
    ],
)
def test_live_ps(argv, header):
    """ps on this machine (``ww``: ps cuts the command at the terminal width otherwise)."""
    out = run(*argv)
    lines = out.splitlines()
    if not header:
        lines = lines[1:]
    r = parse_ps("\n".join(lines), " ".join(argv))
    assert r.warnings == ()
    assert len(r.processes) == len(lines) - (1 if header else 0)
    me = ProcessTable(r.processes).get(os.getpid())
    assert me is not None
    if argv[-1] == "-e":
        assert me.args == Path(sys.executable).name[:15] or me.args.startswith("python")
        return
    assert "pytest" in me.args or "py.test" in me.args or Path(sys.executable).name in me.args
    if "ppid" in argv[-1] or argv[-1] == "-efww":
        assert me.ppid == os.getppid()
    if argv[-1] != "-e":
        assert me.user is not None


# --------------------------------------------------------------------------- golden files


def entry_json(e: SocketEntry) -> dict[str, Any]:
    return {
        "line": e.line,
        "state": e.state,
        "local": str(e.sockname),
        "remote": None if e.peername is None else str(e.peername),
        "users": [[u.comm, u.pid, u.fd] for u in e.users],
        "time": e.time,
    }


def process_json(p: Process) -> dict[str, Any]:
    return {"line": p.line, "pid": p.pid, "ppid": p.ppid, "user": p.user, "args": p.args, "time": p.time}


def ss_summary(r: SsResult, lookups: list[tuple[str, str, float | None]]) -> dict[str, Any]:
    table = SocketTable(r.entries)
    times = sorted({e.time for e in r.entries if e.time is not None})
    return {
        "entries": len(r.entries),
        "warnings": list(r.warnings),
        "snapshots": len(times),
        "first_time": times[0] if times else None,
        "last_time": times[-1] if times else None,
        "states": dict(sorted(Counter(e.state for e in r.entries).items())),
        "sockets": len({(e.sockname, e.peername) for e in r.entries}),
        "users": sorted({(u.comm, u.pid) for e in r.entries for u in e.users}),
        "without_users": sum(1 for e in r.entries if not e.users),
        "first": [entry_json(e) for e in r.entries[:5]],
        "lookups": [
            {
                "local": local,
                "remote": remote,
                "time": t,
                "owner": (lambda e: None if e is None else entry_json(e))(
                    table.owner(parse_address(local), parse_address(remote), t)
                ),
            }
            for local, remote, t in lookups
        ],
    }


COLD_LOOKUPS = [
    ("127.0.0.1:49514", "127.0.0.1:3306", None),
    ("127.0.0.1:55264", "127.0.0.1:3306", None),
    ("127.0.0.1:56474", "127.0.0.1:5000", None),
    ("127.0.0.1:5000", "127.0.0.1:56474", 1795628314.989208152),
    ("127.0.0.1:56486", "127.0.0.1:5000", 1795628317.0),
    ("127.0.0.1:55874", "127.0.0.1:11211", 1795628316.0),
    ("127.0.0.1:1", "127.0.0.1:2", None),
]


def golden_data(name: str) -> Any:
    if name.startswith("tables-"):  # netstat / lsof / ss of tests/fixtures/tables
        r = ss_file(TESTS / "fixtures" / "tables" / name.removeprefix("tables-"))
        return {"warnings": list(r.warnings), "entries": [entry_json(e) for e in r.entries]}
    if name.startswith("field-samples-ss-"):
        r = ss_file(FIELD / name.removeprefix("field-samples-"))
        return {"warnings": list(r.warnings), "entries": [entry_json(e) for e in r.entries]}
    if name == "field-samples-ps-aux.txt":
        r = ps_file(FIELD / "ps-aux.txt")
        return {"warnings": list(r.warnings), "processes": [process_json(p) for p in r.processes]}
    if name in ("cold-ss.txt", "cold-ss-tp.txt"):
        return ss_summary(ss_file(COLD / name.removeprefix("cold-")), COLD_LOOKUPS)
    if name == "cold-ps.txt":
        r = ps_file(COLD / "ps.txt")
        procs = ProcessTable(r.processes)
        return {
            "processes": len(r.processes),
            "warnings": list(r.warnings),
            "pids": len(procs),
            "sections": [[t, n] for t, n in sorted(Counter(p.time for p in r.processes).items())],
            "first": [process_json(p) for p in r.processes[:5]],
            "lookups": {
                str(pid): (lambda p: None if p is None else process_json(p))(procs.get(pid))
                for pid in (2, 25961, 25994, 26089, 26090, 26102, 26408, 26512)
            },
        }
    raise KeyError(name)


GOLDEN_NAMES = [f"field-samples-{n}" for n in FIELD_SS] + [
    "field-samples-ps-aux.txt",
    "cold-ss.txt",
    "cold-ss-tp.txt",
    "cold-ps.txt",
] + [
    f"tables-{n}"
    for n in (
        "ss-tnp.txt",
        "ss-tlnp.txt",
        "netstat-tnp.txt",
        "netstat-tlnp.txt",
        "lsof-nP-iTCP.txt",
        "lsof-nP-iTCP-sTCP-ESTABLISHED.txt",
    )
]


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden(name):
    text = json.dumps(golden_data(name), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    check_golden("tables/" + re.sub(r"\.txt$", "", name) + ".json", text)


# --------------------------------------------------------------------------- properties

REAL_SS_LINE = ('ESTAB      0      0               10.0.20.11:56250          10.0.20.11:5000  '
                'users:(("apache2",pid=6458,fd=21))  ')
REAL_PS_LINE = "placeme+    6458  0.0  0.1 108892 11460 ?        Sl   00:00   0:00 (wsgi:placement-a -k start"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=6))
def test_odd_lines_never_break_a_real_one(noise):
    """Whatever surrounds a real line: no exception, the real line is read, the rest only warns."""
    noise = [n for n in noise if n.strip() and not n.lstrip().startswith("#")]
    ss = parse_ss("\n".join(noise + [REAL_SS_LINE]), "s")
    assert ss.entries[-1].users == (SocketUser("apache2", 6458, 21),)
    ps = parse_ps("\n".join(noise + [REAL_PS_LINE]), "p")
    assert ps.processes[-1].pid == 6458


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_table_error(text):
    for parse in (parse_ss, parse_ps):
        try:
            parse(text, "t")
        except TableError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), st.integers(0, 65535))
def test_address_round_trip(ip, port):
    address = Address(str(ip), port)
    parsed = parse_address(str(address))
    assert parsed == canonical_address(address)
    if ip.is_unspecified:
        assert parsed.host == "*"
    elif ip.version == 6 and ip.ipv4_mapped is not None:
        assert parsed.host == str(ip.ipv4_mapped)
    else:
        assert parsed.host == str(ip)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["", "tcp ", "udp ", "u_str "]),
    st.sampled_from(["ESTAB", "LISTEN", "TIME-WAIT", "CLOSE-WAIT", "SYN-SENT"]),
    st.text(min_size=1, max_size=30).filter(lambda t: t.split() == [t]),
    st.text(min_size=1, max_size=30).filter(lambda t: t.split() == [t]),
    st.text(max_size=60).filter(lambda t: len(("x" + t).splitlines()) == 1),
)
def test_socket_line_with_any_addresses(netid, state, local, peer, rest):
    """The shape of an ss line with anything as addresses: an entry or a warning, never an exception."""
    r = parse_ss(f"{netid}{state} 0 0 {local} {peer} {rest}", "f")
    assert len(r.entries) + len(r.warnings) <= 1
    for e in r.entries:
        assert e.sockname.port >= 0 and (e.peername is None or e.peername.port >= 0)


# --------------------------------------------------------------------------- netstat and lsof

TABLES = TESTS / "fixtures" / "tables"
#: taken one right after the other by tests/fixtures/tables/record.sh (see its README)
TABLE_FILES = (
    "ss-tnp.txt",
    "ss-tlnp.txt",
    "netstat-tnp.txt",
    "netstat-tlnp.txt",
    "lsof-nP-iTCP.txt",
    "lsof-nP-iTCP-sTCP-ESTABLISHED.txt",
)


@pytest.fixture(scope="module")
def tables() -> dict[str, SsResult]:
    return {name: ss_file(TABLES / name) for name in TABLE_FILES}


def with_peer(r: SsResult) -> dict[tuple[Address, Address], SocketEntry]:
    return {(e.sockname, e.peername): e for e in r.entries if e.peername is not None}


def test_tables_read_without_warnings(tables):
    for name, r in tables.items():
        assert r.warnings == (), name
        text = (TABLES / name).read_text().splitlines()
        if name.startswith("lsof"):  # one line per process holding a socket
            assert 0 < len(r.entries) <= len(text) - 1
        else:
            assert len(r.entries) == len(text) - (2 if name.startswith("netstat") else 1)  # header lines


@pytest.mark.parametrize("other", ["netstat-tnp.txt", "lsof-nP-iTCP.txt", "lsof-nP-iTCP-sTCP-ESTABLISHED.txt"])
def test_tables_same_owner_as_ss(tables, other):
    """Every 4-tuple ss -tnp and the other tool both show: the same state and the same owner pid."""
    ss, theirs = with_peer(tables["ss-tnp.txt"]), with_peer(tables[other])
    common = sorted(set(ss) & set(theirs))
    assert len(common) >= 30
    for key in common:
        a, b = ss[key], theirs[key]
        assert (a.state, pids(a)) == (b.state, pids(b)), key
        if other.startswith("lsof"):
            assert a.users == b.users  # lsof has the fd too; the command name is the same (short) comm
    # and through SocketTable, as the join asks
    table = SocketTable(tables[other].entries)
    for key in common:
        assert pids(table.owner(*key)) == pids(ss[key])


def test_tables_known_sockets(tables):
    """Sockets record.sh made or saw: client python3 (pid 1993), keystone/placement (Apache), memcached."""
    cases = {
        (A("127.0.0.1", 50284), A("127.0.0.1", 11211)): ("ESTAB", 1993),  # client -> memcached
        (A("127.0.0.1", 11211), A("127.0.0.1", 50284)): ("ESTAB", 29685),  # memcached
        (A("127.0.0.1", 52288), A("127.0.0.1", 5000)): ("ESTAB", 1993),  # client -> keystone
        (A("127.0.0.1", 5000), A("127.0.0.1", 52288)): ("ESTAB", 29997),  # apache2 (keystone's vhost)
        (A("127.0.0.1", 45948), A("127.0.0.1", 3306)): ("ESTAB", 32097),  # placement's wsgi daemon -> DB
        (A("::1", 54238), A("::1", 8778)): ("CLOSE-WAIT", 1993),  # the stand-in closed after answering
        (A("::1", 54254), A("::1", 8778)): ("ESTAB", 1993),
        (A("::1", 8778), A("::1", 54254)): ("ESTAB", 1943),  # stand-in http.server on [::1]:8778
    }
    for name in ("ss-tnp.txt", "netstat-tnp.txt", "lsof-nP-iTCP.txt"):
        found = with_peer(tables[name])
        for key, (state, pid) in cases.items():
            assert (found[key].state, pids(found[key])) == (state, [pid]), (name, key)
    # the orphaned FIN-WAIT-2 end: no process in ss nor netstat ('-'), absent from lsof
    key = (A("::1", 8778), A("::1", 54238))
    for name in ("ss-tnp.txt", "netstat-tnp.txt"):
        assert with_peer(tables[name])[key].state == "FIN-WAIT-2" and not with_peer(tables[name])[key].users
    assert key not in with_peer(tables["lsof-nP-iTCP.txt"])
    # netstat: no fd, the program name cut at its column width
    netstat = with_peer(tables["netstat-tnp.txt"])
    assert netstat[(A("127.0.0.1", 45948), A("127.0.0.1", 3306))].users == (SocketUser("(wsgi:placeme", 32097, None),)
    assert netstat[(A("127.0.0.1", 34234), A("127.0.0.1", 8778))].state == "TIME-WAIT"
    lsof = with_peer(tables["lsof-nP-iTCP.txt"])
    assert lsof[(A("127.0.0.1", 50284), A("127.0.0.1", 11211))].users == (SocketUser("python3", 1993, 3),)


def test_tables_listeners(tables):
    """ss -tlnp, netstat -tlnp and lsof -iTCP (LISTEN lines) name the same listeners."""
    names = ("ss-tlnp.txt", "netstat-tlnp.txt", "lsof-nP-iTCP.txt")
    ss, netstat, lsof = (SocketTable(tables[n].entries) for n in names)
    for port in (3306, 5000, 8778, 11211):
        (a,) = [e for e in ss.listeners(port) if e.sockname.host == "127.0.0.1"]
        (b,) = [e for e in netstat.listeners(port) if e.sockname.host == "127.0.0.1"]
        (c,) = [e for e in lsof.listeners(port) if e.sockname.host == "127.0.0.1"]
        assert a.sockname == b.sockname == c.sockname and a.state == b.state == c.state == "LISTEN"
        assert sorted(pids(a)) == sorted(pids(c))  # lsof: one line per process, gathered into one entry
        assert pids(b)[0] in pids(a)  # netstat names one process only
    assert pids(lsof.listeners(5000)[0]) == [29988, 29996, 29997]
    six = [e for e in netstat.listeners(8778) if e.sockname.host == "::1"]  # ':::*' peer of a tcp6 listener
    assert [(str(e.sockname), e.peername, pids(e)) for e in six] == [("[::1]:8778", None, [1943])]
    (unknown,) = netstat.listeners(2024)  # '-': the process is not ours to see
    assert unknown.sockname == A("*", 2024) and unknown.users == ()


def test_tables_headerless(tables):
    for name in ("netstat-tnp.txt", "lsof-nP-iTCP.txt"):
        lines = (TABLES / name).read_text().splitlines()
        body = lines[2:] if name.startswith("netstat") else lines[1:]
        r = parse_ss("\n".join(body), name)
        assert r.warnings == ()
        strip = lambda es: [(e.state, e.sockname, e.peername, e.users) for e in es]  # noqa: E731
        assert strip(r.entries) == strip(tables[name].entries)


def test_tables_snapshots_of_several_tools(tables):
    """One file holding ### snapshots of ss, netstat and lsof: entries get their snapshot's time;
    an lsof socket is gathered only within its snapshot."""
    names = ("ss-tnp.txt", "netstat-tnp.txt", "lsof-nP-iTCP.txt", "lsof-nP-iTCP.txt")
    parts = [(TABLES / n).read_text() for n in names]
    text = "".join(f"### {1795633123 + i}.5 {i}\n{p}" for i, p in enumerate(parts))
    r = parse_ss(text, "mixed")
    assert r.warnings == ()
    counts = Counter(e.time for e in r.entries)
    assert counts == {
        1795633123.5: len(tables["ss-tnp.txt"].entries),
        1795633124.5: len(tables["netstat-tnp.txt"].entries),
        1795633125.5: len(tables["lsof-nP-iTCP.txt"].entries),
        1795633126.5: len(tables["lsof-nP-iTCP.txt"].entries),
    }


def test_tables_bad_lines_name_the_format():
    lines = (TABLES / "netstat-tnp.txt").read_text().splitlines()
    r = parse_ss("\n".join(lines[:3] + ["tcp 0 0 garbage"] + lines[3:]), "netstat.txt")
    assert r.warnings == (
        "netstat.txt:4: expected a netstat socket line (Proto Recv-Q Send-Q Local-Address Foreign-Address State"
        " PID/Program), found 'tcp 0 0 garbage'",
    )
    lines = (TABLES / "lsof-nP-iTCP.txt").read_text().splitlines()
    r = parse_ss("\n".join(lines[:2] + ["lsof: WARNING: can't stat() fuse file system"] + lines[2:]), "lsof.txt")
    assert len(r.warnings) == 1 and r.warnings[0].startswith("lsof.txt:3: expected an lsof socket line (COMMAND PID")
    with pytest.raises(TableError, match=r"^x:1: not a socket table \(ss, netstat or lsof\)"):
        parse_ss("lsof: WARNING: can't stat() fuse file system\n", "x")
    # the unix-socket tail of a headerless netstat -anp (line verbatim from the test machine): netstat's
    # lines name the format even when they are not TCP, as ss's udp and u_str lines do
    unix = "unix  3      [ ]         STREAM     CONNECTED     1142     -                    "
    r = parse_ss(f"{unix}\ntcp 0 0 garbage\n", "netstat.txt")
    assert r.entries == () and r.warnings == (
        "netstat.txt:2: expected a netstat socket line (Proto Recv-Q Send-Q Local-Address Foreign-Address State"
        " PID/Program), found 'tcp 0 0 garbage'",
    )


REAL_TABLE_LINES = [
    line
    for name in ("netstat-tnp.txt", "netstat-tlnp.txt", "lsof-nP-iTCP.txt", "ss-tnp.txt")
    for line in (TABLES / name).read_text().splitlines()
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(REAL_TABLE_LINES),
            st.text(max_size=80),
            st.tuples(
                st.sampled_from(REAL_TABLE_LINES), st.integers(0, 120), st.integers(0, 120), st.text(max_size=8)
            ).map(lambda t: t[0][: t[1]] + t[3] + t[0][t[2] :]),  # a real line cut and spliced
        ),
        max_size=12,
    )
)
def test_garbage_mixed_with_real_table_lines(lines):
    """Real ss / netstat / lsof lines among random and mangled ones: entries or TableError, nothing else;
    every intact real socket line still gives its entry."""
    text = "\n".join(lines)
    try:
        r = parse_ss(text, "g")
    except TableError as e:
        assert str(e).startswith("g:") and "\n" not in str(e)
        return
    assert all(w.startswith("g:") for w in r.warnings)
    got = {(e.state, e.sockname, e.peername) for e in r.entries}
    for line in lines:
        if line in REAL_TABLE_LINES and line.strip() and not line.startswith(("#", "\t", " ")):
            for e in parse_ss(line, "one").entries:
                assert (e.state, e.sockname, e.peername) in got


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["tcp 0 0 ", "tcp6 1 2 ", "x 1 u 3u IPv4 5 0t0 TCP ", "udp 0 0 "]))
def test_any_netstat_or_lsof_shaped_text(text, prefix):
    for t in (prefix + text, text + "\n" + prefix + text):
        try:
            parse_ss(t, "t")
        except TableError:
            pass


# --------------------------------------------------------------------------- live: netstat and lsof on this machine


@pytest.mark.skipif(shutil.which("netstat") is None, reason="netstat (net-tools) is not installed")
@pytest.mark.parametrize("options", ["-tnp", "-tanp", "-tlnp", "-tnpe", "-tnpo", "-tnpW"])
def test_live_netstat(live_sockets, options):
    out = run("netstat", options)
    me = os.getpid()
    if f" {me}/" not in out:
        pytest.skip("netstat shows no process of this test (no permission?)")
    r = parse_ss(out, f"netstat {options}")
    assert r.warnings == (), r.warnings[:5]
    table = SocketTable(r.entries)
    port = live_sockets["port"]
    if "l" in options or "a" in options:
        (listener,) = table.listeners(port)
        assert listener.sockname == A("*", port) and pids(listener) == [me]
    if "l" in options:
        return
    for s in (live_sockets["v4"], live_sockets["v6"]):
        local, remote = A(*s.getsockname()[:2]), A(*s.getpeername()[:2])
        assert pids(table.owner(local, remote)) == [me]
        assert pids(table.owner(remote, local)) == [me]  # the server end (::ffff:127.0.0.1 for v4)


@pytest.mark.skipif(shutil.which("lsof") is None, reason="lsof is not installed")
@pytest.mark.parametrize("options", [("-iTCP",), ("-iTCP", "-sTCP:ESTABLISHED"), ("-iTCP", "-sTCP:LISTEN"), ("-i",)])
def test_live_lsof(live_sockets, options):
    me = os.getpid()
    out = run("lsof", "-nP", *options, "-a", "-p", str(me))
    r = parse_ss(out, "lsof")
    assert r.warnings == (), r.warnings[:5]
    table = SocketTable(r.entries)
    port = live_sockets["port"]
    if "-sTCP:ESTABLISHED" not in options:
        (listener,) = table.listeners(port)
        assert listener.sockname == A("*", port) and pids(listener) == [me]
    if "-sTCP:LISTEN" in options:
        assert all(e.state == "LISTEN" for e in r.entries)
        return
    for s in (live_sockets["v4"], live_sockets["v6"]):
        local, remote = A(*s.getsockname()[:2]), A(*s.getpeername()[:2])
        got = table.owner(local, remote)
        comm = Path("/proc/self/comm").read_text().strip()[:9]  # lsof shows 9 characters of it
        assert got.state == "ESTAB" and got.users == (SocketUser(comm, me, s.fileno()),)
        assert pids(table.owner(remote, local)) == [me]


@pytest.mark.skipif(shutil.which("netstat") is None, reason="netstat (net-tools) is not installed")
def test_live_netstat_not_root_with_stderr(live_sockets):
    """netstat -tnp run by a user who may not see the processes, with ``2>&1``: its note is no bad line."""
    cmd = ["netstat", "-tnp"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is missing: cannot drop root")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert "you should be root" in out.stderr or "would have to be root" in out.stderr
    r = parse_ss(out.stderr + out.stdout, "netstat 2>&1")
    assert r.warnings == ()
    v4 = live_sockets["v4"]
    got = SocketTable(r.entries).owner(A(*v4.getsockname()[:2]), A(*v4.getpeername()[:2]))
    assert got is not None and got.state == "ESTAB" and got.users == ()


# --------------------------------------------------------------------------- listening sockets


def test_field_listening_owner_is_the_process_group(field):
    """A connection whose own socket is in no snapshot was accepted from the listening socket on its
    port: its one owner, or its process group (ps aux has no parent pids: one program's processes)."""
    sockets, procs = field
    listener, user, n = sockets.listening_owner(A("10.0.20.11", 5000), procs)
    assert (user.pid, user.comm, n) == (869, "apache2", 3)  # the root parent, not a www-data worker
    assert listener.sockname == A("*", 5000)
    assert sockets.listening_owner(A("10.0.20.11", 11211), procs)[1:] == (SocketUser("memcached", 811, 22), 1)
    assert sockets.listening_owner(A("10.0.20.12", 11211), procs) is None  # memcached listens on .11 only
    assert sockets.listening_owner(A("10.0.20.11", 12345), procs) is None  # nobody listens there


@pytest.mark.parametrize("port, pid, comm, n", [
    (8774, 27031, "uwsgi_python311", 3),  # nova-api: uwsgi's master and the workers it forked
    (8778, 17405, "apache2", 3),
    (9696, 27321, "/usr/bin/python", 4),  # neutron-server's workers rename themselves: ps's parents tell
    (3306, 16925, "mariadbd", 1),
])
def test_lab_listening_owner_follows_parent_pids(port, pid, comm, n):
    d = TESTS / "fixtures" / "captures-compute" / "server-create"
    sockets = SocketTable(ss_file(d / "ss.txt").entries)
    procs = ProcessTable(ps_file(d / "ps.txt").processes)
    _, user, found = sockets.listening_owner(A("127.0.0.1", port), procs)
    assert (user.pid, user.comm, found) == (pid, comm, n)
    if port == 9696:  # without parent pids, processes of several programs are no group
        assert sockets.listening_owner(A("127.0.0.1", port)) is None

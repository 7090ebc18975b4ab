"""``osflow record -b``: the ring buffer's options, the socket log that follows dumpcap's files
(:class:`~osflow.record.ring.RingSocketLog`), the socket log's memory kept flat
(:meth:`~osflow.record.socketlog.SocketLog.prune`), and a real recording with a tiny ring."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from osflow import tables
from osflow.errors import UsageError
from osflow.record import capture, ring, socketlog
from osflow.record.kernel import TcpRow
from test_record import COVERAGE, _dumpcap, _Echo, _record, _skip_unless_capturing, parse

# --------------------------------------------------------------------------- options


def test_ring_options_are_dumpcaps_own():
    args = parse(["--duration", "3600", "-b", "filesize:100000", "--ring-buffer", "files:10", "-b", "duration:600"])
    r = ring.parse_ring(args.ring_buffer)
    assert r == ring.Ring(files=10, filesize=100000, duration=600)
    assert r.dumpcap_args() == ["-b", "files:10", "-b", "filesize:100000", "-b", "duration:600"]
    assert r.settings() == {"files": 10, "filesize": 100000, "duration": 600}
    c = capture.Capture("/usr/bin/dumpcap", "lo", [5000], "/tmp/x/capture.pcapng", r.dumpcap_args())
    try:
        assert c.command[-6:] == r.dumpcap_args() and "-w" in c.command
    finally:
        c.canary.close()
    assert ring.parse_ring(["interval:60"]) == ring.Ring(interval=60)  # several files, none removed


@pytest.mark.parametrize("values, message", [
    (["files:3"], "a ring also needs when to switch files"),
    (["files:0", "filesize:10"], "expected a whole number of at least 1 after files:"),
    (["filesize:1.5"], "expected a whole number"),
    (["printname:stdout"], "KEY one of files, filesize, duration, interval, packets"),
    (["files"], "expected a whole number"),
])
def test_ring_options_that_are_not(values, message):
    with pytest.raises(UsageError, match=message):
        ring.parse_ring(values)


# --------------------------------------------------------------------------- the ring's socket log


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Log:
    """What :class:`RingSocketLog` asks of a socket log: its carry-over block."""

    def __init__(self, out) -> None:
        self.out = out
        self.carried = 0

    def carry_over(self, label: str) -> None:
        self.carried += 1
        self.out.write(f"### 2.0 {self.carried} osflow-record {label}\n")
        self.out.write("LISTEN 0 5 127.0.0.1:5000 0.0.0.0:* users:((\"keystone\",pid=7,fd=3))\n")


def _touch(d: Path, number: int) -> None:
    (d / f"capture_{number:05d}_20261202120000.pcapng").write_bytes(b"x")


def test_the_socket_log_follows_dumpcaps_files(tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(ring.time, "monotonic", clock)
    out = ring.RingSocketLog(str(tmp_path))
    log = _Log(out)
    out.write("### 1.0 1 osflow-record start\n")
    out.write("ESTAB 0 0 127.0.0.1:40000 127.0.0.1:5000 users:((\"curl\",pid=9,fd=3))\n")
    out.check(log)  # dumpcap has not written yet: nothing to follow
    assert out.number == 1 and log.carried == 0
    _touch(tmp_path, 1)
    out.check(log)
    assert out.number == 1
    clock.now += 10  # the start is old now ...
    out.write("### 3.0 2 osflow-record new sockets\n")
    out.write("ESTAB 0 0 127.0.0.1:40002 127.0.0.1:5000 users:((\"curl\",pid=10,fd=3))\n")
    _touch(tmp_path, 2)
    out.check(log)  # ... and not replayed; the recent block is, then the sockets still open
    assert out.number == 2 and out.switches == 1
    out.flush()
    second = (tmp_path / "ss_00002.txt").read_text()
    assert second.splitlines()[0] == "### 3.0 2 osflow-record new sockets"
    assert "40000" not in second and "40002" in second
    assert "carried over at the switch to capture_00002_20261202120000.pcapng" in second
    assert tables.parse_ss(second, "ss_00002.txt").warnings == ()
    # dumpcap removed file 1: ss_00001.txt covered only it
    (tmp_path / "capture_00001_20261202120000.pcapng").unlink()
    out.check(log)
    assert sorted(os.listdir(tmp_path)) == ["capture_00002_20261202120000.pcapng", "ss_00002.txt"]
    # dumpcap ran ahead of the checks: 3, 4, 5 written, 2 and 3 removed (files:2)
    for n in (3, 4, 5):
        _touch(tmp_path, n)
    for n in (2, 3):
        (tmp_path / f"capture_{n:05d}_20261202120000.pcapng").unlink()
    out.write("### 4.0 3 osflow-record new sockets\n")
    out.check(log)
    assert out.number == 5 and out.removed == 1
    # ss_00002 covers 2 to 4, and 4 is kept: so is it, until dumpcap removes 4
    assert sorted(p.name for p in tmp_path.glob("ss_*")) == ["ss_00002.txt", "ss_00005.txt"]
    (tmp_path / "capture_00004_20261202120000.pcapng").unlink()
    out.check(log)
    assert sorted(p.name for p in tmp_path.glob("ss_*")) == ["ss_00005.txt"] and out.removed == 2
    # the carried block is not carried again: the next file carries the open sockets itself
    assert (tmp_path / "ss_00005.txt").read_text().count("carried over") == 1
    out.finish()
    assert out.file.closed


def test_a_socket_log_file_stays_while_a_capture_file_it_covers_does(tmp_path):
    out = ring.RingSocketLog(str(tmp_path))
    for n in (1, 2, 3):
        _touch(tmp_path, n)
    out.check()
    assert out.number == 3
    (tmp_path / "ss_00002.txt").write_text("")  # as if switched to 2 on the way
    assert out.remove_old(2) == [str(tmp_path / "ss_00001.txt")]  # 1 covered 1 only
    assert out.remove_old(3) == [str(tmp_path / "ss_00002.txt")]
    assert out.remove_old(9) == []  # the current one always stays
    out.finish()
    assert sorted(p.name for p in tmp_path.glob("ss_*")) == ["ss_00003.txt"]


# --------------------------------------------------------------------------- the socket log's memory


class _Proc:
    """A fake /proc: processes with a name, a parent and socket fds; the kernel's TCP list beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[TcpRow] = []

    def start(self, pid: int, comm: str = "curl", sockets=()) -> None:
        d = self.root / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "task" / str(pid)).mkdir(parents=True)
        (d / "task" / str(pid) / "children").write_text("")
        (d / "stat").write_text(f"{pid} ({comm}) S 1 1 1 0")
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(comm.encode() + b"\0")
        for fd, inode in enumerate(sockets, start=3):
            os.symlink(f"socket:[{inode}]", d / "fd" / str(fd))

    def end(self, pid: int) -> None:
        (self.root / str(pid)).rename(self.root / f"ended-{pid}")  # not a pid any more (rmdir is slow here)

    def connect(self, inode: int, lport: int, rport: int, state: int = 1) -> None:
        local, remote = ("127.0.0.1", lport), ("127.0.0.1", rport)
        self.rows.append(TcpRow((lport, rport), inode, state, lport, rport, 0, 0, os.getuid(), lambda r: r,
                                (local, remote)))

    def close(self, inode: int) -> None:
        self.rows = [r for r in self.rows if r.inode != inode]

    def socket_log(self, out=None) -> socketlog.SocketLog:
        """A socket log on port 5000 of this /proc, after its first snapshot."""
        log = socketlog.SocketLog(out or io.StringIO(), [5000], proc=str(self.root), rows=lambda: list(self.rows))
        log.snapshot("start")
        return log


def _sizes(log: socketlog.SocketLog) -> dict:
    return {name: len(getattr(log, name)) for name in (
        "owners", "seen", "attempts", "port_pids", "client_pids", "socket_pids", "pid_uid", "procs", "unresolved")}


@pytest.fixture
def fake_proc(tmp_path):
    p = _Proc(tmp_path / "proc")
    p.root.mkdir()
    p.start(1, "keystone", sockets=[500])
    p.connect(500, 5000, 0, state=10)  # keystone listens on 5000
    return p


def test_prune_forgets_the_sockets_and_processes_that_are_gone(fake_proc):
    out = io.StringIO()
    log = fake_proc.socket_log(out)
    fake_proc.start(200, "curl", sockets=[601])
    fake_proc.connect(601, 40000, 5000)
    fake_proc.connect(602, 40001, 5000)  # its owner is never found
    log.poll()
    assert log.owners[601] == (("curl", 200, 3),) and 602 in log.attempts
    assert 200 in log.client_pids[5000] and 200 in log.procs
    assert log.prune() == 0  # nothing is gone yet
    fake_proc.close(601)
    fake_proc.close(602)
    fake_proc.end(200)
    assert log.prune() > 0
    assert set(log.owners) == set(log.seen) == {500}
    assert log.attempts == {} and log.unresolved == {}
    assert 5000 not in log.client_pids and 200 not in log.socket_pids and 200 not in log.pid_uid
    assert list(log.procs) == [1] and [p.pid for p in log.gone] == [200]
    assert [p.pid for p in log.owners_seen()] == [200, 1]  # meta.json still lists the client that ended
    assert log.stats()["pruned"] == log.pruned > 0
    # what it logged is untouched; a socket of a later process on the same inode is looked up anew
    fake_proc.start(201, "openstack", sockets=[601])
    fake_proc.connect(601, 40002, 5000)
    log.poll()
    assert log.owners[601] == (("openstack", 201, 3),)
    assert "openstack" in out.getvalue() and "curl" in out.getvalue()


def test_hours_of_short_connections_keep_the_socket_log_flat(fake_proc):
    """A client process per connection, as the openstack client: 2000 of them, pruned as a poll's
    housekeeping does it; the log's dicts stay as small after as after the first hundred."""
    log = fake_proc.socket_log()
    log.gone = type(log.gone)(maxlen=50)  # MAX_GONE, smaller
    sizes = []
    for n in range(2000):
        pid, inode = 1000 + n, 10_000 + n
        fake_proc.start(pid, "openstack", sockets=[inode])
        fake_proc.connect(inode, 30_000 + n % 20_000, 5000)
        log.poll()
        fake_proc.close(inode)
        fake_proc.end(pid)
        if n % 100 == 99:
            log.housekeeping(log._next_prune)  # as a poll does when a prune is due (no sleeping)
            sizes.append(_sizes(log))
    assert log.stats()["lines"] >= 2000
    assert sizes[-1] == sizes[0], (sizes[0], sizes[-1])
    assert max(max(s.values()) for s in sizes) <= 2
    assert len(log.gone) == 50 and log.gone[-1].pid == 2999


def test_carry_over_logs_the_open_sockets_with_their_owners(fake_proc):
    out = io.StringIO()
    log = fake_proc.socket_log(out)
    fake_proc.start(300, "nova-api", sockets=[700])
    fake_proc.connect(700, 41000, 5000)
    fake_proc.connect(701, 41001, 5000)  # no owner known: not carried
    fake_proc.connect(702, 41002, 22)  # not a captured port
    log.poll()
    out.seek(0)
    out.truncate()
    log.carry_over("carried over")
    r = tables.parse_ss(out.getvalue(), "ss.txt")
    assert r.warnings == ()
    assert sorted((e.sockname.port, e.users[0].comm) for e in r.entries) == [(5000, "keystone"), (41000, "nova-api")]


# --------------------------------------------------------------------------- a real recording


def test_record_into_a_tiny_ring(tmp_path):
    """1 kB files, 3 kept, while 40 short connections run: at most 3 capture files and 3 socket-log
    files stay, each capture file is read by osflow-post on its own, the kept files together are
    rendered and every end of their connections has its owner."""
    _dumpcap()
    from osflow.app import PostOptions, post

    echo = _Echo()
    out = tmp_path / "rec"
    client = ("import socket,time\n"
              "for i in range(40):\n"
              f"    s = socket.create_connection(('127.0.0.1', {echo.port})); s.sendall(b'ping\\n'); s.recv(10)\n"
              "    time.sleep(0.01); s.close()\n")
    try:
        # loopback only, as the test was written: each interface adds a block to every file's header,
        # and with the host's NICs too a file of 1 kB can be full before its first frame
        p = _record(["-o", str(out), "-i", "lo", "--ports", str(echo.port), "-b", "filesize:1", "-b", "files:3",
                     "--render", "--", sys.executable, "-c", client])
        _, stderr = p.communicate(timeout=120)
    finally:
        echo.close()
    _skip_unless_capturing(stderr)
    assert p.returncode == 0, stderr
    meta = json.loads((out / "meta.json").read_text())
    kept = sorted(p.name for p in out.glob("capture_*.pcapng"))
    logs = sorted(p.name for p in out.glob("ss_*.txt"))
    assert 1 <= len(kept) <= 3 and 1 <= len(logs) <= len(kept), os.listdir(out)
    numbers = [ring.ring_file_number(n) for n in kept]
    assert numbers == list(range(numbers[0], numbers[0] + len(kept))) and numbers[-1] > 3  # it went round
    assert min(ring.ring_file_number(n, ring.SS_FILE) for n in logs) <= numbers[0]
    assert meta["ring_buffer"]["capture_files"] == kept and meta["ring_buffer"]["socket_logs"] == logs
    assert meta["ring_buffer"]["files"] == 3 and meta["ring_buffer"]["filesize"] == 1
    assert sorted(meta["files"]) == sorted(kept + logs + ["ps.txt", "tls-keys.log", "meta.json"])
    assert sorted(os.listdir(out)) == sorted(meta["files"] + ["flow.md"])  # the merged copy is gone
    assert "-b" in meta["dumpcap_command"] and "files:3" in meta["dumpcap_command"]
    for name in kept:  # each one on its own, as osflow-post -r reads it
        post(PostOptions(capture=str(out / name), ss=tuple(str(out / n) for n in logs), ps=(str(out / "ps.txt"),),
                         output=str(tmp_path / f"{name}.json")))
    assert f"rendering the {len(kept)} capture files the ring kept" in stderr or len(kept) == 1, stderr
    assert (out / "flow.md").exists() and "wrote" in stderr
    m = COVERAGE.search(stderr)
    assert m and m.group(2) == m.group(3) != "0", stderr
    for name in logs:
        assert tables.parse_ss((out / name).read_text(), name).warnings == ()

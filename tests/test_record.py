"""``osflow record`` without the lab: the socket log's format, its owner lookups, errors, and a real
recording of a local TCP exchange (skipped when dumpcap may not capture here)."""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from osflow import cli, record, tables, wireshark
from osflow.errors import InputError, ToolMissing, UsageError
from osflow.record import capture, kernel, socketlog

ROOT = Path(__file__).resolve().parents[1]
COVERAGE = re.compile(r"^coverage: (\d+(?:\.\d+)?)% \((\d+)/(\d+) connection ends"
                      r"(?:, \d+ of them through their listening socket)?\)$", re.M)


def parse(argv):
    p = argparse.ArgumentParser(prog="osflow record")
    record.add_arguments(p)
    return cli.record_options(p.parse_args(argv))


# --------------------------------------------------------------------------- socket log format


@pytest.mark.parametrize(
    "state, local, remote, owners",
    [
        ("ESTAB", ("127.0.0.1", 43210), ("127.0.0.1", 8778), [("openstack", 812, 5)]),
        ("SYN-SENT", ("::1", 50000), ("::1", 5000), [("curl", 9, 3)]),
        ("ESTAB", ("::ffff:127.0.0.1", 5000), ("::ffff:127.0.0.1", 40000), [("apache2", 7, 17)]),
        ("LISTEN", ("0.0.0.0", 5000), ("0.0.0.0", 0), [("apache2", 2, 3), ("apache2", 1, 3)]),
        ("TIME-WAIT", ("127.0.0.1", 1), ("127.0.0.1", 3306), []),
    ],
)
def test_ss_line_is_read_by_parse_ss(state, local, remote, owners):
    line = socketlog.ss_line(state, 1, 2, local, remote, owners)
    r = tables.parse_ss(f"### 1795628314.5 1 osflow-record test\n{line}\n", "ss.txt")
    assert r.warnings == ()
    (e,) = r.entries
    assert e.state == state and e.time == 1795628314.5
    assert e.sockname == tables.canonical_address(tables.parse_address(kernel.format_address(*local)))
    if state == "LISTEN":
        assert e.peername is None
    else:
        assert e.peername.port == remote[1]
    assert [(u.comm, u.pid, u.fd) for u in e.users] == owners


def _connected_pair(listener: socket.socket):
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return client, server


def test_socket_log_names_our_own_sockets_and_parse_ss_reads_it():
    """A snapshot, then a poll that finds a socket opened after it: both name this process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    before = _connected_pair(listener)
    out = io.StringIO()
    log = socketlog.SocketLog(out, [port])
    log.snapshot("start")
    later = _connected_pair(listener)
    log.poll()
    try:
        r = tables.parse_ss(out.getvalue(), "ss.txt")
        assert r.warnings == ()
        table = tables.SocketTable(r.entries)
        me = os.getpid()
        for client, server in (before, later):
            c, s = client.getsockname(), server.getsockname()
            for local, remote in ((c, s), (s, c)):
                e = table.owner(tables.parse_address(f"{local[0]}:{local[1]}"),
                                tables.parse_address(f"{remote[0]}:{remote[1]}"))
                assert e is not None and [u.pid for u in e.users] == [me], (local, remote, out.getvalue())
        assert [u.pid for u in table.listeners(port)[0].users] == [me]
        # the later pair came from a poll, in a block of its own
        assert "new sockets" in out.getvalue().split("### ")[-1]
        assert log.stats()["lines"] >= 5
    finally:
        for s in (*before, *later, listener):
            s.close()


def test_proc_net_tcp_fallback_reads_the_same_sockets():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        rows = [r for r in kernel.proc_net_tcp_rows() if r.lport == port]
        assert rows and rows[0].state == 10 and rows[0].inode > 0
        assert rows[0].addresses()[0] == ("127.0.0.1", port)
        diag_rows = [r for r in kernel.tcp_rows_source()() if r.lport == port]
        assert [r.inode for r in diag_rows] == [r.inode for r in rows]
    finally:
        listener.close()


def _can_packet_capture() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3)).close()
        return True
    except (OSError, AttributeError):
        return False


def _kernel_notes_senders() -> str:
    """Why the kernel cannot note SYN senders here ("" when it can: osflow.record.ebpf)."""
    if not _can_packet_capture():
        return "needs a packet socket (root, Linux)"
    from osflow.record.ebpf import SynSenders

    try:
        SynSenders().close()
    except OSError as e:
        return f"this kernel does not load the SYN senders' eBPF filter: {e}"
    return ""


@pytest.mark.skipif(not _can_packet_capture(), reason="needs a packet socket (root, Linux)")
@pytest.mark.parametrize("kind", ["eBPF", "classic"])
def test_syn_trigger_filter_lets_only_syns_through_and_drain_reads_the_connecting_socket(kind, monkeypatch):
    """The BPF filter on the trigger's packet socket (the eBPF one that notes senders, or the classic
    one where the kernel cannot): a connection's SYN and SYN-ACK arrive, its data and ACKs do not (a
    busy RabbitMQ would wake the SYN thread for every packet); drain() reads the client's SYN as
    (family, src, sport, dst, dport), and the exact netlink lookup finds its socket."""
    from osflow.record import watcher
    from osflow.record.watcher import SynTrigger

    if kind == "eBPF" and _kernel_notes_senders():
        pytest.skip(_kernel_notes_senders())
    if kind == "classic":
        def refused():
            raise OSError(1, "refused (test)")
        monkeypatch.setattr(watcher, "SynSenders", refused)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    trigger = SynTrigger("lo", [port])
    diag = kernel.SockDiag()
    try:
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        found = None
        deadline = time.monotonic() + 5
        while found is None and time.monotonic() < deadline:
            found = trigger.drain()
            time.sleep(0.01)
        assert found, "no SYN seen"
        family, src, sport, dst, dport = found[0]
        assert (family, socket.inet_ntoa(src), sport, dport) == (socket.AF_INET, "127.0.0.1", client.getsockname()[1],
                                                                 port)
        row = diag.lookup(*found[0])
        assert row is not None and row.inode == os.fstat(client.fileno()).st_ino
        assert (trigger.senders is not None) == (kind == "eBPF"), trigger.no_senders
        if kind == "classic":
            assert trigger.sender(found[0]) is None and "refused (test)" in trigger.no_senders
        syns = trigger.syns
        for _ in range(50):  # data both ways: none of it passes the filter
            client.sendall(b"x" * 100)
            server.recv(100)
        time.sleep(0.05)
        ours = []  # other processes' SYNs may pass too (the filter leaves the ports to drain())
        while True:
            try:
                b = trigger.sock.recv(128)
            except BlockingIOError:
                break
            off = (b[0] & 15) * 4
            if port in kernel.PORT_PAIR.unpack_from(b, off):
                ours.append(b[off + 13])
        assert ours == [] and trigger.syns == syns
        client.close()
        server.close()
    finally:
        diag.close()
        trigger.close()
        listener.close()


@pytest.mark.skipif(bool(_kernel_notes_senders()), reason=_kernel_notes_senders() or "-")
@pytest.mark.parametrize("host, family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_the_kernel_names_the_sender_of_a_syn_on_loopback_after_its_socket_is_gone(host, family):
    """osflow.record.ebpf: a process connects and exits before anyone looks; the filter noted it as the
    SYN went out (inside its connect()), so the trigger names it, once (the entry is then deleted);
    the server's SYN-ACK is let through and not noted.  IPv4 and IPv6 alike."""
    from osflow.record.watcher import SynTrigger

    try:
        listener = socket.socket(family)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    listener.listen()
    port = listener.getsockname()[1]
    trigger = SynTrigger("lo", [port])
    try:
        child = subprocess.run([sys.executable, "-c", f"import socket; socket.create_connection(('{host}', {port}))"
                                ".close()"], check=True)
        assert child.returncode == 0
        accepted, _ = listener.accept()
        accepted.close()
        found = []
        deadline = time.monotonic() + 5
        while not found and time.monotonic() < deadline:
            found = trigger.drain() or []
            time.sleep(0.01)
        syns = list(dict.fromkeys(found))
        assert len(syns) == 1 and syns[0][4] == port  # the client's SYN (twice on loopback), not the SYN-ACK
        assert syns[0][0] == family and socket.inet_ntop(family, syns[0][1]) == host
        comm, pid, fd = trigger.sender(syns[0])
        assert comm == "python3" or comm.startswith("python"), comm
        assert fd is None and not os.path.exists(f"/proc/{pid}")  # it ended; the kernel told us who it was
        assert trigger.sender(syns[0]) is None  # read once
    finally:
        trigger.close()
        listener.close()


@functools.lru_cache(maxsize=1)
def _kernel_owners() -> str:
    """Why the kernel cannot name connections' owners here ("" when it can: osflow.record.owners);
    asked once (it loads the programs)."""
    from osflow.record.owners import KernelOwners

    try:
        KernelOwners([9]).close()
    except OSError as e:
        return f"the kernel's owners are not available here: {e}"
    return ""


@pytest.mark.skipif(bool(_kernel_owners()), reason=_kernel_owners() or "-")
@pytest.mark.parametrize("host, family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_the_kernel_names_who_connected_and_who_accepted_with_pid_fd_and_inode(host, family):
    """osflow.record.owners: a process connects and exits before anyone looks; this one accepts. The
    kernel's events name both: the client's pid, parent, user, fd and socket inode, the server's (its own fd and
    inode, as fstat says), the 4-tuple each way; a connection on another port is not sent; a
    listener opened on a captured port is named with its fd."""
    from osflow.record.owners import ACCEPT, CONNECT, LISTEN, KernelOwners

    try:
        listener = socket.socket(family)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    listener.listen()
    port = listener.getsockname()[1]
    other = socket.socket(family)
    other.bind((host, 0))
    other.listen()
    probe = socket.socket(family)  # a free port, listened on once the programs run
    probe.bind((host, 0))
    later = probe.getsockname()[1]
    probe.close()
    owners = KernelOwners([port, later])
    try:
        child = subprocess.run([sys.executable, "-c", "import os, socket; "
                                f"s = socket.create_connection(('{host}', {port})); "
                                "print(os.getpid(), s.fileno(), os.fstat(s.fileno()).st_ino, s.getsockname()[1])"],
                               check=True, capture_output=True, text=True)
        pid, fd, inode, sport = map(int, child.stdout.split())
        accepted, _ = listener.accept()
        elsewhere = socket.create_connection(other.getsockname()[:2])
        other.accept()[0].close()
        elsewhere.close()
        events = []
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            events += owners.read()
            time.sleep(0.01)
        time.sleep(0.05)
        events += owners.read()
        assert [e.kind for e in events] == [CONNECT, ACCEPT], events  # the other port's two are not sent
        connect, accept = events
        assert (connect.pid, connect.fd, connect.inode) == (pid, fd, inode) and not os.path.exists(f"/proc/{pid}")
        assert (connect.ppid, connect.uid) == (os.getpid(), os.getuid())  # its parent and user, gone as it is
        assert connect.netns == accept.netns == os.stat("/proc/self/ns/net").st_ino
        assert connect.comm.startswith("python") and connect.established and connect.family == family
        assert connect.local == (host, sport) and connect.remote == (host, port)
        assert (accept.pid, accept.fd) == (os.getpid(), accepted.fileno())
        assert accept.inode == os.fstat(accepted.fileno()).st_ino
        assert accept.local == (host, port) and accept.remote == (host, sport)
        address = socket.inet_pton(family, host)
        assert accept.key == kernel.sock_key(address, port, address, sport)
        assert time.time() - 10 < connect.when <= accept.when <= time.time()
        accepted.close()
        listening = socket.socket(family)  # a listener opened meanwhile: named too
        listening.bind((host, later))
        listening.listen()
        time.sleep(0.05)
        (listen,) = owners.read()
        assert (listen.kind, listen.pid, listen.fd, listen.local[1]) == (LISTEN, os.getpid(), listening.fileno(), later)
        listening.close()
        assert owners.lost == 0
    finally:
        owners.close()
        listener.close()
        other.close()


def test_a_dump_filtered_by_port_in_the_kernel_lists_exactly_the_sockets_on_those_ports():
    """SockDiag(ports): the kernel runs the port filter (inet_diag bytecode; it audits it and would
    refuse a bad one), so a poll on a machine with thousands of sockets reads only the captured
    ones; the rows are those of an unfiltered dump on those ports, IPv4 and IPv6."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    try:
        v6 = socket.socket(socket.AF_INET6)
        v6.bind(("::1", 0))
        v6.listen()
    except OSError:
        v6 = None
    ports = [port, 9, *([v6.getsockname()[1]] if v6 else [])]
    filtered, every = kernel.SockDiag(ports), kernel.SockDiag()
    try:
        got = {(r.lport, r.rport, r.inode) for r in filtered.rows()}
        want = {(r.lport, r.rport, r.inode) for r in every.rows() if r.lport in ports or r.rport in ports}
        assert got == want and len(got) >= 3 + (v6 is not None)
        assert other.getsockname()[1] not in {lport for lport, _, _ in got}
        # a connection closed by its client leaves it in TIME-WAIT (no inode, no owner): the polls skip it
        client.close()
        server.close()
        deadline = time.monotonic() + 5
        while 6 not in {r.state for r in filtered.rows()} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 6 in {r.state for r in filtered.rows()}
        held = {r.state for r in filtered.rows(kernel.HELD_STATES)}
        assert 6 not in held and 10 in held  # LISTEN stays
    finally:
        filtered.close()
        every.close()
        for s in (client, server, listener, other, v6):
            if s is not None:
                s.close()


@pytest.mark.skipif(bool(_kernel_owners()), reason=_kernel_owners() or "-")
def test_the_kernel_owners_check_themselves_on_a_test_connection_first(monkeypatch):
    """KernelOwners connects to a listener of its own before it is used: offsets that do not fit the
    kernel (here: the inode's number read 8 bytes off) name the ends wrong, and it refuses, saying
    so (the recorder then polls); nothing stays open."""
    import dataclasses

    from osflow.record import owners

    real = owners.Offsets.from_btf
    monkeypatch.setattr(owners.Offsets, "from_btf",
                        classmethod(lambda cls, btf: dataclasses.replace(real(btf), i_ino=real(btf).i_ino + 8)))
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="did not name a test connection"):
        owners.KernelOwners([9])
    assert set(os.listdir("/proc/self/fd")) <= before


def test_the_kernel_owners_refused_say_why_and_leave_nothing_open(monkeypatch, tmp_path):
    """Where the kernel's path cannot run, KernelOwners raises OSError saying why (the recorder then
    polls, and meta.json says why): no BTF, or OSFLOW_NO_BPF set; no fd stays open."""
    from osflow.record.owners import NO_BPF_ENV, KernelOwners

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="no kernel BTF"):
        KernelOwners([9], btf_path=str(tmp_path / "none"))
    monkeypatch.setenv(NO_BPF_ENV, "1")
    with pytest.raises(OSError, match=f"{NO_BPF_ENV} is set"):
        KernelOwners([9])
    assert set(os.listdir("/proc/self/fd")) <= before


def test_the_decoder_reads_each_member_where_the_kernels_offsets_put_it():
    """owners.Decoder unpacks an event with one struct made from the offsets: with members laid out
    apart from the kernel's order (here: family first, addresses last), IPv4 and IPv6 events give their
    addresses, ports (the remote one in network order), thread name and time; another family gives
    None; members that overlap refuse the offsets."""
    import dataclasses

    from osflow.record import owners

    o = owners.Offsets(files=0, real_parent=0, tgid=0, fdt=0, fd=0, private_data=0, f_inode=0, i_ino=0,
                       sock_type=0, sk=0, family=0, num=2, dport=4, rcv_saddr=8, daddr=12, v6_rcv_saddr=16, v6_daddr=32)
    decode = owners.Decoder(o)

    def raw(family: int, src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
        sk = bytearray(o.sk_bytes)
        struct.pack_into("=H", sk, o.family, family)
        struct.pack_into("=H", sk, o.num, sport)
        struct.pack_into(">H", sk, o.dport, dport)
        if family == socket.AF_INET:
            sk[o.rcv_saddr:o.rcv_saddr + 4], sk[o.daddr:o.daddr + 4] = src, dst
        else:
            sk[o.v6_rcv_saddr:o.v6_rcv_saddr + 16], sk[o.v6_daddr:o.v6_daddr + 16] = src, dst
        head = owners._HEAD.pack(owners.CONNECT, 812, 813, 5, 4242, 2_000_000_000, 0, b"openstack\0junk\0", 811, 1000,
                                 4026531840)
        return head + bytes(sk)

    clock = (1000.0, 3_000_000_000)
    v4 = decode(raw(socket.AF_INET, socket.inet_aton("127.0.0.1"), socket.inet_aton("198.18.0.2"), 43210, 8778),
                clock)
    assert v4 is not None
    assert (v4.pid, v4.tid, v4.fd, v4.inode, v4.comm, v4.established) == (812, 813, 5, 4242, "openstack", True)
    assert (v4.ppid, v4.uid, v4.netns) == (811, 1000, 4026531840)
    assert (v4.local, v4.remote, v4.when) == (("127.0.0.1", 43210), ("198.18.0.2", 8778), 999.0)
    assert v4.key == kernel.sock_key(socket.inet_aton("127.0.0.1"), 43210, socket.inet_aton("198.18.0.2"), 8778)
    six = socket.inet_pton(socket.AF_INET6, "fd00::1"), socket.inet_pton(socket.AF_INET6, "::1")
    v6 = decode(raw(socket.AF_INET6, *six, 5000, 40000), clock)
    assert v6 is not None and (v6.local, v6.remote) == (("fd00::1", 5000), ("::1", 40000))
    assert decode(raw(socket.AF_UNIX, b"\0" * 16, b"\0" * 16, 1, 2), clock) is None
    with pytest.raises(OSError, match="overlap"):
        owners.Decoder(dataclasses.replace(o, num=3))


def test_the_socket_log_logs_the_kernels_events_without_looking_into_proc():
    """SocketLog.from_kernel: each connection the kernel named is logged with its owner (fd included)
    at the event's time, no walk of /proc; parse_ss reads it back; a poll later does not log it again."""
    from osflow.record.owners import ACCEPT, CONNECT, Event

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    out = io.StringIO()
    log = socketlog.SocketLog(out, [port])
    try:
        cport = client.getsockname()[1]
        lo = socket.inet_aton("127.0.0.1")
        when = time.time() - 1
        ino = lambda s: os.fstat(s.fileno()).st_ino  # noqa: E731
        events = [Event(CONNECT, 4242, 4243, client.fileno(), ino(client), when, True, "cli", socket.AF_INET,
                        ("127.0.0.1", cport), ("127.0.0.1", port), kernel.sock_key(lo, cport, lo, port)),
                  Event(ACCEPT, os.getpid(), os.getpid(), server.fileno(), ino(server), when + 0.001, True, "srv",
                        socket.AF_INET, ("127.0.0.1", port), ("127.0.0.1", cport),
                        kernel.sock_key(lo, port, lo, cport))]
        log.from_kernel(events)
        log.from_kernel(events)  # read twice: logged once
        assert log.pid_walks == 0 and log.kernel_owners == 2
        ss = tables.parse_ss(out.getvalue(), "ss.txt")
        assert ss.warnings == ()
        got = {(str(e.sockname), e.users[0].comm, e.users[0].pid, e.users[0].fd) for e in ss.entries}
        assert got == {(f"127.0.0.1:{cport}", "cli", 4242, client.fileno()),
                       (f"127.0.0.1:{port}", "srv", os.getpid(), server.fileno())}
        assert abs(ss.entries[0].time - when) < 1e-6
        lines = out.getvalue().count("\n")
        log.poll()  # the listener is new to it (no snapshot here); the two connections are not
        assert "ESTAB" not in out.getvalue().split("\n", lines)[-1]
        assert 4242 in log.client_pids[port] and os.getpid() in log.port_pids[port]
    finally:
        log.close()
        for s in (client, server, listener):
            s.close()


def test_a_client_gone_before_any_look_keeps_the_parent_and_namespace_the_kernel_named():
    """A client that connected and exited before its event was read: /proc has nothing left, so
    meta.json's short-lived owners take its parent and user from the kernel's event (the command's
    tree in osflow-post goes through that parent), and its socket's network namespace, from the
    event too, keeps another host's client out of the log; one still running is read from /proc."""
    from osflow.record.owners import CONNECT, Event

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    pid = int(gone.stdout)
    assert not os.path.exists(f"/proc/{pid}")
    lo = socket.inet_aton("127.0.0.1")
    here = os.stat("/proc/self/ns/net").st_ino
    out = io.StringIO()
    log = socketlog.SocketLog(out, [8778])
    try:
        log.from_kernel([
            Event(CONNECT, pid, pid, 3, 991, time.time(), True, "openstack", socket.AF_INET, ("127.0.0.1", 40001),
                  ("127.0.0.1", 8778), kernel.sock_key(lo, 40001, lo, 8778), os.getpid(), 0, here),
            Event(CONNECT, pid, pid, 5, 993, time.time(), True, "openstack", socket.AF_INET, ("127.0.0.1", 40003),
                  ("127.0.0.1", 8778), kernel.sock_key(lo, 40003, lo, 8778), os.getpid(), 0, here + 1),
            Event(CONNECT, os.getpid(), os.getpid(), 4, 992, time.time(), True, "python3", socket.AF_INET,
                  ("127.0.0.1", 40002), ("127.0.0.1", 8778), kernel.sock_key(lo, 40002, lo, 8778), 1, 0)])
    finally:
        log.close()
    seen = {p.pid: p for p in log.owners_seen()}
    assert (seen[pid].ppid, seen[pid].user, seen[pid].comm) == (os.getpid(), "root", "openstack")
    assert log.other_netns == 1 and ":40001 " in out.getvalue() and ":40003 " not in out.getvalue()
    # /proc's: its command line (the event's name alone would be "python3")
    mine = Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()
    assert seen[os.getpid()].ppid == os.getppid() and seen[os.getpid()].args == mine


def test_a_socket_gone_before_its_lookup_is_logged_from_its_syn_without_an_fd():
    """SocketLog.sent_syn: the 4-tuple the SYN gave, the owner the kernel noted, no fd; parse_ss reads
    it back and the owner becomes a client of the port (a hint for the next socket)."""
    out = io.StringIO()
    log = socketlog.SocketLog(out, [8774])
    try:
        log.sent_syn(socket.AF_INET, socket.inet_aton("127.0.0.1"), 41234, socket.inet_aton("127.0.0.1"), 8774,
                     ("curl", 4242, None))
    finally:
        log.close()
    text = out.getvalue()
    assert "SYN, sender from the kernel" in text and '("curl",pid=4242))' in text
    e = tables.parse_ss(text).entries[0]
    assert (e.state, str(e.sockname), str(e.peername)) == ("SYN-SENT", "127.0.0.1:41234", "127.0.0.1:8774")
    assert [(u.comm, u.pid, u.fd) for u in e.users] == [("curl", 4242, None)]
    assert 4242 in log.client_pids[8774] and log.stats()["syn_senders_gone"] == 1
    # a socket a poll logged while it lived is not logged again from its SYN
    log = socketlog.SocketLog(io.StringIO(), [8774])
    try:
        key = kernel.PORT_PAIR.pack(41234, 8774) + socket.inet_aton("127.0.0.1").ljust(16, b"\0") * 2
        log.seen[99] = key
        log.sent_syn(socket.AF_INET, socket.inet_aton("127.0.0.1"), 41234, socket.inet_aton("127.0.0.1"), 8774,
                     ("curl", 4242, None))
        assert log.out.getvalue() == "" and log.stats()["syn_senders_gone"] == 0
    finally:
        log.close()


def test_syn_owner_finds_an_earlier_client_of_the_port_without_the_log_lock():
    """The SYN thread's lookup: not COMMAND's (no roots), but this process connected to the port before
    (the log's client_pids), so it is found at once, with the fd that holds the socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    log = socketlog.SocketLog(io.StringIO(), [port])
    pairs = []
    try:
        pairs.append(_connected_pair(listener))
        log.poll()  # the first connection: this process becomes a client of the port
        assert os.getpid() in log.client_pids[port]
        pairs.append(_connected_pair(listener))
        client = pairs[-1][0]
        row = next(r for r in log.rows() if r.inode == os.fstat(client.fileno()).st_ino)  # the log's own netlink socket
        assert socketlog.syn_owner(row, (), log) == (socketlog.comm_of(os.getpid()), os.getpid(), client.fileno())
        # not an earlier client, not its user: left to the polls
        log.client_pids.clear()
        log.socket_pids.clear()
        assert socketlog.syn_owner(row, (), log) is None
        # COMMAND's tree comes first
        assert socketlog.syn_owner(row, (os.getpid(),), log)[1:] == (os.getpid(), client.fileno())
    finally:
        for pair in pairs:
            for s in pair:
                s.close()
        listener.close()
        log.close()


# --------------------------------------------------------------------------- errors


def test_usage_errors():
    with pytest.raises(UsageError, match="nothing to record"):
        record.run(parse([]))
    with pytest.raises(UsageError, match="not both"):
        record.run(parse(["--duration", "1", "--", "true"]))
    with pytest.raises(UsageError, match="--ports"):
        record.run(parse(["--ports", "50x0", "--", "true"]))
    with pytest.raises(SystemExit):  # argparse: not a positive number
        parse(["--duration", "-1"])


def test_command_not_found(tmp_path):
    with pytest.raises(UsageError, match=r"^COMMAND not found: osflow-no-such-command \(not on PATH\)$"):
        record.run(parse(["-o", str(tmp_path / "x"), "--", "osflow-no-such-command", "arg"]))
    with pytest.raises(UsageError, match="COMMAND not found: /nonexistent/tool"):
        record.run(parse(["--", "/nonexistent/tool"]))
    assert not (tmp_path / "x").exists()


def test_dumpcap_missing(monkeypatch):
    monkeypatch.delenv("DUMPCAP", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ToolMissing, match="dumpcap not found: install it"):
        wireshark.find_tool("dumpcap", "DUMPCAP")
    monkeypatch.setenv("DUMPCAP", "/nonexistent/dumpcap")
    with pytest.raises(ToolMissing, match="DUMPCAP=/nonexistent/dumpcap is not an executable file"):
        wireshark.find_tool("dumpcap", "DUMPCAP")


def test_wireshark_tools_are_found_one_way(monkeypatch, tmp_path):
    """$TSHARK/$DUMPCAP (a path, or a name on PATH), else PATH; the same two messages for both tools."""
    tool = tmp_path / "dumpcap"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("DUMPCAP", raising=False)
    assert wireshark.find_tool("dumpcap", "DUMPCAP") == str(tool)
    monkeypatch.setenv("DUMPCAP", "dumpcap")
    assert wireshark.find_tool("dumpcap", "DUMPCAP") == str(tool)
    monkeypatch.setenv("TSHARK", str(tmp_path))  # a folder, not an executable file
    with pytest.raises(ToolMissing, match=r"^TSHARK=.+ is not an executable file: install tshark "
                       r"\(Debian/Ubuntu: sudo apt-get install tshark\) or set TSHARK=/path/to/tshark$"):
        wireshark.find_tool("tshark", "TSHARK")
    monkeypatch.delenv("TSHARK")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ToolMissing, match=r"^tshark not found: install it \(Debian/Ubuntu: sudo apt-get install "
                       r"tshark\) or set TSHARK=/path/to/tshark$"):
        wireshark.find_tool("tshark", "TSHARK")

def test_no_such_interface(tmp_path):
    if not os.path.isdir("/sys/class/net"):
        pytest.skip("no /sys/class/net on this system")
    with pytest.raises(InputError, match=r"^no such interface: osflow-nosuch0 \(this machine has: .*lo"):
        record.run(parse(["-i", "osflow-nosuch0", "-o", str(tmp_path / "x"), "--", "true"]))
    assert not (tmp_path / "x").exists()


def _dumpcap() -> str:
    try:
        return wireshark.find_tool("dumpcap", "DUMPCAP")
    except ToolMissing as e:
        pytest.skip(str(e))


def test_dumpcap_messages_from_the_real_dumpcap(tmp_path):
    """dumpcap's own words (no such device; no permission) become one clear line."""
    dumpcap = _dumpcap()
    r = subprocess.run([dumpcap, "-i", "osflow-nosuch0", "-w", str(tmp_path / "a.pcapng")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert str(capture.dumpcap_problem("osflow-nosuch0", r.stderr, r.returncode)).startswith(
        "no such interface: osflow-nosuch0"
    )
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("the no-permission message needs root (to run dumpcap as nobody)")
    os.chmod(tmp_path, 0o777)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                        dumpcap, "-i", "lo", "-a", "duration:1", "-w", str(tmp_path / "b.pcapng")],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0:
        pytest.skip("dumpcap captures even as nobody here (file capabilities for everyone)")
    msg = str(capture.dumpcap_problem("lo", r.stderr, r.returncode))
    assert msg.startswith("no permission to capture on lo: run osflow record as root"), (msg, r.stderr)


def test_existing_output_folder_is_not_overwritten(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        record.run(parse(["-o", str(tmp_path), "--", "true"]))
    assert (tmp_path / "keep.txt").read_text() == "x"


@pytest.mark.filterwarnings("error::ResourceWarning", "error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("what", ["SocketLog", "SocketWatcher"])
def test_a_socket_log_that_cannot_start_leaves_nothing_open_or_behind(tmp_path, monkeypatch, what):
    import errno
    import gc

    from osflow.record import recorder

    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not installed")

    def fail(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(recorder, what, fail)
    out = tmp_path / "rec"
    with pytest.raises(OSError, match="Too many open files"):
        record.run(parse(["-o", str(out), "--", "true"]))
    gc.collect()  # ss.txt, the netlink socket or the SYN trigger's packet socket left open: a ResourceWarning
    assert not out.exists()


# --------------------------------------------------------------------------- a real recording


class _Echo:
    """A TCP server in this process: answers one line per connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(b"pong\n")
                conn.recv(100)  # until the client closes

    def close(self) -> None:
        self.sock.close()


def _record(args, timeout=120, env=None, **kw):
    env = dict(env or os.environ, PYTHONPATH=str(ROOT / "postproc"))
    code = ("import argparse,sys; from osflow import record, cli; p=argparse.ArgumentParser(prog='osflow record'); "
            "record.add_arguments(p); a=cli.record_options(p.parse_args(sys.argv[1:])); "
            "sys.exit(cli.run(lambda: record.run(a), False, 'osflow record'))")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _skip_unless_capturing(err: str) -> None:
    if "no permission to capture" in err or "dumpcap not found" in err:
        pytest.skip("dumpcap cannot capture here: " + err.strip().splitlines()[-1])


@pytest.mark.parametrize("path", ["kernel", "polls"])
def test_record_a_short_exchange(tmp_path, path):
    """Both ways of naming owners: the kernel's events where it allows (skipped elsewhere), and the
    polls (the kernel's path refused through OSFLOW_NO_BPF); meta.json says which ran and why."""
    _dumpcap()
    if path == "kernel" and _kernel_owners():
        pytest.skip(_kernel_owners())
    echo = _Echo()
    out = tmp_path / "rec"
    client = ("import socket,sys,time\n"
              "for i in range(3):\n"
              f"    s = socket.create_connection(('127.0.0.1', {echo.port})); s.sendall(b'ping\\n'); s.recv(10)\n"
              "    time.sleep(0.02); s.close()\n"
              "import os\n"  # the nice values of record's threads (the command's parent), while it records
              f"with open({str(tmp_path / 'nice')!r}, 'w') as f:\n"
              "    for t in os.listdir(f'/proc/{os.getppid()}/task'):\n"
              "        stat = open(f'/proc/{os.getppid()}/task/{t}/stat').read()\n"
              "        f.write(stat.rsplit(')', 1)[1].split()[16] + ' ')\n"
              "print('client done'); sys.exit(3)\n")
    env = dict(os.environ, OSFLOW_NO_BPF="1") if path == "polls" else None
    try:
        p = _record(["-o", str(out), "--ports", str(echo.port), "--", sys.executable, "-c", client], env=env)
        stdout, stderr = p.communicate(timeout=120)
    finally:
        echo.close()
    _skip_unless_capturing(stderr)
    assert p.returncode == 3, stderr  # COMMAND's exit status
    assert stdout == "client done\n"  # COMMAND's output untouched
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["exit_code"] == 3 and meta["command"][0] == sys.executable
    assert meta["start"] <= meta["end"] and set(meta["versions"]) >= {"osflow", "dumpcap"}
    assert f"tcp port {echo.port}" in meta["capture_filter"]
    # loopback hands a capture each packet as sent and as received: the kernel skips the sent copy
    # for record's dumpcap (libpcap would drop it), and the capture holds each packet once
    if os.geteuid() == 0:
        assert meta["loopback_sent_copies"] == "skipped", meta["loopback_sent_copies"]
    syns = subprocess.run(["tshark", "-r", str(out / "capture.pcapng"), "-Y", "tcp.flags == 0x002", "-T", "fields",
                           "-e", "tcp.srcport"], capture_output=True, text=True, check=True).stdout.split()
    assert len(syns) == 3 and len(set(syns)) == 3, syns
    # the files are what osflow-post reads
    ss = tables.parse_ss((out / "ss.txt").read_text(), "ss.txt")
    assert ss.warnings == () and ss.entries
    ps = (out / "ps.txt").read_text()
    assert re.search(r"^##### \d+\.\d+ BEFORE: ps -eo pid,ppid,user,args$", ps, re.M)
    assert re.search(r"^##### \d+\.\d+ AFTER: ps aux$", ps, re.M)
    assert tables.parse_ps(ps, "ps.txt").processes
    # 3 connections of ~20 ms, both ends on this machine: every end has its owner
    m = COVERAGE.search(stderr)
    assert m, stderr
    assert (m.group(2), m.group(3)) == ("6", "6"), stderr
    assert meta["coverage"]["owned"] == 6 and meta["coverage"]["without_owner"] == []
    assert "osflow-post -r" in stderr  # without --render: the command to run
    log = meta["socket_log"]
    # the watcher thread: ahead of the services when it polls, behind them with the kernel's events
    nice = (tmp_path / "nice").read_text().split()
    if os.geteuid() == 0:
        assert ("10" if path == "kernel" else "-10") in nice, nice
    if path == "kernel":
        assert log["owners"].startswith("kernel: eBPF") and log["kernel_owners"] == 6, log
        assert log["syn_trigger"] is False
    else:
        assert log["owners"] == "polls: OSFLOW_NO_BPF is set" and log["kernel_owners"] == 0, log
        assert log["kernel_events"] is None


def test_the_kernel_skips_the_copies_loopback_sends_for_a_packet_socket_on_it():
    """What record does to dumpcap's loopback socket, on a packet socket of this process: found by
    its inode in /proc/net/packet, the option set through a copy of its fd; a socket on another
    interface is left alone."""
    if os.geteuid() != 0:
        pytest.skip("packet sockets and pidfd_getfd() need root")
    on_lo = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    on_lo.bind(("lo", 3))
    elsewhere = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    try:
        fds = capture.loopback_sockets(os.getpid())
        assert on_lo.fileno() in fds and elsewhere.fileno() not in fds  # unbound: interface 0
        assert on_lo.getsockopt(capture.SOL_PACKET, capture.PACKET_IGNORE_OUTGOING) == 0
        done, why = capture.ignore_outgoing_on_loopback(os.getpid())
        assert done == len(fds) and why is None
        assert on_lo.getsockopt(capture.SOL_PACKET, capture.PACKET_IGNORE_OUTGOING) == 1
        assert elsewhere.getsockopt(capture.SOL_PACKET, capture.PACKET_IGNORE_OUTGOING) == 0
    finally:
        on_lo.close()
        elsewhere.close()
    none = f"no packet socket of process {os.getpid()} on loopback"
    assert capture.ignore_outgoing_on_loopback(os.getpid()) == (0, none)


_ECHO_SERVER = ("import socket,sys\n"
                "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(16)\n"
                "print(l.getsockname()[1], flush=True)\n"
                "while True:\n"
                "    c, _ = l.accept(); c.recv(100); c.sendall(b'pong\\n'); c.close()\n")


def test_record_short_connections_while_two_busy_loops_hold_the_cpus(tmp_path):
    """Issue #14's case: a ~1 ms exchange with a one-process server (another process than COMMAND)
    while two busy loops hold the CPUs: every end of every recording has its owner.

    The client's connection can close 0.2 ms after its SYN: on the project's 2-vCPU VM the SYN's
    lookup in /proc came 0.17-0.22 ms after it in the recordings that missed it (about one client end
    in 40-50; not the GIL: the lookup in a process of its own missed as often).  The kernel notes the
    sender as the SYN goes out (osflow.record.ebpf), so the log names it even once it is gone.  Where
    the kernel cannot, that gap remains: skipped unless ``OSFLOW_STRESS=1``."""
    why = _kernel_notes_senders()
    if why and os.environ.get("OSFLOW_STRESS") != "1":
        pytest.skip(f"{why}: without it, a known gap (issue #14); OSFLOW_STRESS=1 runs it")
    _dumpcap()
    server = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        port = int(server.stdout.readline())
        client = (f"import socket; s = socket.create_connection(('127.0.0.1', {port})); s.sendall(b'ping\\n'); "
                  "s.recv(10); s.close()")
        for run in range(5):
            out = tmp_path / f"rec{run}"
            p = _record(["-o", str(out), "--ports", str(port), "--", sys.executable, "-c", client])
            _, stderr = p.communicate(timeout=120)
            _skip_unless_capturing(stderr)
            assert p.returncode == 0, stderr
            meta = json.loads((out / "meta.json").read_text())
            assert (meta["coverage"]["owned"], meta["coverage"]["total"]) == (2, 2), (run, meta["coverage"], stderr)
    finally:
        for proc in (server, *spinners):  # by PID: only what this test started
            proc.kill()
            proc.wait()


def test_ctrl_c_stops_everything(tmp_path):
    _dumpcap()
    out = tmp_path / "rec"
    # as a terminal's foreground job, whose Ctrl-C this stands for: a run started in the background
    # (`nohup … &`, a runner's job without job control) hands its children SIGINT ignored, which the
    # recorder, as programs do, leaves ignored
    p = _record(["-o", str(out), "--ports", "9", "--", "sleep", "60"],
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (out / "ps.txt").exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        if p.poll() is not None:
            _skip_unless_capturing(p.stderr.read())
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert "interrupted" in stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["interrupted"] is True
    for pid in (meta["command_pid"], meta["dumpcap_pid"]):
        assert pid and not os.path.exists(f"/proc/{pid}"), f"pid {pid} still runs"


@pytest.mark.tshark
@pytest.mark.parametrize("name", ["lab-server-stop", "lab-server-delete", "lab-server-create-novalidhost",
                                  "lab-service-start"])
def test_coverage_owns_short_server_ends_through_their_listening_socket(name):
    """The compute lab's recordings missed a few server ends behind Apache and uwsgi (short
    connections accepted and closed between two looks): their listening socket's process group owns them."""
    from osflow.record.coverage import coverage

    d = Path(__file__).parent / "fixtures" / "captures-compute" / name
    meta = json.loads((d / "meta.json").read_text())
    missed = meta["coverage"]["without_owner"]  # counted when it was recorded, before this rule
    assert missed and all(m.split(" -> ")[0] in ("127.0.0.1:5000", "127.0.0.1:8778", "127.0.0.1:8774")
                          for m in missed), missed
    cov = coverage(str(d / "capture.pcapng"), [str(d / "ss.txt")], hosts={"127.0.0.1"}, ps_files=[str(d / "ps.txt")])
    assert cov.total == meta["coverage"]["total"] and cov.missing == []
    assert cov.line() == (f"coverage: 100% ({cov.total}/{cov.total} connection ends, "
                          f"{len(missed)} of them through their listening socket)")
    m = COVERAGE.match(cov.line())
    assert m and m.groups() == ("100", str(cov.total), str(cov.total))


def test_default_ports_are_the_port_map_s_and_a_web_server_s():
    from osflow import portmap
    from osflow.record.recorder import DEFAULT_PORTS, _ports

    assert _ports(None) == DEFAULT_PORTS
    assert set(DEFAULT_PORTS) == set(portmap.ALL_PORTS) | {80, 443}
    assert _ports("5000,80") == (80, 5000)


def test_record_gives_the_command_a_key_log_of_its_own(tmp_path):
    """COMMAND's SSLKEYLOGFILE is DIR/tls-keys.log, there (owner-only) before it starts, listed in
    meta.json; its path and contents are never in record's output unless it holds keys."""
    _dumpcap()
    echo = _Echo()
    out = tmp_path / "rec"
    client = ("import os, socket, stat\n"
              "path = os.environ['SSLKEYLOGFILE']\n"
              "print(path, oct(stat.S_IMODE(os.stat(path).st_mode)))\n"
              f"s = socket.create_connection(('127.0.0.1', {echo.port}))\n"
              "s.sendall(b'ping\\n'); s.recv(10); s.close()\n")
    try:
        p = _record(["-o", str(out), "-i", "lo", "--ports", str(echo.port), "--", sys.executable, "-c", client])
        stdout, stderr = p.communicate(timeout=120)
    finally:
        echo.close()
    _skip_unless_capturing(stderr)
    assert p.returncode == 0, stderr
    assert stdout.split() == [str((out / "tls-keys.log").absolute()), "0o600"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["files"] == ["capture.pcapng", "ss.txt", "ps.txt", "tls-keys.log", "meta.json"]
    assert stat.S_IMODE((out / "tls-keys.log").stat().st_mode) == 0o600
    assert "tls-keys.log" not in stderr  # an empty key log is not handed to osflow-post

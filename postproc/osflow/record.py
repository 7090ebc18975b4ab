"""``osflow record``: capture the OpenStack traffic of a command, with the owner of every socket.

``osflow record [-i lo] [-o DIR] [--ports …] -- COMMAND [ARGS…]`` (or ``--duration SECONDS``
without a command) replaces the analyst's three terminals:

1. a socket-owner log starts (``ss.txt``): a first full look at every process's sockets, then a
   poller that lists the TCP sockets (netlink sock_diag as ``ss`` does; /proc/net/tcp{,6} as the
   fallback) and, for each new socket on a captured port, finds its owner through an
   inode -> (pid, fd) cache: only new inodes need a look into ``/proc/<pid>/fd``, and only of the
   likely owners first (the processes holding the listening socket of that port, COMMAND and its
   children, processes born since the last look, earlier clients of that port, earlier socket
   owners of the socket's uid); a walk over every process is the last resort.  As root, a packet socket
   sees each SYN on the ports and the poller runs every millisecond for a burst after it (every
   10 ms otherwise); without it, it polls every millisecond all the time.  This catches connections
   that live a few milliseconds, which ``ss -tnp`` polling (8–45 ms per snapshot on two cores, most
   of it the ``-p`` walk) misses;
2. dumpcap captures on the interface with a capture filter on the port map's ports
   (:data:`osflow.portmap.ALL_PORTS`); record waits until the capture is really live: on a
   loopback interface a UDP canary datagram to a socket of record's own must reach the file;
3. ``ps`` before and after (``ps.txt``); the command lines of processes that owned a socket but
   lived only meanwhile (the ``openstack`` client) go to ``meta.json``;
4. COMMAND runs with the user's terminal; record exits with its status.

Everything record starts is stopped by PID, also on Ctrl-C.  DIR holds ``capture.pcapng``,
``ss.txt``, ``ps.txt``, ``meta.json``, readable by the owner only (they hold passwords and tokens).

The socket log uses the ``ss -tnpH`` line format under ``### <epoch> …`` lines, which
:func:`osflow.tables.parse_ss` reads:

>>> from osflow import tables
>>> line = ss_line("ESTAB", 0, 0, ("127.0.0.1", 43210), ("127.0.0.1", 8778), [("openstack", 812, 5)])
>>> line
'ESTAB      0      0      127.0.0.1:43210 127.0.0.1:8778 users:(("openstack",pid=812,fd=5))'
>>> e = tables.parse_ss("### 1795628314.019138113 1 osflow-record\\n" + line).entries[0]
>>> str(e.sockname), str(e.peername), e.users[0].pid, e.time
('127.0.0.1:43210', '127.0.0.1:8778', 812, 1795628314.019138)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Iterable, Optional, Sequence

from . import __version__, portmap
from .errors import InputError, ToolMissing, UsageError

PROC = "/proc"

#: /proc/net/tcp state numbers -> the names ss prints
TCP_STATES = {
    1: "ESTAB",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "UNCONN",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECV",
}

Owner = tuple  # (comm, pid, fd)


# --------------------------------------------------------------------------- /proc/net/tcp


def hex_address(text: str) -> tuple[str, int]:
    """An address of /proc/net/tcp{,6} (``0100007F:1388``) -> (host, port).

    >>> hex_address("0100007F:1388")
    ('127.0.0.1', 5000)
    >>> hex_address("00000000000000000000000001000000:2242")
    ('::1', 8770)
    >>> hex_address("0000000000000000FFFF00000100007F:22B2")
    ('::ffff:127.0.0.1', 8882)
    """
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four 32-bit words, each in host (little-endian) order
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return ip, int(port, 16)


def format_address(host: str, port: int, any_port: bool = False) -> str:
    """``host:port`` as ss prints it (``[::1]:5000``; ``0.0.0.0:*`` for a listener's peer).

    >>> format_address("::1", 5000), format_address("0.0.0.0", 0, any_port=True)
    ('[::1]:5000', '0.0.0.0:*')
    """
    p = "*" if any_port else str(port)
    return f"[{host}]:{p}" if ":" in host else f"{host}:{p}"


def _quote(comm: str) -> str:
    return comm.replace("\\", "\\\\").replace('"', '\\"')


def ss_line(
    state: str, recv_q: int, send_q: int, local: tuple[str, int], remote: tuple[str, int], owners: Iterable[Owner]
) -> str:
    """One socket as ``ss -tnpH`` prints it (see the module's doctest)."""
    listening = state == "LISTEN"
    users = ",".join(f'("{_quote(c)}",pid={p},fd={fd})' for c, p, fd in owners)
    text = (
        f"{state:<10} {recv_q:<6} {send_q:<6} {format_address(*local)} "
        f"{format_address(remote[0], remote[1], any_port=listening)}"
    )
    return f"{text} users:({users})" if users else text


class TcpRow:
    """One TCP socket as the kernel lists it; addresses are decoded only when asked for."""

    __slots__ = ("key", "inode", "state", "lport", "rport", "recv_q", "send_q", "uid", "_decode", "_raw")

    def __init__(self, key, inode, state, lport, rport, recv_q, send_q, uid, decode, raw) -> None:
        self.key = key  # hashable: the 4-tuple in the kernel's encoding
        self.inode = inode
        self.state = state  # number, see TCP_STATES
        self.lport = lport
        self.rport = rport
        self.recv_q = recv_q
        self.send_q = send_q
        self.uid = uid
        self._decode = decode
        self._raw = raw

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return self._decode(self._raw)

    def line(self, owners: Iterable[Owner]) -> str:
        local, remote = self.addresses()
        return ss_line(TCP_STATES.get(self.state, "UNKNOWN"), self.recv_q, self.send_q, local, remote, owners)


def _decode_hex(parts) -> tuple[tuple[str, int], tuple[str, int]]:
    return hex_address(parts[1]), hex_address(parts[2])


def proc_net_tcp_rows(proc: str = PROC) -> Iterable[TcpRow]:
    """The sockets of /proc/net/tcp{,6} (slow on big hash tables: the fallback for netlink)."""
    for path in (f"{proc}/net/tcp", f"{proc}/net/tcp6"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for line in data.decode("ascii", "replace").splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10:
                continue
            tx, _, rx = parts[4].partition(":")
            local, remote = parts[1], parts[2]
            yield TcpRow(
                (local, remote),
                int(parts[9]),
                int(parts[3], 16),
                int(local[local.rindex(":") + 1 :], 16),
                int(remote[remote.rindex(":") + 1 :], 16),
                int(rx, 16),
                int(tx, 16),
                int(parts[7]),
                _decode_hex,
                parts,
            )


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NL_HEADER = struct.Struct("=IHHII")
_PORTS = struct.Struct(">HH")
_QUEUES = struct.Struct("=IIII")  # rqueue, wqueue, uid, inode


def _decode_diag(raw: tuple[int, bytes]) -> tuple[tuple[str, int], tuple[str, int]]:
    family, sockid = raw
    sport, dport = _PORTS.unpack_from(sockid, 0)
    if family == socket.AF_INET:
        src = socket.inet_ntop(socket.AF_INET, sockid[4:8])
        dst = socket.inet_ntop(socket.AF_INET, sockid[20:24])
    else:
        src = socket.inet_ntop(socket.AF_INET6, sockid[4:20])
        dst = socket.inet_ntop(socket.AF_INET6, sockid[20:36])
    return (src, sport), (dst, dport)


class SockDiag:
    """TCP sockets from the kernel over NETLINK_SOCK_DIAG, as ``ss`` gets them (much faster than
    /proc/net/tcp, whose read walks the whole connection hash table)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self.sock.settimeout(5)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def rows(self) -> Iterable[TcpRow]:
        for family in (socket.AF_INET, socket.AF_INET6):
            yield from self._dump(family)

    def lookup(self, family: int, src: bytes, sport: int, dst: bytes, dport: int) -> Optional[TcpRow]:
        """The one socket with this 4-tuple (an exact lookup, no walk over the hash table)."""
        sockid = _PORTS.pack(sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0")
        sockid += struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
        try:
            rows = self._dump(family, sockid, flags=0x1)
        except OSError:
            return None
        return rows[0] if rows else None

    def _dump(self, family: int, sockid: bytes = bytes(48), flags: int = 0x301) -> list[TcpRow]:
        self.seq += 1
        # inet_diag_req_v2: family, protocol, ext, pad, states (all), inet_diag_sockid
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
        self.sock.send(_NL_HEADER.pack(16 + len(req), SOCK_DIAG_BY_FAMILY, flags, self.seq, 0) + req)
        single = not flags & 0x300
        rows = []
        while True:
            data = self.sock.recv(1 << 17)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = _NL_HEADER.unpack_from(data, off)
                if kind == _NLMSG_DONE:
                    return rows
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    if single and code == errno.ENOENT:
                        return rows
                    raise OSError(code, f"sock_diag: {os.strerror(code)}")
                if seq == self.seq and length >= 16 + 72:
                    base = off + 16
                    fam = data[base]
                    state = data[base + 1]
                    sockid = data[base + 4 : base + 40]  # sport, dport, src[16], dst[16]
                    sport, dport = _PORTS.unpack_from(sockid, 0)
                    rq, wq, uid, inode = _QUEUES.unpack_from(data, base + 56)
                    rows.append(TcpRow(sockid, inode, state, sport, dport, rq, wq, uid, _decode_diag, (fam, sockid)))
                    if single:
                        return rows
                if length <= 0:
                    break
                off += (length + 3) & ~3
            if not data:
                return rows


def tcp_rows_source(proc: str = PROC):
    """A function returning the current TCP sockets: netlink when the kernel allows, else /proc/net/tcp."""
    if proc == PROC:
        try:
            diag = SockDiag()
            list(diag.rows())
            return diag.rows
        except OSError:
            pass
    return lambda: proc_net_tcp_rows(proc)


# --------------------------------------------------------------------------- processes


@dataclass
class ProcInfo:
    """One running process, from /proc/PID (stat, owner, cmdline)."""

    pid: int
    ppid: int
    user: str
    args: str
    comm: str


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


_users: dict[int, str] = {}


def _user_name(uid: int) -> str:
    name = _users.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _users[uid] = name
    return name


def proc_info(pid: int, proc: str = PROC) -> Optional[ProcInfo]:
    """pid, ppid, user, command line and comm of a running process (None when it is gone)."""
    stat = _read(f"{proc}/{pid}/stat")
    if stat is None:
        return None
    text = stat.decode("utf-8", "replace")
    close = text.rfind(")")
    comm = text[text.find("(") + 1 : close]
    fields = text[close + 2 :].split()
    try:
        ppid = int(fields[1])
        uid = os.stat(f"{proc}/{pid}").st_uid
    except (IndexError, ValueError, OSError):
        return None
    raw = _read(f"{proc}/{pid}/cmdline") or b""
    args = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace").strip() or f"[{comm}]"
    return ProcInfo(pid, ppid, _user_name(uid), args, comm)


def _comm(pid: int, proc: str = PROC) -> str:
    raw = _read(f"{proc}/{pid}/comm")
    return raw.decode("utf-8", "replace").rstrip("\n") if raw else "?"


def _all_pids(proc: str = PROC) -> list[int]:
    try:
        return [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []


# --------------------------------------------------------------------------- the socket-owner log


class SocketLog:
    """Who owns the sockets on some ports, written as ``### <epoch>`` + ``ss -tnpH``-like blocks.

    :meth:`snapshot` looks at every process (all owners of every socket, as ``ss -tnp`` does);
    :meth:`poll` lists the TCP sockets (netlink sock_diag, else /proc/net/tcp) and resolves only
    those it has not seen yet, looking first where the owner most likely is (see the module's
    docstring).
    """

    #: a walk over every process happens at most this often (seconds), and once per socket
    FULL_WALK_EVERY = 0.05
    #: walks over every process for one socket (its fd may be installed just after a walk)
    FULL_WALKS_PER_SOCKET = 3
    #: polls that look for the owner of a socket before giving up
    MAX_ATTEMPTS = 20

    def __init__(self, out: IO[str], ports: Iterable[int], proc: str = PROC, rows=None) -> None:
        self.out = out
        self.ports = frozenset(ports)
        self.proc = proc
        self.rows = rows or tcp_rows_source(proc)
        self.source = "netlink sock_diag" if isinstance(getattr(self.rows, "__self__", None), SockDiag) else "/proc/net/tcp"
        self.owners: dict[int, tuple[Owner, ...]] = {}  # inode -> owners
        self.seen: dict[int, object] = {}  # inode -> 4-tuple key as logged
        self.port_pids: dict[int, dict[int, None]] = {}  # local port -> pids that held a socket on it
        self.client_pids: dict[int, dict[int, None]] = {}  # remote port -> pids that connected to it
        self.socket_pids: dict[int, None] = {}  # every pid that owned a logged socket, most recent last
        self.pid_uid: dict[int, int] = {}
        self.procs: dict[int, ProcInfo] = {}  # pid -> what it was when first seen owning a socket
        self.roots: set[int] = set()  # COMMAND's pid
        self.known_pids: set[int] = set(_all_pids(proc))
        self.unresolved: dict[int, int] = {}  # inode -> full walks that did not find its owner
        self.denied: set[int] = set()  # pids whose fds we may not read
        self.seq = 0
        self.last_full_walk = 0.0
        # statistics for meta.json
        self.polls = 0
        self.poll_time = 0.0
        self.max_poll_time = 0.0
        self.full_walks = 0
        self.pid_walks = 0
        self.logged = 0
        self.without_owner = 0
        self.syn_lookups = 0
        self.attempts: dict[int, int] = {}  # inode -> polls that did not find its owner

    # -- resolving inodes

    def _walk(self, pid: int) -> dict[int, int]:
        """The socket inodes of one process: inode -> fd."""
        self.pid_walks += 1
        base = f"{self.proc}/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                self.denied.add(pid)
            return {}
        found: dict[int, int] = {}
        for n in names:
            try:
                target = os.readlink(f"{base}/{n}")
            except OSError:
                continue
            if target.startswith("socket:["):
                found[int(target[8:-1])] = int(n)
        return found

    def _descendants(self) -> list[int]:
        out: list[int] = []
        todo = list(self.roots)
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += self._children((pid,))
        return out

    def _children(self, pids: Iterable[int]) -> list[int]:
        out: list[int] = []
        for pid in pids:
            try:
                tasks = os.listdir(f"{self.proc}/{pid}/task")
            except OSError:
                continue
            for t in tasks:
                raw = _read(f"{self.proc}/{pid}/task/{t}/children")
                if raw:
                    out += [int(c) for c in raw.split()]
        return out

    def _new_pids(self) -> list[int]:
        now = set(_all_pids(self.proc))
        new = sorted(now - self.known_pids, reverse=True)
        self.known_pids = now
        return new

    def _uid(self, pid: int) -> Optional[int]:
        uid = self.pid_uid.get(pid)
        if uid is None:
            try:
                uid = self.pid_uid[pid] = os.stat(f"{self.proc}/{pid}").st_uid
            except OSError:
                return None
        return uid

    def _note(self, inode: int, owners: tuple[Owner, ...]) -> None:
        self.owners[inode] = owners
        for _, pid, _ in owners:
            if pid not in self.procs:
                info = proc_info(pid, self.proc)
                if info is not None:
                    self.procs[pid] = info

    def resolve(self, needed: dict[int, tuple[int, int, int]]) -> set[int]:
        """Find the owners of new sockets (inode -> (local port, remote port, uid)); returns the unresolved."""
        remaining = set(needed)
        tried: set[int] = set()

        def look(pids: Iterable[int]) -> None:
            for pid in pids:
                if not remaining:
                    return
                if pid in tried:
                    continue
                tried.add(pid)
                found = self._walk(pid)
                if not found:
                    continue
                comm = _comm(pid, self.proc)
                for inode, fd in found.items():
                    if inode in remaining:
                        remaining.discard(inode)
                        self._note(inode, ((comm, pid, fd),))
                    elif inode not in self.owners:  # a socket of it not on our list yet: remember
                        self.owners[inode] = ((comm, pid, fd),)

        def wanted_uids() -> set[int]:
            return {needed[i][2] for i in remaining}

        # 1. the processes holding a socket on the local port (the server end of an accepted connection),
        #    then their children (a web server forks new workers, which inherit the listening socket)
        holders = [p for i in list(remaining) for p in list(self.port_pids.get(needed[i][0], ()))]
        look(holders)
        if remaining and holders:
            look(self._children(dict.fromkeys(holders)))
        # 2. COMMAND and its children
        if remaining and self.roots:
            look(self._descendants())
        # 3. processes born since the last look, of the socket's user first (short-lived clients)
        if remaining:
            new = self._new_pids()
            uids = wanted_uids()
            look(p for p in new if self._uid(p) in uids)
            look(new)
        # 4. earlier clients of the remote port, most recent first
        if remaining:
            look(p for i in list(remaining) for p in reversed(list(self.client_pids.get(needed[i][1], ()))))
        # 5. every earlier socket owner of the socket's user, then the others
        if remaining:
            uids = wanted_uids()
            owners = list(reversed(list(self.socket_pids)))
            look(p for p in owners if self._uid(p) in uids)
            look(owners)
        # 6. every process (rate limited; once per socket)
        if remaining:
            fresh = [i for i in remaining if self.unresolved.get(i, 0) < self.FULL_WALKS_PER_SOCKET]
            now = time.monotonic()
            if fresh and now - self.last_full_walk >= self.FULL_WALK_EVERY:
                self.last_full_walk = now
                self.full_walks += 1
                for i in fresh:
                    self.unresolved[i] = self.unresolved.get(i, 0) + 1
                look(_all_pids(self.proc))
        for i in needed:
            if i not in remaining:
                self.unresolved.pop(i, None)
        return remaining

    # -- output

    def _block(self, label: str, lines: list[str], when: float) -> None:
        self.seq += 1
        self.out.write(f"### {when:.9f} {self.seq} osflow-record {label}\n")
        for line in lines:
            self.out.write(line)
            self.out.write("\n")
        self.out.flush()
        self.logged += len(lines)

    def _remember(self, row: TcpRow, owners: tuple[Owner, ...]) -> None:
        for _, pid, _ in owners:
            self.socket_pids.pop(pid, None)
            self.socket_pids[pid] = None
            if row.state == 10 or row.lport in self.ports:
                self.port_pids.setdefault(row.lport, {})[pid] = None
            elif row.rport in self.ports:
                d = self.client_pids.setdefault(row.rport, {})
                d.pop(pid, None)
                d[pid] = None

    def snapshot(self, label: str) -> None:
        """Every socket on the ports, with every owner (a walk over all processes)."""
        when = time.time()
        holders: dict[int, list[Owner]] = {}
        for pid in _all_pids(self.proc):
            found = self._walk(pid)
            if found:
                comm = _comm(pid, self.proc)
                for inode, fd in found.items():
                    holders.setdefault(inode, []).append((comm, pid, fd))
        self.full_walks += 1
        self.known_pids = set(_all_pids(self.proc))
        lines = []
        for row in self.rows():
            if row.lport not in self.ports and row.rport not in self.ports:
                continue
            owners: tuple[Owner, ...] = ()
            if row.inode:
                owners = tuple(sorted(holders.get(row.inode, ()), key=lambda o: -o[1]))
                self.seen[row.inode] = row.key
                if owners:
                    self._note(row.inode, owners)
                    self._remember(row, owners)
            lines.append(row.line(owners))
        for inode, owners in holders.items():  # sockets not on the ports (yet): unbound, other ports
            self.owners.setdefault(inode, tuple(owners))
        self._block(f"{label}: every socket on the captured ports (/proc/*/fd walk)", lines, when)

    def poll(self) -> None:
        """Log the sockets on the ports that appeared (or changed address) since the last poll."""
        started = time.perf_counter()
        when = time.time()
        new: list[TcpRow] = []
        seen = self.seen
        ports = self.ports
        for row in self.rows():
            inode = row.inode
            if not inode:  # TIME-WAIT, not yet accepted: no owner to find
                continue
            if seen.get(inode) == row.key:
                continue
            if row.lport not in ports and row.rport not in ports:
                seen[inode] = row.key
                continue
            new.append(row)
        if new:
            self._log_new(new, when, self.source)
        spent = time.perf_counter() - started
        self.polls += 1
        self.poll_time += spent
        self.max_poll_time = max(self.max_poll_time, spent)

    def connecting(self, row: TcpRow) -> None:
        """A socket just seen sending a SYN (found by an exact lookup): log it now."""
        if row.inode and self.seen.get(row.inode) != row.key:
            self.syn_lookups += 1
            self._log_new([row], time.time(), "SYN, netlink lookup")

    def _log_new(self, new: list[TcpRow], when: float, source: str) -> None:
        needed = {r.inode: (r.lport, r.rport, r.uid) for r in new if r.inode not in self.owners}
        if needed:
            self.resolve(needed)
        lines = []
        for row in new:
            owners = self.owners.get(row.inode, ())
            if not owners:
                # not found (yet): an accepted socket's fd may not be installed yet, or its process is
                # gone; try again at the next polls, then give up (the end snapshot still lists it)
                tries = self.attempts[row.inode] = self.attempts.get(row.inode, 0) + 1
                if tries < self.MAX_ATTEMPTS:
                    continue
                self.without_owner += 1
                self.seen[row.inode] = row.key
                continue
            self.attempts.pop(row.inode, None)
            self.seen[row.inode] = row.key
            self._remember(row, owners)
            lines.append(row.line(owners))
        if lines:
            self._block(f"new sockets ({source}, {len(lines)})", lines, when)

    def stats(self) -> dict:
        return {
            "source": self.source,
            "polls": self.polls,
            "mean_poll_ms": round(1000 * self.poll_time / self.polls, 3) if self.polls else None,
            "max_poll_ms": round(1000 * self.max_poll_time, 3),
            "full_walks": self.full_walks,
            "pid_walks": self.pid_walks,
            "lines": self.logged,
            "new_sockets_without_owner": self.without_owner,
            "syn_lookups": self.syn_lookups,
            "unreadable_pids": len(self.denied),
        }


class SynTrigger:
    """Wakes the socket log when a TCP connection to or from a captured port starts.

    A packet socket (AF_PACKET, root only) on the interface sees every SYN as it happens; the log
    then polls every ``interval`` for a short burst (the client socket exists at once, the server
    end once accepted).  Without it (not root, not Linux) the log polls at that pace all the time.
    """

    def __init__(self, interface: str, ports: Iterable[int]) -> None:
        self.ports = frozenset(ports)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(3))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            if interface != "any":
                self.sock.bind((interface, 3))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.syns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def drain(self) -> Optional[list[tuple]]:
        """Read what arrived: None when no SYN on a captured port was among it, else the connection
        attempts (SYN without ACK) as (family, src, sport, dst, dport)."""
        hit: Optional[list[tuple]] = None
        ports = self.ports
        while True:
            try:
                b = self.sock.recv(128)
            except (BlockingIOError, InterruptedError):
                return hit
            if len(b) < 20:
                continue
            version = b[0] >> 4
            if version == 4 and b[9] == 6:
                off = (b[0] & 15) * 4
            elif version == 6 and len(b) >= 60 and b[6] == 6:
                off = 40
            else:
                continue
            if len(b) < off + 14 or not b[off + 13] & 0x02:  # SYN (and SYN-ACK)
                continue
            sport, dport = _PORTS.unpack_from(b, off)
            if sport in ports or dport in ports:
                self.syns += 1
                if hit is None:
                    hit = []
                if not b[off + 13] & 0x10:  # no ACK: a client connecting
                    if version == 4:
                        hit.append((socket.AF_INET, b[12:16], sport, b[16:20], dport))
                    else:
                        hit.append((socket.AF_INET6, b[8:24], sport, b[24:40], dport))


class SocketWatcher(threading.Thread):
    """Runs a :class:`SocketLog`: a snapshot, polls, a snapshot at the end.

    With a :class:`SynTrigger`, polls come in bursts every ``interval`` seconds for ``burst``
    seconds after each SYN, and every ``idle`` seconds otherwise; without, every ``interval``.
    """

    def __init__(
        self, log: SocketLog, interval: float, trigger: Optional[SynTrigger] = None, idle: float = 0.01, burst: float = 0.05
    ) -> None:
        super().__init__(name="osflow-socket-log", daemon=True)
        self.log = log
        self.interval = interval
        self.trigger = trigger
        self.idle = max(idle, interval)
        self.burst = burst
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.error: Optional[BaseException] = None

    def add_root(self, pid: int) -> None:
        with self._lock:
            self.log.roots.add(pid)

    def _poll(self) -> None:
        with self._lock:
            self.log.poll()

    def run(self) -> None:
        import select

        try:
            try:  # as root: run ahead of the services it watches, so short sockets are seen in time
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
            except (OSError, AttributeError):
                pass
            self.log.snapshot("start")
            self.ready.set()
            if self.trigger is None:
                next_at = time.monotonic()
                while not self._halt.is_set():
                    self._poll()
                    next_at += self.interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_at = time.monotonic()
            else:
                burst_until = 0.0
                last = 0.0
                diag = getattr(self.log.rows, "__self__", None)
                lookup = diag.lookup if isinstance(diag, SockDiag) else None
                while not self._halt.is_set():
                    now = time.monotonic()
                    pace = self.interval if now < burst_until else self.idle
                    wait = max(0.0, last + pace - now)
                    ready, _, _ = select.select([self.trigger], [], [], wait)
                    syns = self.trigger.drain() if ready else None
                    if syns is not None:
                        burst_until = time.monotonic() + self.burst
                        if lookup is not None:
                            for syn in dict.fromkeys(syns):  # loopback shows each packet twice
                                row = lookup(*syn)
                                if row is not None:
                                    with self._lock:
                                        self.log.connecting(row)
                        self._poll()
                        last = time.monotonic()
                    elif time.monotonic() >= last + pace:
                        self._poll()
                        last = time.monotonic()
            self.log.poll()
            self.log.snapshot("end")
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            if self.trigger is not None:
                self.trigger.close()
            self.ready.set()

    def stop(self, timeout: float = 30) -> None:
        self._halt.set()
        self.join(timeout)


# --------------------------------------------------------------------------- dumpcap


def find_dumpcap() -> str:
    """dumpcap: $DUMPCAP, then PATH, then /usr/bin and /usr/sbin."""
    env = os.environ.get("DUMPCAP")
    if env:
        if not os.access(env, os.X_OK):
            raise ToolMissing(f"DUMPCAP={env} is not an executable file")
        return env
    found = shutil.which("dumpcap")
    if found:
        return found
    for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        p = os.path.join(d, "dumpcap")
        if os.access(p, os.X_OK):
            return p
    raise ToolMissing(
        "dumpcap not found: install it (Debian/Ubuntu: sudo apt-get install tshark, which brings "
        "wireshark-common) or set DUMPCAP=/path/to/dumpcap"
    )


def capture_filter(ports: Iterable[int], canary_port: Optional[int] = None) -> str:
    """The BPF capture filter: every port, plus record's own UDP canary.

    >>> capture_filter([5000, 8778])
    'tcp port 5000 or tcp port 8778'
    >>> capture_filter([3306], 40000)
    'tcp port 3306 or (udp dst port 40000 and dst host 127.0.0.1)'
    """
    text = " or ".join(f"tcp port {p}" for p in sorted(set(ports)))
    if canary_port is not None:
        text += f" or (udp dst port {canary_port} and dst host 127.0.0.1)"
    return text


def _interfaces() -> list[str]:
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


def _is_loopback(interface: str) -> bool:
    if interface in ("lo", "any"):
        return True
    raw = _read(f"/sys/class/net/{interface}/flags")
    try:
        return bool(int(raw or b"0", 16) & 0x8)
    except ValueError:
        return False


def check_interface(interface: str) -> None:
    """Raise InputError when the interface does not exist (when /sys tells)."""
    names = _interfaces()
    if names and interface != "any" and interface not in names:
        raise InputError(f"no such interface: {interface} (this machine has: {', '.join(names)}, any)")


def dumpcap_problem(interface: str, stderr: str, status: Optional[int]) -> InputError:
    """dumpcap's failure as one clear line."""
    if "permission" in stderr.lower() or "Operation not permitted" in stderr:
        return InputError(
            f"no permission to capture on {interface}: run osflow record as root, or allow your user "
            "to capture (sudo dpkg-reconfigure wireshark-common, answer yes; sudo usermod -aG wireshark $USER; "
            "log in again)"
        )
    if "no device named" in stderr.lower() or "No such device" in stderr:
        names = _interfaces()
        have = f" (this machine has: {', '.join(names)}, any)" if names else ""
        return InputError(f"no such interface: {interface}{have}")
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith("Capturing on") and "Running as user" not in ln
    ]
    why = lines[0] if lines else f"it exited with status {status}"
    return InputError(f"dumpcap could not capture on {interface}: {why}")


def _die_with_parent() -> None:
    """In dumpcap's child before exec: get SIGTERM when record dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: record still stops dumpcap itself
        pass


class Capture:
    """dumpcap writing a pcapng file, started and stopped by PID."""

    def __init__(self, dumpcap: str, interface: str, ports: Sequence[int], path: str) -> None:
        self.dumpcap = dumpcap
        self.interface = interface
        self.path = path
        self.loopback = _is_loopback(interface)
        self.canary: Optional[socket.socket] = None
        if self.loopback:
            self.canary = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.canary.bind(("127.0.0.1", 0))
        self.filter = capture_filter(ports, self.canary.getsockname()[1] if self.canary else None)
        self.proc: Optional[subprocess.Popen] = None
        self.stderr: list[str] = []
        self.canaries = 0
        self._reader: Optional[threading.Thread] = None

    @property
    def command(self) -> list[str]:
        return [self.dumpcap, "-i", self.interface, "-f", self.filter, "-w", self.path, "-B", "16"]

    def _size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _sing(self) -> None:
        assert self.canary is not None
        self.canaries += 1
        self.canary.sendto(b"osflow record: capture is live", self.canary.getsockname())

    def start(self, timeout: float = 10) -> None:
        """Start dumpcap and wait until the capture is live (raises InputError when it cannot capture)."""
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the terminal's Ctrl-C must not cut the capture short
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            raise ToolMissing(f"cannot run {self.dumpcap}: {e.strerror}") from None
        self._reader = threading.Thread(target=self._read_stderr, name="osflow-dumpcap-stderr", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        header = 0
        sung = 0.0
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                self._reader.join(2)
                raise dumpcap_problem(self.interface, "\n".join(self.stderr), status)
            size = self._size()
            if header == 0:
                if size > 0:  # dumpcap opened the interface and wrote the pcapng header
                    time.sleep(0.05)
                    header = self._size()
                    if not self.loopback:
                        time.sleep(0.3)  # no canary off loopback: give the kernel filter a moment
                        return
                    self._sing()
                    sung = time.monotonic()
            elif size > header:  # the canary (or real traffic) reached the file
                return
            elif time.monotonic() - sung > 0.2:  # dumpcap flushes its file every 100 ms
                self._sing()
                sung = time.monotonic()
            time.sleep(0.01)
        self.stop()
        raise InputError(
            f"dumpcap did not start capturing on {self.interface} within {timeout:g} s"
            + (f": {self.stderr[-1]}" if self.stderr else "")
        )

    def drain(self, timeout: float = 3) -> bool:
        """Wait until every packet so far is in the file (a last canary); False when unsure."""
        if self.canary is None or self.proc is None or self.proc.poll() is not None:
            time.sleep(0.3)
            return False
        base = self._size()
        self._sing()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._size() > base:
                return True
            time.sleep(0.01)
        return False

    def stop(self, timeout: float = 10) -> Optional[int]:
        """Stop dumpcap (SIGTERM by PID, then SIGKILL); its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        if self.canary is not None:
            self.canary.close()
            self.canary = None
        return self.proc.returncode

    def dropped(self) -> Optional[int]:
        """Packets the kernel or dumpcap dropped, from dumpcap's final statistics."""
        total = None
        for line in self.stderr:
            if line.startswith("Packets received/dropped"):
                try:
                    total = (total or 0) + int(line.split(":")[-1].split("(")[0].split("/")[1])
                except (IndexError, ValueError):
                    pass
        return total


# --------------------------------------------------------------------------- ps


def ps_sections(label: str) -> str:
    """``ps -eo pid,ppid,user,args`` and ``ps aux`` under ``##### <epoch> LABEL: <cmd>`` lines."""
    out = []
    for cmd in (["ps", "-ww", "-eo", "pid,ppid,user,args"], ["ps", "auxww"]):
        when = time.time()
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"# {' '.join(cmd)} failed: {e}\n"
        shown = " ".join(c for c in cmd if c != "-ww").replace("auxww", "aux")
        out.append(f"##### {when:.9f} {label}: {shown}\n{text}")
    return "".join(out)


# --------------------------------------------------------------------------- coverage


@dataclass
class Coverage:
    """How many local TCP connection ends of a capture the socket log names an owner for."""

    owned: int
    total: int
    missing: list[str] = field(default_factory=list)  # "local -> remote (stream n)"

    @property
    def percent(self) -> Optional[float]:
        return 100.0 * self.owned / self.total if self.total else None

    def line(self) -> str:
        """``coverage: <percent>% (<owned>/<total> connection ends)``; 99.96% is never shown as 100%.

        >>> Coverage(12, 12).line(), Coverage(2, 3).line(), Coverage(2999, 3000).line(), Coverage(0, 0).line()
        ('coverage: 100% (12/12 connection ends)', 'coverage: 66.7% (2/3 connection ends)', 'coverage: 99.9% (2999/3000 connection ends)', 'coverage: n/a (0/0 connection ends)')
        """
        if not self.total:
            return "coverage: n/a (0/0 connection ends)"
        text = f"{self.percent:.1f}"
        if self.owned < self.total and text == "100.0":
            text = "99.9"
        if text.endswith(".0"):
            text = text[:-2]
        return f"coverage: {text}% ({self.owned}/{self.total} connection ends)"


def local_hosts() -> set[str]:
    """This machine's addresses (from /proc/net/fib_trie and /proc/net/if_inet6)."""
    hosts = {"127.0.0.1", "::1"}
    raw = _read(f"{PROC}/net/fib_trie")
    if raw:
        last = None
        for line in raw.decode("ascii", "replace").splitlines():
            s = line.strip()
            if s.startswith("|--"):
                last = s[3:].strip()
            elif "/32 host LOCAL" in s and last:
                hosts.add(last)
    raw = _read(f"{PROC}/net/if_inet6")
    if raw:
        for line in raw.decode("ascii", "replace").splitlines():
            h = line.split()[0] if line.split() else ""
            if len(h) == 32:
                hosts.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(h)))
    return hosts


def _is_local(host: str, hosts: set[str]) -> bool:
    return host in hosts or host.startswith("127.") or host.startswith("::ffff:127.")


def coverage(capture: str, ss_files: Sequence[str], hosts: Optional[set[str]] = None) -> Coverage:
    """The share of local TCP connection ends in ``capture`` whose owner the socket log names.

    Every TCP connection of the capture (osflow's PDML reader over tshark) has two ends; an end on
    this machine counts, and is owned when the socket tables give its 4-tuple a process.
    """
    from . import source
    from .pipeline import Tables

    hosts = local_hosts() if hosts is None else hosts
    tables = Tables.load(ss_files)
    streams: dict[int, tuple] = {}
    if hasattr(source, "Tshark"):  # tshark -T fields: what osflow-post -r reads
        runner = source.Tshark(capture)
        reader = runner.reader
    else:  # older osflow: PDML
        runner = source.TsharkPdml(capture)
        runner.command = source.tshark_pdml_command(capture, extra=("-j", "geninfo ip ipv6 tcp"))
        reader = lambda stream: source.PdmlReader(stream, capture)  # noqa: E731
    with runner as stream:
        for p in reader(stream):
            if p.stream not in streams:
                streams[p.stream] = (p.src, p.dst, p.time)
    if runner.problem is not None and not streams:
        raise runner.problem
    owned = total = 0
    missing = []
    for n, (a, b, when) in sorted(streams.items()):
        for local, remote in ((a, b), (b, a)):
            if not _is_local(local.host, hosts):
                continue
            total += 1
            entry = tables.sockets.owner(local, remote, when) if tables.sockets is not None else None
            if entry is not None and entry.users:
                owned += 1
            else:
                missing.append(f"{local} -> {remote} (stream {n})")
    return Coverage(owned, total, missing)


# --------------------------------------------------------------------------- the command


def _ports(text: Optional[str]) -> tuple[int, ...]:
    if not text:
        return portmap.ALL_PORTS
    ports = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise UsageError(f"--ports: expected port numbers separated by commas (e.g. 5000,8778), found {part!r}")
        ports.append(int(part))
    if not ports:
        raise UsageError("--ports: no port given")
    return tuple(sorted(set(ports)))


def find_command(name: str) -> str:
    """The program COMMAND names; UsageError when there is none."""
    if os.sep in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
        raise UsageError(f"COMMAND not found: {name} (no such executable file)")
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"COMMAND not found: {name} (not on PATH)")
    return found


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, found {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``osflow record``."""
    parser.description = (
        "Capture the OpenStack traffic (dumpcap, on the port map's ports) while COMMAND runs, with the owner "
        "of every socket (ss.txt) and the processes (ps.txt); exits with COMMAND's status."
    )
    parser.add_argument("-i", "--interface", default="lo", help="interface to capture on (default: lo)")
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="folder for the files (default: ./osflow-<YYYYmmdd-HHMMSS>/)"
    )
    parser.add_argument(
        "--ports",
        metavar="LIST",
        help="TCP ports to capture, comma-separated (default: every port of osflow's port map: "
        + ",".join(map(str, portmap.ALL_PORTS))
        + ")",
    )
    parser.add_argument(
        "--duration", type=_positive, metavar="SECONDS", help="capture a running system for SECONDS, no COMMAND"
    )
    parser.add_argument("--render", action="store_true", help="then write DIR/flow.md (timeline + Mermaid)")
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="MS",
        help="how often the socket-owner log looks for new sockets, in milliseconds (default: 1)",
    )
    parser.add_argument(
        "--always-poll",
        action="store_true",
        help="poll for new sockets every --interval all the time, instead of in bursts after each SYN "
        "(the default when record may open a packet socket, i.e. as root)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="keep capturing after COMMAND ends, for late packets (default: 0.5)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]", help="the command to run")


def _make_dir(path: Optional[str]) -> tuple[str, bool]:
    """Create the output folder (0700); (path, whether record created it)."""
    if not path:
        path = time.strftime("osflow-%Y%m%d-%H%M%S")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise UsageError(f"{path}: exists and is not a folder")
        if os.listdir(path):
            raise UsageError(f"{path}: exists and is not empty (give another -o DIR)")
        os.chmod(path, 0o700)
        return path, False
    try:
        os.makedirs(path, mode=0o700)
    except OSError as e:
        raise InputError(f"{path}: cannot create it: {e.strerror}") from None
    os.chmod(path, 0o700)
    return path, True


def _versions(dumpcap: str) -> dict:
    v = {"osflow": __version__, "python": platform.python_version(), "kernel": platform.release()}
    try:
        out = subprocess.run([dumpcap, "-v"], capture_output=True, text=True, timeout=10).stdout
        v["dumpcap"] = out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        v["dumpcap"] = None
    return v


def _say(text: str) -> None:
    print(f"osflow record: {text}", file=sys.stderr, flush=True)


class _Stop(Exception):
    pass


def _raise_interrupt(signum, frame):  # SIGTERM/SIGHUP: stop as on Ctrl-C
    raise KeyboardInterrupt


def _stop_child(proc: subprocess.Popen) -> int:
    """After Ctrl-C: let COMMAND end (it got the terminal's SIGINT), else SIGINT, SIGTERM, SIGKILL by PID."""
    for sig, wait in ((None, 2.0), (signal.SIGINT, 3.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        if sig is not None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(args) -> int:
    """``osflow record``: see the module's docstring; returns COMMAND's exit status."""
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if command and args.duration is not None:
        raise UsageError("give either -- COMMAND or --duration SECONDS, not both")
    if not command and args.duration is None:
        raise UsageError("nothing to record: give -- COMMAND [ARGS...] or --duration SECONDS")
    if not args.interval > 0:
        raise UsageError("--interval: expected a positive number of milliseconds")
    if args.linger < 0:
        raise UsageError("--linger: expected 0 or more seconds")
    ports = _ports(args.ports)
    if command:
        find_command(command[0])
    dumpcap = find_dumpcap()
    check_interface(args.interface)
    return Recorder(args, command, ports, dumpcap).run()


class Recorder:
    def __init__(self, args, command: list[str], ports: tuple[int, ...], dumpcap: str) -> None:
        self.args = args
        self.command = command
        self.ports = ports
        self.dumpcap = dumpcap
        self.dir = ""
        self.created = False

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def run(self) -> int:
        old_umask = os.umask(0o077)
        old_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        for s in old_handlers:
            signal.signal(s, _raise_interrupt)
        try:
            return self._run()
        finally:
            os.umask(old_umask)
            for s, h in old_handlers.items():
                signal.signal(s, h)

    def _abandon(self) -> None:
        """A start that failed: remove what record wrote."""
        for name in ("capture.pcapng", "ss.txt", "ps.txt"):
            try:
                os.unlink(self.path(name))
            except OSError:
                pass
        if self.created:
            try:
                os.rmdir(self.dir)
            except OSError:
                pass

    def _run(self) -> int:
        args = self.args
        self.dir, self.created = _make_dir(args.output)
        if os.geteuid() != 0:
            _say("warning: not root: the socket log sees only the sockets of your own processes")
        ss_file = open(self.path("ss.txt"), "w", encoding="utf-8")
        log = SocketLog(ss_file, self.ports)
        trigger: Optional[SynTrigger] = None
        if not args.always_poll:
            try:
                trigger = SynTrigger(args.interface, self.ports)
            except (OSError, AttributeError):  # not root (CAP_NET_RAW), not Linux: poll all the time
                trigger = None
        watcher = SocketWatcher(log, args.interval / 1000.0, trigger)
        capture: Optional[Capture] = None
        start = time.time()
        try:
            watcher.start()
            watcher.ready.wait(60)
            if watcher.error is not None:
                raise InputError(f"the socket-owner log failed: {watcher.error}")
            capture = Capture(self.dumpcap, args.interface, self.ports, self.path("capture.pcapng"))
            capture.start()
            with open(self.path("ps.txt"), "w", encoding="utf-8") as f:
                f.write(ps_sections("BEFORE"))
        except BaseException:
            watcher.stop()
            if capture is not None:
                capture.stop()
            ss_file.close()
            self._abandon()
            raise

        _say(f"capturing on {args.interface} into {self.dir}/ (ports {','.join(map(str, self.ports))})")
        interrupted = False
        returncode: Optional[int] = None
        proc: Optional[subprocess.Popen] = None
        start = time.time()
        try:
            if self.command:
                try:
                    proc = subprocess.Popen(self.command)
                except OSError as e:  # found a moment ago, gone or not executable now
                    raise _Stop(f"cannot run {self.command[0]}: {e.strerror}") from None
                watcher.add_root(proc.pid)
                returncode = proc.wait()
            else:
                time.sleep(args.duration)
        except KeyboardInterrupt:
            interrupted = True
        except _Stop as e:
            _say(f"error: {e}")
            returncode = 127
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if interrupted:
                _say("interrupted: stopping")
                if proc is not None:
                    returncode = proc.wait() if proc.poll() is not None else _stop_child(proc)
            end = time.time()
            if args.linger and not interrupted:
                time.sleep(args.linger)
            after = ps_sections("AFTER")
            with open(self.path("ps.txt"), encoding="utf-8") as f:
                before_pids = _pids_in(f.read())
            during = [p for p in log.procs.values() if p.pid not in before_pids]
            with open(self.path("ps.txt"), "a", encoding="utf-8") as f:
                f.write(after)
            drained = capture.drain()
            dumpcap_status = capture.stop()
            watcher.stop()
            ss_file.close()
            if watcher.error is not None:
                _say(f"warning: the socket-owner log failed: {watcher.error}")
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

        status = 130 if (interrupted and returncode is None) else _status(returncode or 0)
        dropped = capture.dropped()
        if dropped:
            _say(f"warning: {dropped} packets were dropped while capturing")
        if not drained and capture.loopback:
            _say("warning: could not confirm that the last packets reached the capture file")
        if log.denied:
            _say(f"warning: could not read the sockets of {len(log.denied)} processes (not root?)")

        meta = {
            "command": self.command or None,
            "duration": args.duration,
            "exit_code": returncode if self.command else None,
            "interrupted": interrupted,
            "command_pid": proc.pid if proc is not None else None,
            "dumpcap_pid": capture.proc.pid if capture.proc is not None else None,
            "start": start,
            "end": end,
            "interface": args.interface,
            "ports": list(self.ports),
            "capture_filter": capture.filter,
            "dumpcap_command": capture.command,
            "dumpcap_exit_code": dumpcap_status,
            "dropped_packets": dropped,
            "canary": "UDP datagrams to 127.0.0.1 (record's own socket) mark the start and end of the capture"
            if capture.loopback
            else None,
            "socket_log": {
                "interval_ms": args.interval,
                "syn_trigger": trigger is not None,
                "syns_seen": trigger.syns if trigger is not None else None,
                **log.stats(),
            },
            # processes that owned a socket but are in no ps snapshot (the openstack client):
            # ps.txt keeps to BEFORE/AFTER; osflow-post names them from ss's process name
            "socket_owners_not_in_ps": [
                {"pid": p.pid, "ppid": p.ppid, "user": p.user, "comm": p.comm, "args": p.args} for p in during
            ],
            "files": ["capture.pcapng", "ss.txt", "ps.txt", "meta.json"],
            "versions": _versions(self.dumpcap),
            "user": _user_name(os.geteuid()),
            "host": socket.gethostname(),
        }
        cov: Optional[Coverage] = None
        try:
            cov = coverage(self.path("capture.pcapng"), [self.path("ss.txt")])
        except Exception as e:  # noqa: BLE001 - the recording is done; say why there is no number
            _say(f"warning: cannot compute the socket-owner coverage: {e}")
        if cov is not None:
            meta["coverage"] = {
                "owned": cov.owned,
                "total": cov.total,
                "percent": cov.percent,
                "without_owner": cov.missing,
            }
        self._write_meta(meta)
        if cov is not None:
            print(cov.line(), file=sys.stderr, flush=True)
            for m in cov.missing[:10]:
                _say(f"no owner for {m}")

        post_args = [
            "-r", self.path("capture.pcapng"), "--ss", self.path("ss.txt"), "--ps", self.path("ps.txt"),
            "-o", self.path("flow.md"),
        ]  # fmt: skip
        if args.render:
            from .cli import post

            rendered = post(post_args)
            if rendered == 0 or rendered == 4:
                _secure(self.path("flow.md"))
                _say(f"wrote {self.path('flow.md')}")
            else:
                _say(f"warning: osflow-post failed (exit status {rendered}); the recording is in {self.dir}/")
        else:
            _say("files in " + self.dir + "/; render them with: osflow-post " + " ".join(_shell_quote(a) for a in post_args))
        return status

    def _write_meta(self, meta: dict) -> None:
        with open(self.path("meta.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        for name in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json"):
            _secure(self.path(name))


def _secure(path: str) -> None:
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass


def _pids_in(ps_text: str) -> set[int]:
    from . import tables

    try:
        return {p.pid for p in tables.parse_ps(ps_text).processes}
    except tables.TableError:
        return set()


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)

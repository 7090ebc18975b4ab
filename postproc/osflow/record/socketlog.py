"""The socket-owner log (``ss.txt``): who owns the sockets on the captured ports, in ``ss -tnpH``'s
line format (:func:`ss_line`) under ``### <epoch> …`` lines, as :func:`osflow.tables.parse_ss` reads it.

:class:`SocketLog` does the looking (a full snapshot; polls that resolve only new sockets);
:mod:`osflow.record.watcher` decides when it looks.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from .kernel import (
    HELD_STATES,
    PROC,
    TCP_STATES,
    SockDiag,
    TcpRow,
    format_address,
    read_file,
    sock_key,
    tcp_rows_source,
)
from .owners import CONNECT, LISTEN, Event
from .procs import ProcInfo, all_pids, comm_of, proc_info, user_name

Owner = tuple  # (comm, pid, fd)


def _quote(comm: str) -> str:
    return comm.replace("\\", "\\\\").replace('"', '\\"')


def ss_line(
    state: str, recv_q: int, send_q: int, local: tuple[str, int], remote: tuple[str, int], owners: Iterable[Owner]
) -> str:
    """One socket as ``ss -tnpH`` prints it (see :mod:`osflow.record`'s doctest)."""
    listening = state == "LISTEN"
    users = ",".join(f'("{_quote(c)}",pid={p}' + (f",fd={fd})" if fd is not None else ")") for c, p, fd in owners)
    text = (
        f"{state:<10} {recv_q:<6} {send_q:<6} {format_address(*local)} "
        f"{format_address(remote[0], remote[1], any_port=listening)}"
    )
    return f"{text} users:({users})" if users else text


def row_line(row: TcpRow, owners: Iterable[Owner]) -> str:
    """A socket of the kernel's as :func:`ss_line` prints it."""
    local, remote = row.addresses()
    return ss_line(TCP_STATES.get(row.state, "UNKNOWN"), row.recv_q, row.send_q, local, remote, owners)


# --------------------------------------------------------------------------- the socket-owner log


def socket_fds(pid: int, proc: str = PROC) -> Iterator[tuple[int, int]]:
    """(inode, fd) of each socket process ``pid`` holds, as ``/proc/<pid>/fd`` says; OSError when that
    folder cannot be listed (the process is gone, or not ours to read)."""
    base = f"{proc}/{pid}/fd"
    for n in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{n}")
        except OSError:
            continue
        if target.startswith("socket:["):
            yield int(target[8:-1]), int(n)


def fd_of(pid: int, inode: int, proc: str = PROC) -> int | None:
    """The fd by which process ``pid`` holds socket ``inode``; None when it does not (or is gone)."""
    try:
        return next((fd for found, fd in socket_fds(pid, proc) if found == inode), None)
    except OSError:
        return None


def command_owner(inode: int, roots: Iterable[int], proc: str = PROC) -> Owner | None:
    """The process of COMMAND's tree (``roots`` and their descendants) holding socket ``inode``, as
    (comm, pid, fd); None when none does.  Reads /proc only and touches no log state."""
    todo = list(roots)
    done: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in done:
            continue
        done.add(pid)
        fd = fd_of(pid, inode, proc)
        if fd is not None:
            return comm_of(pid, proc), pid, fd
        todo += children_of(pid, proc)
    return None


#: earlier owners the SYN thread tries, of each kind, before it leaves a socket to the polls
SYN_CANDIDATES = 24


def syn_owner(row: TcpRow, roots: Iterable[int], log: SocketLog) -> Owner | None:
    """Who holds a socket that just sent a SYN: a process of COMMAND's tree (``roots``), else an
    earlier client of the same remote port, else an earlier socket owner of the socket's user, most
    recent first; None when none of them does (the polls go on looking).

    The SYN's own thread calls it at once, while the socket still exists, without the log's lock:
    it reads /proc, and takes copies of the log's dicts (one C call each, atomic under the GIL)."""
    proc = log.proc
    found = command_owner(row.inode, roots, proc) if roots else None
    if found is not None:
        return found
    tried: set[int] = set(roots)
    try:
        clients = tuple(log.client_pids.get(row.rport, ()))[::-1]
        owners = tuple(log.socket_pids)[::-1]
    except RuntimeError:  # changed while copied: leave it to the polls
        return None
    uids = log.pid_uid

    def uid(pid: int) -> int | None:
        known = uids.get(pid)
        if known is None:
            try:
                return os.stat(f"{proc}/{pid}").st_uid
            except OSError:
                return None
        return known

    same_user = [p for p in owners[: 4 * SYN_CANDIDATES] if uid(p) == row.uid]
    for pids in (clients, same_user):
        for pid in pids[:SYN_CANDIDATES]:
            if pid in tried:
                continue
            tried.add(pid)
            fd = fd_of(pid, row.inode, proc)
            if fd is not None:
                return comm_of(pid, proc), pid, fd
    return None


def children_of(pid: int, proc: str = PROC) -> list[int]:
    """The children of ``pid``, as every one of its threads' ``/proc/<pid>/task/<tid>/children`` says."""
    try:
        tasks = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for t in tasks:
        raw = read_file(f"{proc}/{pid}/task/{t}/children")
        if raw:
            out += [int(c) for c in raw.split()]
    return out


def _latest(pids: dict[int, None], pid: int) -> None:
    """``pid`` last in ``pids`` (an ordered set: the most recent last, as the hints are tried)."""
    pids.pop(pid, None)
    pids[pid] = None


class SocketLog:
    """Who owns the sockets on some ports, written as ``### <epoch>`` + ``ss -tnpH``-like blocks.

    :meth:`snapshot` looks at every process (all owners of every socket, as ``ss -tnp`` does);
    :meth:`poll` lists the TCP sockets (netlink sock_diag, else /proc/net/tcp) and resolves only
    those it has not seen yet, looking first where the owner most likely is (see :mod:`osflow.record`'s
    docstring).
    """

    #: a walk over every process happens at most this often (seconds), and once per socket
    FULL_WALK_EVERY = 0.05
    #: walks over every process for one socket (its fd may be installed just after a walk)
    FULL_WALKS_PER_SOCKET = 3
    #: polls that look for the owner of a socket before giving up
    MAX_ATTEMPTS = 20
    #: a poll does the housekeeping at most this often (seconds): a prune when due, the ring's hook
    HOUSEKEEPING_EVERY = 0.25
    #: the dicts forget the sockets and processes that are gone this often (seconds)
    PRUNE_EVERY = 5.0
    #: socket owners that ended kept for ``meta.json`` (the latest)
    MAX_GONE = 10000

    def __init__(self, out: IO[str], ports: Iterable[int], proc: str = PROC, rows=None) -> None:
        self.out = out
        self.ports = frozenset(ports)
        self.proc = proc
        self.rows = rows or tcp_rows_source(proc, self.ports)
        diag = getattr(self.rows, "__self__", None)
        netlink = isinstance(diag, SockDiag)
        self.source = "netlink sock_diag" if netlink else "/proc/net/tcp"
        #: the sockets a process may hold (no TIME-WAIT: a busy port has thousands, without owner)
        self.held_rows = functools.partial(diag.rows, HELD_STATES) if isinstance(diag, SockDiag) else self.rows
        self.owners: dict[int, tuple[Owner, ...]] = {}  # inode -> owners
        self.seen: dict[int, object] = {}  # inode -> 4-tuple key as logged
        self.port_pids: dict[int, dict[int, None]] = {}  # local port -> pids that held a socket on it
        self.client_pids: dict[int, dict[int, None]] = {}  # remote port -> pids that connected to it
        self.socket_pids: dict[int, None] = {}  # every pid that owned a logged socket, most recent last
        self.pid_uid: dict[int, int] = {}
        self.procs: dict[int, ProcInfo] = {}  # pid -> what it was when first seen owning a socket
        self.roots: set[int] = set()  # COMMAND's pid
        self.known_pids: set[int] = set(all_pids(proc))
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
        self.syn_senders = 0  # sockets gone before their SYN's lookup, logged with the sender the kernel saw
        self.kernel_owners = 0  # sockets logged from the kernel's connect and accept events (from_kernel)
        self._comms: dict[int, str] = {}  # pid -> its name, for the kernel's events from its other threads
        #: the log's own network namespace (``net:[…]``): the kernel's events of the others are left out
        self.netns = _readlink(f"{proc}/self/ns/net") if proc == PROC else None
        self._netns: dict[int, str] = {}  # thread id -> its network namespace, for the kernel's events
        self.other_netns = 0  # the kernel's events left out: their socket is in another network namespace
        self.attempts: dict[int, int] = {}  # inode -> polls that did not find its owner
        # housekeeping (:meth:`housekeeping`): the dicts above forget what is gone; a ring's hook
        self.on_housekeeping: Callable[[SocketLog], None] | None = None
        self.gone: deque[ProcInfo] = deque(maxlen=self.MAX_GONE)  # socket owners that ended, latest last
        self.pruned = 0  # entries the prunes dropped
        self.denied_gone = 0  # pids once in ``denied``, ended since
        self._next_housekeeping = 0.0
        self._next_prune = time.perf_counter() + self.PRUNE_EVERY

    def close(self) -> None:
        """Close the netlink socket the log lists sockets with (when it has one)."""
        diag = getattr(self.rows, "__self__", None)
        if isinstance(diag, SockDiag):
            diag.close()

    # -- resolving inodes

    def _walk(self, pid: int) -> dict[int, int]:
        """The socket inodes of one process: inode -> fd."""
        self.pid_walks += 1
        try:
            return dict(socket_fds(pid, self.proc))
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                self.denied.add(pid)
            return {}

    def _descendants(self) -> list[int]:
        out: list[int] = []
        todo = list(self.roots)
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += self._children((pid,))
        return out

    def _children(self, pids: Iterable[int]) -> list[int]:
        return [c for pid in pids for c in children_of(pid, self.proc)]

    def _new_pids(self) -> list[int]:
        now = set(all_pids(self.proc))
        new = sorted(now - self.known_pids, reverse=True)
        self.known_pids = now
        return new

    def _uid(self, pid: int) -> int | None:
        uid = self.pid_uid.get(pid)
        if uid is None:
            try:
                uid = self.pid_uid[pid] = os.stat(f"{self.proc}/{pid}").st_uid
            except OSError:
                return None
        return uid

    def _note(self, inode: int, owners: tuple[Owner, ...]) -> None:
        self.owners[inode] = owners
        self._note_procs(owners)

    def _note_procs(self, owners: Iterable[Owner]) -> None:
        """Keep what /proc says of each owner's process (for meta.json), while it still can."""
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
                comm = comm_of(pid, self.proc)
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
                look(all_pids(self.proc))
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
            _latest(self.socket_pids, pid)
            if row.state == 10 or row.lport in self.ports:
                self.port_pids.setdefault(row.lport, {})[pid] = None
            elif row.rport in self.ports:
                _latest(self.client_pids.setdefault(row.rport, {}), pid)

    def snapshot(self, label: str) -> None:
        """Every socket on the ports, with every owner (a walk over all processes)."""
        when = time.time()
        holders: dict[int, list[Owner]] = {}
        for pid in all_pids(self.proc):
            found = self._walk(pid)
            if found:
                comm = comm_of(pid, self.proc)
                for inode, fd in found.items():
                    holders.setdefault(inode, []).append((comm, pid, fd))
        self.full_walks += 1
        self.known_pids = set(all_pids(self.proc))
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
            lines.append(row_line(row, owners))
        for inode, held in holders.items():  # sockets not on the ports (yet): unbound, other ports
            self.owners.setdefault(inode, tuple(held))
        self._block(f"{label}: every socket on the captured ports (/proc/*/fd walk)", lines, when)

    def poll(self) -> None:
        """Log the sockets on the ports that appeared (or changed address) since the last poll."""
        started = time.perf_counter()
        when = time.time()
        new: list[TcpRow] = []
        seen = self.seen
        ports = self.ports
        for row in self.held_rows():
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
        if started >= self._next_housekeeping:
            self.housekeeping(started)

    def connecting(self, row: TcpRow, owner: Owner | None = None) -> None:
        """A socket just seen sending a SYN (found by an exact lookup): log it now, with ``owner``
        when the SYN's thread found it already (:func:`syn_owner`)."""
        if row.inode and self.seen.get(row.inode) != row.key:
            self.syn_lookups += 1
            if owner is not None and row.inode not in self.owners:
                self._note(row.inode, (owner,))
            self._log_new([row], time.time(), "SYN, netlink lookup")

    def sent_syn(self, family: int, src: bytes, sport: int, dst: bytes, dport: int, owner: Owner) -> None:
        """A socket whose SYN the kernel saw ``owner`` send (:mod:`osflow.record.ebpf`; its fd: None),
        gone before it could be looked up: logged as ``SYN-SENT`` from the SYN's 4-tuple (unless a poll
        logged it while it lived)."""
        if sock_key(src, sport, dst, dport) in set(self.seen.values()):  # rare: only sockets gone before
            return  # the SYN's lookup come here
        local = (socket.inet_ntop(family, src), sport)
        remote = (socket.inet_ntop(family, dst), dport)
        self.syn_senders += 1
        self._note_procs((owner,))
        if dport in self.ports:
            _latest(self.client_pids.setdefault(dport, {}), owner[1])
        self._block("SYN, sender from the kernel (gone before its lookup)", [ss_line("SYN-SENT", 0, 0, local, remote,
                                                                                      [owner])], time.time())

    def from_kernel(self, events: Iterable[Event]) -> None:
        """Sockets the kernel saw their process connect, accept or listen on (:mod:`osflow.record.owners`):
        logged with that owner at once, no look into /proc (one block per burst, at its first event's time)."""
        lines: list[str] = []
        first = last = 0.0
        for ev in events:
            if self.seen.get(ev.inode) == ev.key:
                continue
            if self._elsewhere(ev):
                self.other_netns += 1
                continue
            if lines and ev.when - last > self.KERNEL_BLOCK_GAP:
                self._block(f"kernel: connect, accept ({len(lines)})", lines, first)
                lines = []
            if not lines:
                first = ev.when
            last = ev.when
            owner = (self._comm(ev), ev.pid, ev.fd)
            self.seen[ev.inode] = ev.key
            self.attempts.pop(ev.inode, None)
            self.unresolved.pop(ev.inode, None)
            self._note(ev.inode, (owner,))
            if ev.pid not in self.procs and ev.ppid and ev.uid >= 0:  # gone before a look: the kernel's word
                self.procs[ev.pid] = ProcInfo(ev.pid, ev.ppid, user_name(ev.uid), owner[0], owner[0])
            _latest(self.socket_pids, ev.pid)
            lport, rport = ev.local[1], ev.remote[1]
            if ev.kind != CONNECT or lport in self.ports:
                self.port_pids.setdefault(lport, {})[ev.pid] = None
            elif rport in self.ports:
                _latest(self.client_pids.setdefault(rport, {}), ev.pid)
            state = "LISTEN" if ev.kind == LISTEN else "ESTAB" if ev.established else "SYN-SENT"
            lines.append(ss_line(state, 0, 0, ev.local, ev.remote, [owner]))
            self.kernel_owners += 1
        if lines:
            self._block(f"kernel: connect, accept ({len(lines)})", lines, first)

    #: the kernel's events further apart than this (seconds) go to blocks of their own (their own time)
    KERNEL_BLOCK_GAP = 0.005

    def _elsewhere(self, ev: Event) -> bool:
        """Whether the kernel's event is of a socket in another network namespace than the log's
        (the syscall tracepoints see the whole machine: a compute node in a namespace of the same
        machine is another host, and its 127.0.0.1 is not ours).  Told by the socket's own namespace
        the kernel sent (:attr:`Event.netns`), else by the thread's ``/proc/PID/task/TID/ns/net``; a
        thread gone before that look cannot be told: kept."""
        if self.netns is None:
            return False
        if ev.netns:
            return f"net:[{ev.netns}]" != self.netns
        ns = self._netns.get(ev.tid)
        if ns is None:
            ns = _readlink(f"{self.proc}/{ev.pid}/task/{ev.tid}/ns/net") or _readlink(f"{self.proc}/{ev.pid}/ns/net")
            if ns is None:
                return False
            self._netns[ev.tid] = ns
        return ns != self.netns

    def _comm(self, ev: Event) -> str:
        """The process's name as ss shows it: the event's (its thread's) when the main thread
        connected, else /proc's (once per process), else the thread's."""
        if ev.tid == ev.pid:
            return ev.comm
        comm = self._comms.get(ev.pid)
        if comm is None:
            comm = comm_of(ev.pid, self.proc)
            comm = self._comms[ev.pid] = ev.comm if comm == "?" else comm
        return comm

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
            lines.append(row_line(row, owners))
        if lines:
            self._block(f"new sockets ({source}, {len(lines)})", lines, when)

    # -- housekeeping: hours of recording in flat memory, the ring's socket log switched

    def housekeeping_due(self) -> bool:
        """Whether :meth:`housekeeping` is due (a poll does it itself; a watcher that seldom polls asks)."""
        return time.perf_counter() >= self._next_housekeeping

    def housekeeping(self, now: float | None = None) -> None:
        """What a poll does every :attr:`HOUSEKEEPING_EVERY` seconds (``now``: ``time.perf_counter()``):
        :meth:`prune` when due, then :attr:`on_housekeeping` (a ring's check for a new capture file)."""
        now = time.perf_counter() if now is None else now
        self._next_housekeeping = now + self.HOUSEKEEPING_EVERY
        if now >= self._next_prune:
            self._next_prune = now + self.PRUNE_EVERY
            self.prune()
        if self.on_housekeeping is not None:
            self.on_housekeeping(self)

    def prune(self) -> int:
        """Forget the sockets that are gone (no longer in the kernel's list) and the processes that
        ended, so the log's memory stays flat however long it runs; the ended socket owners go to
        :attr:`gone` (the latest :attr:`MAX_GONE`, for ``meta.json``).  Returns the entries dropped.

        A socket forgotten too early (not listed yet) is only looked up again when it is."""
        alive = {row.inode for row in self.held_rows() if row.inode}
        pids = set(all_pids(self.proc))
        dropped = 0
        for by_inode in (self.owners, self.seen, self.attempts, self.unresolved):
            dropped += _drop(by_inode, alive)
        for by_pid in (self.socket_pids, self.pid_uid, self._comms):
            dropped += _drop(by_pid, pids)
        self._netns.clear()  # by thread id: looked up again when a thread connects
        for by_port in (self.port_pids, self.client_pids):
            for port in list(by_port):
                dropped += _drop(by_port[port], pids)
                if not by_port[port]:
                    del by_port[port]
        ended = [p for p in self.procs if p not in pids]
        for pid in ended:
            self.gone.append(self.procs.pop(pid))
        denied = self.denied - pids
        self.denied -= denied
        self.denied_gone += len(denied)
        dropped += len(ended) + len(denied)
        self.pruned += dropped
        return dropped

    def owners_seen(self) -> list[ProcInfo]:
        """Every process seen owning a socket: those that ended (the latest :attr:`MAX_GONE`), then the others."""
        return [*self.gone, *self.procs.values()]

    def unreadable(self) -> int:
        """How many processes' sockets could not be read (not root?), ended ones included."""
        return len(self.denied) + self.denied_gone

    def carry_over(self, label: str) -> None:
        """Log every socket on the ports whose owner the log knows, as one block: the first block of
        a ring's next socket-log file, so a connection still open keeps its owner when the file that
        first logged it is removed with its capture file."""
        when = time.time()
        ports, owners = self.ports, self.owners
        lines = [row_line(row, owners[row.inode]) for row in self.held_rows()
                 if (row.lport in ports or row.rport in ports) and row.inode in owners]
        self._block(label, lines, when)

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
            "syn_senders_gone": self.syn_senders,
            "kernel_owners": self.kernel_owners,
            "kernel_events_other_netns": self.other_netns,
            "unreadable_pids": self.unreadable(),
            "pruned": self.pruned,
        }


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _drop(table: dict, keep: set) -> int:
    """Remove the keys of ``table`` not in ``keep`` (in place: the SYN thread reads the dicts without
    the lock); how many went."""
    gone = [k for k in table if k not in keep]
    for k in gone:
        del table[k]
    return len(gone)

"""When the socket log looks: :class:`SocketWatcher` runs a :class:`~osflow.record.socketlog.SocketLog`
in a thread (a snapshot, polls, a snapshot at the end).  With the kernel's owners
(:class:`~osflow.record.owners.KernelOwners`) it reads their events every ``drain`` seconds and
polls only every ``safety`` seconds, for what no event named.  Else it polls in bursts after each SYN that a
:class:`SynTrigger` sees (as root), else every ``--interval``.  With the trigger, a second thread
takes the SYNs as they come: it looks each connecting socket up (netlink, an exact lookup) and its
owner in COMMAND's tree at once, while a poll may still be running."""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable

from .ebpf import SynSenders
from .kernel import PORT_PAIR, SockDiag
from .owners import KernelOwners
from .procs import comm_of
from .socketlog import Owner, SocketLog, fd_of, syn_owner

#: classic BPF for a SOCK_DGRAM packet socket (the data starts at the IP header): accept the first 128
#: bytes of an unfragmented IPv4 or IPv6 TCP segment with SYN set (SYN, SYN-ACK), drop everything else,
#: so the SYN thread is not woken by every packet of a busy RabbitMQ
SYN_FILTER = (
    (0x30, 0, 0, 0),  # 0  ldb [0]               version, IHL
    (0x74, 0, 0, 4),  # 1  rsh #4
    (0x15, 0, 7, 4),  # 2  jeq #4 ? 3 : 10        IPv4
    (0x30, 0, 0, 9),  # 3  ldb [9]               protocol
    (0x15, 0, 11, 6),  # 4  jeq #6 ? 5 : drop     TCP
    (0x28, 0, 0, 6),  # 5  ldh [6]               fragment offset
    (0x45, 9, 0, 0x1FFF),  # 6  jset ? drop : 7
    (0xB1, 0, 0, 0),  # 7  ldxb 4*([0]&0xf)      IP header length
    (0x50, 0, 0, 13),  # 8  ldb [x+13]           TCP flags
    (0x45, 5, 6, 0x02),  # 9  jset SYN ? accept : drop
    (0x15, 0, 5, 6),  # 10 jeq #6 ? 11 : drop    IPv6
    (0x30, 0, 0, 6),  # 11 ldb [6]               next header
    (0x15, 0, 3, 6),  # 12 jeq #6 ? 13 : drop    TCP
    (0x30, 0, 0, 53),  # 13 ldb [40+13]          TCP flags
    (0x45, 0, 1, 0x02),  # 14 jset SYN ? accept : drop
    (0x06, 0, 0, 128),  # 15 accept: 128 bytes
    (0x06, 0, 0, 0),  # 16 drop
)
SO_ATTACH_FILTER = 26


def attach_filter(sock: socket.socket, program=SYN_FILTER) -> None:
    """Attach a classic BPF ``program`` (code, jt, jf, k) to ``sock`` (SO_ATTACH_FILTER)."""
    import ctypes

    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class SynTrigger:
    """Wakes the socket log when a TCP connection to or from a captured port starts.

    A packet socket (AF_PACKET, root only) on the interface sees every SYN as it happens; the log
    then polls every ``interval`` for a short burst (the client socket exists at once, the server
    end once accepted).  Without it (not root, not Linux) the log polls at that pace all the time.
    """

    def __init__(self, interface: str, ports: Iterable[int]) -> None:
        self.ports = frozenset(ports)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(3))
        #: who sent each SYN on loopback, from the kernel (:mod:`~osflow.record.ebpf`); None: the classic filter
        self.senders: SynSenders | None = None
        #: why the kernel's SYN senders are not used (for meta.json), or None
        self.no_senders: str | None = None
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            if interface != "any":
                self.sock.bind((interface, 3))
            try:
                self.senders = SynSenders()
                self.senders.attach(self.sock)
            except OSError as e:  # not this kernel, not root: the classic filter, owners looked up in /proc
                self.no_senders = str(e)
                if self.senders is not None:
                    self.senders.close()
                    self.senders = None
                try:
                    attach_filter(self.sock)
                except OSError:  # no filter: drain() sorts every packet itself
                    pass
            self.sock.setblocking(False)
        except OSError:
            self.close()
            raise
        self.syns = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        if self.senders is not None:
            self.senders.close()

    def sender(self, syn: tuple) -> Owner | None:
        """The owner of a connecting socket (a :meth:`drain` tuple) as the kernel saw it send its SYN:
        (comm, pid, None); None when not noted (not loopback, the classic filter)."""
        if self.senders is None:
            return None
        family, src, sport, dst, dport = syn
        found = self.senders.sender(src, sport, dst, dport)
        if found is None:
            return None
        comm, pid = found
        named = comm_of(pid)  # ss's comm is the process's (the kernel's is the thread's); "?" once it is gone
        return named if named != "?" else comm, pid, None

    def drain(self) -> list[tuple] | None:
        """Read what arrived: None when no SYN on a captured port was among it, else the connection
        attempts (SYN without ACK) as (family, src, sport, dst, dport)."""
        hit: list[tuple] | None = None
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
            sport, dport = PORT_PAIR.unpack_from(b, off)
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

    With :class:`~osflow.record.owners.KernelOwners` (``kernel``), the kernel's events are read every
    ``drain`` seconds and a poll runs every ``safety`` seconds (for sockets no event named: a
    listener opened meanwhile, an event lost); else, with a :class:`SynTrigger`, polls come in bursts
    every ``interval`` seconds for ``burst`` seconds after each SYN, and every ``idle`` seconds
    otherwise; without either, every ``interval``.
    """

    #: how often the kernel's events are read (seconds): their ring buffer holds thousands; after a
    #: read of :attr:`BUSY` events or more, again after :attr:`DRAIN_BUSY`
    DRAIN = 0.1
    DRAIN_BUSY = 0.01
    BUSY = 200
    #: how often a poll looks for sockets the kernel's events did not name (seconds); at once when
    #: the ring buffer was full (events lost)
    SAFETY = 5.0

    def __init__(
        self, log: SocketLog, interval: float, trigger: SynTrigger | None = None, idle: float = 0.01,
        burst: float = 0.05, kernel: KernelOwners | None = None,
    ) -> None:
        super().__init__(name="osflow-socket-log", daemon=True)
        self.log = log
        self.interval = interval
        self.trigger = trigger
        self.kernel = kernel
        self.idle = max(idle, interval)
        self.burst = burst
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._woken = threading.Event()  # the SYN thread saw a connection start: poll now
        self._syns_ready = threading.Event()  # the SYN thread is in its loop
        self._burst_until = 0.0
        self._roots: tuple[int, ...] = ()  # COMMAND's pid(s), for the SYN thread: read without the lock
        self.error: BaseException | None = None

    def niceness(self) -> int:
        """The watcher thread's nice value.  Polling, it must run ahead of the services it watches
        (as root: -10), or short sockets are gone before it looks.  With the kernel's events there is
        no hurry: the kernel named each owner when it happened and its ring buffer keeps the events
        for seconds, so the watcher yields to the services (+10).  Ahead of them, its bursts of
        event handling every 100 ms took the CPU from the very connections it records: at 1,000
        connections a second the recorded connections' mean time went from 1.03x to 1.25x the
        unrecorded one, from the slowest few hundred of every 10,000."""
        return 10 if self.kernel is not None else -10

    def add_root(self, pid: int) -> None:
        with self._lock:
            self.log.roots.add(pid)
            self._roots = tuple(self.log.roots)

    def _poll(self) -> None:
        with self._lock:
            self.log.poll()

    def run(self) -> None:
        try:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness())
            except (OSError, AttributeError):
                pass
            self.log.snapshot("start")
            if self.kernel is not None:
                self._from_kernel()
            elif self.trigger is None:
                self.ready.set()
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
                # the SYNs in a thread of their own: a poll on a busy machine can take longer than a
                # short connection lives, and the SYN's socket must be looked up while it exists
                syns = threading.Thread(target=self._syns, name="osflow-syn", daemon=True)
                switch = sys.getswitchinterval()
                sys.setswitchinterval(0.0005)  # a SYN waits at most this long for a poll to let go of Python
                syns.start()
                self._syns_ready.wait(10)  # COMMAND starts once the SYN thread listens, not before
                self.ready.set()
                last = 0.0
                try:
                    while not self._halt.is_set():
                        now = time.monotonic()
                        pace = self.interval if now < self._burst_until else self.idle
                        woken = self._woken.wait(max(0.0, last + pace - now))
                        if woken:
                            self._woken.clear()
                        if woken or time.monotonic() >= last + pace:
                            self._poll()
                            last = time.monotonic()
                finally:
                    self._halt.set()
                    syns.join(10)
                    sys.setswitchinterval(switch)
            self.log.poll()
            self.log.snapshot("end")
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
        finally:
            if self.trigger is not None:
                self.trigger.close()
            if self.kernel is not None:
                self.kernel.close()
            self.ready.set()

    def _drain(self) -> int:
        """Log the kernel's events; how many there were."""
        assert self.kernel is not None  # only with the kernel's owners
        events = self.kernel.read()
        if events:
            with self._lock:
                self.log.from_kernel(events)
        return len(events)

    def _from_kernel(self) -> None:
        """The kernel's events every :attr:`DRAIN` seconds, a poll every :attr:`SAFETY` seconds
        (after the events, so it looks only for what they did not name), housekeeping when due."""
        kernel = self.kernel
        assert kernel is not None  # only with the kernel's owners
        self.ready.set()
        next_poll = time.monotonic() + self.SAFETY
        lost = 0
        pace = self.DRAIN
        while not self._halt.wait(pace):
            pace = self.DRAIN_BUSY if self._drain() >= self.BUSY else self.DRAIN
            if kernel.lost != lost:
                lost = kernel.lost
                next_poll = 0.0
            if time.monotonic() >= next_poll:
                self._poll()
                next_poll = time.monotonic() + self.SAFETY
            elif self.log.housekeeping_due():
                with self._lock:
                    self.log.housekeeping()
        self._drain()

    def _syns(self) -> None:
        """The SYN thread: each connection attempt on a captured port is looked up at once (netlink,
        an exact lookup), its owner sought in COMMAND's tree at once, then logged; the polls go on in
        bursts meanwhile."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        except (OSError, AttributeError):
            pass
        trigger = self.trigger
        assert trigger is not None  # this thread runs only with the trigger
        diag: SockDiag | None = None
        try:
            diag = SockDiag()
        except OSError:
            pass
        try:
            self._syns_ready.set()
            while not self._halt.is_set():
                ready, _, _ = select.select([trigger], [], [], 0.05)
                found = trigger.drain() if ready else None
                if found is None:
                    continue
                self._burst_until = time.monotonic() + self.burst
                if diag is None:  # no exact lookups: the burst of polls only
                    self._woken.set()
                    continue
                for syn in dict.fromkeys(found):  # loopback shows each packet twice
                    sender = trigger.sender(syn)  # known for certain, even if the socket is gone already
                    family, src, sport, dst, dport = syn
                    row = diag.lookup(family, src, sport, dst, dport)
                    if row is None or not row.inode:
                        if sender is not None:
                            with self._lock:
                                self.log.sent_syn(family, src, sport, dst, dport, sender)
                        continue
                    comm, pid, _ = sender if sender is not None else (None, None, None)
                    fd = fd_of(pid, row.inode) if pid is not None else None
                    owner: Owner | None
                    if fd is not None:  # the sender holds it: confirmed
                        owner = comm, pid, fd
                    else:
                        # never wait for the lock before the owner is found: a poll holding it may walk every
                        # process for longer than the connection lives; the sender, if the kernel saw one,
                        # has closed it already (its fd unknown)
                        owner = syn_owner(row, self._roots, self.log) or sender
                    with self._lock:
                        self.log.connecting(row, owner)
                self._woken.set()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = self.error or e
        finally:
            if diag is not None:
                diag.close()

    def stop(self, timeout: float = 30) -> None:
        self._halt.set()
        if self.ident is not None:  # a watcher that never started has nothing to join
            self.join(timeout)

"""When the socket log looks: :class:`SocketWatcher` runs a :class:`~osflow.record.socketlog.SocketLog`
in a thread (a snapshot, polls, a snapshot at the end), in bursts after each SYN that a
:class:`SynTrigger` sees (as root), else every ``--interval``.  With the trigger, a second thread
takes the SYNs as they come: it looks each connecting socket up (netlink, an exact lookup) and its
owner in COMMAND's tree at once, while a poll may still be running."""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from typing import Iterable, Optional

from .kernel import PORT_PAIR, SockDiag
from .socketlog import SocketLog, command_owner


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
        self._woken = threading.Event()  # the SYN thread saw a connection start: poll now
        self._burst_until = 0.0
        self.error: Optional[BaseException] = None

    def add_root(self, pid: int) -> None:
        with self._lock:
            self.log.roots.add(pid)

    def _poll(self) -> None:
        with self._lock:
            self.log.poll()

    def run(self) -> None:
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
                # the SYNs in a thread of their own: a poll on a busy machine can take longer than a
                # short connection lives, and the SYN's socket must be looked up while it exists
                syns = threading.Thread(target=self._syns, name="osflow-syn", daemon=True)
                switch = sys.getswitchinterval()
                sys.setswitchinterval(0.0005)  # a SYN waits at most this long for a poll to let go of Python
                syns.start()
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
            self.ready.set()

    def _syns(self) -> None:
        """The SYN thread: each connection attempt on a captured port is looked up at once (netlink,
        an exact lookup), its owner sought in COMMAND's tree at once, then logged; the polls go on in
        bursts meanwhile."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        except (OSError, AttributeError):
            pass
        diag: Optional[SockDiag] = None
        try:
            diag = SockDiag()
        except OSError:
            pass
        try:
            while not self._halt.is_set():
                ready, _, _ = select.select([self.trigger], [], [], 0.05)
                found = self.trigger.drain() if ready else None
                if found is None:
                    continue
                self._burst_until = time.monotonic() + self.burst
                for syn in dict.fromkeys(found) if diag is not None else ():  # loopback shows each packet twice
                    row = diag.lookup(*syn)
                    if row is None or not row.inode:
                        continue
                    with self._lock:
                        roots = list(self.log.roots)
                    owner = command_owner(row.inode, roots, self.log.proc) if roots else None
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

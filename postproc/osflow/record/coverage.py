"""Coverage: the share of the capture's local TCP connection ends whose owner the socket log names
(``coverage: 100% (6/6 connection ends)``, and ``meta.json``'s ``coverage``)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .kernel import PROC, read_file

if TYPE_CHECKING:
    pass


@dataclass
class Coverage:
    """How many local TCP connection ends of a capture the socket log names an owner for."""

    owned: int
    total: int
    missing: list[str] = field(default_factory=list)  # "local -> remote (stream n)"
    #: of ``owned``, server ends whose own socket no snapshot holds, owned through their listening
    #: socket's one owner or process group (a short connection behind Apache or uwsgi)
    by_listener: int = 0

    @property
    def percent(self) -> float | None:
        return 100.0 * self.owned / self.total if self.total else None

    def line(self) -> str:
        """``coverage: <percent>% (<owned>/<total> connection ends)``; 99.96% is never shown as 100%.

        >>> Coverage(12, 12).line(), Coverage(2, 3).line()
        ('coverage: 100% (12/12 connection ends)', 'coverage: 66.7% (2/3 connection ends)')
        >>> Coverage(2999, 3000).line(), Coverage(0, 0).line()
        ('coverage: 99.9% (2999/3000 connection ends)', 'coverage: n/a (0/0 connection ends)')
        >>> Coverage(24, 24, by_listener=3).line()
        'coverage: 100% (24/24 connection ends, 3 of them through their listening socket)'
        """
        if not self.total:
            return "coverage: n/a (0/0 connection ends)"
        text = f"{self.percent:.1f}"
        if self.owned < self.total and text == "100.0":
            text = "99.9"
        if text.endswith(".0"):
            text = text[:-2]
        how = f", {self.by_listener} of them through their listening socket" if self.by_listener else ""
        return f"coverage: {text}% ({self.owned}/{self.total} connection ends{how})"


def local_hosts() -> set[str]:
    """This machine's addresses (from /proc/net/fib_trie and /proc/net/if_inet6)."""
    hosts = {"127.0.0.1", "::1"}
    raw = read_file(f"{PROC}/net/fib_trie")
    if raw:
        last = None
        for line in raw.decode("ascii", "replace").splitlines():
            s = line.strip()
            if s.startswith("|--"):
                last = s[3:].strip()
            elif "/32 host LOCAL" in s and last:
                hosts.add(last)
    raw = read_file(f"{PROC}/net/if_inet6")
    if raw:
        for line in raw.decode("ascii", "replace").splitlines():
            h = line.split()[0] if line.split() else ""
            if len(h) == 32:
                hosts.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(h)))
    return hosts


def _is_local(host: str, hosts: set[str]) -> bool:
    return host in hosts or host.startswith("127.") or host.startswith("::ffff:127.")


def coverage(
    capture: str, ss_files: Sequence[str], hosts: set[str] | None = None, ps_files: Sequence[str] = ()
) -> Coverage:
    """The share of local TCP connection ends in ``capture`` whose owner the socket log names.

    Every TCP connection of the capture (read as ``osflow-post -r`` reads it, tshark's fields) has
    two ends; an end on this machine counts, and is owned when the socket tables give its 4-tuple
    a process, or, for the end that accepted it (its port is listened on), when the listening
    socket has one owner or one process group (``ps_files`` give the parents), as osflow-post
    attributes it.
    """
    from ..pipeline import Tables
    from ..tshark import Tshark

    hosts = local_hosts() if hosts is None else hosts
    tables = Tables.load(ss_files, ps_files)
    processes, sockets = tables.processes, tables.sockets
    streams: dict[int, tuple] = {}
    runner = Tshark(capture)
    with runner as stream:
        for p in runner.reader(stream):
            if p.stream not in streams:
                server = None
                if sockets is not None:
                    listened = [e for e in (p.src, p.dst) if sockets.listeners(e.port)]
                    server = listened[0] if len(listened) == 1 else None
                streams[p.stream] = (p.src, p.dst, p.time, server)
    if runner.problem is not None and not streams:
        raise runner.problem
    owned = total = by_listener = 0
    missing = []
    for n, (a, b, when, server) in sorted(streams.items()):
        for local, remote in ((a, b), (b, a)):
            if not _is_local(local.host, hosts):
                continue
            total += 1
            entry = sockets.owner(local, remote, when) if sockets is not None else None
            if entry is not None and entry.users:
                owned += 1
            elif sockets is not None and local == server and sockets.listening_owner(local, processes) is not None:
                owned += 1
                by_listener += 1
            else:
                missing.append(f"{local} -> {remote} (stream {n})")
    return Coverage(owned, total, missing, by_listener)

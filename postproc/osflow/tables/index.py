"""The index the join consults: the socket entries and processes of every table file given,
looked up by a connection's 4-tuple and time, by listening port, by pid."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from ..addresses import canonical_address
from ..model import Address, Process, SocketEntry, SocketUser

_WILDCARDS = frozenset(("*", "::", "[::]"))
_WILDCARDS_V4 = frozenset(("0.0.0.0",))


class SocketTable:
    """The socket entries of many ss files, looked up by 4-tuple or by listening port."""

    def __init__(self, entries: Iterable[SocketEntry]) -> None:
        self._entries: tuple[SocketEntry, ...] = tuple(entries)
        self._by_pair: dict[tuple[Address, Address], list[SocketEntry]] = {}
        self._listeners: dict[int, list[SocketEntry]] = {}
        seen: set[tuple[Address, tuple[SocketUser, ...]]] = set()
        for e in self._entries:
            local = canonical_address(e.sockname)
            if e.peername is not None:
                self._by_pair.setdefault((local, canonical_address(e.peername)), []).append(e)
            elif e.state == "LISTEN":
                key = (local, e.users)
                if key not in seen:  # the same listener in every snapshot: keep the first
                    seen.add(key)
                    self._listeners.setdefault(local.port, []).append(e)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> tuple[SocketEntry, ...]:
        return self._entries

    def local_hosts(self) -> Counter[str]:
        """How many entries of these tables have a socket bound to each address (wildcards left out)."""
        found = Counter(canonical_address(e.sockname).host for e in self._entries)
        for w in _WILDCARDS | _WILDCARDS_V4:
            found.pop(w, None)
        return found

    def owner(self, local: Address, remote: Address, time: float | None = None) -> SocketEntry | None:
        """The entry of the socket ``local`` -> ``remote`` (or None).

        When the 4-tuple is in several snapshots, an entry naming its users
        beats one without (TIME-WAIT, orphaned FIN-WAIT-2, not yet accepted),
        then the snapshot nearest to ``time`` wins (an entry without time, or a
        query without time, is as near as can be); ties go to the earliest entry.
        """
        candidates = self._by_pair.get((canonical_address(local), canonical_address(remote)))
        if not candidates:
            return None
        best: SocketEntry | None = None
        best_key: tuple[int, float] = (2, 0.0)
        for e in candidates:
            distance = 0.0 if (time is None or e.time is None) else abs(e.time - time)
            key = (0 if e.users else 1, distance)
            if key < best_key:
                best, best_key = e, key
        return best

    def listeners(self, port: int) -> tuple[SocketEntry, ...]:
        """The LISTEN entries on ``port``, any host (``*`` included), each listener once."""
        return tuple(self._listeners.get(port, ()))

    def listening_owner(self, local: Address, processes: ProcessTable | None = None
                        ) -> tuple[SocketEntry, SocketUser, int] | None:
        """Who accepted a connection to ``local`` when its own socket is in no snapshot (a short
        connection behind Apache or uwsgi, accepted and closed between two looks):
        ``(listener, owner, processes)`` when the listening socket on ``local`` (its host or a
        wildcard) has one owner, or owners that are one process group — a parent and the
        workers it forked, as the process table's parent pids say, or, without a process
        table, processes of one program.  ``owner`` is the group's parent; None when the
        listener is unknown, has no owner, or several unrelated processes hold it.
        """
        local = canonical_address(local)
        found: list[tuple[SocketEntry, SocketUser]] = []
        for e in self._listeners.get(local.port, ()):
            host = e.sockname.host
            if host == local.host or host in _WILDCARDS or (host in _WILDCARDS_V4 and ":" not in local.host):
                found += [(e, u) for u in e.users]
        if not found:
            return None
        pids = {u.pid: (e, u) for e, u in found}
        roots = set()
        for pid in pids:
            p, seen = pid, 0
            # climb while the parent also holds the socket: a worker's parent is its master
            while processes is not None and seen < 64:
                proc = processes.get(p)
                if proc is None or proc.ppid not in pids:
                    break
                p, seen = proc.ppid, seen + 1
            roots.add(p)
        # no parent pids to tell (ps aux, or no ps): one program's processes are taken for one group
        if len(roots) > 1 and len({pids[r][1].comm for r in roots}) > 1:
            return None
        e, u = pids[min(roots)]
        return e, u, len(pids)


class ProcessTable:
    """The processes of many ps files, by pid; ``len`` counts distinct pids."""

    def __init__(self, processes: Iterable[Process]) -> None:
        self._by_pid: dict[int, Process] = {}
        for p in processes:
            known = self._by_pid.get(p.pid)
            if known is None or (len(p.args), p.ppid is not None) > (len(known.args), known.ppid is not None):
                if known is not None and p.container is None and known.container is not None:
                    p = replace(p, container=known.container)  # a snapshot without the column says nothing
                self._by_pid[p.pid] = p
            elif known.container is None and p.container is not None:
                self._by_pid[p.pid] = replace(known, container=p.container)

    def __len__(self) -> int:
        return len(self._by_pid)

    def all(self) -> tuple[Process, ...]:
        """Every process, once (its snapshot :meth:`get` answers with)."""
        return tuple(self._by_pid.values())

    def parents(self) -> dict[int, int | None]:
        """pid -> parent pid (None where the table does not say, as in ``ps aux``)."""
        return {pid: p.ppid for pid, p in self._by_pid.items()}

    def get(self, pid: int) -> Process | None:
        """The process ``pid``, or None.

        Of several snapshots of it, the one with the longest command line wins,
        then one that knows the parent pid, then the first.
        """
        return self._by_pid.get(pid)

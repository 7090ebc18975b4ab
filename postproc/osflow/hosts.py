"""Merge stage: several hosts' recordings -> one stream of packets, between source and decode.

``osflow-post -r DIR`` reads a folder ``osflow record`` wrote (:func:`recording`: its capture
or ring files in order, ``ss``, ``ps``, ``meta.json``); ``-r`` repeated reads one folder per
host.  :class:`Merged` is the reader the pipeline is given then: each host's packets come from
its own tshark (a host's ring files one after another), and the hosts' streams are merged by
corrected time (:func:`heapq.merge`), so memory holds a packet per host, not the captures:

* **clocks** — the offset of every host's clock after the first is worked out from the segments
  both captured, read ahead to :data:`PRIME_SECONDS` after the latest start (:func:`align`): for θ = clock(B)
  − clock(A), a segment A → B bounds θ from above (θ ≤ tB − tA), a segment B → A from below; the
  offset is the middle of the interval, ± half its width.  ``--clock-offset HOST=SECONDS`` gives
  it instead; with no shared segment it is taken for 0 (a warning);
* **the same segment twice** — a segment captured on both hosts (or twice on one, as a capture
  on ``any`` sees it on a bridge and its port) is one: the first copy is kept, the others
  dropped (same connection, direction, sequence number, length and flags, within
  :data:`DUPLICATE_WINDOW` seconds);
* **where an end is** — with several hosts every address is placed on a host
  (:attr:`osflow.model.Address.node`): a loopback address on the host that captured it (127.0.0.1
  on compute1 is not 127.0.0.1 on the controller), any other on the host whose socket table or
  ``meta.json`` lists it, else the host the shared segments say sent from it, else the one host
  that saw it; connections get one id across the captures, frames one number in merged order.
"""

from __future__ import annotations

import heapq
import ipaddress
import json
import math
import os
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from .errors import InputError, PartialInput
from .model import Address, Packet

__all__ = ["DUPLICATE_WINDOW", "PRIME_SECONDS", "Merged", "Offset", "Recording", "align", "is_loopback", "read_meta",
           "recording"]

#: Capture time read ahead from every host before the merge starts, to align the clocks: up to this
#: long after the host whose capture started last started.
PRIME_SECONDS = 20.0
#: ... or at most this many packets of a host.
PRIME_PACKETS = 50000
#: Two copies of a segment this far apart (seconds, corrected) are two segments.
DUPLICATE_WINDOW = 5.0


# --------------------------------------------------------------------------- folders


@dataclass(frozen=True)
class Recording:
    """One ``osflow record`` folder: one host's capture files (in order) and tables."""

    host: str  #: ``meta.json``'s ``"host"``, else the folder's name
    folder: str
    captures: tuple[str, ...]
    ss: tuple[str, ...]
    ps: tuple[str, ...]
    meta: str | None
    addresses: tuple[str, ...] = ()  #: the host's own addresses, when ``meta.json`` lists them
    keylog: str | None = None  #: the TLS key log the recorded command wrote (:data:`KEYLOG`), when there is one


#: The TLS key log ``osflow record`` has the command write (its ``SSLKEYLOGFILE``), beside the capture.
KEYLOG = "tls-keys.log"

_RING = re.compile(r"^capture_(\d+)_\d+\.pcapng$")
_SS_RING = re.compile(r"^ss_(\d+)\.txt$")


def recording(folder: str) -> Recording:
    """The files of an ``osflow record`` folder (an :class:`InputError` when it holds no capture)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as e:
        raise InputError(f"{folder}: cannot read it: {e.strerror}") from None
    ring = sorted((int(r.group(1)), n) for n in names if (r := _RING.match(n)))
    if ring:
        captures = tuple(os.path.join(folder, n) for _, n in ring)
    else:
        captures = tuple(os.path.join(folder, n) for n in names
                         if n.endswith((".pcapng", ".pcap")) and os.path.isfile(os.path.join(folder, n)))
    if not captures:
        raise InputError(f"{folder}: expected a folder osflow record wrote (capture.pcapng or ring files), "
                         f"found no capture in it")
    ss_ring = sorted((int(m.group(1)), n) for n in names if (m := _SS_RING.match(n)))
    ss = tuple(os.path.join(folder, n) for _, n in ss_ring) or _present(folder, "ss.txt")
    meta = _present(folder, "meta.json")
    host, addresses = "", tuple[str, ...]()
    if meta:
        recorded = read_meta(meta[0])
        host = recorded["host"] if isinstance(recorded.get("host"), str) else ""
        found = recorded.get("addresses")
        if isinstance(found, list):
            addresses = tuple(_bare(a) for a in found if isinstance(a, str))
    if not host:
        host = os.path.basename(os.path.normpath(folder))
    keylog = _present(folder, KEYLOG)
    return Recording(host, folder, captures, ss, _present(folder, "ps.txt"), meta[0] if meta else None, addresses,
                     keylog[0] if keylog else None)


def read_meta(path: str) -> dict:
    """``meta.json`` as ``osflow record`` wrote it (an :class:`InputError` when it is not one)."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: expected osflow record's meta.json, cannot read it: {e}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected osflow record's meta.json (a JSON object), found {type(meta).__name__}")
    return meta


def _present(folder: str, name: str) -> tuple[str, ...]:
    path = os.path.join(folder, name)
    return (path,) if os.path.isfile(path) else ()


def _bare(address: str) -> str:
    """``198.18.0.1/24`` -> ``198.18.0.1`` (meta.json may list an interface's address with its prefix)."""
    return address.split("/", 1)[0].split("%", 1)[0]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8 and ::1 (each host has its own).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("198.18.0.1"), is_loopback("x")
    (True, True, False, False)
    """
    if host.startswith("127.") or host == "::1":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unique_hosts(recordings: Sequence[Recording]) -> None:
    """Two folders of one host cannot be told apart: an :class:`InputError`."""
    seen: dict[str, str] = {}
    for r in recordings:
        if r.host in seen:
            raise InputError(f"{r.folder}: expected one folder per host, found a second folder of host {r.host!r} "
                             f"(the first: {seen[r.host]}); name the hosts apart in their meta.json's \"host\"")
        seen[r.host] = r.folder


# --------------------------------------------------------------------------- clocks


@dataclass(frozen=True)
class Offset:
    """How far a host's clock is ahead of the first host's (seconds), and how it was found."""

    host: str
    seconds: float
    error: float | None = None  #: half the interval the shared segments leave, None when not measured
    how: str = "segments"  #: ``segments``, ``given`` (``--clock-offset``), ``one-sided`` or ``none``
    segments: int = 0  #: shared segments it was found from

    def line(self) -> str:
        """``clock offset compute1: +0.350 s ± 0.0004 s`` (what stderr and ``--explain`` say).

        >>> Offset("compute1", 0.35, 0.0004, segments=12).line()
        'clock offset compute1: +0.350 s ± 0.0004 s (12 segments captured on both hosts)'
        >>> Offset("compute1", -0.1, how="given").line()
        'clock offset compute1: -0.100 s (given by --clock-offset)'
        >>> Offset("compute1", -0.00001, 0.00002, segments=3).line()
        'clock offset compute1: +0.000 s ± 0.0000 s (3 segments captured on both hosts)'
        """
        seconds = self.seconds if round(self.seconds, 3) != 0 else 0.0  # never "-0.000"
        head = f"clock offset {self.host}: {seconds:+.3f} s"
        if self.how == "given":
            return f"{head} (given by --clock-offset)"
        if self.how == "none":
            return f"{head} (no segment captured on both hosts: assumed)"
        err = f" ± {self.error:.4f} s" if self.error is not None else ""
        one = "; bounded from one side only" if self.how == "one-sided" else ""
        return f"{head}{err} ({self.segments} segments captured on both hosts{one})"


def _key(p: Packet) -> tuple | None:
    """What makes two copies of a segment the same segment (None: cannot be told)."""
    if p.seq is None:
        return None
    return (p.src.host, p.src.port, p.dst.host, p.dst.port, p.seq, p.payload, p.syn, p.fin, p.rst)


def align(first: Sequence[Packet], other: Sequence[Packet], host: str,
          owners: dict[str, str], first_host: str) -> Offset:
    """The offset of ``host``'s clock (packets ``other``) from the first host's (``first``).

    Each shared segment's ``d = t(host) − t(first)``; the direction a segment went decides
    which bound it is: from the first host to ``host`` (θ ≤ d), or back (θ ≥ d).  The
    direction comes from ``owners`` (address -> host) or, for a connection whose ends no one
    placed, from the two directions themselves: the one whose ``d`` are larger went from the
    first host.  ``owners`` learns the addresses placed that way.
    """
    seen: dict[tuple, float] = {}
    for p in first:
        k = _key(p)
        if k is not None and not is_loopback(p.src.host):
            seen.setdefault(k, p.time)
    groups: dict[tuple[str, str], list[float]] = {}
    for p in other:
        k = _key(p)
        if k is None or k not in seen:
            continue
        groups.setdefault((p.src.host, p.dst.host), []).append(p.time - seen.pop(k))
    if not groups:
        return Offset(host, 0.0, None, "none")
    upper: list[float] = []  # first -> host
    lower: list[float] = []  # host -> first
    todo = dict(groups)
    for _ in range(2):  # a second round places what the first round's owners now tell
        for (src, dst), ds in list(todo.items()):
            sent_by = owners.get(src) or ({host: first_host, first_host: host}.get(owners.get(dst, "")))
            if sent_by is None:
                back = groups.get((dst, src))
                if back is None:
                    continue
                sent_by = first_host if _median(ds) > _median(back) else host
            (upper if sent_by == first_host else lower).extend(ds)
            owners.setdefault(src, sent_by)
            owners.setdefault(dst, host if sent_by == first_host else first_host)
            del todo[(src, dst)]
    n = len(upper) + len(lower)
    if upper and lower:
        hi, lo = min(upper), max(lower)
        return Offset(host, (hi + lo) / 2, abs(hi - lo) / 2, "segments", n)
    if upper or lower:
        bound = min(upper) if upper else max(lower)
        return Offset(host, bound, None, "one-sided", n)
    return Offset(host, 0.0, None, "none")


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


# --------------------------------------------------------------------------- the merged stream


class _Host:
    """One host's packets: its captures read in turn, each through its own tshark."""

    def __init__(self, index: int, rec: Recording, merged: Merged, open_capture: OpenCapture) -> None:
        self.index, self.rec, self.merged = index, rec, merged
        self.buffer: deque[tuple[int, Packet]] = deque()  # (capture index, packet) read ahead
        self.first_time: float | None = None  #: its first capture's first frame (set by ``open_capture``)
        self.capture = 0  # which of its captures is being read
        self._packets = self._read(open_capture)

    def _read(self, open_capture: OpenCapture) -> Iterator[Packet]:
        for i, path in enumerate(self.rec.captures):
            self.capture = i
            yield from open_capture(path, self)

    def cut(self, problem: PartialInput) -> None:
        """A capture ended early: the merged stream is partial (the first problem is said)."""
        if self.merged.partial is None:
            self.merged.partial = problem

    def prime(self, until: float | None = None) -> None:
        """Read ahead up to ``until`` (this host's clock), at most :data:`PRIME_PACKETS`; without
        ``until``, the first packet only."""
        if self.buffer and (until is None or self.buffer[-1][1].time >= until):
            return
        for p in self._packets:
            self.buffer.append((self.capture, p))
            if until is None or p.time >= until or len(self.buffer) >= PRIME_PACKETS:
                return

    def packets(self) -> Iterator[tuple[int, Packet]]:
        """(capture index, packet): the read-ahead first, then the rest."""
        while self.buffer:
            yield self.buffer.popleft()
        for p in self._packets:
            yield self.capture, p

    def ahead(self) -> list[Packet]:
        """The packets read ahead."""
        return [p for _, p in self.buffer]


def _table_owners(counts: dict[str, Counter[str]]) -> dict[str, str]:
    """address -> host, from how often each host's socket tables have a socket on it: the host of
    at least three quarters of the entries (a socket log may also list a few of another host's
    sockets: one kernel under several network namespaces).

    >>> from collections import Counter
    >>> _table_owners({"controller": Counter({"198.18.0.100": 263, "198.18.0.2": 1, "127.0.0.1": 9}),
    ...                "compute1": Counter({"198.18.0.100": 31, "198.18.0.2": 13})})
    {'198.18.0.100': 'controller', '198.18.0.2': 'compute1'}
    """
    totals: Counter[str] = Counter()
    for c in counts.values():
        totals.update(c)
    out = {}
    for a, n in totals.items():
        if is_loopback(a):
            continue
        host, most = max(((h, c[a]) for h, c in counts.items()), key=lambda hc: hc[1])
        if most >= 0.75 * n:
            out[a] = host
    return out


#: ``open_capture(path, host)``: one capture's packets (a tshark run); it sets ``host.first_time`` from
#: the capture's first frame and calls ``host.cut(problem)`` when the capture ended early.
OpenCapture = Callable[[str, _Host], Iterator[Packet]]


class Merged:
    """The packets of several hosts' recordings (or of one folder's capture files), one stream.

    A reader as the pipeline wants one: iterate for the packets; ``first_time`` (once the first
    packet came), ``count``, ``partial``, ``last_frame`` afterwards; ``offsets`` the clocks found.
    """

    def __init__(self, recordings: Sequence[Recording], open_capture: OpenCapture,
                 given: dict[str, float] | None = None,
                 tables_addresses: dict[str, Counter[str]] | None = None,
                 clock: dict[str, float] | None = None) -> None:
        self.recordings = tuple(recordings)
        self.name = ", ".join(r.folder for r in recordings)
        self.several = len(recordings) > 1
        self.partial: PartialInput | None = None
        self.count = 0
        self.last_frame = 0
        self.first_time: float | None = None
        self.offsets: tuple[Offset, ...] = ()
        self.given = dict(given or {})
        #: filled with each host's offset once found (the join reads a host's tables at its own time)
        self.clock = clock if clock is not None else {}
        self.dropped = 0  #: copies of a segment left out
        self.owners: dict[str, str] = {}  #: non-loopback address -> host
        for r in recordings:
            for a in r.addresses:
                self.owners.setdefault(a, r.host)
        self.owners.update(_table_owners(tables_addresses or {}))
        self._hosts = [_Host(i, r, self, open_capture) for i, r in enumerate(recordings)]
        self._renumber = sum(len(r.captures) for r in recordings) > 1

    # ------------------------------------------------------------------ clocks and owners

    def _prepare(self) -> None:
        for h in self._hosts:  # the first packet of each: the hosts were recorded from different moments
            h.prime()
        if self.several:  # then each up to PRIME_SECONDS after the latest start: the stretch all recorded
            starts = [h.buffer[0][1].time for h in self._hosts if h.buffer]
            until = max(starts) + PRIME_SECONDS if starts else None
            for h in self._hosts:
                h.prime(until)
        first = self._hosts[0]
        offsets = []
        for h in self._hosts[1:]:
            found = align(first.ahead(), h.ahead(), h.rec.host, self.owners, first.rec.host)
            if h.rec.host in self.given:
                found = Offset(h.rec.host, self.given[h.rec.host], None, "given", found.segments)
            offsets.append(found)
        self.offsets = tuple(offsets)
        if self.several:  # an address only one host saw (its own, or a host not recorded) is that host's
            seen: dict[str, set[str]] = {}
            for h in self._hosts:
                for _, p in h.buffer:
                    for a in (p.src.host, p.dst.host):
                        seen.setdefault(a, set()).add(h.rec.host)
            for a, hs in seen.items():
                if len(hs) == 1 and not is_loopback(a):
                    self.owners.setdefault(a, next(iter(hs)))
        shift = self.shift()
        self.clock.update(shift)
        times = [h.first_time - shift.get(h.rec.host, 0.0) for h in self._hosts if h.first_time is not None]
        self.first_time = min(times) if times else None

    def shift(self) -> dict[str, float]:
        """host -> seconds to take from its times."""
        return {o.host: o.seconds for o in self.offsets}

    def warnings(self) -> list[str]:
        """What the merge has to say at the end: a clock it could not align."""
        return [f"{o.line()}: the hosts' clocks may disagree (--clock-offset {o.host}=SECONDS sets it)"
                for o in self.offsets if o.how == "none"]

    # ------------------------------------------------------------------ the stream

    def __iter__(self) -> Iterator[Packet]:
        self._prepare()
        shift = self.shift()
        streams = [self._corrected(h, shift.get(h.rec.host, 0.0)) for h in self._hosts]
        merged = heapq.merge(*streams, key=lambda item: item[0]) if len(streams) > 1 else streams[0]
        yield from self._unique(merged)

    def _corrected(self, h: _Host, offset: float) -> Iterator[tuple[float, int, int, Packet]]:
        """(corrected time, host, capture, packet): the host's clock brought to the first host's."""
        node = h.rec.host if self.several else ""
        owners = self.owners
        placed: dict[Address, Address] = {}  # an address -> the same on its host (made once, as the readers do)

        def on_host(a: Address) -> Address:
            found = placed.get(a)
            if found is None:
                if len(placed) >= 4096:
                    placed.clear()
                found = placed[a] = Address(a.host, a.port, node if is_loopback(a.host) else owners.get(a.host, ""))
            return found

        for capture, p in h.packets():
            t = p.time - offset
            if node:
                p = replace(p, time=t, src=on_host(p.src), dst=on_host(p.dst))
            elif offset:
                p = replace(p, time=t)
            yield t, h.index, capture, p

    def _unique(self, merged: Iterator[tuple[float, int, int, Packet]]) -> Iterator[Packet]:
        """Each segment once; with several captures, connections one id across them and frames one
        number in merged order (the segments of a reassembled PDU renamed to match)."""
        #: segment -> (when, its frame number, (host, capture, its number there))
        seen: dict[tuple, tuple[float, int, tuple[int, int, int]]] = {}
        expiry: deque[tuple[float, tuple]] = deque()
        numbers: dict[tuple[int, int, int], int] = {}  # (host, capture, frame) -> frame in the merged stream
        order: deque[tuple[int, int, int]] = deque()
        ids: dict[tuple[int, int, int], int] = {}  # (host, capture, tcp.stream) -> connection id
        by_ends: dict[tuple[Address, Address], tuple[int, set[tuple[int, int]]]] = {}
        last: dict[tuple[Address, Address], float] = {}
        renumber = self._renumber
        number = next_id = 0
        for t, hi, ci, p in merged:
            origin = p.number  # its number in its own capture
            while expiry and expiry[0][0] < t - DUPLICATE_WINDOW:
                old = expiry.popleft()[1]
                if old in seen and seen[old][0] < t - DUPLICATE_WINDOW:
                    del seen[old]
            gid = p.stream
            if renumber:  # one id per connection: the same ends (hosts included) in another capture are it
                gid = ids.get((hi, ci, p.stream), -1)
                ends = (p.src, p.dst) if p.src <= p.dst else (p.dst, p.src)
                if gid < 0:
                    known = by_ends.get(ends)
                    if known is not None and (hi, ci) not in known[1]:
                        gid = known[0]
                        known[1].add((hi, ci))
                    else:  # new, or the same ends again in one capture: a new connection
                        gid = next_id
                        next_id += 1
                        by_ends[ends] = (gid, {(hi, ci)})
                    ids[(hi, ci, p.stream)] = gid
                last[ends] = t
                if len(last) > 4096 and self.count % 4096 == 0:
                    self._forget(t, last, by_ends, ids)
            key = _key(p)
            again = False  # the same frame of the same capture read again (a helper pass's PDML)
            if key is not None:
                key = (gid, *key)
                kept = seen.get(key)
                if kept is not None and kept[2] == (hi, ci, p.number):
                    again = True
                elif kept is not None:
                    self.dropped += 1
                    if renumber:
                        numbers[(hi, ci, p.number)] = kept[1]
                    continue
            if renumber:
                if not again:
                    number += 1
                    numbers[(hi, ci, p.number)] = number
                    order.append((hi, ci, p.number))
                    if len(order) > 200_000:
                        numbers.pop(order.popleft(), None)
                segments = tuple(numbers.get((hi, ci, s), s) for s in p.segments)
                p = replace(p, number=numbers.get((hi, ci, p.number), number), segments=segments, stream=gid)
            if key is not None and not again:
                seen[key] = (t, p.number, (hi, ci, origin))
                expiry.append((t, key))
            self.count += 1
            self.last_frame = p.number
            yield p

    @staticmethod
    def _forget(t: float, last: dict, by_ends: dict, ids: dict) -> None:
        """Connections silent for 600 s: a later one on the same ends is another (and memory stays flat)."""
        gone = set()
        for ends in [e for e, when in last.items() if when < t - 600]:
            del last[ends]
            known = by_ends.pop(ends, None)
            if known is not None:
                gone.add(known[0])
        for local in [k for k, gid in ids.items() if gid in gone]:
            del ids[local]


def parse_offsets(items: Sequence[str]) -> dict[str, float]:
    """``--clock-offset HOST=SECONDS`` (repeatable) -> {host: seconds}.

    >>> parse_offsets(["compute1=0.35", "c2=-1"])
    {'compute1': 0.35, 'c2': -1.0}
    """
    out: dict[str, float] = {}
    for item in items:
        host, sep, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not sep or not host or not math.isfinite(seconds):
            raise ValueError(f"expected HOST=SECONDS (e.g. compute1=0.35), found {item!r}")
        out[host] = seconds
    return out

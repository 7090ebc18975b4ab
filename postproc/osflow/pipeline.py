"""The stages wired together: source -> decode -> pair -> join -> flow.

:func:`analyse` turns one PDML stream (or a reader of tshark's fields) into a
:class:`Result`; :mod:`osflow.app` wraps it with the inputs and outputs of
``osflow-post``; tests and other tools call it too.

:class:`Stream` runs the same stages while the input is read and gives out the flow in
parts (JSON Lines, OTLP and stats are written from them): the pairing releases exchanges
once nothing still open can come before them, the join names each connection when its
first exchange is released, the flow places them and gives out pairs a horizon later,
so memory holds what is in progress and the horizon, not the capture.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from . import protocols
from .decode import Decoder
from .errors import InputError, PartialInput, counted
from .flow import FlowBuilder, build_flow, whole_flow
from .join import Joiner, request_ids_of
from .model import ConnectionNames, Exchange, Flow, Packet
from .options import HORIZON, AnalysisOptions
from .pair import Pairing
from .proxies import Stitcher, streams_of
from .redact import command_line
from .source import PdmlReader

if TYPE_CHECKING:  # read only when table files are given (Tables.load)
    from .tables import ProcessTable, SocketTable

__all__ = ["HORIZON", "AnalysisOptions", "Progress", "Result", "Stream", "Tables", "analyse", "collect"]

#: The options a stage runs with when it is given none: osflow-post's defaults.
DEFAULTS = AnalysisOptions()


@dataclass
class Tables:
    """The socket and process tables given with ``--ss``/``--ps``."""

    sockets: SocketTable | None = None
    processes: ProcessTable | None = None
    warnings: list[str] = field(default_factory=list)
    #: with several hosts' recordings: each host's own tables (an end is looked up in its host's only)
    hosts: dict[str, tuple[SocketTable | None, ProcessTable | None]] | None = None
    #: host -> how far its clock is ahead of the first host's, filled in by the merge (:mod:`osflow.hosts`)
    #: before the first packet: each host's socket snapshots are in its own clock's time
    clock: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load_hosts(cls, hosts: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> Tables:
        """One set of tables per host: ``(host, ss files, ps files)``; ``sockets`` holds every
        host's entries (for what is said about the tables as a whole)."""
        t = cls(hosts={})
        assert t.hosts is not None
        entries: list = []
        for host, ss_files, ps_files in hosts:
            one = cls.load(ss_files, ps_files)
            t.hosts[host] = (one.sockets, one.processes)
            t.warnings += one.warnings
            if one.sockets is not None:
                entries += one.sockets.entries()
        if any(s is not None for s, _ in t.hosts.values()):
            from .tables import SocketTable

            t.sockets = SocketTable(entries)
        return t

    def local_addresses(self) -> dict[str, Counter[str]]:
        """host -> how many entries of its socket tables have a socket on each address (with several hosts)."""
        return {host: s.local_hosts() for host, (s, _) in (self.hosts or {}).items() if s is not None}

    @classmethod
    def load(cls, ss_files: Sequence[str] = (), ps_files: Sequence[str] = ()) -> Tables:
        t = cls()
        if not ss_files and not ps_files:
            return t
        from . import tables

        entries = t._parse(ss_files, tables.parse_ss, "entries", tables.TableError)
        procs = t._parse(ps_files, tables.parse_ps, "processes", tables.TableError)
        if ss_files:
            t.sockets = tables.SocketTable(entries)
        if ps_files:
            t.processes = tables.ProcessTable(procs)
        # a warning quotes the line it could not read: not its secrets; 5,000 such lines: the first few, counted
        t.warnings = counted([command_line(w) for w in t.warnings])
        return t

    def _parse(self, paths: Sequence[str], parse, attr: str, error: type[Exception]) -> list:
        found: list = []
        for path in paths:
            try:
                r = parse(_read_text(path), source=path)
            except error as e:
                raise InputError(str(e)) from None
            found += getattr(r, attr)
            self.warnings += r.warnings
        return found


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read it: {e.strerror}") from None
    return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class Result:
    """What :func:`analyse` found: the flow, whether the input ended early, TCP packets read."""

    flow: Flow
    partial: PartialInput | None
    packets: int


class Progress:
    """Frames read, pairs found and rate on stderr, about twice a second (only on a terminal)."""

    def __init__(self, out: IO[str], interval: float = 0.5) -> None:
        self.out = out
        self.interval = interval
        self.start = time.monotonic()
        self.next = self.start + interval
        self.shown = False

    def wrap(self, packets, pairing) -> Iterator[Packet]:
        for n, p in enumerate(packets, 1):
            if n & 255 == 0 and time.monotonic() >= self.next:
                self.show(n, pairing.found)
            yield p

    def show(self, frames: int, pairs: int) -> None:
        now = time.monotonic()
        rate = frames / max(now - self.start, 1e-9)
        self.out.write(f"\rosflow: {frames} frames read, {pairs} pairs found, {rate:,.0f} frames/s ")
        self.out.flush()
        self.next = now + self.interval
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.out.write("\r\033[K")
            self.out.flush()


def analyse(
    stream: IO[bytes],
    name: str = "<stdin>",
    tables: Tables | None = None,
    options: AnalysisOptions = DEFAULTS,
    *,
    reader=None,
    progress: Progress | None = None,
) -> Result:
    """Run every stage on ``stream`` (PDML unless ``reader`` is given, e.g. a FieldsReader), as
    ``options`` say (who the client is, grouping, ``--all``, secrets, ``--explain``'s naming
    without the tables)."""
    tables = tables or Tables()
    if reader is None:
        reader = PdmlReader(stream, name)
    pairing = Pairing()
    packets = progress.wrap(reader, pairing) if progress is not None else reader
    decoder = Decoder()
    pairing.feed(decoder.decode(packets))
    if progress is not None:
        progress.done()
    stitcher = Stitcher(options.show_proxies, options.endpoints, options.port_names)
    exchanges = stitcher.stitch(pairing.finish())
    warnings = _warnings(tables, pairing, reader, name) + decoder.notes()
    joiner = Joiner(tables.sockets, tables.processes, options.port_names, options.show_secrets, tables.hosts,
                    tables.clock, stitcher.ends, stitcher.routes)
    amqp = pairing.rpc.connections()
    names = joiner.join(exchanges, amqp)
    warnings += _tables_warning(tables, joiner, bool(names), any(_by_listener(n) for n in names.values()))
    without = None
    if options.explain and tables.sockets is not None:
        without = Joiner(None, None, options.port_names, proxies=stitcher.ends,
                         routes=stitcher.routes).join(exchanges, amqp)
    flow = build_flow(exchanges, names, options, origin=reader.first_time, warnings=tuple(warnings),
                      without_tables=without)
    return Result(flow, reader.partial, reader.count)


def _warnings(tables: Tables, pairing: Pairing, reader, name: str) -> list[str]:
    """What the pairing could not pair, and an input without TCP."""
    warnings = list(tables.warnings)
    if pairing.orphans:
        warnings.append(
            f"{pairing.orphans} response(s) whose request is not in the capture (it started mid-conversation)"
        )
    if pairing.rpc.orphans:
        warnings.append(
            f"{pairing.rpc.orphans} RPC deliveries or replies whose publish or call is not in the capture"
        )
    for why, n in sorted(pairing.rpc.undecoded.items()):
        warnings.append(f"{n} AMQP message(s) not read: {why}")
    if reader.count == 0 and reader.partial is None:
        warnings.append(f"{name}: the PDML holds no TCP packet")
    return warnings


def _tables_warning(tables: Tables, joiner: Joiner, named: bool, listener: bool) -> list[str]:
    """Socket tables given, connections ``named``, and not one of them in the tables (nor an end
    named through a ``listener``)."""
    if tables.sockets is not None and named and not joiner.in_tables and not listener:
        return ["no connection of the capture is in the socket tables (--ss from another host or another time?): "
                "names come from protocol evidence and the port map"]
    return []


class Stream:
    """The stages run while the input is read: iterate over it for the flow's parts.

    Each part is a :class:`Flow` of the pairs given out since the last (in request order, final)
    and the ids of the pairs that get no more children (``closed``); ``steps`` and ``connections``
    are empty.  Every ``horizon`` seconds of capture time: the pairing releases the exchanges that
    nothing still open can precede and that ended a horizon ago (requests unanswered for three
    horizons are given up on), the join names the connections those exchanges are the first
    released of (from what the window holds: the pairs still open, the chunk, what came after it;
    then the name stays, unless it was no name at all: a later window may find evidence), the flow
    places them, and the pairs that started two horizons ago are given out.  At the end of the input
    everything left is.  After the iteration, ``warnings``,
    ``partial``, ``packets`` and ``pairs`` say what :class:`Result` would.
    """

    def __init__(
        self,
        stream: IO[bytes],
        name: str = "<stdin>",
        tables: Tables | None = None,
        options: AnalysisOptions = DEFAULTS,
        *,
        reader=None,
        progress: Progress | None = None,
    ) -> None:
        self.tables = tables or Tables()
        self.name = name
        self.options = options
        self.reader = reader if reader is not None else PdmlReader(stream, name)
        self.progress = progress
        self.horizon = options.horizon
        self.pairing = Pairing()
        self.decoder = Decoder()
        self.stitcher = Stitcher(options.show_proxies, options.endpoints, options.port_names)
        self.joiner = Joiner(self.tables.sockets, self.tables.processes, options.port_names, options.show_secrets,
                             self.tables.hosts, self.tables.clock, self.stitcher.ends, self.stitcher.routes)
        self.builder = FlowBuilder(options, longest_cast=3 * options.horizon)
        self.names: dict[int, ConnectionNames] = {}
        self._seen: dict[int, float] = {}  # stream -> when its last exchange released ended
        self._named = False  # a connection was named
        self._listener = False  # an end was named through a listening socket
        self.warnings: tuple[str, ...] = ()
        self.partial: PartialInput | None = None
        self.packets = 0
        self.pairs = 0
        self.held = 0  # the most exchanges and pairs held at once (pairing, flow), for tests and benchmarks

    def __iter__(self) -> Iterator[Flow]:
        reader, pairing, decoder = self.reader, self.pairing, self.decoder
        packets = self.progress.wrap(reader, pairing) if self.progress is not None else reader
        step = self.horizon
        due = None
        for p in packets:
            # every horizon from the first frame, with what came before that moment: the parts do not
            # depend on which frames a reader skips (tshark -T fields is asked for fewer than PDML holds)
            if due is None:
                due = (reader.first_time if reader.first_time is not None else p.time) + step
            if p.time >= due:
                at = due + math.floor((p.time - due) / step) * step
                yield from self._drain(at)
                due = at + step
            for m in decoder.packet(p):
                pairing.add(m)
        for m in decoder.flush():
            pairing.add(m)
        if self.progress is not None:
            self.progress.done()
        yield from self._drain(math.inf)
        pairing.rpc.finish()
        self.warnings = tuple(_warnings(self.tables, pairing, reader, self.name) + decoder.notes()
                              + _tables_warning(self.tables, self.joiner, self._named, self._listener))
        self.partial, self.packets = reader.partial, reader.count

    def _drain(self, clock: float) -> Iterator[Flow]:
        h, pairing, builder = self.horizon, self.pairing, self.builder
        cutoff = clock - h
        idle = clock - 30 * h if clock != math.inf else -math.inf  # connections and ids silent since are forgotten
        chunk, later = self.stitcher.stitch_part(pairing.release(cutoff, clock - 3 * h, idle), list(pairing.exchanges))
        waiting = [Exchange(m.protocol, m.stream, m.src, m.dst, m, None) for m in pairing.pending()]
        builder.register(chunk + later + waiting, before=cutoff)
        if chunk:
            first = chunk[0].start
            window = builder.served_since(first)
            # to name: the chunk's connections not named yet, and those of what came after it that carry a
            # request id or name a resource (a cast's handling may end with one of them: FlowBuilder.place)
            wanted = {s for ex in chunk + [ex for ex in later if request_ids_of(ex) or protocols.of(ex).identifiers(ex)]
                      for s in streams_of(ex) if s not in self.names or _unnamed(self.names[s])}
            fresh = self.joiner.join(window + chunk + later, pairing.rpc.connections(), wanted)
            for ex in chunk:
                for s in streams_of(ex):
                    if s in fresh and (s not in self.names or _unnamed(self.names[s])):
                        n = self.names[s] = fresh[s]
                        self._named = True
                        self._listener = self._listener or _by_listener(n)
                    self._seen[s] = max(self._seen.get(s, -math.inf), ex.end)
            builder.place(chunk, self.names, later, {**fresh, **self.names})
        self.held = max(self.held, len(pairing.exchanges) + builder.kept)
        pairs = builder.settle(clock - 2 * h)
        closed = builder.forget(idle)
        gone = [s for s, t in self._seen.items() if t < idle]
        for s in gone:
            del self._seen[s]
            self.names.pop(s, None)
        self.stitcher.forget(gone)
        self.pairs += len(pairs)
        if pairs or closed or clock == math.inf:
            origin = self.reader.first_time
            if origin is None:
                origin = pairs[0].exchange.start if pairs else 0.0
            yield Flow(pairs=tuple(pairs), steps=(), tokens=builder.tokens(), connections=(), origin=origin,
                       closed=tuple(closed) if clock != math.inf else None,  # at the end, every tree is whole
                       client=builder.client_why)


def collect(stream: Stream) -> Result:
    """The whole flow of a streamed one: every part's pairs, then the steps drawn from them.

    What the timeline, Markdown and Mermaid draw at the end: built while the input is read, so
    that after its last packet only the last horizons are left to place (not the whole capture to
    join and place).  The flow holds every pair (memory grows with the capture, as for any whole
    flow) but not the connections: the stream forgets idle ones.  The HTML report and
    ``--explain``, which show the connections, run :func:`analyse`.
    """
    pairs: list = []
    last: Flow | None = None
    for part in stream:
        pairs += part.pairs
        last = part
    assert last is not None  # the end of the input gives out a last part, even an empty one
    origin = stream.reader.first_time
    if origin is None:  # as build_flow's
        origin = pairs[0].exchange.start if pairs else 0.0
    flow = whole_flow(pairs, {}, last.tokens, stream.options, origin=origin, warnings=stream.warnings,
                      without_tables=None, client=last.client)
    return Result(flow, stream.partial, stream.packets)


def _unnamed(n: ConnectionNames) -> bool:
    """An end with no evidence at all (``ip:port``): the next window may name it."""
    return n.client.source == "address" or n.server.source == "address"


def _by_listener(n: ConnectionNames) -> bool:
    return n.client.source == "listener" or n.server.source == "listener"

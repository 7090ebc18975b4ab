"""The stages wired together: source -> decode -> pair -> join -> flow.

:func:`analyse` turns one PDML stream (or a reader of tshark's fields) into a
:class:`Result`; :mod:`osflow.app` wraps it with the inputs and outputs of
``osflow-post``; tests and other tools call it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import IO, Iterator, Optional, Sequence

from .decode import Decoder
from .errors import InputError, PartialInput
from .flow import build_flow
from .join import Joiner
from .model import Flow, Packet
from .pair import Pairing
from .source import PdmlReader


@dataclass
class Tables:
    """The socket and process tables given with ``--ss``/``--ps``."""

    sockets: object = None  # tables.SocketTable
    processes: object = None  # tables.ProcessTable
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, ss_files: Sequence[str] = (), ps_files: Sequence[str] = ()) -> "Tables":
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
        return t

    def _parse(self, paths: Sequence[str], parse, attr: str, error: type) -> list:
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
    partial: Optional[PartialInput]
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
        n = 0
        for p in packets:
            n += 1
            if n & 255 == 0 and time.monotonic() >= self.next:
                self.show(n, len(pairing.exchanges))
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
    tables: Optional[Tables] = None,
    *,
    overrides: Optional[dict[int, str]] = None,
    group: bool = True,
    show_secrets: bool = False,
    show_broker: bool = False,
    explain: bool = False,
    reader=None,
    progress: Optional[Progress] = None,
    client=None,
    show_all: bool = False,
) -> Result:
    """Run every stage on ``stream`` (PDML unless ``reader`` is given, e.g. a FieldsReader).

    ``client``: who the command is (a :class:`osflow.foreground.Client`; default: every
    OpenStackClient end); the flow's steps hold what it caused, or everything with ``show_all``.
    """
    tables = tables or Tables()
    if reader is None:
        reader = PdmlReader(stream, name)
    pairing = Pairing()
    packets = progress.wrap(reader, pairing) if progress is not None else reader
    pairing.feed(Decoder().decode(packets))
    if progress is not None:
        progress.done()
    exchanges = pairing.finish()
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
    joiner = Joiner(tables.sockets, tables.processes, overrides)
    amqp = pairing.rpc.connections()
    names = joiner.join(exchanges, amqp)
    if tables.sockets is not None and names and not joiner.in_tables and not any(
        n.client.source == "listener" or n.server.source == "listener" for n in names.values()
    ):
        warnings.append(
            "no connection of the capture is in the socket tables (--ss from another host or another time?): "
            "names come from protocol evidence and the port map"
        )
    without = None
    if explain and tables.sockets is not None:
        without = Joiner(None, None, overrides).join(exchanges, amqp)
    flow = build_flow(
        exchanges,
        names,
        group=group,
        show_secrets=show_secrets,
        show_broker=show_broker,
        origin=reader.first_time,
        warnings=tuple(warnings),
        without_tables=without,
        client=client,
        show_all=show_all,
    )
    return Result(flow, reader.partial, reader.count)

"""``--explain``: per connection, the 4-tuple, the names chosen and the evidence for each.

With socket tables, a note says which ends only a table could name (and what they
would be called without one: :attr:`osflow.model.Flow.without_tables`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tabulate import tabulate

from .. import quoting
from ..model import Address, ConnectionNames, Flow
from .common import DEFAULT, RenderOptions

HEADERS = ("stream", "4-tuple", "client", "client evidence", "server", "server evidence", "note")


def note(c: ConnectionNames, without: dict[int, tuple[str, str]]) -> str:
    """``only a socket table names the client (without: 127.0.0.1:41234 → keystone)``, or ""."""
    bare = without.get(c.stream)
    if bare is None:
        return ""
    lost = [who for who, now, then in (("client", c.client.label, bare[0]), ("server", c.server.label, bare[1]))
            if now != then]
    if not lost:
        return ""
    return "only a socket table names the " + " and ".join(lost) + f" (without: {bare[0]} → {bare[1]})"


def _end(a: Address) -> str:
    """``127.0.0.1:5000``, or with several hosts merged ``127.0.0.1:5000@compute1``."""
    return f"{a}@{a.node}" if a.node else str(a)


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield the ``Connections:`` table."""
    without = {s: (client, server) for s, client, server in flow.without_tables}
    rows = [
        (
            c.stream,
            f"{_end(c.client_address)} → {_end(c.server_address)}",
            quoting.table_cell(c.client.label),
            quoting.table_cell(c.client.evidence, 70),
            quoting.table_cell(c.server.label),
            quoting.table_cell(c.server.evidence, 70),
            note(c, without),
        )
        for c in flow.connections
    ]
    yield "Connections:"
    yield from tabulate(rows, headers=HEADERS, disable_numparse=True).splitlines()
    if flow.client:
        yield ""
        yield f"The command (foreground: what it caused): {flow.client}"
    if flow.clocks:  # several hosts' recordings: how their clocks were aligned with the first's
        yield ""
        yield from flow.clocks
    chosen = [p for p in flow.pairs if p.placed and not p.placed.startswith(("time", "instrumentation:"))]
    chosen.sort(key=lambda p: ("token" not in p.placed, p.id))  # a token's word first: the strongest
    by_time = sum(1 for p in flow.pairs if p.placed.startswith("time:"))
    instrumentation = Counter(p.placed.partition(": ")[2] for p in flow.pairs
                              if p.placed.startswith("instrumentation:"))
    for what, n in sorted(instrumentation.items()):
        yield ""
        yield f"{n} pair(s) are the services' instrumentation ({what}), not their work: kept out of the story"
    if by_time:
        yield ""
        yield (f"{by_time} pair(s) found several requests of their caller in progress and no evidence: placed "
               "under the one that did something last")
    if chosen:
        yield ""
        yield "Parents chosen by evidence, of several requests of the caller in progress at the time:"
        by_id = {p.id: p for p in flow.pairs}
        for p in chosen[:200]:
            parent = by_id[p.parent] if p.parent is not None else None
            under = f"{parent.id} {quoting.table_cell(parent.request, 50)}" if parent is not None else "-"
            request = quoting.table_cell(p.request, 50)
            yield f"  {p.id} {p.client.label} → {p.server.label} {request}: under {under}, by {p.placed}"
        if len(chosen) > 200:
            yield f"  … and {len(chosen) - 200} more"

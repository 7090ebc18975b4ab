"""Statistics per service and endpoint: ``tshark -z http,tree`` for OpenStack (``--format stats``).

For a long capture the diagram helps nobody; what an operator asks is which endpoints are
called how often, how slow they are and how often they fail.  One row per (service, endpoint):

* the endpoint: HTTP ``method`` + path with its ids templated (``GET /v2.1/servers/{id}``),
  SQL as its verb and the tables it touches (``SELECT instances,instance_extra``; the pool's
  pings, ``SELECT 1``, ROLLBACK, COMMIT and SET as one row), a memcached command, an RPC as
  ``call|cast|fanout <method>`` with nova's object method;
* count, latency (p50, p95, p99, max, in ms: nearest rank), errors (HTTP 5xx, RPC failures,
  MySQL errors) and HTTP 4xx;
* for cache reads the hit ratio; for requests the DB queries made below them, per request.

Every pair counts, foreground and background alike: this is the controller's traffic, not one
command's story.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator

from tabulate import tabulate

from .. import protocols, quoting
from ..model import Flow, Pair
from .common import DEFAULT, RenderOptions

HEADERS = ("service", "endpoint", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "4xx", "cache hits",
           "DB queries/req")


def endpoint(pair: Pair) -> str:
    """What a pair asked its server, with the values that differ call to call left out (the
    protocol's :meth:`~osflow.protocols.base.ProtocolModule.endpoint`).

    The RPC, HTTP and SQL cases need real exchanges; see tests/test_stats.py.
    """
    return protocols.of(pair.exchange).endpoint(pair)


def _error(pair: Pair) -> tuple[bool, bool]:
    """(an error, an HTTP 4xx)."""
    failure = protocols.of(pair.exchange).failure(pair.exchange, pair.response)
    return failure == "error", failure == "client"


def percentile(values: list[tuple[str, int]], p: float) -> str:
    """Nearest-rank percentile of sorted ``values`` (each shown value with how many pairs had it).

    >>> percentile([("1.0", 1), ("2.0", 1), ("3.0", 1), ("4.0", 1)], 50), percentile([("1.0", 3), ("4.0", 1)], 95)
    ('2.0', '4.0')
    >>> percentile([("7.0", 1)], 99)
    '7.0'
    """
    rank = max(1, math.ceil(p / 100 * sum(n for _, n in values)))
    for value, n in values:
        rank -= n
        if rank <= 0:
            return value
    return values[-1][0]


class _Row:
    __slots__ = ("count", "ms", "errors", "client_errors", "reads", "hits", "queries")

    def __init__(self) -> None:
        self.count = 0
        self.ms: dict[str, int] = defaultdict(int)  # latency as shown (ms, 1 decimal) -> pairs
        self.errors = self.client_errors = self.reads = self.hits = self.queries = 0


class Table:
    """The statistics, counted as pairs come (:meth:`add` a flow or each part of a streamed one).

    Memory holds one row per endpoint, its latencies as shown (a count per 0.1 ms: a percentile of
    the shown values is the shown percentile, rounding keeps the order) and, for each pair that
    may still get children, the rows of it and its ancestors (the DB queries below a request).
    """

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], _Row] = defaultdict(_Row)
        self.pairs = 0
        self._above: dict[int, tuple[_Row, ...]] = {}  # pair id -> its row and its ancestors' rows

    def add(self, flow: Flow) -> None:
        for p in flow.pairs:
            row = self.rows[(p.server.label, endpoint(p))]
            above = self._above.get(p.parent, ()) if p.parent is not None else ()
            module = protocols.of(p.exchange)
            if module.db_query(p):
                for r in above:
                    r.queries += 1
            self._above[p.id] = (row,) + above
            row.count += 1
            row.ms[f"{(p.exchange.end - p.exchange.start) * 1000:.1f}"] += 1
            err, client_err = _error(p)
            row.errors += err
            row.client_errors += client_err
            hit = module.cache_read(p.exchange)
            if hit is not None:
                row.reads += 1
                row.hits += hit
        self.pairs += len(flow.pairs)
        for i in flow.closed or ():
            self._above.pop(i, None)

    def lines(self) -> Iterator[str]:
        """The table and a line on what it counts."""
        table = self.cells()
        yield from tabulate(table, headers=HEADERS, tablefmt="simple", disable_numparse=True,
                            colalign=("left", "left") + ("right",) * 9 if table else None).splitlines()
        services = len({r[0] for r in table})
        yield ""
        yield (f"{self.pairs} pairs, {len(table)} endpoints of {services} services, background included; "
               "latency from the request's first frame to the response's last (nearest rank); errors: HTTP 5xx, "
               "RPC failures, MySQL errors")

    def cells(self) -> list[tuple]:
        """The table's rows: by service, then by count (most first), then endpoint."""
        out = []
        for (service, ep), row in sorted(self.rows.items(), key=lambda kv: (kv[0][0], -kv[1].count, kv[0][1])):
            ms = sorted(row.ms.items(), key=lambda kv: float(kv[0]))
            n = row.count
            calls = ep.split(" ", 1)[0] in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "call", "cast", "fanout")
            out.append((
                quoting.table_cell(service),
                quoting.table_cell(ep),
                n,
                percentile(ms, 50),
                percentile(ms, 95),
                percentile(ms, 99),
                ms[-1][0],
                row.errors or "",
                row.client_errors or "",
                f"{100 * row.hits / row.reads:.0f}% of {row.reads}" if row.reads else "",
                f"{row.queries / n:.1f}" if calls and row.queries else "",
            ))
        return out


def rows(flow: Flow) -> list[tuple]:
    """The table's rows: by service, then by count (most first), then endpoint."""
    table = Table()
    table.add(flow)
    return table.cells()


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield the statistics table and a line on what it counts."""
    return render_parts((flow,), options)


def render_parts(parts: Iterable[Flow], options: RenderOptions = DEFAULT) -> Iterator[str]:
    """The same for a flow streamed in parts: counted as they come, the table at the end."""
    table = Table()
    for part in parts:
        table.add(part)
    yield from table.lines()

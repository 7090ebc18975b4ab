"""The service map: who calls whom, how often, how slowly (``--format map``, and in the HTML report).

A bare Mermaid ``flowchart`` (no code fence: a wiki or mermaid-cli renders it as it is):

* every participant of the flow's steps is a node (the command's story, or everything with
  ``--all``), in order of first appearance; when the participants sit on several hosts, each host
  is a ``subgraph`` (RPC ends sit on the host of their broker connection; with several hosts'
  recordings merged, a host is a recorded host, ``controller``, ``compute1``, not an address);
* every (caller, callee, kind) is one edge, labelled with its count, p50/p95 latency (ms, nearest
  rank) and its errors (HTTP 5xx, failed RPC calls, MySQL errors) and HTTP 4xx;
* an edge's kind sets its line: HTTP solid, RPC dotted (``-.->``), SQL long dashes, memcached
  short dashes, each in its colour (``linkStyle``);
* the edges and nodes of the command's critical path are drawn thick: the chain of top-level
  requests that set the command's end time, and in each the chain of children that set its end
  time, and so on down (as the report's waterfall marks it inside each top-level request); of
  those, the edges whose own time on that path (a step's latency less its children's on the path)
  is at least :data:`CRITICAL_SHARE` of the whole: a command that calls one service after another
  has every edge somewhere on its path, the map shows where its time went.

All escaping is :func:`osflow.quoting.mermaid_label`'s.  Same flow, same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import quoting
from ..model import Flow, Pair
from .common import DEFAULT, RenderOptions
from .steps import Row, critical_chain, pair_error, rows

#: A pair's protocol -> the kind of edge it makes.
KINDS = {"http": "HTTP", "rpc": "RPC", "mysql": "SQL", "memcache": "cache", "redis": "cache"}
#: How each kind of edge is drawn: (the arrow, its ``linkStyle``).
STYLES = {
    "HTTP": ("-->", "stroke:#4e79a7"),
    "RPC": ("-.->", "stroke:#b07aa1"),
    "SQL": ("-->", "stroke:#59a14f,stroke-dasharray:9 4"),
    "cache": ("-->", "stroke:#f28e2b,stroke-dasharray:3 3"),
    "other": ("-->", "stroke:#79706e"),
}
#: An edge is drawn on the critical path when its own time on it is at least this share of the path's.
CRITICAL_SHARE = 0.05
#: Added to the ``linkStyle`` of an edge on the critical path.
CRITICAL = "stroke-width:4px"


@dataclass
class Edge:
    """Every call from one participant to another, of one kind."""

    client: str
    server: str
    kind: str  #: HTTP, RPC, SQL, cache or other
    ms: list[float] = field(default_factory=list)  #: each pair's latency
    errors: int = 0  #: HTTP 5xx, failed RPC calls, MySQL errors
    client_errors: int = 0  #: HTTP 4xx
    critical_ms: float = 0.0  #: its steps' own time on the command's critical path
    critical: bool = False

    @property
    def count(self) -> int:
        return len(self.ms)

    def label(self) -> str:
        """Count, latency and errors, as the edge is labelled.

        >>> Edge("a", "b", "HTTP", [3.0, 1.0, 2.0], errors=1).label()
        '3× · p50 2.0 ms · p95 3.0 ms · 1 error'
        >>> Edge("a", "b", "SQL", [0.25]).label(), Edge("a", "b", "HTTP", [1.0, 1.0], client_errors=2).label()
        ('1× · 0.2 ms', '2× · p50 1.0 ms · p95 1.0 ms · 2 HTTP 4xx')
        """
        if self.count == 1:
            words = [f"1× · {_ms(self.ms[0])} ms"]
        else:
            words = [f"{self.count}× · p50 {_ms(percentile(self.ms, 50))} ms · p95 {_ms(percentile(self.ms, 95))} ms"]
        if self.errors:
            words.append(f"{self.errors} error{'s' if self.errors > 1 else ''}")
        if self.client_errors:
            words.append(f"{self.client_errors} HTTP 4xx")
        return " · ".join(words)


@dataclass(frozen=True)
class Graph:
    """The map: nodes (participant labels, with their host), edges, and which nodes are critical."""

    nodes: tuple[str, ...]
    hosts: dict[str, str]  #: participant label -> the host it was first seen on
    edges: tuple[Edge, ...]
    critical_nodes: frozenset[str]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([4.0, 1.0, 3.0, 2.0], 50), percentile([1.0, 1.0, 1.0, 9.0], 95)
    (2.0, 9.0)
    """
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def _ms(ms: float) -> str:
    return f"{ms:.1f}"


def kind(pair: Pair) -> str:
    """The kind of edge ``pair`` makes (:data:`KINDS`)."""
    return KINDS.get(pair.protocol, "other")


def graph(flow: Flow) -> Graph:
    """The flow's steps (every pair of each) as a graph."""
    edges: dict[tuple[str, str, str], Edge] = {}
    nodes: dict[str, None] = {}
    hosts: dict[str, str] = {}
    critical: set[str] = set()
    rs = rows(flow)
    path = critical_path(rs)
    for i, r in enumerate(rs):
        if i in path:
            own = (r.reach - r.start) - sum(rs[c].reach - rs[c].start for c in r.children if c in path)
            first = r.step.first
            key = (first.client.label, first.server.label, kind(first))
        for p in r.step.pairs:
            a, b = p.client.label, p.server.label
            # the recorded host when several hosts' recordings were merged, else the address
            for label, host in ((a, p.client.host or p.exchange.client.host),
                                (b, p.server.host or p.exchange.server.host)):
                nodes.setdefault(label, None)
                hosts.setdefault(label, host)
            e = edges.get((a, b, kind(p)))
            if e is None:
                e = edges[(a, b, kind(p))] = Edge(a, b, kind(p))
            e.ms.append((p.exchange.end - p.exchange.start) * 1000)
            err = pair_error(p)
            e.errors += err == "error"
            e.client_errors += err == "client"
        if i in path:
            edges[key].critical_ms += max(own, 0.0) * 1000
    total = sum(e.critical_ms for e in edges.values())
    for e in edges.values():
        if total > 0 and e.critical_ms >= CRITICAL_SHARE * total:
            e.critical = True
            critical.update((e.client, e.server))
    return Graph(tuple(nodes), hosts, tuple(edges.values()), frozenset(critical))


def critical_path(rs: list[Row]) -> set[int]:
    """The rows on the command's critical path: the top-level rows that set the end of the whole
    (:func:`~osflow.render.steps.critical_chain` over them), then, below each row on it, its
    children on its critical path."""
    top = [i for i, r in enumerate(rs) if r.parent is None]
    end = max((r.reach for r in rs), default=0.0)
    path = {top[k] for k in critical_chain([(rs[i].start, rs[i].reach) for i in top], end)}
    for i, r in enumerate(rs):  # a parent comes before its children
        if r.parent in path and r.critical:
            path.add(i)
    return path


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield the map's Mermaid ``flowchart`` lines (``options`` change nothing of it: it shows no secret)."""
    g = graph(flow)
    ids = {label: f"n{k}" for k, label in enumerate(g.nodes, 1)}
    story = "every pair (--all)" if flow.left_out is None and any(p.background for p in flow.pairs) else (
        "the command's story (--all for everything)")
    yield "flowchart LR"
    yield (f"    %% osflow service map: {len(g.nodes)} participants, {len(g.edges)} edges, {story}; "
           "HTTP solid, RPC dotted, SQL long dashes, memcached short dashes, the critical path thick")
    if not g.nodes:
        yield '    empty["no request/response pair"]'
        return
    host_order = list(dict.fromkeys(g.hosts[label] for label in g.nodes))
    if len(host_order) > 1:
        for h, host in enumerate(host_order, 1):
            yield f'    subgraph h{h}["{quoting.mermaid_label(host)}"]'
            yield from (_node(ids[label], label) for label in g.nodes if g.hosts[label] == host)
            yield "    end"
    else:
        yield from (_node(ids[label], label) for label in g.nodes)
    styles: dict[str, list[int]] = {}
    for k, e in enumerate(g.edges):
        arrow, style = STYLES[e.kind]
        yield f'    {ids[e.client]} {arrow}|"{quoting.mermaid_label(e.label())}"| {ids[e.server]}'
        styles.setdefault(f"{style},{CRITICAL}" if e.critical else style, []).append(k)
    for style, indexes in styles.items():
        yield f"    linkStyle {','.join(map(str, indexes))} {style}"
    yield "    classDef crit stroke-width:3px,font-weight:bold"
    crit = [ids[label] for label in g.nodes if label in g.critical_nodes]
    if crit:
        yield f"    class {','.join(crit)} crit"


def _node(pid: str, label: str) -> str:
    return f'    {pid}["{quoting.mermaid_label(label)}"]'

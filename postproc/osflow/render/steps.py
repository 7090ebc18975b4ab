"""The flow's steps as a tree, with what the report and the service map both draw from it.

Each step becomes a :class:`Row`: its number (as in the timeline), times, parent and children,
its error, and whether it is on its top-level request's critical path (:func:`critical_chain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import protocols
from ..model import Flow, Pair, Step


@dataclass
class Row:
    """One step of the flow as a bar of the waterfall."""

    n: int  #: the step's number (as in the timeline), 1-based
    step: Step
    start: float  #: epoch of its first frame
    end: float  #: epoch of its last frame (the latency is ``end - start``)
    reach: float  #: the latest end of it and all its descendants (a cast ends before its children)
    parent: int | None = None  #: the parent row's index in the list of rows
    children: tuple[int, ...] = ()
    critical: bool = False
    error: str = ""  #: "" / "client" (HTTP 4xx) / "error" (HTTP 5xx, RPC failure, MySQL error)
    errors: int = 0  #: pairs with an error (a group may hold several)


def pair_error(pair: Pair) -> str:
    """``error`` for an HTTP 5xx, a failed RPC call or a MySQL error, ``client`` for an HTTP 4xx, else ""."""
    return protocols.of(pair.exchange).failure(pair.exchange, pair.response)


def rows(flow: Flow) -> list[Row]:
    """The flow's steps as rows, each knowing its parent, children, error and critical path."""
    out: list[Row] = []
    stack: list[int] = []
    kids: list[list[int]] = []
    for n, step in enumerate(flow.steps, 1):
        start = min(p.exchange.start for p in step.pairs)
        end = max(p.exchange.end for p in step.pairs)
        errs = [e for e in (pair_error(p) for p in step.pairs) if e]
        error = "error" if "error" in errs else "client" if errs else ""
        while stack and out[stack[-1]].step.depth >= step.depth:
            stack.pop()
        parent = stack[-1] if stack else None
        out.append(Row(n, step, start, end, end, parent, (), False, error, len(errs)))
        kids.append([])
        if parent is not None:
            kids[parent].append(len(out) - 1)
        stack.append(len(out) - 1)
    for i in range(len(out) - 1, -1, -1):
        out[i].children = tuple(kids[i])
        p = out[i].parent
        if p is not None and out[i].reach > out[p].reach:
            out[p].reach = out[i].reach
    for i, row in enumerate(out):
        if row.parent is None:
            _mark_critical(out, i)
    return out


def subtree(rs: Sequence[Row], i: int) -> range:
    """The indexes of row ``i`` and all its descendants (they follow it in order).

    >>> from osflow.render.steps import Row
    >>> rs = [Row(1, None, 0, 1, 1, None, (1,)), Row(2, None, 0, 1, 1, 0), Row(3, None, 0, 1, 1)]
    >>> list(subtree(rs, 0)), list(subtree(rs, 1)), list(subtree(rs, 2))
    ([0, 1], [1], [2])
    """
    k = i
    while rs[k].children:
        k = rs[k].children[-1]
    return range(i, k + 1)


def _mark_critical(rows_: list[Row], i: int) -> None:
    row = rows_[i]
    spans = [(rows_[c].start, rows_[c].reach) for c in row.children]
    for k in critical_chain(spans, row.reach):
        c = row.children[k]
        rows_[c].critical = True
        _mark_critical(rows_, c)


def critical_chain(children: Sequence[tuple[float, float]], end: float) -> list[int]:
    """The children (``(start, end)`` each) that set a parent's end time, latest first.

    The child that ends last sets the parent's end; what kept that child from starting
    earlier is the child that ended last before it started; and so on back to the start
    (Jaeger's critical path, one level; the report applies it again inside each child it picks):

    >>> critical_chain([(0, 2), (1, 3), (3, 5), (5.5, 6)], 7)
    [3, 2, 1]
    >>> critical_chain([(0, 4), (1, 2)], 4)  # the second runs inside the first
    [0]
    >>> critical_chain([], 1)
    []
    """
    order = sorted(range(len(children)), key=lambda k: (children[k][1], children[k][0], k), reverse=True)
    chain: list[int] = []
    t = end
    for k in order:
        if children[k][1] <= t:
            chain.append(k)
            t = children[k][0]
    return chain

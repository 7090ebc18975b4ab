"""Mermaid ``sequenceDiagram`` code.

Participants are declared in order of first appearance; requests are ``->>``,
responses ``-->>``; an RPC call is ``->>`` with a ``-->>`` reply, a cast or fanout
the async ``-)``, from caller to callee (through the broker with ``--show-broker``);
a pair that has children activates its server while they run.  Cache hits/misses and token identities become notes;
the background pairs left out (:mod:`osflow.foreground`) one note at the top.  A flow too long for
Mermaid (50,000 characters per diagram) is split, between top-level steps, into
several diagrams.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .. import quoting
from ..model import Flow, Step
from .common import DEFAULT, RenderOptions

#: Mermaid refuses diagrams longer than this (its ``maxTextSize``, 50,000).
MAX_CHARS = 45_000


class _Ids:
    """Stable, unique Mermaid ids for participant labels."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.used: set[str] = set()

    def __call__(self, label: str) -> str:
        pid = self.ids.get(label)
        if pid is None:
            base = quoting.mermaid_id(label)
            pid, n = base, 2
            while pid in self.used:
                pid, n = f"{base}_{n}", n + 1
            self.ids[label] = pid
            self.used.add(pid)
        return pid


@dataclass(frozen=True)
class _Seg:
    """Lines for one step's request (or one pending response), and what is still active after them."""

    lines: tuple[str, ...]
    labels: tuple[str, ...]  # participants the lines use
    open: tuple[tuple[str, str, str], ...]  # (client label, server label, request text) still active


def _broker(options: RenderOptions, step: Step) -> str | None:
    """The broker's label when this step is an RPC drawn through it (``--show-broker``)."""
    p = step.first
    if not options.show_broker or step.is_group or p.via is None or p.server.label == p.via.label:
        return None
    return p.via.label


def _segments(flow: Flow, ids: _Ids, options: RenderOptions) -> Iterator[_Seg]:
    steps = flow.steps
    stack: list[tuple[Step, bool]] = []  # open steps and whether their server was activated

    def open_() -> tuple[tuple[str, str, str], ...]:
        return tuple((s.first.client.label, s.first.server.label, _text(s)) for s, act in stack if act)

    def close_until(depth: int) -> Iterator[_Seg]:
        while stack and stack[-1][0].depth >= depth:
            s, active = stack.pop()
            lines: list[str] = []
            broker = _broker(options, s)
            _response(s, ids, lines, active=active, broker=broker)
            yield _Seg(tuple(lines), _labels(s, broker), open_())

    for k, step in enumerate(steps):
        yield from close_until(step.depth)
        first = step.first
        a, b = ids(first.client.label), ids(first.server.label)
        has_children = k + 1 < len(steps) and steps[k + 1].depth > step.depth
        text = quoting.mermaid_text(_text(step))
        arrow = "-)" if first.kind in ("cast", "fanout") else "->>"
        broker = _broker(options, step)
        lines: list[str] = []
        active = has_children and a != b
        if broker is not None:
            r = ids(broker)
            lines.append(f"    {a}{arrow}{r}: {text}")
            a = r
        lines.append(f"    {a}{arrow}{'+' if active else ''}{b}: {text}")
        if has_children:
            stack.append((step, active))
        else:
            _response(step, ids, lines, active=False, broker=broker)
        yield _Seg(tuple(lines), _labels(step, broker), open_())
    yield from close_until(0)


def _text(step: Step) -> str:
    return step.summary if step.summary is not None else step.first.message  # a group's summary (Step.is_group)


def _labels(step: Step, broker: str | None) -> tuple[str, ...]:
    first = step.first
    if broker is None:
        return (first.client.label, first.server.label)
    return (first.client.label, broker, first.server.label)


def _response(step: Step, ids: _Ids, lines: list[str], active: bool, broker: str | None = None) -> None:
    first = step.first
    a, b = ids(first.client.label), ids(first.server.label)
    if step.is_group:
        result = step.result or ""  # flow gives every group a result
    else:
        result = first.result
        if not result:
            if active and a != b:
                lines.append(f"    deactivate {b}")
            return
    arrow = "-->>-" if active and a != b else "-->>"
    if broker is not None:
        r = ids(broker)
        lines.append(f"    {b}{arrow}{r}: {quoting.mermaid_text(result)}")
        lines.append(f"    {r}-->>{a}: {quoting.mermaid_text(result)}")
    else:
        lines.append(f"    {b}{arrow}{a}: {quoting.mermaid_text(result)}")
    if not step.is_group:
        for note in first.notes:
            where = f"over {a},{b}" if a != b else f"over {a}"
            lines.append(f"    Note {where}: {quoting.mermaid_text(note)}")


def diagrams(flow: Flow, max_chars: int = MAX_CHARS, options: RenderOptions = DEFAULT) -> list[list[str]]:
    """The flow as one or more diagrams, each a list of lines.

    A diagram that would pass ``max_chars`` ends between two steps: requests
    still waiting for their response are deactivated there and re-activated,
    with a note, at the top of the next diagram.
    """
    ids = _Ids()
    out: list[list[str]] = []
    body: list[str] = []
    labels: list[str] = []
    size = 0
    still_open: tuple[tuple[str, str, str], ...] = ()

    def add_labels(new) -> None:
        for label in new:
            if label not in labels:
                labels.append(label)

    def finish(closing: tuple[tuple[str, str, str], ...]) -> None:
        head = ["sequenceDiagram", "    autonumber"]
        for label in labels:
            pid = ids(label)
            if pid == label:
                head.append(f"    participant {pid}")
            else:
                head.append(f"    participant {pid} as {quoting.mermaid_text(label)}")
        tail = [f"    deactivate {ids(b)}" for _, b, _ in reversed(closing)]
        if not out and flow.left_out:  # the background left out, said once, at the top
            text = quoting.mermaid_text(flow.left_out)
            head.append(f"    Note over {ids(labels[0])}: {text}" if labels else f"    %% {text}")
        out.append(head + body + tail)

    for seg in _segments(flow, ids, options):
        seg_size = sum(len(line) + 1 for line in seg.lines)
        if body and size + seg_size > max_chars:
            finish(still_open)
            body, labels, size = [], [], 0
            for a, b, text in still_open:
                add_labels((a, b))
                body.append(f"    Note over {ids(a)},{ids(b)}: {quoting.mermaid_text('continued: ' + text)}")
                body.append(f"    activate {ids(b)}")
            size = sum(len(line) + 1 for line in body)
        body += seg.lines
        size += seg_size
        add_labels(seg.labels)
        still_open = seg.open
    if body or not out:
        finish(())
    return out


def render(flow: Flow, options: RenderOptions = DEFAULT, max_chars: int = MAX_CHARS) -> Iterator[str]:
    """Yield the Mermaid code of one document (what standard output gets: :func:`first_part`)."""
    return first_part(diagrams(flow, max_chars, options))


def first_part(ds: list[list[str]]) -> Iterator[str]:
    """One document mermaid reads, from the diagrams of a flow: the first, and when there are more,
    a comment at its top saying so (a stream of several ``sequenceDiagram`` is no Mermaid document;
    ``-o FILE.mmd`` writes one file per diagram)."""
    if len(ds) > 1:
        yield f"%% osflow: {split_message(len(ds))}"
    yield from ds[0]


def split_message(parts: int) -> str:
    """What is said, on stderr and at the top of the document, when standard output holds part 1 only."""
    return (f"the flow is too long for one Mermaid diagram: this is part 1 of {parts}; "
            f"-o FILE.mmd writes all {parts}, one file each (FILE.mmd, FILE-2.mmd, ...)")

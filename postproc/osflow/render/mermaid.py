"""Mermaid ``sequenceDiagram`` code.

Participants are declared in order of first appearance; requests are ``->>``,
responses ``-->>``; a pair that has children activates its server while they
run.  Cache hits/misses and token identities become notes.  A flow too long for
Mermaid (50,000 characters per diagram) is split, between top-level steps, into
several diagrams.
"""

from __future__ import annotations

from typing import Iterator

from .. import quoting
from ..aggregate import group_result
from ..model import Flow, Step

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


def _chunks(flow: Flow, ids: _Ids) -> Iterator[tuple[list[str], list[str]]]:
    """One chunk per top-level step: (its lines, labels in order of appearance)."""
    steps = flow.steps
    i = 0
    while i < len(steps):
        j = i + 1
        while j < len(steps) and steps[j].depth > steps[i].depth:
            j += 1
        lines: list[str] = []
        labels: list[str] = []
        _emit(steps[i:j], ids, lines, labels)
        yield lines, labels
        i = j


def _emit(steps: list[Step], ids: _Ids, lines: list[str], labels: list[str]) -> None:
    open_: list[tuple[int, Step]] = []  # steps waiting for their response arrow

    def close_until(depth: int) -> None:
        while open_ and open_[-1][0] >= depth:
            _, s = open_.pop()
            _response(s, ids, lines, active=True)

    for k, step in enumerate(steps):
        close_until(step.depth)
        first = step.first
        for label in (first.client.label, first.server.label):
            if label not in labels:
                labels.append(label)
        a, b = ids(first.client.label), ids(first.server.label)
        has_children = k + 1 < len(steps) and steps[k + 1].depth > step.depth
        text = step.summary if step.is_group else first.message
        if has_children and a != b:
            lines.append(f"    {a}->>+{b}: {quoting.mermaid_text(text)}")
            open_.append((step.depth, step))
        else:
            lines.append(f"    {a}->>{b}: {quoting.mermaid_text(text)}")
            if has_children:
                open_.append((step.depth, step))
            else:
                _response(step, ids, lines, active=False)
    close_until(0)


def _response(step: Step, ids: _Ids, lines: list[str], active: bool) -> None:
    first = step.first
    a, b = ids(first.client.label), ids(first.server.label)
    if step.is_group:
        result = group_result(step.pairs)
    else:
        result = first.result
        if not result:
            if active and a != b:
                lines.append(f"    deactivate {b}")
            return
    arrow = "-->>-" if active and a != b else "-->>"
    lines.append(f"    {b}{arrow}{a}: {quoting.mermaid_text(result)}")
    if not step.is_group:
        for note in first.notes:
            where = f"over {a},{b}" if a != b else f"over {a}"
            lines.append(f"    Note {where}: {quoting.mermaid_text(note)}")


def diagrams(flow: Flow, max_chars: int = MAX_CHARS) -> list[list[str]]:
    """The flow as one or more diagrams, each a list of lines."""
    ids = _Ids()
    out: list[list[str]] = []
    body: list[str] = []
    labels: list[str] = []
    size = 0

    def finish() -> None:
        head = ["sequenceDiagram", "    autonumber"]
        for label in labels:
            pid = ids(label)
            if pid == label:
                head.append(f"    participant {pid}")
            else:
                head.append(f"    participant {pid} as {quoting.mermaid_text(label)}")
        out.append(head + body)

    for lines, chunk_labels in _chunks(flow, ids):
        chunk_size = sum(len(line) + 1 for line in lines)
        if body and size + chunk_size > max_chars:
            finish()
            body, labels, size = [], [], 0
        body += lines
        size += chunk_size
        for label in chunk_labels:
            if label not in labels:
                labels.append(label)
    if body or not out:
        finish()
    return out


def render(flow: Flow, max_chars: int = MAX_CHARS) -> Iterator[str]:
    """Yield the Mermaid code; several diagrams are separated by a blank line and a comment."""
    ds = diagrams(flow, max_chars)
    for n, lines in enumerate(ds, 1):
        if len(ds) > 1:
            if n > 1:
                yield ""
            yield f"%% osflow diagram {n} of {len(ds)}"
        yield from lines

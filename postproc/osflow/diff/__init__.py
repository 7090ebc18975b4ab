"""``osflow diff A B``: what changed between two runs of a command.

Each run is a recording folder, a capture or JSON Lines (:mod:`.match` reads them and matches their
steps by what they are).  The diff says which steps only the first run made (removed), which only
the second (added), which both made and got a different answer (an HTTP status, a cache hit for a
miss), and which got slower or faster (by at least :data:`~.match.MIN_MS` and
:data:`~.match.MIN_RATIO` of the first run's latency): as text (default), as one JSON document
(``--format json``), or as an HTML page with the two runs side by side (``-o diff.html``,
:mod:`.html`).  The words are the timeline's: tokens and passwords hidden, as everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

from .. import quoting
from .match import Diff, Line, Node, Run, capture_of, compare, from_flow, from_jsonl, is_jsonl, summary, tables_beside

__all__ = ["Diff", "Line", "Node", "Run", "add_arguments", "compare", "load", "render_json", "render_text", "run"]

#: ``-o FILE``'s extension -> format.
EXTENSIONS = {".html": "html", ".htm": "html", ".json": "json", ".txt": "text"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A",
                   help="the first run: a recording folder, a capture or JSON Lines (osflow-post -f json)")
    p.add_argument("b", metavar="B", help="the second run, the same way")
    p.add_argument("-f", "--format", choices=("text", "json", "html"),
                   help="output format (default: from -o's extension, else text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.txt text, .json JSON, .html side by side)")
    p.add_argument("--all", dest="show_all", action="store_true", help="compare the background pairs too")
    p.add_argument("--no-group", dest="group", action="store_false",
                   help="compare pair by pair (do not collapse runs of DB/cache calls)")
    p.add_argument("--traceback", action="store_true", help="show a Python traceback on errors")


def load(path: str, show_all: bool = False, group: bool = True) -> Run:
    """One run, read as :mod:`.match` says; named after the file or folder."""
    name = os.path.basename(os.path.normpath(path))
    if is_jsonl(path):
        run_ = from_jsonl(path, show_all)
        run_.name = name
        return run_
    from ..app import PostOptions, read

    capture = capture_of(path)
    ss, ps = tables_beside(capture)
    result = read(PostOptions(capture=capture, ss=ss, ps=ps, show_all=show_all, group=group), sys.stderr)
    return from_flow(result.flow, name, per_pair=not group)


def run(args: argparse.Namespace) -> int:
    """``osflow diff``: read both runs, write the diff; the exit status is 0 (a difference is no error)."""
    fmt = args.format or (EXTENSIONS.get(os.path.splitext(args.output)[1].lower(), "text") if args.output else "text")
    per_pair = is_jsonl(args.a) or is_jsonl(args.b)  # JSON Lines holds pairs, not steps: compare like with like
    d = compare(load(args.a, args.show_all, args.group and not per_pair),
                load(args.b, args.show_all, args.group and not per_pair))
    if fmt == "html":
        from .html import render as render_html

        lines: Iterator[str] = render_html(d)
    else:
        lines = render_json(d) if fmt == "json" else render_text(d)
    from ..app import write_file, write_lines

    if args.output:
        write_file(args.output, lines)
    else:
        write_lines(lines, sys.stdout)
    return 0


# --------------------------------------------------------------------------- text


def _ms(ms: float) -> str:
    return f"{ms:.1f}"


def _signed(ms: float) -> str:
    return f"{'+' if ms >= 0 else '−'}{abs(ms):.1f}"


def _step(node: Node, side: str) -> str:
    return f"{side}{node.n}"


def render_text(d: Diff) -> Iterator[str]:
    """The diff as text: the two runs, a summary, then each kind of change, in the merged tree's order."""
    for side, r in (("A", d.a), ("B", d.b)):
        yield f"{side}: {quoting.one_line(r.name)}: {r.steps} steps, {_ms(r.ms)} ms from the first frame to the last"
    yield summary(d)
    sections = (
        ("removed", "only in A (B does not make these calls)"),
        ("added", "only in B (A does not make these calls)"),
        ("changed", "answered otherwise"),
        ("slower", "slower in B"),
        ("faster", "faster in B"),
    )
    for kind, title in sections:
        lines = [x for x in d.lines if x.changed] if kind == "changed" else d.of(kind)
        yield ""
        yield f"{title}:" if lines else f"{title}: none"
        base = min((x.depth for x in lines), default=0)
        for x in lines:
            yield "  " + "  " * (x.depth - base) + _text_line(x, kind)


def _text_line(x: Line, kind: str) -> str:
    node = x.a if x.a is not None else x.b
    assert node is not None
    what = quoting.one_line(f"{node.who}: {node.text}")
    if kind in ("removed", "added"):
        side = "A" if kind == "removed" else "B"
        return f"{_step(node, side)}  {what}  ({_ms(node.ms)} ms)"
    assert x.a is not None and x.b is not None
    steps = f"{_step(x.a, 'A')} → {_step(x.b, 'B')}"
    if kind == "changed":
        return f"{steps}  {what}  ({quoting.one_line(x.a.outcome)} → {quoting.one_line(x.b.outcome)})"
    return f"{steps}  {what}  ({_ms(x.a.ms)} → {_ms(x.b.ms)} ms, {_signed(x.b.ms - x.a.ms)} ms)"


# --------------------------------------------------------------------------- JSON


def _node_json(node: Node | None) -> dict | None:
    if node is None:
        return None
    return {"step": node.n, "client": node.client, "server": node.server, "protocol": node.protocol,
            "request": node.template, "text": node.text, "outcome": node.outcome, "start": f"{node.start:.6f}",
            "ms": round(node.ms, 3), "pairs": node.pairs}  # fmt: skip


def render_json(d: Diff) -> Iterator[str]:
    """The diff as one JSON document: both runs, the counts, and every line of the merged tree
    (``kind``: same, removed, added, slower, faster; ``changed`` when the answer differs)."""
    head = {
        "a": {"name": d.a.name, "steps": d.a.steps, "ms": round(d.a.ms, 3)},
        "b": {"name": d.b.name, "steps": d.b.steps, "ms": round(d.b.ms, 3)},
        "counts": {"both": sum(1 for x in d.lines if x.a is not None and x.b is not None),
                   **{k: len(d.of(k)) for k in ("removed", "added", "slower", "faster")},
                   "changed": sum(1 for x in d.lines if x.changed)},  # fmt: skip
    }
    lines = [
        {"kind": x.kind, "changed": x.changed, "depth": x.depth, "a": _node_json(x.a), "b": _node_json(x.b),
         "delta_ms": round(x.b.ms - x.a.ms, 3) if x.a is not None and x.b is not None else None}
        for x in d.lines
    ]
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "lines": ['  # one line of the tree a line: diffs stay readable
    yield from (json.dumps(x, ensure_ascii=False) + ("," if k + 1 < len(lines) else "") for k, x in enumerate(lines))
    yield "]}"

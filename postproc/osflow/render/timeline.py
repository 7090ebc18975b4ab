"""The timeline: one row per step (a pair, or a group of similar pairs)."""

from __future__ import annotations

from collections.abc import Iterator

from tabulate import tabulate

from .. import quoting
from ..model import Flow
from .common import DEFAULT, RenderOptions, frame_ranges, seconds

HEADERS = ("step", "time (s)", "ms", "from", "to", "proto", "message", "result", "frames")


def rows(flow: Flow, width: int = 110, options: RenderOptions = DEFAULT) -> Iterator[tuple]:
    for n, step in enumerate(flow.steps, 1):
        first = step.first
        start = min(p.exchange.start for p in step.pairs)
        end = max(p.exchange.end for p in step.pairs)
        frames = [f for p in step.pairs for f in p.exchange.frames]
        if step.summary is not None:  # a group (Step.is_group): flow gives it a summary and a result
            message, result = step.summary, step.result or ""
        else:
            message, result = first.message, first.result or ("(cast: no reply)" if first.kind in ("cast", "fanout")
                                                              else "(no response)")
        if options.show_broker and first.via is not None and not step.is_group:
            message = f"{message} (via {first.via.label})"
        indent = "· " * step.depth
        yield (
            n,
            seconds(start, flow.origin),
            f"{(end - start) * 1000:.1f}",
            quoting.table_cell(first.client.label),
            quoting.table_cell(first.server.label),
            first.protocol,
            indent + quoting.table_cell(message, width),
            quoting.table_cell(result, 60),
            frame_ranges(frames, limit=3),
        )


def render(flow: Flow, options: RenderOptions = DEFAULT, tablefmt: str = "simple") -> Iterator[str]:
    """Yield the lines of the timeline table, then the token legend."""
    table_rows = list(rows(flow, options=options))
    if tablefmt == "github":  # a | inside a cell would end it
        table_rows = [tuple(quoting.markdown_cell(str(c)) for c in row) for row in table_rows]
    table = tabulate(
        table_rows,
        headers=HEADERS,
        tablefmt=tablefmt,
        disable_numparse=True,
        # tabulate before 0.10 fails on colalign with no rows (a capture without a single pair)
        colalign=("right", "right", "right", "left", "left", "left", "left", "left", "left") if table_rows else None,
    )
    yield from table.splitlines()
    if flow.left_out:
        yield ""
        yield flow.left_out
    if flow.tokens:
        yield ""
        yield "Tokens: " + ", ".join(t.describe() for t in flow.tokens)
        if options.show_secrets:
            for t in flow.tokens:
                yield f"  {t.id} = {t.secret or '(seen only as a cache key)'}"

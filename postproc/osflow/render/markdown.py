"""Markdown: the timeline as a GitHub table, then each Mermaid diagram in a fenced block."""

from __future__ import annotations

from collections.abc import Iterator

from ..model import Flow
from . import mermaid, timeline
from .common import DEFAULT, RenderOptions


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield a Markdown page: a title, the timeline, the diagram(s)."""
    yield "# osflow"
    yield ""
    yield from timeline.render(flow, options, tablefmt="github")
    for lines in mermaid.diagrams(flow, options=options):
        yield ""
        yield "```mermaid"
        yield from lines
        yield "```"

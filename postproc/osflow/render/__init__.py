"""Render stage: Flow -> lines of text.  Every renderer is a generator of lines.

* :mod:`.timeline` — the annotated table (tabulate);
* :mod:`.mermaid` — Mermaid ``sequenceDiagram`` code;
* :mod:`.jsonl` — JSON Lines, one object per pair;
* :mod:`.markdown` — the timeline and the diagram in one Markdown page;
* :mod:`.explain` — per connection, the names chosen and their evidence (``--explain``);
* :mod:`.html` — the self-contained HTML report: waterfall, drawn diagram, tables;
* :mod:`.otlp` — OTLP/JSON, one OpenTelemetry ``TracesData`` per top-level request;
* :mod:`.stats` — count, latency percentiles, errors per service and endpoint;
* :mod:`.map` — the service map, a Mermaid ``flowchart``: who calls whom, how often, how slowly.

:data:`RENDERERS` maps each output format to the module that renders it; every such
module has ``render(flow) -> Iterator[str]``.  All escaping lives in :mod:`osflow.quoting`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Literal

#: An output format of ``osflow-post --format``.
Format = Literal["timeline", "mermaid", "json", "md", "html", "otlp", "stats", "map"]

#: Output format -> the module (in this package) that renders it.
RENDERERS: dict[str, str] = {"timeline": "timeline", "mermaid": "mermaid", "json": "jsonl", "md": "markdown",
                             "html": "html", "otlp": "otlp", "stats": "stats", "map": "map"}

FORMATS: tuple[str, ...] = tuple(RENDERERS)


def renderer(fmt: str) -> ModuleType:
    """The module that renders ``fmt`` (imported on first use: ``--help`` stays fast).

    >>> renderer("json").__name__
    'osflow.render.jsonl'
    """
    return importlib.import_module(f"{__name__}.{RENDERERS[fmt]}")

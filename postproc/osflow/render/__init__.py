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

Each output format is declared once, in :data:`OUTPUTS`: the module that renders it and what
it needs (:class:`Output`); :mod:`osflow.app` decides from the declaration how to read the
input and where the lines go.  Every such module has ``render(flow, options) -> Iterator[str]``
(``options``: :class:`~osflow.render.common.RenderOptions`), and a streamed one also
``render_parts(parts, options)``.  All escaping lives in :mod:`osflow.quoting`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

#: An output format of ``osflow-post --format``: one of :data:`FORMATS`, each declared in :data:`OUTPUTS`.
Format = str

#: Which flow a format is drawn from.  ``streamed``: written while the input is read, a part at a
#: time (the module's ``render_parts``; :class:`osflow.pipeline.Stream`), memory holds what is in
#: progress; ``collected``: drawn at the end from the flow the stream built (:func:`osflow.pipeline.collect`),
#: so that after the last packet only the last horizons are left to place; ``whole``: drawn from
#: :func:`osflow.pipeline.analyse`'s flow, which keeps every connection (the HTML report shows them).
Needs = Literal["streamed", "collected", "whole"]


@dataclass(frozen=True)
class Output:
    """An output format's declaration: what its renderer needs."""

    format: str  #: the ``--format`` name
    module: str  #: the module of this package that renders it
    extensions: tuple[str, ...] = ()  #: ``-o FILE`` names ending so (case aside) are in this format
    needs: Needs = "whole"
    #: its lines are the OTLP traces themselves (``--otlp-endpoint`` sends them as they are written); with
    #: any other format the traces are rendered from the whole flow at the end and sent
    traces: bool = False
    explain_after: bool = False  #: ``--explain``'s table follows it on stdout (else it goes to stderr)
    mermaid_js: bool = False  #: it draws with mermaid's build (``--mermaid-js``), found before reading
    #: the module's function giving the output as several documents, ``-o FILE`` writing FILE, FILE-2, …
    #: (a diagram too long for Mermaid); None: one document
    documents: str | None = None


#: Every output format, in ``--format``'s order.  Adding one is a module here and a line below.
OUTPUTS: tuple[Output, ...] = (
    Output("timeline", "timeline", (".txt",), needs="collected", explain_after=True),
    Output("mermaid", "mermaid", (".mmd",), needs="collected", documents="diagrams"),
    Output("json", "jsonl", (".json", ".jsonl"), needs="streamed"),
    Output("md", "markdown", (".md",), needs="collected", explain_after=True),
    Output("html", "html", (".html", ".htm"), needs="whole", mermaid_js=True),
    Output("otlp", "otlp", (".otlp", ".otlp.jsonl", ".otlp.json"), needs="streamed", traces=True),
    Output("stats", "stats", (), needs="streamed"),
    Output("map", "map", (), needs="collected"),
)

#: Output format -> its declaration.
BY_FORMAT: dict[str, Output] = {o.format: o for o in OUTPUTS}

#: Output format -> the module (in this package) that renders it.
RENDERERS: dict[str, str] = {o.format: o.module for o in OUTPUTS}

FORMATS: tuple[str, ...] = tuple(BY_FORMAT)


def declaration(fmt: str) -> Output:
    """The declaration of ``fmt``.

    >>> declaration("json").needs, declaration("html").needs
    ('streamed', 'whole')
    """
    return BY_FORMAT[fmt]


def format_of(path: str) -> str | None:
    """The format whose extension ``path`` ends with (the longest that fits), or None.

    >>> format_of("flow.MD"), format_of("traces.otlp.jsonl"), format_of("flow.jsonl"), format_of("x.pcap")
    ('md', 'otlp', 'json', None)
    """
    name = os.path.basename(path).lower()
    fits = [(len(ext), o.format) for o in OUTPUTS for ext in o.extensions
            if name.endswith(ext) and len(name) > len(ext)]
    return max(fits)[1] if fits else None


def renderer(fmt: str) -> ModuleType:
    """The module that renders ``fmt`` (imported on first use: ``--help`` stays fast).

    >>> renderer("json").__name__
    'osflow.render.jsonl'
    """
    return importlib.import_module(f"{__name__}.{RENDERERS[fmt]}")

"""The HTML report: one self-contained file (``--format html``, ``-o report.html``).

Sections, in this order: the waterfall (every step a bar over time, children indented below
their parent, width = latency, colour = the called service, errors marked, the critical path
of each top-level request outlined; a click shows the pair), the sequence diagram (the same
Mermaid code as ``--format mermaid``, drawn in the browser by mermaid's own build, inlined),
participants with their evidence, tokens (fingerprints only), the timeline, warnings.

Nothing is loaded from elsewhere: the style, the report's own small script
(``osflow/data/report/``) and mermaid's build (:mod:`osflow.mermaidjs`) are inlined, and the page's
Content-Security-Policy (:data:`CSP`) forbids the browser any other source.  Without a
mermaid build the report shows the Mermaid source and one line on how to get the drawing.  The
data the script shows on a click is one JSON document (``<script type="application/json">``).
All escaping is :mod:`osflow.quoting`'s (``html_text``, ``script_json``, ``inline_script``).
Same flow, same bytes: nothing depends on the clock, the input's path or the machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from .. import protocols, quoting
from ..model import Flow, Step
from . import map as svcmap
from . import mermaid, timeline
from .common import DEFAULT, RenderOptions, frame_ranges, seconds
from .steps import Row, critical_chain, pair_error, rows, subtree

__all__ = ["Row", "critical_chain", "pair_error", "render", "rows", "subtree"]

#: A diagram part of the report holds at most this many characters of Mermaid (about 150 arrows).
DIAGRAM_CHARS = 15_000
#: A flow of more steps gets an overview diagram first: HTTP and RPC only, no SQL or memcached.
OVERVIEW_STEPS = 60
#: At most this many pairs of a group are listed in its details (and drawn as ticks in its bar).
GROUP_PAIRS = 300
#: At most this many pieces of evidence are listed per participant.
EVIDENCE = 6
#: Bar colours, one per called service in order of first appearance (then again from the first).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#a0cbe8",
           "#8cd17d", "#bab0ac", "#d37295", "#499894", "#b6992d", "#ffbe7d", "#79706e", "#d4a6c8", "#86bcb6",
           "#fabfd2", "#f1ce63")  # fmt: skip
#: The id of the ``<script>`` element holding mermaid's build (tests cut it out of golden files).
LIBRARY_ID = "osflow-mermaid-js"
#: The browser loads nothing from elsewhere, whatever a script asks: inline script and style only.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:"
#: How to get the drawing, when the report was written without a mermaid build (the app says more).
HINT = "write it again with --mermaid-js PATH/mermaid.min.js (see README, The HTML report)"
_ASSETS = Path(__file__).resolve().parents[1] / "data" / "report"


# --------------------------------------------------------------------------- helpers


def _e(text: object) -> str:
    return quoting.html_text(None if text is None else str(text))


def _ms(seconds_: float) -> str:
    return f"{seconds_ * 1000:.1f}"


def _pct(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x else "0"


def _tick_step(total_ms: float) -> float:
    """A round tick interval (1, 2 or 5 × 10^k ms) giving at most 10 ticks.

    >>> _tick_step(1820), _tick_step(9), _tick_step(0)
    (200.0, 1.0, 1.0)
    """
    if total_ms <= 0:
        return 1.0
    raw = total_ms / 10
    base = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * base >= raw:
            return float(m * base)
    return float(10 * base)


def _text(step: Step) -> tuple[str, str]:
    """The step's message and result, as the timeline words them."""
    first = step.first
    if step.is_group:
        return step.summary or "", step.result or ""
    if first.result:
        return first.message, first.result
    return first.message, "(cast: no reply)" if first.kind in ("cast", "fanout") else "(no response)"


class _Colours:
    """A palette index per called service, in order of first appearance."""

    def __init__(self, flow: Flow) -> None:
        self.index: dict[str, int] = {}
        for step in flow.steps:
            self.index.setdefault(step.first.server.label, len(self.index) % len(PALETTE))

    def __call__(self, label: str) -> int:
        return self.index.get(label, 0)


# --------------------------------------------------------------------------- the document


def render(flow: Flow, options: RenderOptions = DEFAULT, library=None, hint: str = HINT) -> Iterator[str]:
    """Yield the report's lines; ``library`` is an :class:`osflow.mermaidjs.MermaidBuild` or None,
    ``hint`` how to get one (shown when there is none: ``osflow.mermaidjs.INSTALL_HINT``)."""
    rs = rows(flow)
    colours = _Colours(flow)
    top = [r for r in rs if r.parent is None]
    title = f"osflow: {top[0].step.first.message}" if top else "osflow"
    yield "<!DOCTYPE html>"
    yield '<html lang="en">'
    yield "<head>"
    yield '<meta charset="utf-8">'
    yield '<meta name="viewport" content="width=device-width, initial-scale=1">'
    yield '<meta name="generator" content="osflow">'
    yield f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    yield f"<title>{_e(title)}</title>"
    yield "<style>"
    yield from _asset("report.css")
    yield from (f".s{i} {{ --c: {c}; }}" for i, c in enumerate(PALETTE))
    yield "</style>"
    yield "</head>"
    yield f'<body data-mermaid="{"pending" if library is not None else "missing"}">'
    yield from _header(flow, rs, top)
    yield from _waterfall(flow, rs, colours)
    yield from _map(flow, library)
    yield from _diagram(flow, library, hint, options)
    yield from _participants(flow, colours)
    yield from _tokens(flow, options.show_secrets)
    yield from _timeline(flow, options)
    yield from _warnings(flow)
    yield '<script type="application/json" id="osflow-data">'
    yield '{"steps": ['  # one step a line: golden files' diffs stay readable
    steps = _data(flow, rs, options)
    yield from (quoting.script_json(d) + ("," if k + 1 < len(steps) else "") for k, d in enumerate(steps))
    yield "]}"
    yield "</script>"
    if library is not None:
        yield f'<script id="{LIBRARY_ID}">'
        yield f"/* mermaid {library.version or '(version unknown)'}: MIT licence, the npm package mermaid */"
        source = quoting.inline_script(library.source)
        yield from (source[:-1] if source.endswith("\n") else source).split("\n")
        yield "</script>"
    yield "<script>"
    yield from _asset("report.js")
    yield "</script>"
    yield "</body>"
    yield "</html>"


def _asset(name: str) -> Iterator[str]:
    yield from (_ASSETS / name).read_text(encoding="utf-8").rstrip("\n").split("\n")


def _header(flow: Flow, rs: list[Row], top: list[Row]) -> Iterator[str]:
    labels = {label for r in rs for label in (r.step.first.client.label, r.step.first.server.label)}
    reach = max((r.reach for r in rs), default=flow.origin)
    errors = sum(r.errors for r in rs)
    yield "<header>"
    yield "<h1>osflow report</h1>"
    yield (f'<p class="summary">{len(flow.pairs)} request/response pairs in {len(rs)} steps, {len(top)} at the top, '
           f"{len(labels)} participants, {seconds(reach, flow.origin)} s from the first frame"
           f"{f', {errors} with an error' if errors else ''}.</p>")  # fmt: skip
    left_out = getattr(flow, "left_out", "")  # the background pairs osflow.foreground leaves out, if any
    if left_out:
        yield f'<p class="summary">{_e(left_out)}</p>'
    yield ('<nav><a href="#waterfall">Waterfall</a> · <a href="#map">Service map</a> · '
           '<a href="#diagram">Sequence diagram</a> · '
           '<a href="#participants">Participants</a> · <a href="#tokens">Tokens</a> · '
           '<a href="#timeline">Timeline</a> · <a href="#warnings">Warnings</a></nav>')  # fmt: skip
    yield "</header>"


def _waterfall(flow: Flow, rs: list[Row], colours: _Colours) -> Iterator[str]:
    reach = max((r.reach for r in rs), default=flow.origin)
    total = max(reach - flow.origin, 1e-6)
    step_ms = _tick_step(total * 1000)
    yield '<section id="waterfall">'
    yield "<h2>Waterfall</h2>"
    yield ('<p class="help">Every step a bar from its first frame to its last: width = latency, colour = the '
           "service called, children indented below their caller (▾ folds them). A bar's faint tail runs to the "
           "end of its children (a cast returns before they are done). Below each top-level request, bars in full "
           "colour are its critical path, the chain of children that set its end time; the others are faded. "
           '<span class="key err-key">red</span>: HTTP 5xx, a failed RPC call, a MySQL error; '
           '<span class="key client-key">orange</span>: HTTP 4xx. Click a row for the pair and its own diagram '
           '(under <a href="#diagram">Sequence diagram</a>).</p>')  # fmt: skip
    yield '<p class="controls"><label><input type="checkbox" id="show-critical" checked> show the critical path</label>'
    legend = " ".join(f'<span class="swatch s{i}">{_e(label)}</span>' for label, i in colours.index.items())
    yield f'<span class="legend">{legend}</span><button type="button" id="unzoom" hidden></button></p>'
    yield '<div class="wf" role="table" aria-label="waterfall">'
    yield '<div class="wf-axis" aria-hidden="true"><div class="wf-label">step · from → to · message</div>'
    yield '<div class="wf-ms">ms</div><div class="wf-track">'
    k = 0
    while k * step_ms <= total * 1000 + 1e-9:
        left = k * step_ms / (total * 1000) * 100
        yield f'<span class="tick" style="left:{_pct(left)}%">{k * step_ms:g}</span>'
        k += 1
    yield "</div></div>"
    for i, r in enumerate(rs):
        yield from _row(flow, r, i, total, colours)
    yield "</div>"
    yield ('<aside id="detail" hidden><button type="button" class="close" aria-label="close">×</button>'
           '<div id="detail-body"></div></aside>')  # fmt: skip
    yield "</section>"


def _row(flow: Flow, r: Row, i: int, total: float, colours: _Colours) -> Iterator[str]:
    first = r.step.first
    message, result = _text(r.step)
    classes = ["wf-row", f"s{colours(first.server.label)}"]
    if r.critical:
        classes.append("crit")
    if r.error:
        classes.append(f"bad-{r.error}")
    if r.children:
        classes.append("parent")
    left = (r.start - flow.origin) / total * 100
    width = (r.end - r.start) / total * 100
    tail = (r.reach - r.end) / total * 100
    who = f"{first.client.label} → {first.server.label}"
    tip = f"{r.n}. {who}: {message} — {result} ({_ms(r.end - r.start)} ms)"
    twisty = '<button type="button" class="tw" aria-expanded="true" aria-label="fold">▾</button>' if r.children else ""
    badge = f'<b class="badge">{_e(_badge(r))}</b>' if r.error else ""
    parent = f' data-parent="{r.parent}"' if r.parent is not None else ""
    yield (f'<div class="{" ".join(classes)}" id="w{r.n}" data-row="{i}" data-depth="{r.step.depth}"{parent} '
           f'tabindex="0" role="row" title="{_e(tip)}">')  # fmt: skip
    yield (f'<div class="wf-label" style="padding-left:{0.3 + 1.1 * r.step.depth:.1f}em">{twisty}'
           f'<span class="n">{r.n}</span> <span class="who">{_e(who)}</span> {badge}'
           f'<span class="msg">{_e(message)}</span></div>')  # fmt: skip
    yield f'<div class="wf-ms">{_ms(r.end - r.start)}</div>'
    bar = f'<div class="wf-track"><span class="bar" style="left:{_pct(left)}%;width:{_pct(width)}%"></span>'
    if tail > 0.05:
        bar += f'<span class="tail" style="left:{_pct(left + width)}%;width:{_pct(tail)}%"></span>'
    if r.step.is_group:
        for p in r.step.pairs[:GROUP_PAIRS]:
            pl = (p.exchange.start - flow.origin) / total * 100
            pw = (p.exchange.end - p.exchange.start) / total * 100
            bad = " bad" if pair_error(p) else ""
            bar += f'<i class="tick{bad}" style="left:{_pct(pl)}%;width:{_pct(pw)}%"></i>'
    yield bar + "</div>"
    yield "</div>"


def _badge(r: Row) -> str:
    if r.step.is_group:
        return f"{r.errors} error{'s' if r.errors > 1 else ''}"
    ex = r.step.first.exchange
    return protocols.of(ex).badge(ex)


def _diagram(flow: Flow, library, hint: str, options: RenderOptions) -> Iterator[str]:
    yield '<section id="diagram">'
    yield "<h2>Sequence diagram</h2>"
    if library is None:
        yield ('<p class="missing" id="mermaid-missing"><strong>The diagram is not drawn</strong>: osflow found no '
               f"mermaid build when it wrote this report; {_e(hint)}. Its Mermaid source is below.</p>")
    else:
        yield '<p class="missing" id="mermaid-failed" hidden></p>'
        yield '<p class="controls"><label><input type="checkbox" id="fit"> fit the diagrams to the window</label></p>'
    yield ('<p class="help">A click on a step of the waterfall (or <code>#step=N</code> at the end of this file\'s '
           "address, N as the timeline numbers it) draws that step's own exchange here: its participants only, "
           "everything it caused.</p>")  # fmt: skip
    cls = "mermaid" if library is not None else "mermaid-source"
    yield (f'<div id="drill" hidden data-class="{cls}"><nav id="crumbs" aria-label="the step and its callers"></nav>'
           '<div id="drill-parts"></div></div>')  # fmt: skip
    parts: list[tuple[str, list[str], bool]] = []
    if len(flow.steps) > OVERVIEW_STEPS:
        overview = replace(flow, steps=tuple(s for s in flow.steps if s.first.protocol not in ("mysql", "memcache")))
        for k, lines in enumerate(d := mermaid.diagrams(overview, DIAGRAM_CHARS, options), 1):
            part = f", part {k} of {len(d)}" if len(d) > 1 else ""
            parts.append((f"Overview: HTTP and RPC only, SQL and memcached left out{part}", lines, True))
    full = mermaid.diagrams(flow, DIAGRAM_CHARS, options)
    for k, lines in enumerate(full, 1):
        part = f", part {k} of {len(full)}" if len(full) > 1 else ""
        parts.append((f"Every step{part}", lines, not parts and k == 1))
    for k, (caption, lines, open_) in enumerate(parts, 1):
        yield f'<details class="diagram" id="d{k}"{" open" if open_ else ""}><summary>{_e(caption)}</summary>'
        text = [quoting.html_text(line, lines=True) for line in lines]
        yield f'<div class="scroll"><pre class="{cls}">' + text[0]  # a newline right after <pre> would be dropped
        yield from text[1:]
        yield "</pre></div></details>"
    yield "</section>"


def _map(flow: Flow, library) -> Iterator[str]:
    graph = svcmap.graph(flow)
    yield '<section id="map">'
    yield "<h2>Service map</h2>"
    yield ('<p class="help">Who calls whom: one arrow per caller, callee and kind (HTTP solid, RPC dotted, SQL long '
           "dashes, memcached short dashes), with the calls' count, p50/p95 latency (ms) and errors; thick: where the "
           "command's critical path spends at least 5% of its time. The same as <code>--format map</code>.</p>")
    cls = "mermaid" if library is not None else "mermaid-source"
    text = [quoting.html_text(line, lines=True) for line in svcmap.render(flow)]
    yield f'<div class="scroll"><pre class="{cls}" id="map-diagram">' + text[0]
    yield from text[1:]
    yield "</pre></div>"
    yield ("<table class=\"edges\"><thead><tr><th>caller</th><th>callee</th><th>kind</th><th>calls</th><th>p50 ms</th>"
           "<th>p95 ms</th><th>errors</th><th>HTTP 4xx</th><th>critical path ms</th></tr></thead><tbody>")  # fmt: skip
    for e in graph.edges:
        crit = f"{e.critical_ms:.1f}" if e.critical_ms else ""
        if e.critical:
            crit = f'<b class="crit">{crit}</b>'
        yield (f"<tr><td>{_e(e.client)}</td><td>{_e(e.server)}</td><td>{e.kind}</td><td>{e.count}</td>"
               f"<td>{_ms(svcmap.percentile(e.ms, 50) / 1000)}</td><td>{_ms(svcmap.percentile(e.ms, 95) / 1000)}</td>"
               f"<td>{e.errors or ''}</td><td>{e.client_errors or ''}</td><td>{crit}</td></tr>")  # fmt: skip
    yield "</tbody></table>"
    yield "</section>"


def _participants(flow: Flow, colours: _Colours) -> Iterator[str]:
    seen: dict[str, dict] = {}
    for c in flow.connections:
        for role, who, addr in (("client", c.client, c.client_address), ("server", c.server, c.server_address)):
            d = seen.setdefault(who.label, {"p": who, "roles": [], "evidence": [], "connections": 0, "addresses": []})
            if role not in d["roles"]:
                d["roles"].append(role)
            if who.evidence not in d["evidence"]:
                d["evidence"].append(who.evidence)
            if role == "server" and str(addr) not in d["addresses"]:
                d["addresses"].append(str(addr))
            d["connections"] += 1
    yield '<section id="participants">'
    yield "<h2>Participants</h2>"
    yield ('<table><thead><tr><th>participant</th><th>service</th><th>named from</th><th>as</th>'
           "<th>connections</th><th>listens on</th><th>evidence</th></tr></thead><tbody>")  # fmt: skip
    for label, d in seen.items():
        p = d["p"]
        ev = d["evidence"]
        more = f"<li>… and {len(ev) - EVIDENCE} more</li>" if len(ev) > EVIDENCE else ""
        evidence = "".join(f"<li>{_e(x)}</li>" for x in ev[:EVIDENCE]) + more
        swatch = f'<span class="swatch s{colours.index[label]}"></span>' if label in colours.index else ""
        addresses = ", ".join(d["addresses"][:EVIDENCE]) + (" …" if len(d["addresses"]) > EVIDENCE else "")
        yield (f"<tr><td>{swatch}{_e(label)}</td><td>{_e(p.service or '')}</td><td>{_e(p.source)}</td>"
               f"<td>{_e(' & '.join(d['roles']))}</td><td>{d['connections']}</td><td>{_e(addresses)}</td>"
               f"<td><ul>{evidence}</ul></td></tr>")  # fmt: skip
    yield "</tbody></table>"
    yield "</section>"


def _tokens(flow: Flow, show_secrets: bool) -> Iterator[str]:
    uses: dict[str, int] = {}
    for p in flow.pairs:
        for tid in p.tokens:
            uses[tid] = uses.get(tid, 0) + 1
    yield '<section id="tokens">'
    yield "<h2>Tokens</h2>"
    if not flow.tokens:
        yield "<p>No token seen.</p>"
    else:
        secret = "<th>token (--show-secrets)</th>" if show_secrets else ""
        yield ("<p class=\"help\">A token's fingerprint is the first 8 hex digits of its SHA-256 (the Wireshark "
               "plugin shows the same); the token itself is not in this file"
               f"{' — except below: it was written with --show-secrets' if show_secrets else ''}.</p>")
        yield ("<table><thead><tr><th>token</th><th>owner</th><th>fingerprint</th><th>pairs</th>"
               f"{secret}</tr></thead><tbody>")
        for t in flow.tokens:
            shown = f"<td><code>{_e(t.secret or '(seen only as a cache key)')}</code></td>" if show_secrets else ""
            yield (f"<tr><td>{_e(t.id)}</td><td>{_e(t.owner or '')}</td><td><code>{_e(t.fingerprint)}</code></td>"
                   f"<td>{uses.get(t.id, 0)}</td>{shown}</tr>")  # fmt: skip
        yield "</tbody></table>"
    yield "</section>"


def _timeline(flow: Flow, options: RenderOptions) -> Iterator[str]:
    yield '<section id="timeline">'
    yield "<h2>Timeline</h2>"
    heads = "".join(f"<th>{_e(h)}</th>" for h in timeline.HEADERS)
    yield f'<table class="timeline"><thead><tr>{heads}</tr></thead><tbody>'
    for row in timeline.rows(flow, options=options):
        n = row[0]
        cells = [f'<td><a href="#w{n}">{n}</a></td>'] + [f"<td>{_e(c)}</td>" for c in row[1:]]
        yield "<tr>" + "".join(cells) + "</tr>"
    yield "</tbody></table>"
    yield "</section>"


def _warnings(flow: Flow) -> Iterator[str]:
    yield '<section id="warnings">'
    yield "<h2>Warnings</h2>"
    if not flow.warnings:
        yield "<p>None.</p>"
    else:
        yield "<ul>"
        yield from (f"<li>{_e(w)}</li>" for w in flow.warnings)
        yield "</ul>"
    yield "</section>"


# --------------------------------------------------------------------------- the script's data


def _data(flow: Flow, rs: list[Row], options: RenderOptions = DEFAULT) -> list[dict]:
    """What a click shows, per row: the step, its pair(s), both ends and their evidence, and the
    Mermaid source of the step's own diagram (its participants only, everything below it)."""
    steps = []
    for i, r in enumerate(rs):
        first = r.step.first
        ex = first.exchange
        message, result = _text(r.step)
        d: dict = {
            "n": r.n,
            "protocol": first.protocol,
            "client": first.client.label,
            "server": first.server.label,
            "client_evidence": first.client.evidence,
            "server_evidence": first.server.evidence,
            "client_address": str(ex.client),
            "server_address": str(ex.server),
            "request": message,
            "response": result,
            "start": seconds(r.start, flow.origin),
            "ms": _ms(r.end - r.start),
            "frames": frame_ranges([f for p in r.step.pairs for f in p.exchange.frames], limit=12),
            "critical": r.critical,
            "error": r.error,
        }
        if r.reach > r.end:
            d["children_until"] = seconds(r.reach, flow.origin)
        if first.kind:
            d["kind"] = first.kind
            if first.via is not None:
                d["via"] = first.via.label
        elif first.proxies and not r.step.is_group:  # a request through proxies: which, in order
            d["via"] = ", ".join(p.label for p in first.proxies)
        tokens = sorted({t for p in r.step.pairs for t in p.tokens}, key=lambda t: (len(t), t))
        if tokens:
            d["tokens"] = tokens
        if not r.step.is_group and first.notes:
            d["notes"] = list(first.notes)
        if r.step.is_group:
            d["pairs"] = [
                [p.id, seconds(p.exchange.start, flow.origin), _ms(p.exchange.end - p.exchange.start), p.request,
                 p.response if p.response is not None else "(no response)", frame_ranges(p.exchange.frames, 4),
                 pair_error(p)]  # fmt: skip
                for p in r.step.pairs[:GROUP_PAIRS]
            ]
            d["pair_count"] = len(r.step.pairs)
            d["connections"] = len({p.exchange.stream for p in r.step.pairs})
        else:
            d["stream"] = ex.stream
        if r.parent is not None:
            d["parent"] = rs[r.parent].n
        d["diagram"] = _step_diagram(flow, rs, i, options)
        steps.append(d)
    return steps


def _step_diagram(flow: Flow, rs: list[Row], i: int, options: RenderOptions = DEFAULT) -> list[str]:
    """Row ``i``'s own sequence diagram (the step and all its descendants, nothing before or after),
    in parts of at most :data:`DIAGRAM_CHARS` as the whole one is."""
    own = replace(flow, steps=tuple(rs[k].step for k in subtree(rs, i)), left_out=None)
    return ["\n".join(lines) for lines in mermaid.diagrams(own, DIAGRAM_CHARS, options)]

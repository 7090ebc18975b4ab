"""``osflow diff A B -o diff.html``: the two runs side by side, one self-contained page.

One row per line of the merged tree (:class:`~osflow.diff.match.Line`): the first run's step on the
left, the second's on the right, indented by depth; a step only one run made is red (removed) or
green (added), a slower one orange, a faster one blue, a different answer marked; each step has a
bar from its start to its end on its own run's time axis, so the two waterfalls sit side by side.
Nothing is loaded from elsewhere (the report's Content-Security-Policy); no script.  All escaping is
:func:`osflow.quoting.html_text`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .. import quoting
from .match import Diff, Line, Node, Run, summary

CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = Path(__file__).resolve().parents[1] / "data" / "report" / "diff.css"


def _e(text: object) -> str:
    return quoting.html_text(str(text))


def render(d: Diff) -> Iterator[str]:
    """Yield the page's lines."""
    yield "<!DOCTYPE html>"
    yield '<html lang="en">'
    yield "<head>"
    yield '<meta charset="utf-8">'
    yield '<meta name="generator" content="osflow">'
    yield f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    yield f"<title>osflow diff: {_e(d.a.name)} → {_e(d.b.name)}</title>"
    yield "<style>"
    yield from _CSS.read_text(encoding="utf-8").rstrip("\n").split("\n")
    yield "</style>"
    yield "</head>"
    yield "<body>"
    yield "<header>"
    yield "<h1>osflow diff</h1>"
    for side, r in (("A", d.a), ("B", d.b)):
        yield f'<p class="run"><b>{side}</b> {_e(r.name)}: {r.steps} steps, {r.ms:.1f} ms</p>'
    yield f'<p class="summary">{_e(summary(d))}.</p>'
    yield ('<p class="help"><span class="key removed">only in A</span> <span class="key added">only in B</span> '
           '<span class="key slower">slower in B</span> <span class="key faster">faster in B</span> '
           '<span class="key changed">answered otherwise</span> — each bar on its own run\'s time axis; slower or '
           "faster: by at least 1 ms and 20% of A's latency.</p>")  # fmt: skip
    yield "</header>"
    cols = '<col class="n"><col class="what"><col class="bar">'
    yield f'<table class="diff"><colgroup>{cols}<col class="delta">{cols}</colgroup>'
    yield '<thead><tr><th colspan="3">A</th><th class="delta">B − A</th>'
    yield '<th colspan="3">B</th></tr></thead><tbody>'
    for line in d.lines:
        yield from _row(line, d)
    yield "</tbody></table>"
    yield "</body>"
    yield "</html>"


def _row(line: Line, d: Diff) -> Iterator[str]:
    classes = [line.kind] + (["changed"] if line.changed else [])
    delta = ""
    if line.a is not None and line.b is not None:
        ms = line.b.ms - line.a.ms
        delta = f"{'+' if ms >= 0 else '−'}{abs(ms):.1f} ms"
        if line.changed:
            delta += f"<br>{_e(line.a.outcome)} → {_e(line.b.outcome)}"
    yield f'<tr class="{" ".join(classes)}">'
    yield from _cells(line.a, d.a, line.depth, "A")
    yield f'<td class="delta">{delta}</td>'
    yield from _cells(line.b, d.b, line.depth, "B")
    yield "</tr>"


def _cells(node: Node | None, run: Run, depth: int, side: str) -> Iterator[str]:
    if node is None:
        yield '<td class="n"></td><td class="what"></td><td class="bar"></td>'
        return
    total = max(run.ms, 1e-6)
    left = min(max(node.start * 1000 / total * 100, 0.0), 100.0)
    width = min(max(node.ms / total * 100, 0.2), 100.0 - left)
    yield f'<td class="n">{side}{node.n}</td>'
    yield (f'<td class="what" style="padding-left:{0.3 + 1.1 * depth:.1f}em"><span class="who">{_e(node.who)}</span> '
           f'<span class="msg">{_e(node.text)}</span></td>')  # fmt: skip
    yield (f'<td class="bar"><span class="track"><span class="b" style="left:{left:.3f}%;width:{width:.3f}%">'
           f"</span></span>{node.ms:.1f} ms</td>")

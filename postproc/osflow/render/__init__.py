"""Render stage: Flow -> lines of text.  Every renderer is a generator of lines.

* :mod:`.timeline` — the annotated table (tabulate);
* :mod:`.mermaid` — Mermaid ``sequenceDiagram`` code;
* :mod:`.jsonl` — JSON Lines, one object per pair.

All escaping lives in :mod:`osflow.quoting`.
"""

FORMATS = ("timeline", "mermaid", "json", "md")

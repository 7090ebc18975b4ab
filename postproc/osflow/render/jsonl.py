"""JSON Lines: one object per pair (never grouped), in request order."""

from __future__ import annotations

import json
from typing import Iterator

from ..model import Flow, Pair
from .common import seconds


def _obj(pair: Pair, origin: float) -> list[tuple[str, str]]:
    ex = pair.exchange
    d = json.dumps
    return [
        ("id", d(pair.id)),
        ("parent", d(pair.parent)),
        ("start", seconds(ex.start, origin)),
        ("end", seconds(ex.end, origin)),
        ("client", d(pair.client.label, ensure_ascii=False)),
        ("server", d(pair.server.label, ensure_ascii=False)),
        ("client_evidence", d(pair.client.evidence, ensure_ascii=False)),
        ("server_evidence", d(pair.server.evidence, ensure_ascii=False)),
        ("protocol", d(pair.protocol)),
        ("request", d(pair.request, ensure_ascii=False)),
        ("response", d(pair.response, ensure_ascii=False)),
        ("frames", d(list(ex.frames))),
        ("stream", d(ex.stream)),
        ("client_address", d(str(ex.client))),
        ("server_address", d(str(ex.server))),
        ("tokens", d(list(pair.tokens))),
        ("noise", d(pair.noise)),
    ]


def render(flow: Flow) -> Iterator[str]:
    """Yield one JSON object per pair.  Times are seconds from the first frame, 6 decimals."""
    for pair in flow.pairs:
        yield "{" + ", ".join(f'"{k}": {v}' for k, v in _obj(pair, flow.origin)) + "}"

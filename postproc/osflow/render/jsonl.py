"""JSON Lines: one object per pair (never grouped), in request order.

An RPC pair (``"protocol": "rpc"``) also says its ``kind`` (call, cast, fanout), ``method``,
the broker it went through (``via``, ``via_address``), the ``exchange`` and ``routing_key`` it
was published to, how many consumers it was ``delivered`` to, the callee's connection
(``server_stream``), and the oslo ``request_id`` and ``msg_id`` (ids, not secrets).
"""

from __future__ import annotations

import json
from typing import Iterator

from ..model import Flow, Pair, RpcExchange
from .common import seconds


def _obj(pair: Pair, origin: float) -> list[tuple[str, str]]:
    ex = pair.exchange
    d = json.dumps
    return _pair(pair, origin) + (_rpc(pair) if isinstance(ex, RpcExchange) else [])


def _rpc(pair: Pair) -> list[tuple[str, str]]:
    """What an RPC pair adds: the broker it went through, where it was published, who took it."""
    ex = pair.exchange
    assert isinstance(ex, RpcExchange)
    d = json.dumps
    o = ex.oslo
    return [
        ("kind", d(ex.kind)),
        ("method", d(o.method, ensure_ascii=False)),
        ("via", d(pair.via.label if pair.via else None, ensure_ascii=False)),
        ("via_address", d(str(ex.broker) if ex.broker else None)),
        ("exchange", d(ex.request.exchange, ensure_ascii=False)),  # type: ignore[attr-defined]
        ("routing_key", d(ex.request.routing_key, ensure_ascii=False)),  # type: ignore[attr-defined]
        ("delivered", d(ex.delivered)),
        ("server_stream", d(ex.server_stream)),
        ("request_id", d(o.request_id)),
        ("msg_id", d(o.msg_id)),
    ]


def _pair(pair: Pair, origin: float) -> list[tuple[str, str]]:
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

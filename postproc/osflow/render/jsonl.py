"""JSON Lines: one object per pair (never grouped), in request order.

With several hosts' recordings merged, ``client_host`` and ``server_host`` say the host of each end.

A request through proxies (HAProxy on a VIP, nginx) also says the proxies it went through, in
order (``via``: their names, comma-separated; ``via_address``: the addresses the client and each
proxy sent it to), and the service's connection (``server_stream``; below zero for a hop no capture
shows, a web server's to the service a request's path names); ``server_address`` is the
service's own (the web server's, for such a hop).  An RPC pair (``"protocol": "rpc"``) also says
its ``kind`` (call, cast, fanout), ``method``, the broker it went through (``via``,
``via_address``), the ``exchange`` and ``routing_key`` it was published to, how many consumers it
was ``delivered`` to, the callee's connection (``server_stream``), the oslo ``request_id`` and
``msg_id`` (ids, not secrets), and the ``resources`` its arguments name (the instances', ports',
images' UUIDs: what ties it to the work it causes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..model import AmqpMessage, Flow, Pair, ProxiedExchange, RpcExchange
from ..quoting import json_value
from .common import DEFAULT, RenderOptions, seconds


def _obj(pair: Pair, origin: float) -> list[tuple[str, str]]:
    ex = pair.exchange
    if isinstance(ex, ProxiedExchange):
        return _pair(pair, origin) + _hosts(pair) + _proxied(pair, ex)
    return _pair(pair, origin) + _hosts(pair) + (_rpc(pair) if isinstance(ex, RpcExchange) else [])


def _hosts(pair: Pair) -> list[tuple[str, str]]:
    """With several hosts' recordings merged: the host of each end (null for a host not recorded)."""
    c, s = pair.client.host, pair.server.host
    if not c and not s:
        return []
    return [("client_host", json_value(c or None, True)), ("server_host", json_value(s or None, True))]


def _proxied(pair: Pair, ex: ProxiedExchange) -> list[tuple[str, str]]:
    """What a request through proxies adds: the proxies in order, where each was reached, the
    service's connection."""
    d = json_value
    names = [p.label for p in pair.proxies] or list(ex.proxy)
    return [
        ("via", d(", ".join(names))),
        ("via_address", d(", ".join(str(a) for a in ex.listeners), True)),
        ("server_stream", d(ex.server_stream)),
    ]


def _rpc(pair: Pair) -> list[tuple[str, str]]:
    """What an RPC pair adds: the broker it went through, where it was published, who took it."""
    ex = pair.exchange
    assert isinstance(ex, RpcExchange)
    publish = ex.request
    assert isinstance(publish, AmqpMessage)  # an RPC's request is the caller's publish
    d = json_value
    o = ex.oslo
    return [
        ("kind", d(ex.kind, True)),
        ("method", d(o.method)),
        ("via", d(pair.via.label if pair.via else None)),
        ("via_address", d(str(ex.broker) if ex.broker else None, True)),
        ("exchange", d(publish.exchange)),
        ("routing_key", d(publish.routing_key)),
        ("delivered", d(ex.delivered)),
        ("server_stream", d(ex.server_stream)),
        ("request_id", d(o.request_id, True)),
        ("msg_id", d(o.msg_id, True)),
        ("resources", d(list(o.ids), True)),
    ]


def _pair(pair: Pair, origin: float) -> list[tuple[str, str]]:
    ex = pair.exchange
    d = json_value
    return [
        ("id", d(pair.id)),
        ("parent", d(pair.parent)),
        ("start", seconds(ex.start, origin)),
        ("end", seconds(ex.end, origin)),
        ("client", d(pair.client.label)),
        ("server", d(pair.server.label)),
        ("client_evidence", d(pair.client.evidence)),
        ("server_evidence", d(pair.server.evidence)),
        ("protocol", d(pair.protocol, True)),
        ("request", d(pair.request)),
        ("response", d(pair.response)),
        ("frames", d(ex.frames)),
        ("stream", d(ex.stream)),
        ("client_address", d(str(ex.client), True)),
        ("server_address", d(str(ex.server), True)),
        ("tokens", d(list(pair.tokens), True)),
        ("noise", d(pair.noise)),
        ("background", d(pair.background)),
    ]


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield one JSON object per pair.  Times are seconds from the first frame, 6 decimals."""
    for pair in flow.pairs:
        yield "{" + ", ".join(f'"{k}": {v}' for k, v in _obj(pair, flow.origin)) + "}"


def render_parts(parts: Iterable[Flow], options: RenderOptions = DEFAULT) -> Iterator[str]:
    """The same lines for a flow streamed in parts (:class:`osflow.pipeline.Stream`), as they come."""
    for part in parts:
        yield from render(part, options)

"""memcached's text protocol (port 11211), every stage's part of it.

Decode: a command and the keys it names; a reply (``VALUE`` lines: a hit, ``END`` alone: a
miss, ``STORED``, a number …).  Pair: in order on a connection.  Words: keys that are
keystonemiddleware's token cache keys are shown as the token they hold (``tokens/… [T1]``).
"""

from __future__ import annotations

from collections.abc import Iterator

from .. import tokens as tok
from ..model import Exchange, Layer, MemcacheCommand, MemcacheReply, Message, Packet
from .base import Attr, Common, LayerDecoder, PairText, ProtocolModule, Words, fields_of, server_attrs, to_int, unescape

#: memcached replies that are not hits/misses, as the protocol spells them.
MEMCACHE_WORDS = {"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "ERROR"}
#: The memcached fields the tshark-fields path asks for (the PDML path keeps every memcache.* but the value).
MEMCACHE_FIELDS = ("memcache.command", "memcache.key", "memcache.response", "memcache.value.length")
_MEMCACHE_SKIP = frozenset({"memcache.value"})


class MemcacheDecoder(LayerDecoder):
    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        m = _memcache(p, layer, frames, start)
        if m is not None:
            yield m


def _memcache(p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
    common = Common(protocol="memcache", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time, frames=frames)
    command = layer.get("memcache.command")
    keys = tuple(layer.all("memcache.key"))
    if command is not None:
        return MemcacheCommand(
            **common,
            is_request=True,
            command=command.lower(),
            keys=keys,
            value_length=to_int(layer.get("memcache.value.length")),
        )
    if keys:  # VALUE <key> ... END: a hit
        return MemcacheReply(**common, is_request=False, result="hit", keys=keys)
    response = layer.get("memcache.response")
    if response is not None:
        word = response.strip()
        result = "miss" if word == "END" else word
        return MemcacheReply(**common, is_request=False, result=result)
    # incr/decr replies are bare numbers
    for name in ("memcache.value", "memcache.response"):
        v = layer.get(name)
        if v is not None:
            return MemcacheReply(**common, is_request=False, result=v.strip())
    return None


def _keep(name: str) -> bool:
    return name.startswith("memcache.") and name not in _MEMCACHE_SKIP


class Memcache(ProtocolModule):
    name = "memcache"
    pdml_protos = ("memcache",)
    tshark_fields = MEMCACHE_FIELDS
    groups = True

    def pdml_layer(self, proto, frame):
        return Layer("memcache", fields_of(proto, _keep))

    def fields_layers(self, row):
        if not (row.get("memcache.command") or row.get("memcache.key") or row.get("memcache.response")):
            return []
        return [Layer("memcache", tuple((n, unescape(v)) for n in MEMCACHE_FIELDS for v in row.values(n)))]

    def decoder(self):
        return MemcacheDecoder()

    def tokens(self, m, reg):
        if isinstance(m, MemcacheCommand):
            for k in m.keys:
                reg.see_cache_key(k)

    def token_lookup(self, ex):
        req = ex.request
        return isinstance(req, MemcacheCommand) and req.command == "get" and any(tok.is_token_key(k) for k in req.keys)

    def text(self, ex, words: Words) -> PairText:
        req, resp = ex.request, ex.response
        if not isinstance(req, MemcacheCommand):
            return super().text(ex, words)
        ids: list[str] = []
        plains, richs = [], []
        for k in req.keys:
            p, r, t = words.key(k)
            plains.append(p)
            richs.append(r)
            if t is not None:
                ids.append(t.id)
        response = resp.result if isinstance(resp, MemcacheReply) else None
        notes: tuple[str, ...] = ()
        unique = tuple(dict.fromkeys(ids))
        if response in ("hit", "miss"):
            notes = (f"cache {response}" + (f" for {', '.join(unique)}" if ids else ""),)
        return PairText(" ".join([req.command, *plains]), response, " ".join([req.command, *richs]), response or "",
                        unique, notes)

    def operation(self, ex: Exchange) -> str | None:
        return ex.request.command if isinstance(ex.request, MemcacheCommand) else None

    def endpoint(self, pair):
        return self.operation(pair.exchange) or super().endpoint(pair)

    def cache_read(self, ex):
        req, resp = ex.request, ex.response
        if isinstance(req, MemcacheCommand) and req.command in ("get", "gets"):
            return isinstance(resp, MemcacheReply) and resp.result == "hit"
        return None

    def otlp_client_span(self, pair, schema, common):
        ex = pair.exchange
        req, resp = ex.request, ex.response
        if not isinstance(req, MemcacheCommand):
            return None
        result = resp.result if isinstance(resp, MemcacheReply) else None
        error = result if result is not None and result.upper().endswith("ERROR") else None
        attrs: list[Attr] = [
            ("db.system.name", "memcached"),
            ("db.system", "memcached"),
            ("db.operation.name", req.command),
            ("db.operation", req.command),
            ("db.query.text", pair.request),
            ("db.statement", pair.request),
            ("error.type", error),
            *server_attrs(ex.server),
            *common,
        ]
        return req.command, attrs, error


MEMCACHE = Memcache()

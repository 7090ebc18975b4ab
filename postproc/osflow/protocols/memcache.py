"""memcached (port 11211): its text, meta and binary protocols, every stage's part of them.

Decode: the bytes of each direction of a connection (tshark's memcache dissector knows only some
of the protocols): a command and the keys it names; a reply (``VALUE`` lines: a hit, ``END``
alone: a miss, ``STORED``, a number, ``STAT`` lines …); a layer of tshark's fields (a PDML
without the bytes) is read as before.  Pair: in order on a connection; a ``noreply`` (quiet)
command gets no reply; a ``quit`` is answered by the close.  Words: keys that are
keystonemiddleware's token cache keys are shown as the token they hold (``tokens/… [T1]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .. import portmap
from .. import tokens as tok
from ..model import Address, Closed, Exchange, Layer, MemcacheCommand, MemcacheReply, Message, Packet
from .base import Attr, Common, LayerDecoder, PairText, ProtocolModule, Words, fields_of, server_attrs, to_int

#: memcached replies that are not hits/misses, as the protocol spells them.
MEMCACHE_WORDS = {"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "ERROR"}
#: The memcached fields of tshark's dissector (a PDML layer without the bytes keeps every memcache.* but the value).
MEMCACHE_FIELDS = ("memcache.command", "memcache.key", "memcache.response", "memcache.value.length")
#: What ``osflow-post -r`` asks tshark for: the bytes of memcached's ports (decoded as ``data``).
FIELDS = ("data.data",)
_MEMCACHE_SKIP = frozenset({"memcache.value"})


@dataclass
class _MemcacheBytes:
    """memcached bytes of one direction of a connection, not yet a whole message."""

    start: float
    data: bytearray = field(default_factory=bytearray)
    frames: list[int] = field(default_factory=list)


class MemcacheDecoder(LayerDecoder):
    """memcached's bytes (or tshark's fields) -> commands and replies, per connection and direction."""

    def __init__(self) -> None:
        self._mc: dict[tuple[int, Address], _MemcacheBytes] = {}  # memcached bytes not yet a whole message

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        if layer.has("memcache.text"):
            yield from self._memcache_bytes(p, layer, frames, start)
            return
        m = _memcache(p, layer, frames, start)
        if m is not None:
            yield m

    def _memcache_bytes(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        """The memcached messages these bytes complete (text, meta or binary protocol), in order."""
        try:
            data = bytes.fromhex(layer.get("memcache.text") or "")
        except ValueError:
            return
        key = (p.stream, p.src)
        st = self._mc.get(key)
        if st is None:
            st = self._mc[key] = _MemcacheBytes(start=start)
            if len(self._mc) > 8192:  # a long capture: forget the oldest half
                for k in list(self._mc)[:4096]:
                    del self._mc[k]
        st.data += data
        st.frames.extend(f for f in frames if f not in st.frames)
        while True:
            parsed = memcache_message(bytes(st.data))
            if parsed is None:
                if len(st.data) > _MC_MAX:  # its end is not in the capture
                    del self._mc[key]
                return
            n, what = parsed
            common = Common(protocol="memcache", stream=p.stream, src=p.src, dst=p.dst, start=st.start, end=p.time,
                            frames=tuple(st.frames))
            if what["request"]:
                yield MemcacheCommand(**common, is_request=True, command=what["command"], keys=what.get("keys", ()),
                                      value_length=what.get("value_length"), noreply=what.get("noreply", False),
                                      binary=what.get("binary", False))
            else:
                yield MemcacheReply(**common, is_request=False, result=what["result"], keys=what.get("keys", ()),
                                    binary=what.get("binary", False))
            del st.data[:n]
            st.start, st.frames = p.time, [p.number]
            if not st.data:
                del self._mc[key]
                return


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


# ----------------------------------------------------------------- memcached, from its bytes

#: Text commands followed by a data block: (index of the byte count among the words, index of the key).
_MC_STORAGE = {"set": 4, "add": 4, "replace": 4, "append": 4, "prepend": 4, "cas": 4, "ms": 2}
#: Text commands and where their keys are (the first key's word; get-like ones name every word from there).
_MC_MANY_KEYS = {"get": 1, "gets": 1, "gat": 2, "gats": 2}
_MC_ONE_KEY = frozenset({"incr", "decr", "touch", "delete", "mg", "md", "ma", "me", *_MC_STORAGE})
#: Binary protocol opcodes (memcached's protocol_binary.h) -> command names as the text protocol spells them.
_MC_OPCODES = {
    0x00: "get", 0x01: "set", 0x02: "add", 0x03: "replace", 0x04: "delete", 0x05: "incr", 0x06: "decr",
    0x07: "quit", 0x08: "flush_all", 0x09: "getq", 0x0A: "noop", 0x0B: "version", 0x0C: "getk", 0x0D: "getkq",
    0x0E: "append", 0x0F: "prepend", 0x10: "stats", 0x11: "setq", 0x12: "addq", 0x13: "replaceq", 0x14: "deleteq",
    0x15: "incrq", 0x16: "decrq", 0x17: "quitq", 0x18: "flushq", 0x19: "appendq", 0x1A: "prependq", 0x1C: "touch",
    0x1D: "gat", 0x1E: "gatq", 0x20: "sasl_list_mechs", 0x21: "sasl_auth", 0x22: "sasl_step",
}
#: Binary status codes -> the text protocol's words (0, no error, depends on the command).
_MC_STATUS = {0x01: "NOT_FOUND", 0x02: "EXISTS", 0x03: "E2BIG", 0x04: "EINVAL", 0x05: "NOT_STORED",
              0x06: "DELTA_BADVAL", 0x20: "AUTH_ERROR", 0x81: "UNKNOWN_COMMAND", 0x82: "ENOMEM"}
_MC_OK = {"get": "hit", "getk": "hit", "gat": "hit", "set": "STORED", "add": "STORED", "replace": "STORED",
          "append": "STORED", "prepend": "STORED", "delete": "DELETED", "touch": "TOUCHED"}
#: Meta replies (the code, first on the line) in the words of the text protocol's replies.
_MC_META = {"EN": "miss", "NF": "NOT_FOUND", "NS": "NOT_STORED", "EX": "EXISTS"}
_MC_MAX = 4 << 20  # a message longer than this without its end: the capture lost some of it


def memcache_message(buf: bytes) -> tuple[int, dict] | None:
    """The first whole memcached message at the start of ``buf``: (its length, what it says), or
    None while it is incomplete.  Text commands are lower case, replies upper case or a number;
    a first byte 0x80 or 0x81 is the binary protocol's request or response header.

    >>> memcache_message(b"get a b\\r\\n")
    (9, {'request': True, 'command': 'get', 'keys': ('a', 'b')})
    >>> memcache_message(b"VALUE a 0 1\\r\\nx\\r\\nEND\\r\\n")
    (21, {'request': False, 'result': 'hit', 'keys': ('a',)})
    >>> memcache_message(b"set a 0 0 5 noreply\\r\\nab") is None
    True
    """
    if not buf:
        return None
    if buf[0] in (0x80, 0x81):
        return _memcache_binary(buf)
    end = buf.find(b"\r\n")
    if end < 0:
        return None
    line = buf[:end].decode("utf-8", "replace")
    words = line.split()
    first = words[0] if words else ""
    n = end + 2
    if first[:1].islower():
        msg: dict = {"request": True, "command": first}
        if first in _MC_STORAGE:
            at = _MC_STORAGE[first]
            size = to_int(words[at] if len(words) > at else None, 0) or 0
            if len(buf) < n + size + 2:
                return None
            n += size + 2
            msg["value_length"] = size
        if first in _MC_MANY_KEYS:
            msg["keys"] = tuple(words[_MC_MANY_KEYS[first]:])
        elif first in _MC_ONE_KEY and len(words) > 1:
            msg["keys"] = (words[1],)
        if words[-1] == "noreply" or (first in ("ms", "md", "ma", "mg") and "q" in words[2:]):
            msg["noreply"] = True
        return n, msg
    if first in ("VALUE", "STAT"):  # lines (and values) up to END
        keys: list[str] = []
        count = 0
        start = n
        while True:
            if first == "VALUE":
                size = to_int(words[3] if len(words) > 3 else None, 0) or 0
                if len(buf) < n + size + 2:
                    return None
                keys.append(words[1] if len(words) > 1 else "")
                n += size + 2
            elif first == "STAT":
                count += 1
            elif first == "END":
                break
            else:  # not a line of this reply: it ends here
                n = start
                break
            start = n
            end = buf.find(b"\r\n", n)
            if end < 0:
                return None
            words = buf[n:end].decode("utf-8", "replace").split()
            first = words[0] if words else ""
            n = end + 2
        if keys:
            return n, {"request": False, "result": "hit", "keys": tuple(keys)}
        return n, {"request": False, "result": f"{count} stats"}
    if first == "VA":  # meta get: a value follows
        size = to_int(words[1] if len(words) > 1 else None, 0) or 0
        if len(buf) < n + size + 2:
            return None
        return n + size + 2, {"request": False, "result": "hit"}
    if first == "END":
        return n, {"request": False, "result": "miss"}
    result = _MC_META.get(first) or (line.strip() if first.endswith("ERROR") or first == "VERSION" else first)
    return n, {"request": False, "result": result}


def _memcache_binary(buf: bytes) -> tuple[int, dict] | None:
    """A binary protocol message: a 24-byte header, then extras, key and value."""
    if len(buf) < 24:
        return None
    body = int.from_bytes(buf[8:12], "big")
    if len(buf) < 24 + body:
        return None
    opcode = buf[1]
    key_length = int.from_bytes(buf[2:4], "big")
    extras = buf[4]
    name = _MC_OPCODES.get(opcode, f"opcode 0x{opcode:02x}")
    if buf[0] == 0x80:
        key = buf[24 + extras:24 + extras + key_length].decode("utf-8", "replace")
        msg: dict = {"request": True, "command": name, "binary": True}
        if key:
            msg["keys"] = (key,)
        if name.endswith("q") and name not in ("getq", "getkq"):
            msg["noreply"] = True  # quiet: the server answers only a failure
        return 24 + body, msg
    status = int.from_bytes(buf[6:8], "big")
    base = name[:-1] if name.endswith("q") and name != "getq" else name
    base = "get" if base in ("getq", "getk") else base
    if status == 0:
        result = _MC_OK.get(base, "OK")
    elif status == 0x01 and name.startswith(("get", "gat")):
        result = "miss"
    else:
        result = _MC_STATUS.get(status, f"status 0x{status:02x}")
    return 24 + body, {"request": False, "result": result, "binary": True}


def _keep(name: str) -> bool:
    return name.startswith("memcache.") and name not in _MEMCACHE_SKIP


def _ports(overrides: dict[int, str] | None) -> frozenset[int]:
    """memcached's ports: the port map's, and those ``--service`` gives to memcached, not those it gives
    to another protocol (a name that is no known service leaves the port's protocol as it was)."""
    key = tuple(sorted((overrides or {}).items()))
    ports = _PORTS.get(key)
    if ports is None:
        found = {p for s in portmap.SERVICES if s.protocol == "memcache" for p in s.ports}
        for p in overrides or ():
            s = portmap.service_for_port(p, overrides)
            if s is not None and s.protocol == "memcache":
                found.add(p)
            elif s is not None and s.protocol != "other":
                found.discard(p)
        ports = _PORTS[key] = frozenset(found)
    return ports


_PORTS: dict[tuple, frozenset[int]] = {}  # overrides -> memcached's ports


class Memcache(ProtocolModule):
    name = "memcache"
    pdml_protos = ("memcache",)
    tshark_fields = FIELDS
    groups = True
    one_layer_per_frame = True  # the frame's bytes are in the first one

    def pdml_layer(self, proto, frame):
        raw = frame.payload()
        if raw:  # the bytes themselves: the decoder reads memcached's protocols (tshark knows only some)
            return Layer("memcache", (("memcache.text", raw),))
        return Layer("memcache", fields_of(proto, _keep))

    def fields_layers(self, row):
        raw = row.get("data.data")
        if not raw:
            return []
        ports = {int(p) for name in ("tcp.srcport", "tcp.dstport") for p in row.values(name)[-1:] if p.isdigit()}
        if not ports & _ports(row.overrides):
            return []
        return [Layer("memcache", (("memcache.text", row.values("data.data")[0]),))]

    def decode_as(self, overrides, pdml):
        """memcached's ports as data for ``-T fields`` (``data.data`` is then their bytes; tshark's
        memcache dissector does not know meta commands, numeric replies, touch); the PDML reader
        reads the bytes under tshark's memcache layer."""
        return [] if pdml else [x for p in sorted(_ports(overrides)) for x in ("-d", f"tcp.port=={p},data")]

    def decoder(self):
        return MemcacheDecoder()

    def unanswered(self, req):
        return isinstance(req, MemcacheCommand) and req.noreply  # no reply comes: the next one is another's

    def answered_by_close(self, req):
        return isinstance(req, MemcacheCommand) and req.command == "quit"

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
        response = resp.result if isinstance(resp, MemcacheReply) else ("noreply" if req.noreply else None)
        if isinstance(resp, Closed):
            response = "closed"
        elif isinstance(resp, MemcacheReply) and resp.result == "hit" and len(req.keys) > 1:
            response = f"hit ({len(resp.keys)} of {len(req.keys)} keys)"
        notes: tuple[str, ...] = ()
        unique = tuple(dict.fromkeys(ids))
        if isinstance(resp, MemcacheReply) and resp.result in ("hit", "miss"):
            notes = (f"cache {resp.result}" + (f" for {', '.join(unique)}" if ids else ""),)
        binary = ("(binary protocol)",) if req.binary else ()
        return PairText(" ".join([req.command, *plains, *binary]), response, " ".join([req.command, *richs, *binary]),
                        response or "", unique, notes)

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

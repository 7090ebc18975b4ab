"""Redis (RESP2 and RESP3, port 6379), every stage's part of it, in this one module.

OpenStack uses Redis for OSProfiler's traces (one ``SET <namespace><base_id>_<trace_id>_<timestamp>
<span JSON>`` per trace point, read back with ``SCAN MATCH`` and ``GET``) and for tooz's
coordination (locks taken with ``SET … NX PX``, released by a Lua script through ``EVALSHA``,
heartbeats, group hashes).

Decode: the bytes of each direction of a connection are read as RESP (this module's own
reader, so that PDML of any tshark and ``-r`` give the same messages): a client's array of
bulk strings (or an inline command) is a :class:`RedisCommand`, each value the server sends a
:class:`RedisReply`; a pipeline is several of each in a segment.  A connection in pub/sub
mode receives pushes (``message``, ``pmessage``, ``smessage``; RESP3 ``>``) that answer
nothing: they make no message.  Pair: in order on the connection (the generic rule).
Words: ``SET key (295 bytes)``, ``GET key`` → ``hit (295 bytes)`` / ``miss``; passwords
(``AUTH``, ``HELLO … AUTH``, ``CONFIG SET requirepass``, ``MIGRATE … AUTH``, ``ACL SETUSER
… >pass``) are ``…`` unless ``--show-secrets``.  An error reply (``-ERR``, ``-WRONGTYPE``,
``-NOAUTH``, ``-NOSCRIPT``) is a failed pair.

Its message classes live here, not in :mod:`osflow.model`: nothing outside this module
names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import portmap
from ..model import Address, Exchange, Layer, Message, Packet
from .base import Attr, Common, Failure, LayerDecoder, PairText, ProtocolModule, Words, server_attrs

if TYPE_CHECKING:
    from lxml import etree

#: The ports the port map gives Redis.
_PORTS = frozenset(p for s in portmap.SERVICES if s.protocol == "redis" for p in s.ports)
#: What ``osflow-post -r`` asks tshark for: the bytes of a Redis port's segments (decoded as ``data``).
FIELDS = ("data.data",)
#: Longest argument text a command keeps (a value is only counted; a key or option is rarely longer).
_ARG_CHARS = 200
#: Most arguments a command keeps.
_ARGS = 32
#: A connection's unread bytes beyond which its stream is given up (not RESP, or a huge value).
_BUFFER = 64 << 20

#: Commands whose next word names what they do (``CONFIG SET``, ``SCRIPT LOAD``).
_SUBCOMMANDS = frozenset({"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "MEMORY", "MODULE",
                          "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO"})
#: Commands after which the server pushes (pub/sub mode).
_SUBSCRIBE = frozenset({"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"})
_PUSHES = frozenset({"message", "pmessage", "smessage"})


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RedisCommand(Message):
    """A command a client sent: its name (upper case, with its subcommand: ``CONFIG SET``) and
    arguments (raw, passwords included: :func:`command_words` hides them; each cut to 200 characters)."""

    command: str
    args: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()  # each argument's length in bytes


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RedisReply(Message):
    """One value the server sent back.

    ``kind``: ``status`` (``+OK``), ``error`` (``-ERR …``), ``integer``, ``bulk`` (a string),
    ``nil``, ``array``, ``map``, ``set``, ``boolean``, ``double``; ``text``: the status, the error,
    the number, or for a bulk string its length; ``items``: an aggregate's element count.
    """

    kind: str
    text: str = ""
    items: int = 0
    size: int = 0


# --------------------------------------------------------------------------- RESP


class _Incomplete(Exception):
    """The buffer ends inside a value."""


class _Bad(Exception):
    """Not RESP."""


_AGGREGATES = {ord("*"): "array", ord("%"): "map", ord("~"): "set", ord(">"): "push", ord("|"): "attribute"}
_LINES = {ord("+"): "status", ord("-"): "error", ord(":"): "integer", ord("_"): "nil", ord("#"): "boolean",
          ord(","): "double", ord("("): "integer"}
_BLOBS = {ord("$"): "bulk", ord("!"): "error", ord("="): "bulk"}


def _line(buf: bytes | bytearray, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > 65536:
            raise _Bad("a line longer than 64 KiB")
        raise _Incomplete
    return bytes(buf[pos:end]), end + 2


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[tuple, int]:
    """One RESP value at ``pos``: ((kind, value, size), the position after it).

    ``value``: text for a line or a blob (cut to 200 characters), the element list of an aggregate.

    >>> parse(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n")
    (('array', [('bulk', 'GET', 3), ('bulk', 'k', 1)], 2), 20)
    >>> parse(b"$-1\\r\\n")[0], parse(b"-ERR no\\r\\n")[0]
    (('nil', '', 0), ('error', 'ERR no', 6))
    """
    if pos >= len(buf):
        raise _Incomplete
    t = buf[pos]
    if t in _LINES:
        text, nxt = _line(buf, pos + 1)
        value = text.decode("utf-8", "replace")
        return (_LINES[t], value[:_ARG_CHARS], len(text)), nxt
    if t in _BLOBS:
        head, nxt = _line(buf, pos + 1)
        n = _length(head)
        if n < 0:
            return ("nil", "", 0), nxt
        if len(buf) < nxt + n + 2:
            raise _Incomplete
        blob = bytes(buf[nxt:nxt + min(n, _ARG_CHARS * 4)]).decode("utf-8", "replace")[:_ARG_CHARS]
        return (_BLOBS[t], blob, n), nxt + n + 2
    if t in _AGGREGATES:
        head, nxt = _line(buf, pos + 1)
        n = _length(head)
        if n < 0:
            return ("nil", "", 0), nxt
        kind = _AGGREGATES[t]
        count = n * 2 if kind in ("map", "attribute") else n
        items: list[tuple] = []
        for _ in range(count):
            item, nxt = parse(buf, nxt)
            if len(items) < _ARGS:
                items.append(item)
        if kind == "attribute":  # metadata, then the value it describes
            return parse(buf, nxt)
        return (kind, items, n), nxt
    raise _Bad(f"byte 0x{t:02x} starts no RESP value")


def _length(head: bytes) -> int:
    try:
        return int(head)
    except ValueError:
        raise _Bad("a length that is not a number") from None


def _inline(buf: bytes | bytearray, pos: int) -> tuple[tuple, int]:
    """An inline command (``PING\\r\\n``, as telnet sends it) as the array a client library sends."""
    text, nxt = _line(buf, pos)
    words = text.decode("utf-8", "replace").split()
    return ("array", [("bulk", w[:_ARG_CHARS], len(w)) for w in words[:_ARGS]], len(words)), nxt


# --------------------------------------------------------------------------- decode


@dataclass
class _Side:
    """One direction of a connection: bytes not read yet, and the frames they came in."""

    src: Address
    dst: Address
    buf: bytearray = field(default_factory=bytearray)
    frames: list[tuple[int, float]] = field(default_factory=list)  # (frame, time) of the bytes in buf
    broken: bool = False


class RedisDecoder(LayerDecoder):
    """Each direction's bytes -> commands and replies; pushes to subscribers left out."""

    def __init__(self) -> None:
        self._sides: dict[tuple[int, Address], _Side] = {}
        self._subscribed: set[int] = set()  # connections in pub/sub mode

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        raw = layer.get("redis.bytes") or ""
        try:
            data = bytes.fromhex(raw.replace(":", ""))
        except ValueError:
            return
        key = (p.stream, p.src)
        side = self._sides.get(key)
        if side is None:
            side = self._sides[key] = _Side(p.src, p.dst)
        if side.broken or not data:
            return
        side.buf += data
        side.frames += [(f, start if f == frames[0] else p.time) for f in frames]
        request = p.dst.port in _PORTS or p.src.port not in _PORTS
        while side.buf:
            try:
                value, used = parse(side.buf) if (not request or side.buf[:1] in b"*") else _inline(side.buf, 0)
            except _Incomplete:
                if len(side.buf) > _BUFFER:
                    side.broken = True
                return
            except _Bad:
                side.broken = True  # not RESP (or the capture began inside a value): this side is left alone
                side.buf.clear()
                return
            del side.buf[:used]
            msg_frames = tuple(dict.fromkeys(f for f, _ in side.frames))
            first = side.frames[0][1]
            side.frames = [] if not side.buf else [side.frames[-1]]
            m = self._message(p, side, value, msg_frames, first, request)
            if m is not None:
                yield m

    def _message(self, p: Packet, side: _Side, value: tuple, frames: tuple[int, ...], start: float,
                 request: bool) -> Message | None:
        kind, body, size = value
        common = Common(protocol="redis", stream=p.stream, src=side.src, dst=side.dst, start=start, end=p.time,
                      frames=frames)
        if request:
            words = [x[1] if x[0] in ("bulk", "status", "integer") else "" for x in body] if kind == "array" else []
            sizes = [x[2] for x in body] if kind == "array" else []
            if not words:
                return None
            name = words[0].upper()
            rest, rest_sizes = words[1:], sizes[1:]
            if name in _SUBCOMMANDS and rest:
                name = f"{name} {rest[0].upper()}"
                rest, rest_sizes = rest[1:], rest_sizes[1:]
            if name.split()[0] in _SUBSCRIBE:
                self._subscribed.add(p.stream)
            return RedisCommand(**common, is_request=True, command=name, args=tuple(rest), sizes=tuple(rest_sizes))
        if kind == "push" or (kind == "array" and p.stream in self._subscribed and body
                              and body[0][0] == "bulk" and body[0][1] in _PUSHES):
            return None  # a message pushed to a subscriber: no request asked for it
        if kind in ("array", "map", "set", "push"):
            return RedisReply(**common, is_request=False, kind=kind, items=size)
        return RedisReply(**common, is_request=False, kind=kind, text=body if isinstance(body, str) else "",
                          size=size)

    def closed(self, stream: int, src: Address) -> Iterator[Message]:
        self._sides.pop((stream, src), None)
        if not any(s == stream for s, _ in self._sides):
            self._subscribed.discard(stream)
        return iter(())




# --------------------------------------------------------------------------- words

#: Where a command carries a password: (command, index of the password among its arguments, or a rule).
_VALUES = {"SET": 1, "SETNX": 1, "GETSET": 1, "APPEND": 1, "SETEX": 2, "PSETEX": 2, "SETRANGE": 2, "PUBLISH": 1,
           "SPUBLISH": 1, "LSET": 2}
#: Commands whose arguments after the key are all values (members, elements).
_ALL_VALUES = frozenset({"LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "SADD", "SREM", "ZADD", "PFADD", "SISMEMBER"})
#: Commands whose arguments after the key alternate field, value.
_FIELD_VALUES = frozenset({"HSET", "HMSET", "HSETNX", "MSET", "MSETNX"})


def secret_args(command: str, args: tuple[str, ...]) -> set[int]:
    """The indexes of ``args`` that are passwords.

    >>> sorted(secret_args("AUTH", ("pw",))), sorted(secret_args("AUTH", ("user", "pw")))
    ([0], [1])
    >>> sorted(secret_args("HELLO", ("3", "AUTH", "user", "pw", "SETNAME", "x")))
    [3]
    >>> sorted(secret_args("CONFIG SET", ("requirepass", "pw"))), sorted(secret_args("ACL SETUSER", ("u", "on", ">pw")))
    ([1], [2])
    >>> sorted(secret_args("MIGRATE", ("h", "6380", "", "0", "5000", "AUTH", "pw", "KEYS", "k")))
    [6]
    """
    up = [a.upper() for a in args]
    if command == "AUTH":
        return {len(args) - 1} if args else set()
    if command == "HELLO":
        return {i + 2 for i, a in enumerate(up) if a == "AUTH" and i + 2 < len(args)}
    if command == "CONFIG SET":
        return {i + 1 for i in range(0, len(args) - 1, 2) if up[i] in ("REQUIREPASS", "MASTERAUTH")}
    if command == "MIGRATE":
        out = set()
        for i, a in enumerate(up):
            if a == "AUTH" and i + 1 < len(args):
                out.add(i + 1)
            elif a == "AUTH2" and i + 2 < len(args):
                out.add(i + 2)
        return out
    if command == "ACL SETUSER":
        return {i for i, a in enumerate(args) if a[:1] in (">", "<", "#", "!") and i > 0}
    return set()


def _is_value(command: str, args: tuple[str, ...], i: int) -> bool:
    """Is argument ``i`` data (counted, not shown)?"""
    if command in _VALUES:
        return i == _VALUES[command]
    if command in _ALL_VALUES:
        return i >= 1
    if command in _FIELD_VALUES:
        start = 0 if command.startswith("MSET") else 1
        return i >= start and (i - start) % 2 == 1
    if command in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"):  # script or sha, numkeys, keys…, args…
        try:
            keys = int(args[1])
        except (IndexError, ValueError):
            return False
        return (command.startswith("EVAL") and not command.startswith("EVALSHA") and i == 0) or i >= 2 + keys
    return command in ("SCRIPT LOAD", "FUNCTION LOAD")


def command_words(m: RedisCommand, show: bool) -> str:
    """``SET key (295 bytes) PX 30000 NX``; passwords ``…`` unless ``show``.

    >>> c = lambda name, *a: RedisCommand(protocol="redis", stream=0, src=_A, dst=_A, start=0, end=0, frames=(1,),
    ...                                   is_request=True, command=name, args=a, sizes=tuple(len(x) for x in a))
    >>> command_words(c("AUTH", "s3cret"), False), command_words(c("AUTH", "s3cret"), True)
    ('AUTH …', 'AUTH s3cret')
    >>> command_words(c("SET", "k", "value", "NX"), False)
    'SET k (5 bytes) NX'
    """
    hidden = secret_args(m.command, m.args)
    out = [m.command]
    for i, a in enumerate(m.args):
        if i in hidden and not show:
            out.append("…")
        elif _is_value(m.command, m.args, i) and i not in hidden:
            size = m.sizes[i] if i < len(m.sizes) else len(a)
            out.append(f"({size} byte{'s' if size != 1 else ''})")
        elif a == "":
            out.append('""')
        else:
            out.append(a if len(a) <= 80 else a[:79] + "…")
    return " ".join(out)


_A = Address("127.0.0.1", 6379)


def reply_words(m: Message | None, command: str = "") -> str | None:
    """``OK``, ``ERR …``, ``3``, ``hit (295 bytes)`` / ``miss`` for a read, ``2 items``."""
    if not isinstance(m, RedisReply):
        return None
    if m.kind == "status":
        return m.text
    if m.kind == "error":
        return m.text
    if m.kind in ("integer", "double", "boolean"):
        return m.text
    if m.kind == "nil":
        return "miss" if command in _READS else "nil"
    if m.kind == "bulk":
        size = f"{m.size} byte{'s' if m.size != 1 else ''}"
        return f"hit ({size})" if command in _READS else f"({size})" if m.size > 40 or not m.text.isprintable() \
            else m.text
    return f"{m.items} item{'s' if m.items != 1 else ''}"


#: Reads whose nil answer is a miss and whose string answer a hit.
#: OSProfiler's Redis driver: its namespaces (fixed in the driver) and the commands that write a trace point
#: (``LPUSH osprofiler_opt:<base id> <JSON>``; ``SET`` of the legacy keys and of a trace's error mark)
_PROFILER_KEYS = ("osprofiler_opt:", "osprofiler:", "osprofiler_error:")
_PROFILER_WRITES = frozenset({"LPUSH", "RPUSH", "SET"})


def is_trace_point(command: str, args: tuple[str, ...]) -> bool:
    """Is this command OSProfiler's Redis driver writing a trace point (or a trace's error mark)?

    >>> is_trace_point("LPUSH", ("osprofiler_opt:f831948c-3aaf-4bbd-8324-b8b6e4807dba", "{...}"))
    True
    >>> is_trace_point("SET", ("tooz/lock", "1", "NX"))
    False
    """
    return command in _PROFILER_WRITES and bool(args) and args[0].startswith(_PROFILER_KEYS)


_READS = frozenset({"GET", "GETDEL", "GETEX", "HGET", "LINDEX", "GETRANGE", "LPOP", "RPOP", "SPOP"})


# --------------------------------------------------------------------------- the module


def _field(proto: etree._Element, name: str) -> str | None:
    for f in proto.iter("field"):
        if f.get("name") == name:
            return f.get("value")
    return None


class Redis(ProtocolModule):
    name = "redis"
    pdml_protos = ("resp", "data")
    tshark_fields = FIELDS
    groups = True
    one_layer_per_frame = True  # a frame's bytes, once

    def pdml_layer(self, proto, frame):
        """``data`` on a Redis port (tshark run with ``-d tcp.port==6379,data``, as osflow runs it):
        its bytes; Wireshark's own ``resp`` (a PDML someone made without it): the frame's TCP
        payload, or the reassembled bytes when the frame ends a reassembled PDU."""
        if proto.get("name") == "data":
            if not _PORTS.intersection(frame.ports):
                return None
            raw = _field(proto, "data.data")
        else:
            raw = frame.payload()
        return Layer("redis", (("redis.bytes", raw),)) if raw else None

    def fields_layers(self, row):
        raw = row.get("data.data")
        ports = {int(p) for name in ("tcp.srcport", "tcp.dstport") for p in row.values(name)[-1:] if p.isdigit()}
        if not _PORTS.intersection(ports):
            return []
        return [Layer("redis", (("redis.bytes", raw),))] if raw else []

    def decode_as(self, overrides, pdml):
        return [arg for p in sorted(_PORTS) for arg in ("-d", f"tcp.port=={p},data")]

    def decoder(self):
        return RedisDecoder()

    def text(self, ex: Exchange, words: Words) -> PairText:
        req = ex.request
        if not isinstance(req, RedisCommand):
            return super().text(ex, words)
        plain = command_words(req, words.show)
        response = reply_words(ex.response, req.command)
        return PairText(plain, response, plain, response or "")

    def operation(self, ex):
        return ex.request.command if isinstance(ex.request, RedisCommand) else None

    def instrumentation(self, ex):
        req = ex.request
        if isinstance(req, RedisCommand) and is_trace_point(req.command, req.args):
            return "OSProfiler's trace point"
        return None

    def failure(self, ex, response) -> Failure:
        r = ex.response
        return "error" if isinstance(r, RedisReply) and r.kind == "error" else ""

    def badge(self, ex):
        r = ex.response
        return r.text.split()[0] if isinstance(r, RedisReply) and r.kind == "error" and r.text else "Redis error"

    def endpoint(self, pair):
        return self.operation(pair.exchange) or super().endpoint(pair)

    def cache_read(self, ex):
        req, resp = ex.request, ex.response
        if isinstance(req, RedisCommand) and req.command in _READS:
            return isinstance(resp, RedisReply) and resp.kind == "bulk"
        return None

    def otlp_client_span(self, pair, schema, common):
        ex = pair.exchange
        req, resp = ex.request, ex.response
        if not isinstance(req, RedisCommand):
            return None
        error = resp.text or "error" if isinstance(resp, RedisReply) and resp.kind == "error" else None
        attrs: list[Attr] = [
            ("db.system.name", "redis"),
            ("db.system", "redis"),
            ("db.operation.name", req.command),
            ("db.operation", req.command),
            ("db.query.text", pair.request),
            ("db.statement", pair.request),
            ("error.type", error.split()[0] if error else None),
            *server_attrs(ex.server),
            *common,
        ]
        return req.command, attrs, error


REDIS = Redis()

"""Decode stage: Packet -> protocol Message (HTTP, MySQL, memcached, AMQP, TCP close).

Everything comes from PDML fields, never from display strings.  A MySQL reply
spreads over many PDUs (column count, column definitions, EOF, rows, EOF) and
often over several frames: :class:`Decoder` keeps per-connection state and
emits one :class:`~osflow.model.MysqlReply` when the reply is complete.  An AMQP
message is a method frame, a content header and body frames (several per TCP
segment, or a body split over several frames): :class:`Decoder` joins them per
connection, direction and channel and emits one :class:`~osflow.model.AmqpMessage`
per Basic.Publish / Basic.Deliver, its oslo.messaging body read by :mod:`osflow.oslo`.
Heartbeats, acks and the other AMQP methods are noise and make no message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import oslo
from .model import (
    MYSQL_ROW_FIELDS,
    Address,
    AmqpMessage,
    AmqpOpen,
    Closed,
    HttpRequest,
    HttpResponse,
    KeystoneAuth,
    Layer,
    MemcacheCommand,
    MemcacheReply,
    Message,
    MysqlCommand,
    MysqlGreeting,
    MysqlLogin,
    MysqlReply,
    Packet,
    TokenInfo,
)
from .openstack import MYSQL_COMMANDS

#: Fields that mark a MySQL PDU as the server's greeting, a login or a command: anything else is part of a reply.
_MYSQL_NOT_REPLIES = frozenset({"mysql.server_greeting", "mysql.login_request", "mysql.request", "mysql.command"})

#: memcached replies that are not hits/misses, as the protocol spells them.
MEMCACHE_WORDS = {"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "ERROR"}


def header_lines(lines: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Split ``http.request.line`` values into (name, value) pairs.

    >>> header_lines(['Host: controller:5000 ', 'X-Auth-Token: gAAA\\\\r\\\\n', 'junk'])
    (('Host', 'controller:5000'), ('X-Auth-Token', 'gAAA'))
    """
    out = []
    for line in lines:
        line = line.replace("\\r\\n", "").strip()
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            out.append((name.strip(), value.strip()))
    return tuple(out)


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The first header called ``name`` (case-insensitive)."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def keystone_auth(body: str | None) -> KeystoneAuth | None:
    """What a ``POST /v3/auth/tokens`` body asks for; the password is never kept.

    >>> a = keystone_auth('{"auth": {"identity": {"methods": ["password"], "password": {"user": '
    ...                   '{"password": "s3cret", "name": "admin", "domain": {"name": "Default"}}}}, '
    ...                   '"scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}')
    >>> (a.methods, a.user, a.user_domain, a.project)
    (('password',), 'admin', 'Default', 'admin')
    >>> "s3cret" in repr(a)
    False
    >>> keystone_auth('not json') is None
    True
    """
    doc = _json(body)
    auth = doc.get("auth") if isinstance(doc, dict) else None
    if not isinstance(auth, dict):
        return None
    identity = auth.get("identity") if isinstance(auth.get("identity"), dict) else {}
    methods = tuple(str(m) for m in identity.get("methods") or () if isinstance(m, str))
    user = user_domain = None
    for method in methods:
        part = identity.get(method)
        if isinstance(part, dict) and isinstance(part.get("user"), dict):
            u = part["user"]
            user = _name(u)
            user_domain = _name(u.get("domain"))
            break
    scope = auth.get("scope")
    project = project_domain = domain = None
    system = unscoped = False
    if isinstance(scope, dict):
        if isinstance(scope.get("project"), dict):
            project = _name(scope["project"])
            project_domain = _name(scope["project"].get("domain"))
        elif isinstance(scope.get("domain"), dict):
            domain = _name(scope["domain"])
        elif "system" in scope:
            system = True
    elif scope == "unscoped" or scope is None:
        unscoped = True
    return KeystoneAuth(
        methods=methods,
        user=user,
        user_domain=user_domain,
        project=project,
        project_domain=project_domain,
        domain=domain,
        system=system,
        unscoped=unscoped,
    )


def token_info(body: str | None) -> TokenInfo | None:
    """Who the token in a keystone token response belongs to."""
    doc = _json(body)
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, dict):
        return None
    user = token.get("user") if isinstance(token.get("user"), dict) else {}
    return TokenInfo(
        user=_name(user),
        user_domain=_name(user.get("domain")),
        project=_name(token.get("project")),
        domain=_name(token.get("domain")),
        expires=token.get("expires_at") if isinstance(token.get("expires_at"), str) else None,
    )


def _json(text: str | None):
    if not text or text[:1] not in "{[":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _name(obj) -> str | None:
    if isinstance(obj, dict):
        v = obj.get("name") or obj.get("id")
        return str(v) if v is not None else None
    return None


def _int(text: str | None, default: int | None = None) -> int | None:
    if text is None:
        return default
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return default


@dataclass
class _MysqlReplyState:
    """A MySQL reply being assembled from its PDUs."""

    src: Address
    dst: Address
    start: float
    frames: list[int] = field(default_factory=list)
    phase: str = "start"  # start | columns | rows
    columns: int = 0
    column_defs: int = 0
    rows: int = 0
    schemas: dict[str, None] = field(default_factory=dict)
    tables: dict[str, None] = field(default_factory=dict)
    end: float = 0.0


@dataclass
class _MemcacheBytes:
    """memcached bytes of one direction of a connection, not yet a whole message."""

    start: float
    data: bytearray = field(default_factory=bytearray)
    frames: list[int] = field(default_factory=list)


#: AMQP methods (class, method) that carry a message: a content header and body follow.
_AMQP_CONTENT = {(60, 40): "publish", (60, 50): "return", (60, 60): "deliver", (60, 71): "get-ok"}
_AMQP_START_OK = (10, 11)


@dataclass
class _AmqpContent:
    """An AMQP message being assembled from its method, header and body frames."""

    method: str
    exchange: str
    routing_key: str
    start: float
    frames: list[int] = field(default_factory=list)
    size: int | None = None  # from the content header
    body: bytearray = field(default_factory=bytearray)


class Decoder:
    """Turn packets into messages, keeping per-connection state for MySQL replies and AMQP messages."""

    def __init__(self) -> None:
        self._times: dict[int, float] = {}  # frame -> time of recent payload frames, for reassembled PDUs
        self._mysql: dict[tuple[int, Address], _MysqlReplyState] = {}
        self._amqp: dict[tuple[int, Address, int], _AmqpContent] = {}
        self._closed: dict[tuple[int, Address], None] = {}  # the ends that sent their FIN or RST (the latest)
        self._mc: dict[tuple[int, Address], _MemcacheBytes] = {}  # memcached bytes not yet a whole message

    def decode(self, packets: Iterable[Packet]) -> Iterator[Message]:
        for packet in packets:
            yield from self.packet(packet)
        yield from self.flush()

    def packet(self, p: Packet) -> Iterator[Message]:
        if p.payload:
            self._times[p.number] = p.time
            if len(self._times) > 8192:
                for k in list(self._times)[:4096]:
                    del self._times[k]
        first = True
        for layer in p.layers:
            frames = (p.number,)
            start = p.time
            if first and p.segments:
                frames = tuple(sorted(set(p.segments) | {p.number}))
                start = min((self._times.get(f, p.time) for f in frames), default=p.time)
            first = False
            if layer.name == "http":
                m = self._http(p, layer, frames, start)
                if m is not None:
                    yield m
            elif layer.name == "memcache":
                if layer.has("memcache.text"):
                    yield from self._memcache_bytes(p, layer, frames, start)
                    continue
                m = self._memcache(p, layer, frames, start)
                if m is not None:
                    yield m
            elif layer.name == "mysql":
                if layer.has("mysql.error_code") and layer.get("mysql.packet_number") == "0":
                    # the server's first packet is an error instead of its greeting (ERR 1130: host not
                    # allowed; too many connections): the client's connect, refused
                    yield MysqlCommand(protocol="mysql", stream=p.stream, src=p.dst, dst=p.src, start=start,
                                       end=start, frames=frames, is_request=True, command="connect")
                m = self._mysql_layer(p, layer, frames, start)
                if m is not None:
                    yield m
            elif layer.name == "amqp":
                m = self._amqp_frame(p, layer, frames, start)
                if m is not None:
                    yield m
        if p.fin or p.rst:
            key = (p.stream, p.src)
            if key not in self._closed:
                self._closed[key] = None
                if len(self._closed) > 8192:  # a long capture: forget the oldest half (a late FIN is harmless)
                    for k in list(self._closed)[:4096]:
                        del self._closed[k]
                yield from self._flush_mysql(p.stream, p.src)
                yield Closed(
                    protocol="tcp",
                    stream=p.stream,
                    src=p.src,
                    dst=p.dst,
                    start=p.time,
                    end=p.time,
                    frames=(p.number,),
                    is_request=False,
                    reset=p.rst,
                )

    def flush(self) -> Iterator[Message]:
        """Emit replies still being assembled when the input ends (marked incomplete)."""
        for key in list(self._mysql):
            yield from self._flush_mysql(*key)

    # ----------------------------------------------------------------- HTTP

    def _http(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
        common: dict[str, Any] = dict(protocol="http", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time,
                                      frames=frames)
        method = layer.get("http.request.method")
        if method is not None:
            headers = header_lines(layer.all("http.request.line"))
            uri = layer.get("http.request.uri") or ""
            body = layer.get("http.file_data")
            auth = None
            if method == "POST" and uri.split("?")[0].rstrip("/").endswith("/auth/tokens"):
                auth = keystone_auth(body)
            return HttpRequest(
                **common,
                is_request=True,
                method=method,
                uri=uri,
                user_agent=layer.get("http.user_agent"),
                headers=headers,
                auth=auth,
                content_type=layer.get("http.content_type"),
            )
        code = layer.get("http.response.code")
        if code is not None and code[:1] == "1" and code != "101":
            return None  # an interim response (100 Continue): the final one answers the request
        if code is not None:
            headers = header_lines(layer.all("http.response.line"))
            token = None
            if header(headers, "X-Subject-Token") is not None:
                token = token_info(layer.get("http.file_data"))
            return HttpResponse(
                **common,
                is_request=False,
                status=_int(code, 0) or 0,
                reason=layer.get("http.response.phrase") or "",
                headers=headers,
                request_in=_int(layer.get("http.request_in")),
                token=token,
            )
        return None

    # ----------------------------------------------------------------- memcached

    def _memcache(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
        common: dict[str, Any] = dict(protocol="memcache", stream=p.stream, src=p.src, dst=p.dst, start=start,
                                      end=p.time, frames=frames)
        command = layer.get("memcache.command")
        keys = tuple(layer.all("memcache.key"))
        if command is not None:
            return MemcacheCommand(
                **common,
                is_request=True,
                command=command.lower(),
                keys=keys,
                value_length=_int(layer.get("memcache.value.length")),
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
            common: dict[str, Any] = dict(protocol="memcache", stream=p.stream, src=p.src, dst=p.dst, start=st.start,
                                          end=p.time, frames=tuple(st.frames), is_request=what["request"])
            if what["request"]:
                yield MemcacheCommand(**common, command=what["command"], keys=what.get("keys", ()),
                                      value_length=what.get("value_length"), noreply=what.get("noreply", False),
                                      binary=what.get("binary", False))
            else:
                yield MemcacheReply(**common, result=what["result"], keys=what.get("keys", ()),
                                    binary=what.get("binary", False))
            del st.data[:n]
            st.start, st.frames = p.time, [p.number]
            if not st.data:
                del self._mc[key]
                return

    # ----------------------------------------------------------------- AMQP

    def _amqp_frame(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
        """The message one AMQP frame completes (the last body frame of a publish or deliver), or None."""
        kind = layer.get("amqp.type")
        key = (p.stream, p.src, _int(layer.get("amqp.channel"), 0) or 0)
        if kind == "1":
            method = (_int(layer.get("amqp.method.class"), 0), _int(layer.get("amqp.method.method"), 0))
            self._amqp.pop(key, None)  # a method frame ends any content still open on its channel
            name = _AMQP_CONTENT.get(method)  # type: ignore[arg-type]
            if name is not None:
                self._amqp[key] = _AmqpContent(
                    name, layer.get("amqp.method.arguments.exchange") or "",
                    layer.get("amqp.method.arguments.routing_key") or "", start, list(frames),
                )  # fmt: skip
            elif method == _AMQP_START_OK and (layer.has("amqp.connection_name") or layer.has("amqp.product")):
                return AmqpOpen(protocol="amqp", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time,
                                frames=frames, is_request=True, connection_name=layer.get("amqp.connection_name"),
                                product=layer.get("amqp.product"))
            return None
        st = self._amqp.get(key)
        if st is None:  # a heartbeat, or content whose method frame is not in the capture
            return None
        for f in frames:
            if f not in st.frames:
                st.frames.append(f)
        if kind == "2":
            st.size = _int(layer.get("amqp.header.body-size"), 0) or 0
        elif kind == "3":
            try:
                st.body += bytes.fromhex(layer.get("amqp.payload") or "")
            except ValueError:
                pass
        else:
            return None
        if st.size is None or len(st.body) < st.size:
            return None
        del self._amqp[key]
        return self._amqp_message(p, st)

    @staticmethod
    def _amqp_message(p: Packet, st: _AmqpContent) -> AmqpMessage:
        body = bytes(st.body)
        message, compression, why = oslo.read_body(body) if body else (None, None, "empty body")
        return AmqpMessage(
            protocol="amqp", stream=p.stream, src=p.src, dst=p.dst, start=st.start, end=p.time,
            frames=tuple(st.frames), is_request=st.method == "publish", method=st.method,
            exchange=st.exchange, routing_key=st.routing_key, body_size=st.size or 0, oslo=message,
            compression=compression, undecoded=why, digest=hashlib.sha256(body).hexdigest()[:16],
        )  # fmt: skip

    # ----------------------------------------------------------------- MySQL

    def _mysql_layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
        """The message one MySQL PDU completes (a request, or the last PDU of a reply), or None."""
        fields = layer.fields
        row = fields is MYSQL_ROW_FIELDS
        if row or (fields and fields[0][0] == "mysql.field.catalog"):
            # a row or a column definition, the PDUs most replies are made of: counted without a set of names
            st = self._reply_state(p, start)
            if row:
                if st.phase in ("columns", "rows"):
                    st.phase = "rows"
                    st.rows += 1
                return None
            # one column definition, or (from -T fields) all of a segment's, each opened by its catalog
            db = org = table = None
            for k, v in fields:
                if k == "mysql.field.catalog":
                    if st.column_defs:
                        self._column(st, db, org or table)
                    st.column_defs += 1
                    db = org = table = None
                elif k == "mysql.field.db" and db is None:
                    db = v
                elif k == "mysql.field.org_table" and org is None:
                    org = v
                elif k == "mysql.field.table" and table is None:
                    table = v
            self._column(st, db, org or table)
            return None
        names = {k for k, _ in layer.fields}  # most PDUs are asked about several fields
        if not names.isdisjoint(_MYSQL_NOT_REPLIES):
            common: dict[str, Any] = dict(protocol="mysql", stream=p.stream, src=p.src, dst=p.dst, start=start,
                                          end=p.time, frames=frames)
            if "mysql.server_greeting" in names:
                return MysqlGreeting(**common, is_request=False, version=layer.get("mysql.version"))
            if "mysql.login_request" in names:
                if layer.get("mysql.packet_length") == "32":  # an SSL request: TLS from here on
                    return MysqlLogin(**common, is_request=True, tls=True)
                return MysqlLogin(**common, is_request=True, user=layer.get("mysql.user"),
                                  schema=layer.get("mysql.schema"))
            if _int(layer.get("mysql.packet_number"), 0):
                # a command opens its exchange with sequence number 0: a later packet of the client's is
                # its part of an authentication (caching_sha2's public-key request or encrypted password,
                # an auth switch response), which tshark may read as a command
                return None
            code = _int(layer.get("mysql.command"), -1)
            name = MYSQL_COMMANDS.get(code, f"command {code}")
            text = layer.get("mysql.query")
            if text is None and name == "init_db":
                text = layer.get("mysql.schema")
            return MysqlCommand(**common, is_request=True, command=name, text=text)
        # server -> client: part of a reply
        key = (p.stream, p.src)
        st = self._reply_state(p, start)
        if "mysql.auth_switch_request.name" in names and st.phase == "start":
            return None  # an auth switch or more auth data (0xFE/0x01 first): the login or change_user goes on
        if "mysql.error_code" in names:
            error_code = layer.get("mysql.error_code")
            del self._mysql[key]
            return MysqlReply(
                **self._reply_common(p.stream, st),
                kind="error",
                error_code=_int(error_code),
                error_message=layer.get("mysql.error.message") or layer.get("mysql.message"),
            )
        if "mysql.num_fields" in names and st.phase == "start":
            st.phase = "columns"
            st.columns = _int(layer.get("mysql.num_fields"), 0) or 0
            return None
        if "mysql.field.name" in names or "mysql.field.catalog" in names:
            st.column_defs += 1
            self._column(st, layer.get("mysql.field.db"),
                         layer.get("mysql.field.org_table") or layer.get("mysql.field.table"))
            return None
        # tshark 3.x shows the response code as 0x000000fe, 4.x as 0xfe: compare the number
        is_eof = "mysql.eof" in names or ("mysql.response_code" in names
                                          and _int(layer.get("mysql.response_code")) == 0xFE)
        is_ok = "mysql.affected_rows" in names
        if st.phase == "columns" and is_eof and not is_ok:
            st.phase = "rows"  # the intermediate EOF after the column definitions
            return None
        if st.phase in ("columns", "rows") and (is_eof or is_ok):
            del self._mysql[key]
            return self._rows_reply(p.stream, st, complete=True)
        if st.phase in ("columns", "rows"):
            st.phase = "rows"
            st.rows += 1
            return None
        if is_ok:
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), kind="ok",
                              affected_rows=_int(layer.get("mysql.affected_rows")))
        if is_eof:
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), kind="eof")
        if "mysql.message" in names and st.phase == "start":  # a bare text: COM_STATISTICS's reply
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), kind="text", text=layer.get("mysql.message"))
        return None  # anything else (auth switch, more data): part of a reply still open

    def _reply_state(self, p: Packet, start: float) -> _MysqlReplyState:
        """The reply the server is sending on this connection (begun here if none is), this frame in it."""
        key = (p.stream, p.src)
        st = self._mysql.get(key)
        if st is None:
            st = self._mysql[key] = _MysqlReplyState(src=p.src, dst=p.dst, start=start)
        if not st.frames or st.frames[-1] != p.number:  # frames come in order
            st.frames.append(p.number)
        st.end = p.time
        return st

    @staticmethod
    def _column(st: _MysqlReplyState, db: str | None, table: str | None) -> None:
        """Note the schema and table a column definition names."""
        if db:
            st.schemas.setdefault(db, None)
        if table:
            st.tables.setdefault(table, None)

    @staticmethod
    def _reply_common(stream: int, st: _MysqlReplyState, complete: bool = True) -> dict:
        return dict(
            protocol="mysql",
            stream=stream,
            src=st.src,
            dst=st.dst,
            start=st.start,
            end=st.end,
            frames=tuple(st.frames),
            is_request=False,
            complete=complete,
        )

    def _rows_reply(self, stream: int, st: _MysqlReplyState, complete: bool) -> MysqlReply:
        return MysqlReply(
            **self._reply_common(stream, st, complete),
            kind="rows",
            rows=st.rows,
            schemas=tuple(st.schemas),
            tables=tuple(st.tables),
        )

    def _flush_mysql(self, stream: int, src: Address) -> Iterator[Message]:
        """A result set still open when its connection closes or the input ends: incomplete."""
        st = self._mysql.pop((stream, src), None)
        if st is None or st.phase == "start":
            return
        yield self._rows_reply(stream, st, complete=False)


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
            size = _int(words[at] if len(words) > at else None, 0) or 0
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
                size = _int(words[3] if len(words) > 3 else None, 0) or 0
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
        size = _int(words[1] if len(words) > 1 else None, 0) or 0
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

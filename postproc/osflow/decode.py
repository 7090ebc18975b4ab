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

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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
                m = self._memcache(p, layer, frames, start)
                if m is not None:
                    yield m
            elif layer.name == "mysql":
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
        common = dict(protocol="http", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time, frames=frames)
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
        common = dict(protocol="memcache", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time, frames=frames)
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
            compression=compression, undecoded=why,
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
            common = dict(protocol="mysql", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time,
                          frames=frames)
            if "mysql.server_greeting" in names:
                return MysqlGreeting(**common, is_request=False, version=layer.get("mysql.version"))
            if "mysql.login_request" in names:
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
            return MysqlReply(**self._reply_common(p.stream, st), kind="ok", affected_rows=_int(layer.get("mysql.affected_rows")))
        if is_eof:
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), kind="eof")
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

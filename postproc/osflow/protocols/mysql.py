"""MySQL / MariaDB: the client-server protocol on port 3306, every stage's part of it.

Decode: a reply spreads over many PDUs (column count, column definitions, EOF, rows, EOF)
and often over several frames: :class:`MysqlDecoder` keeps per-connection state and emits
one :class:`~osflow.model.MysqlReply` when the reply is complete.  Pair: one command with
its reply, in order; a login is one pair; a quit is answered by the close of the connection;
the greeting asks nothing.  Join: the login's user and schema, the schemas the results name,
the tables queries touch.  Flow: the pool's pings and rollbacks are noise; runs of queries
group into one step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import portmap
from .. import tokens as tok
from ..model import (
    MYSQL_ROW_FIELDS,
    Address,
    Closed,
    Exchange,
    Layer,
    Message,
    MysqlCommand,
    MysqlGreeting,
    MysqlLogin,
    MysqlReply,
    Packet,
    Pair,
)
from ..openstack import MYSQL_COMMANDS, SERVICE_TABLES, audit_ids, resource_ids, shared_schema, tables_in
from ..redact import sql_without_literals
from .base import Attr, Common, Failure, LayerDecoder, PairText, ProtocolModule, Row, Vote, Words, server_attrs, to_int
from .base import unescape as _unescape
from .mysql_attrs import query_in_payload

if TYPE_CHECKING:
    from lxml import etree

#: Fields that mark a MySQL PDU as the server's greeting, a login or a command: anything else is part of a reply.
_MYSQL_NOT_REPLIES = frozenset({"mysql.server_greeting", "mysql.login_request", "mysql.request", "mysql.command"})

#: The fields ``osflow-post -r`` asks tshark for.
FIELDS = (
    "mysql.packet_number", "mysql.packet_length", "mysql.version", "mysql.max_packet", "mysql.user", "mysql.schema",
    "mysql.command", "mysql.table_name", "mysql.query_attrs_count",
    "mysql.query", "mysql.num_fields", "mysql.field.catalog", "mysql.field.db", "mysql.field.org_table",
    "mysql.eof", "mysql.affected_rows", "mysql.error_code", "mysql.error.message", "mysql.auth_switch_request.name",
    "mysql.response_code", "mysql.message",
)

_POOL = ("SELECT 1", "ROLLBACK", "COMMIT", "BEGIN", "START TRANSACTION")


def is_pool_noise(ex: Exchange) -> bool:
    """Connection-pool chatter: pings, ``SELECT 1``, ROLLBACK, COMMIT, SET ...

    >>> from osflow.model import Address
    >>> a = Address("127.0.0.1", 1); b = Address("127.0.0.1", 3306)
    >>> cmd = lambda t: MysqlCommand(protocol="mysql", stream=0, src=a, dst=b, start=0, end=0, frames=(1,),
    ...                              is_request=True, command="query", text=t)
    >>> texts = ("SELECT 1", "rollback", "SET NAMES utf8", "SELECT x FROM user")
    >>> [is_pool_noise(Exchange("mysql", 0, a, b, cmd(t), None)) for t in texts]
    [True, True, True, False]
    """
    req = ex.request
    if not isinstance(req, MysqlCommand):
        return False
    if req.command == "ping":
        return True
    text = " ".join((req.text or "").split()).rstrip(";").upper()
    return text in _POOL or text.startswith("SET ")


def mysql_response(resp: Message | None) -> str | None:
    """A MySQL reply in words: ``OK``, ``3 rows``, ``ERR 1045 Access denied…``, ``closed``."""
    if isinstance(resp, Closed):
        return "closed"
    if not isinstance(resp, MysqlReply):
        return None
    if resp.kind == "error":
        return f"ERR {resp.error_code} {resp.error_message or ''}".strip()
    if resp.kind == "rows":
        text = "1 row" if resp.rows == 1 else f"{resp.rows} rows"
        return text if resp.complete else text + " (incomplete)"
    if resp.kind == "columns":
        text = "1 column" if resp.columns == 1 else f"{resp.columns} columns"
        return text if resp.complete else text + " (incomplete)"
    if resp.kind == "eof":
        return "EOF"
    if resp.kind == "text":
        return " ".join((resp.text or "").split())
    return "OK"


def service_for_db_login(user: str, schema: str | None) -> str | None:
    """The service a DB login names: its schema's, else its user's (``nova_api`` -> nova-api)."""
    for name in (schema, user):
        if not name:
            continue
        svc = portmap.service_for_database(name) or portmap.service(name)
        if svc is not None:
            return svc.key
    return user if user not in ("root", "mysql") else None


# --------------------------------------------------------------------------- decode


@dataclass
class _MysqlReplyState:
    """A MySQL reply being assembled from its PDUs."""

    src: Address
    dst: Address
    start: float
    frames: list[int] = field(default_factory=list)
    phase: str = "start"  # start | columns | rows; fields: a field list's column definitions
    columns: int = 0
    column_defs: int = 0
    rows: int = 0
    schemas: dict[str, None] = field(default_factory=dict)
    tables: dict[str, None] = field(default_factory=dict)
    end: float = 0.0


class MysqlDecoder(LayerDecoder):
    """MySQL PDUs -> greeting, login, command, and one reply per command (assembled per connection)."""

    def __init__(self) -> None:
        self._mysql: dict[tuple[int, Address], _MysqlReplyState] = {}
        #: The connections (stream, server) whose next reply answers a COM_FIELD_LIST: column
        #: definitions and an EOF, with no column-count packet before them.
        self._field_lists: set[tuple[int, Address]] = set()

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        if layer.has("mysql.error_code") and layer.get("mysql.packet_number") == "0":
            # the server's first packet is an error instead of its greeting (ERR 1130: host not
            # allowed; too many connections): the client's connect, refused
            yield MysqlCommand(protocol="mysql", stream=p.stream, src=p.dst, dst=p.src, start=start,
                               end=start, frames=frames, is_request=True, command="connect")
        m = self._mysql_layer(p, layer, frames, start)
        if m is not None:
            yield m

    def closed(self, stream: int, src: Address) -> Iterator[Message]:
        return self._flush_mysql(stream, src)

    def flush(self) -> Iterator[Message]:
        for key in list(self._mysql):
            yield from self._flush_mysql(*key)

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
            common = Common(protocol="mysql", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time,
                          frames=frames)
            if "mysql.server_greeting" in names:
                return MysqlGreeting(**common, is_request=False, version=layer.get("mysql.version"))
            if "mysql.login_request" in names:
                if layer.get("mysql.packet_length") == "32":  # an SSL request: TLS from here on
                    return MysqlLogin(**common, is_request=True, tls=True)
                return MysqlLogin(**common, is_request=True, user=layer.get("mysql.user"),
                                  schema=layer.get("mysql.schema"))
            if to_int(layer.get("mysql.packet_number"), 0):
                # a command opens its exchange with sequence number 0: a later packet of the client's is
                # its part of an authentication (caching_sha2's public-key request or encrypted password,
                # an auth switch response), which tshark may read as a command
                return None
            number = to_int(layer.get("mysql.command"))
            code = -1 if number is None else number
            name = MYSQL_COMMANDS.get(code, f"command {code}")
            text = layer.get("mysql.query")
            if text is None and name == "init_db":
                text = layer.get("mysql.schema")
            elif name == "field_list":
                text = layer.get("mysql.table_name")
                self._field_lists.add((p.stream, p.dst))
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
                **self._reply_common(p.stream, st), is_request=False,
                kind="error",
                error_code=to_int(error_code),
                error_message=layer.get("mysql.error.message") or layer.get("mysql.message"),
            )
        if "mysql.num_fields" in names and st.phase == "start":
            st.phase = "columns"
            st.columns = to_int(layer.get("mysql.num_fields"), 0) or 0
            return None
        if "mysql.field.name" in names or "mysql.field.catalog" in names:
            st.column_defs += 1
            self._column(st, layer.get("mysql.field.db"),
                         layer.get("mysql.field.org_table") or layer.get("mysql.field.table"))
            return None
        # tshark 3.x shows the response code as 0x000000fe, 4.x as 0xfe: compare the number
        is_eof = "mysql.eof" in names or ("mysql.response_code" in names
                                          and to_int(layer.get("mysql.response_code")) == 0xFE)
        is_ok = "mysql.affected_rows" in names
        if st.phase == "fields" and (is_eof or is_ok):
            del self._mysql[key]  # the EOF (or, with CLIENT_DEPRECATE_EOF, the OK) after a field list
            return self._columns_reply(p.stream, st, complete=True)
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
            return MysqlReply(**self._reply_common(p.stream, st), is_request=False, kind="ok",
                              affected_rows=to_int(layer.get("mysql.affected_rows")))
        if is_eof:
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), is_request=False, kind="eof")
        if "mysql.message" in names and st.phase == "start":  # a bare text: COM_STATISTICS's reply
            del self._mysql[key]
            return MysqlReply(**self._reply_common(p.stream, st), is_request=False, kind="text",
                              text=layer.get("mysql.message"))
        return None  # anything else (auth switch, more data): part of a reply still open

    def _reply_state(self, p: Packet, start: float) -> _MysqlReplyState:
        """The reply the server is sending on this connection (begun here if none is), this frame in it."""
        key = (p.stream, p.src)
        st = self._mysql.get(key)
        if st is None:
            st = self._mysql[key] = _MysqlReplyState(src=p.src, dst=p.dst, start=start)
            if key in self._field_lists:
                self._field_lists.discard(key)
                st.phase = "fields"
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
    def _reply_common(stream: int, st: _MysqlReplyState) -> Common:
        return Common(protocol="mysql", stream=stream, src=st.src, dst=st.dst, start=st.start, end=st.end,
                      frames=tuple(st.frames))

    def _rows_reply(self, stream: int, st: _MysqlReplyState, complete: bool) -> MysqlReply:
        return MysqlReply(
            **self._reply_common(stream, st),
            is_request=False,
            complete=complete,
            kind="rows",
            rows=st.rows,
            schemas=tuple(st.schemas),
            tables=tuple(st.tables),
        )

    def _columns_reply(self, stream: int, st: _MysqlReplyState, complete: bool) -> MysqlReply:
        return MysqlReply(**self._reply_common(stream, st), is_request=False, complete=complete, kind="columns",
                          columns=st.column_defs, schemas=tuple(st.schemas), tables=tuple(st.tables))

    def _flush_mysql(self, stream: int, src: Address) -> Iterator[Message]:
        """A result set or field list still open when its connection closes or the input ends: incomplete."""
        self._field_lists.discard((stream, src))
        st = self._mysql.pop((stream, src), None)
        if st is None or st.phase == "start":
            return
        if st.phase == "fields":
            yield self._columns_reply(stream, st, complete=False)
            return
        yield self._rows_reply(stream, st, complete=False)


# --------------------------------------------------------------------------- source: PDML

_MYSQL_SKIP = ("mysql.caps", "mysql.extcaps", "mysql.stat", "mysql.field.flags", "mysql.connattrs", "mysql.salt",
               "mysql.passwd", "mysql.unused")
#: MySQL fields whose children osflow never reads (bit flags, capability sets, connection attributes).
_MYSQL_LEAVES = frozenset({"mysql.field.flags", "mysql.server_status", "mysql.caps.server", "mysql.caps.client",
                           "mysql.extcaps.server", "mysql.extcaps.client", "mariadb.extcaps.server", "mysql.connattrs"})
#: A column definition's first length-encoded strings, in protocol order: what osflow reads of it.
_COLUMN_TEXTS = ("mysql.field.catalog", "mysql.field.db", "mysql.field.table", "mysql.field.org_table")
_ROW_FIELDS = MYSQL_ROW_FIELDS
#: Text fields whose PDML value may hold what ``-T fields`` escapes (see :func:`~.base.unescape`).
_MYSQL_TEXTS = frozenset({"mysql.query", "mysql.error.message"})


def result_set_pdu(proto: etree._Element) -> tuple[tuple[str, str], ...] | None:
    """A column definition or a row PDU read by position, or None for any other PDU.

    Most MySQL PDUs are the column definitions and rows of result sets.  tshark lists
    their length-encoded strings as unnamed wrappers (prefix, length, value) right
    after the packet length and number, so the first wrapper's value tells which
    kind of PDU this is, and a column definition's texts are at fixed positions.
    Anything laid out otherwise is left to the walk of :func:`mysql_fields`.
    """
    try:
        wrapper = proto[2]
        if wrapper.get("name"):
            return None
        value = wrapper[-1]
    except IndexError:
        return None
    name = value.get("name") or ""
    if name.startswith("mysql.row."):
        return _ROW_FIELDS
    if name != _COLUMN_TEXTS[0]:
        return None
    out = [(name, value.get("show") or "")]
    for i in range(1, len(_COLUMN_TEXTS)):
        try:
            value = proto[2 + i][-1]
        except IndexError:
            return None
        if value.get("name") != _COLUMN_TEXTS[i]:
            return None
        out.append((_COLUMN_TEXTS[i], value.get("show") or ""))
    return tuple(out)


def mysql_fields(proto: etree._Element) -> tuple[tuple[str, str], ...]:
    """The mysql.* fields of one PDU: its own fields and those one level down (the
    unnamed wrappers of column definitions and rows, mysql.request, mysql.login_request,
    mysql.server_greeting); flag and capability subtrees are not walked.

    Column definitions and rows laid out as tshark usually does are read by position
    (:func:`result_set_pdu`); otherwise the walk is still kept short: an unnamed
    wrapper is a length-encoded string whose value is its last child, a row PDU is
    marked ``mysql.row`` at its first value, and a column definition ends at its
    name (what follows, the column's type and flags, osflow does not read).
    """
    fast = result_set_pdu(proto)
    if fast is not None:
        return fast
    out: list[tuple[str, str]] = []
    for f in proto:  # <field> elements (iterating without a tag filter is cheaper)
        n = f.get("name")
        if not n:  # a length-encoded string (a column definition's text, a row's value): the value is last
            if len(f) and _mysql_child(f[-1], out) in ("mysql.row", "mysql.field.name"):
                return tuple(out)
            continue
        if n in ("mysql.request", "mysql.login_request", "mysql.server_greeting"):
            out.append((n, ""))
            for g in f:
                if _mysql_child(g, out) == "mysql.row":
                    return tuple(out)
            continue
        if not n.startswith("mysql."):
            continue
        if n.startswith("mysql.row."):
            out.append(("mysql.row", ""))
            return tuple(out)
        if not n.startswith(_MYSQL_SKIP):
            value = f.get("show") or ""
            out.append((n, _unescape(value) if n in _MYSQL_TEXTS else value))
    return tuple(out)


def _mysql_child(g: etree._Element, out: list) -> str | None:
    """Add one field of a wrapper to ``out``; its name (``mysql.row`` for any row value), or None."""
    m = g.get("name")
    if not m or not m.startswith("mysql."):
        return None
    if m.startswith("mysql.row."):
        out.append(("mysql.row", ""))
        return "mysql.row"
    if m in _MYSQL_LEAVES or m.startswith(_MYSQL_SKIP):
        return None
    value = g.get("show") or ""
    out.append((m, _unescape(value) if m in _MYSQL_TEXTS else value))
    return m


_ROW = Layer("mysql", _ROW_FIELDS)  # a row PDU, as the PDML reader marks it


def mysql_layers(row: Row) -> list[Layer]:
    """A ``-T fields`` line's MySQL PDUs, rebuilt in protocol order (column count, column
    definitions, EOF, rows, EOF/OK) from how many of each kind it holds."""
    def values(name: str) -> list[str]:
        return [_unescape(x) for x in row.values(name)]

    def pairs(names) -> list[tuple[str, str]]:
        return [(n, v) for n in names for v in values(n)]

    pdus = len(values("mysql.packet_number"))
    layers: list[Layer] = []
    if row.get("mysql.version"):  # server greeting
        return [Layer("mysql", (("mysql.server_greeting", ""), ("mysql.version", values("mysql.version")[0])))]
    if row.get("mysql.max_packet"):  # login request
        fields = [("mysql.login_request", ""), *pairs(("mysql.user", "mysql.schema", "mysql.packet_length"))]
        return [Layer("mysql", tuple(fields))]
    commands = values("mysql.command")
    if commands:
        queries = values("mysql.query")
        schemas = values("mysql.schema")
        numbers = values("mysql.packet_number")
        table_names = values("mysql.table_name")  # one per COM_FIELD_LIST (command 4)
        for i, code in enumerate(commands):
            fields = [("mysql.request", ""), ("mysql.command", code)]
            if len(numbers) == len(commands):
                fields.append(("mysql.packet_number", numbers[i]))
            if i < len(queries):
                fields.append(("mysql.query", queries[i]))
            if i < len(schemas):
                fields.append(("mysql.schema", schemas[i]))
            if code == "4" and table_names:
                fields.append(("mysql.table_name", table_names.pop(0)))
            if code == "3" and i >= len(queries) and row.get("mysql.query_attrs_count"):
                fields.append(("mysql.query_attrs", ""))  # its text lost in them: read from the bytes
            layers.append(Layer("mysql", tuple(fields)))
        return layers
    switches = values("mysql.auth_switch_request.name")
    if switches and pdus == 1:  # an auth switch (or more auth data): the login or change_user goes on
        return [Layer("mysql", (("mysql.auth_switch_request.name", switches[0]),))]
    message = values("mysql.message")
    if message and pdus == 1 and not (row.get("mysql.affected_rows") or row.get("mysql.eof")
                                      or row.get("mysql.error_code") or row.get("mysql.num_fields")):
        return [Layer("mysql", (("mysql.message", message[0]),))]  # a bare text: COM_STATISTICS's reply
    # a reply: rebuild its PDUs in protocol order
    columns = values("mysql.num_fields")
    defs = len(values("mysql.field.catalog"))
    dbs, tables = values("mysql.field.db"), values("mysql.field.org_table")
    eofs = len(values("mysql.eof"))
    oks = values("mysql.affected_rows")
    errors = values("mysql.error_code")
    # an OK whose first byte is 0xFE (CLIENT_DEPRECATE_EOF: it ends a result set) shows as an EOF and an OK:
    # one PDU. The OKs whose first byte is 0x00 are the others.
    ok_eofs = max(0, len(oks) - sum(_hex(x) == 0 for x in values("mysql.response_code")))
    eofs = max(0, eofs - ok_eofs)
    rows = max(0, pdus - len(columns) - defs - eofs - len(oks) - len(errors))
    for n in columns:
        layers.append(Layer("mysql", (("mysql.num_fields", n),)))
    if defs:  # all column definitions in one layer, each opened by its catalog (the decoder reads it so)
        fields = []
        for i in range(defs):
            fields.append(("mysql.field.catalog", "def"))
            if i < len(dbs) and dbs[i]:
                fields.append(("mysql.field.db", dbs[i]))
            if i < len(tables) and tables[i]:
                fields.append(("mysql.field.org_table", tables[i]))
        layers.append(Layer("mysql", tuple(fields)))
    eof = Layer("mysql", (("mysql.eof", "254"),))
    if eofs and (columns or defs):
        layers.append(eof)  # the EOF after the column definitions
        eofs -= 1
    layers += [_ROW] * rows
    layers += [eof] * eofs
    layers += [Layer("mysql", (("mysql.affected_rows", n),)) for n in oks[:len(oks) - ok_eofs]]
    layers += [Layer("mysql", (("mysql.eof", "254"), ("mysql.affected_rows", n))) for n in oks[len(oks) - ok_eofs:]]
    messages = values("mysql.error.message")
    numbers = values("mysql.packet_number")
    for i, code in enumerate(errors):
        fields = [("mysql.error_code", code)]
        if pdus == 1:  # the server's first packet when it refuses the connection (0)
            fields.append(("mysql.packet_number", numbers[0]))
        if i < len(messages):
            fields.append(("mysql.error.message", messages[i]))
        layers.append(Layer("mysql", tuple(fields)))
    return layers


def _hex(text: str) -> int:
    """A hexadecimal number as tshark shows it (``0x00``, ``fe``), -1 when it is none."""
    try:
        return int(text, 16)
    except ValueError:
        return -1


# --------------------------------------------------------------------------- the module


class Mysql(ProtocolModule):
    name = "mysql"
    pdml_protos = ("mysql",)
    tshark_fields = FIELDS
    groups = True

    payload_filter = "mysql.query_attrs"

    def pdml_layer(self, proto, frame):
        layer = Layer("mysql", mysql_fields(proto))
        if self.needs_payload([layer]):
            return self.with_payload([layer], frame.payload())[0]
        return layer

    def needs_payload(self, layers):
        # a COM_QUERY with typed query attributes: tshark 4.0 loses its place in them and shows no text
        return any(layer.has("mysql.query_attrs") and not layer.has("mysql.query") for layer in layers)

    def with_payload(self, layers, payload):
        out = []
        for layer in layers:
            if layer.has("mysql.query_attrs") and not layer.has("mysql.query"):
                text = query_in_payload(payload, to_int(layer.get("mysql.packet_length")))
                if text is not None:
                    layer = Layer("mysql", (*layer.fields, ("mysql.query", text)))
            out.append(layer)
        return out

    def fields_layers(self, row):
        return mysql_layers(row) if row.get("mysql.packet_number") else []

    def decoder(self):
        return MysqlDecoder()

    def absorbs(self, m):
        return isinstance(m, MysqlGreeting)

    def answered_by_close(self, req):
        # a quit; a TLS session, which ends with its connection
        return isinstance(req, MysqlCommand) and req.command == "quit" or isinstance(req, MysqlLogin) and req.tls

    def votes(self, ex):
        req = ex.request
        if isinstance(req, MysqlLogin) and req.user:
            key = service_for_db_login(req.user, req.schema)
            if key:
                # every nova service logs in to nova_api as nova: then the login is a guess, as the schema is
                shared = req.schema is not None and shared_schema(req.schema)
                yield Vote(key, 3 if shared else 100, f"MySQL login {req.user}@{req.schema or '-'}")
        if isinstance(ex.response, MysqlReply):
            for db in ex.response.schemas:
                svc = portmap.service_for_database(db)
                if svc:
                    # a schema several services use (nova's) is weak evidence for any one of them
                    yield Vote(svc.key, 1 if shared_schema(db) else 3, f"result metadata names schema {db}")
        if isinstance(req, MysqlCommand):
            for table in tables_in(req.text):
                for key, tables in SERVICE_TABLES.items():
                    if table in tables:
                        yield Vote(key, 1, f"queries touch table {table}")

    def schemas(self, ex: Exchange) -> tuple[str | None, str | None, tuple[str, ...]]:
        """(the schema a login names ("" for a login without one), the one an init_db switches to,
        those a result names)."""
        req, resp = ex.request, ex.response
        login = (req.schema or "") if isinstance(req, MysqlLogin) else None
        switch = req.text if isinstance(req, MysqlCommand) and req.command == "init_db" and req.text else None
        results = resp.schemas if isinstance(resp, MysqlReply) else ()
        return login, switch, results

    def noise(self, ex):
        return is_pool_noise(ex)

    def pool_use(self, ex):
        req = ex.request
        if not isinstance(req, MysqlCommand):
            return None
        if req.command == "ping":
            return "checkout"
        if req.command != "query":
            return None
        text = " ".join((req.text or "").split()).rstrip(";").upper()
        return {"SELECT 1": "checkout", "ROLLBACK": "checkin"}.get(text, "statement")

    def identifiers(self, ex):
        req = ex.request
        if not isinstance(req, MysqlCommand) or req.command != "query":
            return ()
        return resource_ids(req.text) + audit_ids(req.text)

    def groupable(self, ex):
        return not isinstance(ex.request, MysqlLogin)

    def group_summary(self, run):
        noise = [p for p in run if p.noise]
        real = [p for p in run if not p.noise]
        parts = []
        if real:
            tables: Counter = Counter()
            order: dict[str, None] = {}
            for p in real:
                for t in tables_in(p.exchange.request.text if isinstance(p.exchange.request, MysqlCommand) else None):
                    tables[t] += 1
                    order.setdefault(t, None)
            names = sorted(order, key=lambda t: -tables[t])  # stable: most used first, then first seen
            shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
            word = "query" if len(real) == 1 else "queries"
            parts.append(f"{len(real)} {word}" + (f" ({shown})" if shown else ""))
        if noise:
            parts.append(f"{len(noise)} pool pings/rollbacks")
        return parts

    def group_result(self, ex):
        resp = ex.response
        if isinstance(resp, MysqlReply) and resp.kind == "rows":
            return "rows", resp.rows
        if isinstance(resp, MysqlReply) and resp.kind == "ok":
            return "ok", 0
        return None

    def text(self, ex, words: Words) -> PairText:
        req = ex.request
        if isinstance(req, MysqlLogin):
            plain = f"login {req.user or '?'}@{req.schema or '-'}"
            if req.tls:
                plain = "TLS session (login and queries encrypted)"
        elif isinstance(req, MysqlCommand):
            if req.command == "query" and req.text is None:
                plain = "query (text not read)"  # tshark 4.0 loses it after typed query attributes (MySQL 8.1+)
            elif req.command == "query":
                plain = " ".join((req.text or "").split())
                if not words.show:
                    plain = tok.hide_sql_secrets(plain)
            elif req.command == "field_list":
                plain = "field list" + (f" {req.text}" if req.text else "")
            else:
                plain = req.command + (f" {req.text}" if req.text else "")
        else:
            return super().text(ex, words)
        response = mysql_response(ex.response)
        return PairText(plain, response, plain, response or "")

    def operation(self, ex):
        req = ex.request
        if isinstance(req, MysqlLogin):
            return "login"
        if isinstance(req, MysqlCommand):
            if req.command == "query":
                words = " ".join((req.text or "").split()).split(None, 1)
                return words[0].upper() if words else "query"
            return req.command
        return None

    def failure(self, ex, response) -> Failure:
        r = ex.response
        return "error" if isinstance(r, MysqlReply) and r.kind == "error" else ""

    def badge(self, ex):
        r = ex.response
        return f"MySQL {r.error_code}" if isinstance(r, MysqlReply) and r.error_code else "MySQL error"

    def endpoint(self, pair):
        ex = pair.exchange
        req = ex.request
        if isinstance(req, MysqlLogin):
            return "login"
        if isinstance(req, MysqlCommand):
            if is_pool_noise(ex):
                return "pool: ping, SELECT 1, ROLLBACK, COMMIT, SET"
            if req.command != "query":
                return req.command
            words = (req.text or "").split(None, 1)
            verb = words[0].upper() if words else "?"
            return f"{verb} {','.join(sorted(set(tables_in(req.text))))}".rstrip()
        return super().endpoint(pair)

    def db_query(self, pair):
        return isinstance(pair.exchange.request, MysqlCommand) and not pair.noise

    def otlp_client_span(self, pair: Pair, schema: str | None,
                         common: list[Attr]) -> tuple[str, list[Attr], str | None] | None:
        ex = pair.exchange
        req, resp = ex.request, ex.response
        table = text = None
        if isinstance(req, MysqlLogin):
            operation = name = "login"
        elif isinstance(req, MysqlCommand) and req.command == "query":
            sql = " ".join((req.text or "").split())
            text = sql_without_literals(sql)
            words = sql.split(None, 1)
            operation = words[0].upper() if words else "query"
            tables = tables_in(sql)
            table = tables[0] if tables else None
            name = f"{operation} {table}" if table else operation
        elif isinstance(req, MysqlCommand) and req.command == "field_list" and req.text:
            operation, table = req.command, req.text  # COM_FIELD_LIST names its table
            name = f"{operation} {table}"
        elif isinstance(req, MysqlCommand):
            operation = name = req.command
        else:
            return None
        error = error_type = code = None
        if isinstance(resp, MysqlReply) and resp.kind == "error":
            code = str(resp.error_code) if resp.error_code is not None else None
            error = f"ERR {code or ''} {resp.error_message or ''}".strip()
            error_type = code or "error"
        system = "mariadb" if "mariadb" in pair.server.evidence.lower() else "mysql"
        attrs: list[Attr] = [
            ("db.system.name", system),
            ("db.system", system),
            ("db.namespace", schema),
            ("db.name", schema),
            ("db.operation.name", operation),
            ("db.operation", operation),
            ("db.collection.name", table),
            ("db.sql.table", table),
            ("db.query.text", text),
            ("db.statement", text),
            ("db.response.status_code", code),
            ("error.type", error_type),
            *server_attrs(ex.server),
            ("osflow.noise", pair.noise or None),
            *common,
        ]
        if text is not None:  # the statement is db.query.text, literals redacted
            attrs = [(k, v) for k, v in attrs if k != "osflow.request"]
        return name, attrs, error


MYSQL = Mysql()

"""Frozen dataclasses passed between the stages.

    source.py     PDML / pcap            -> Packet
    decode.py     Packet                 -> Message (HttpRequest, MysqlReply, ...)
    pair.py       Message                -> Exchange (request + response on one connection; an RPC
                                            call or cast across the broker: RpcExchange)
    tables/       ss / ps text           -> SocketEntry, Process
    join.py       Exchange + tables      -> Participant for every connection end
    flow.py       Exchange + Participant -> Flow (pairs with parents, groups, tokens; words from prose.py)
    render/       Flow                   -> lines of text (timeline, Mermaid, JSON Lines, Markdown)

Names follow the socket API where there is one (``sockname``/``peername``).
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, Literal

#: The protocol of a message or pair (``tcp``: a FIN/RST that answers a MySQL quit; ``amqp``: one
#: message on one connection to the broker; ``rpc``: an oslo.messaging call or cast across it).
Protocol = Literal["http", "mysql", "memcache", "amqp", "rpc", "redis", "tls", "tcp"]
#: How an RPC travels: a call waits for a reply, a cast does not, a fanout is a cast to every consumer.
RpcKind = Literal["call", "cast", "fanout"]
#: What a MySQL server answered to one command.
ReplyKind = Literal["ok", "error", "rows", "columns", "eof", "auth_switch", "text"]
#: Where a participant's name came from, strongest first.
EvidenceSource = Literal["table", "ss-comm", "listener", "protocol", "port", "address"]


class _Fields:
    """``==``, ``hash()`` and ``repr()`` over a dataclass's fields, written once for all the model's classes.

    ``@dataclass`` writes and compiles each of its methods anew for every class, which made
    importing this module the largest part of osflow-post's start-up (docs/performance.md).
    The classes below say ``eq=False, repr=False`` and inherit these three instead; they
    behave as the generated ones do (tests/test_model.py):
    equal when of the same class with equal fields, hashed on those fields, shown as
    ``Name(field=value, ...)``, fields declared ``compare=False`` / ``repr=False`` left out.
    Address keeps the generated methods: it is a dict key on every packet, and ordered.
    """

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass

    def _compared(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Fields)
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{self.__class__.__qualname__}({shown})"


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, order=True)
class Address:
    """A TCP endpoint: host (normalised text form, no brackets) and port; ``node``: the recorded
    host it is on when several hosts' recordings are merged (:mod:`osflow.hosts`; 127.0.0.1 on one
    host is not 127.0.0.1 on another), empty otherwise."""

    host: str
    port: int
    node: str = field(default="", repr=False)

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- source


@dataclass(frozen=True, eq=False, repr=False)
class Layer(_Fields):
    """One application PDU as tshark dissected it: protocol name and its fields.

    ``fields`` keeps document order; a field name may repeat (HTTP header lines).
    """

    name: str
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.fields:
            if k == name:
                return v
        return default

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.fields)


#: The fields of a MySQL row PDU (osflow never reads a row's values).  Both readers use this one
#: tuple, so that the decoder tells a row by identity: most PDUs of a capture are rows.
MYSQL_ROW_FIELDS: tuple[tuple[str, str], ...] = (("mysql.row", ""),)


@dataclass(frozen=True, eq=False, repr=False)
class Packet(_Fields):
    """One TCP frame, with only what osflow needs."""

    number: int
    time: float  # epoch seconds
    src: Address
    dst: Address
    stream: int  # tcp.stream
    syn: bool = False
    fin: bool = False
    rst: bool = False
    payload: int = 0  # tcp.len
    layers: tuple[Layer, ...] = ()
    segments: tuple[int, ...] = ()  # frames of a PDU reassembled in this frame (tcp.segment)
    seq: int | None = None  # tcp.seq_raw: tells the same segment captured twice (osflow.hosts)


# --------------------------------------------------------------------------- decode


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Message(_Fields):
    """One protocol message on one TCP connection (``src`` sent it)."""

    protocol: Protocol
    stream: int
    src: Address
    dst: Address
    start: float  # epoch of the first frame carrying it
    end: float  # epoch of the last frame carrying it
    frames: tuple[int, ...]
    is_request: bool


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class KeystoneAuth(_Fields):
    """What a ``POST /v3/auth/tokens`` body asks for (never the password)."""

    methods: tuple[str, ...] = ()
    user: str | None = None
    user_domain: str | None = None
    project: str | None = None
    project_domain: str | None = None
    domain: str | None = None  # domain scope
    system: bool = False
    unscoped: bool = False


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TokenInfo(_Fields):
    """Who a token issued or validated by keystone belongs to (from the response body)."""

    user: str | None = None
    user_domain: str | None = None
    project: str | None = None
    domain: str | None = None
    expires: str | None = None
    #: the token's service catalog, as far as osflow uses it: (endpoint URL, service key) of each
    #: endpoint whose service type it knows (:func:`osflow.openstack.catalog_endpoints`)
    catalog: tuple[tuple[str, str], ...] = ()
    #: the token's audit ids (``audit_ids``: its own, then the token it was rescoped from): not
    #: secret, and what keystone's revocation check names in its SQL when it validates the token
    audit_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HttpRequest(Message):
    """An HTTP request line and its headers (and what a keystone auth body asks for)."""

    method: str
    uri: str
    user_agent: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # raw, secrets included: redact when rendering
    auth: KeystoneAuth | None = None
    content_type: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HttpResponse(Message):
    """An HTTP status line and its headers (and whose token keystone issued or validated)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    request_in: int | None = None  # http.request_in: the frame of the request
    token: TokenInfo | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlGreeting(Message):
    """The server greeting that opens a MySQL connection."""

    version: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlLogin(Message):
    """A client's MySQL login request (user and default schema; never the password)."""

    user: str | None = None
    schema: str | None = None
    tls: bool = False  # an SSL request: the login and all that follows are inside TLS


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlCommand(Message):
    """A MySQL command: a query, quit, ping, init_db, ..."""

    command: str  # query, quit, ping, init_db, ... (lower case, from mysql.command)
    text: str | None = None  # query text / schema of init_db


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlReply(Message):
    """The server's whole reply to one MySQL command (a result set is one reply)."""

    kind: ReplyKind
    rows: int = 0
    columns: int = 0  # a field list's column definitions (COM_FIELD_LIST's reply)
    affected_rows: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    schemas: tuple[str, ...] = ()  # mysql.field.db of the result's columns
    tables: tuple[str, ...] = ()  # mysql.field.org_table of the result's columns
    complete: bool = True
    text: str | None = None  # a reply that is only text (COM_STATISTICS: "Uptime: ... Threads: ...")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MemcacheCommand(Message):
    """A memcached command and the keys it names."""

    command: str  # get, gets, set, add, replace, delete, touch, incr, decr, mg, ms, ...
    keys: tuple[str, ...] = ()
    value_length: int | None = None
    noreply: bool = False  # ``noreply`` (a quiet meta or binary command): no reply comes unless it fails
    binary: bool = False  # the binary protocol


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MemcacheReply(Message):
    """A memcached reply: hit, miss, STORED, ..."""

    #: hit | miss | STORED | NOT_STORED | NOT_FOUND | DELETED | EXISTS | TOUCHED | ERROR | <number> | HD | ...
    result: str
    keys: tuple[str, ...] = ()  # keys of VALUE lines (hits)
    binary: bool = False  # the binary protocol


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class OsloMessage(_Fields):
    """What an oslo.messaging body says (the JSON inside the ``oslo.message`` envelope).

    A request has a ``method``; a reply has ``is_reply`` and ``result`` or ``failure``.
    ``token`` is the user's token (``_context_auth_token``): kept only to fingerprint it.
    """

    method: str | None = None
    namespace: str | None = None
    version: str | None = None
    object_method: str | None = None  # nova's object RPC: "Instance.save"
    msg_id: str | None = None  # a call's id, and its reply's
    reply_q: str | None = None  # the queue a call's reply goes to (reply_<hex>)
    unique_id: str | None = None  # ties a publish to its deliveries
    request_id: str | None = None  # _context_request_id (req-...)
    global_request_id: str | None = None
    user: str | None = None  # _context_user_name
    project: str | None = None  # _context_project_name
    token: str | None = field(default=None, repr=False)  # _context_auth_token: a secret
    is_reply: bool = False
    ending: bool = True  # False: a keep-alive reply, the call is still running
    result: str | None = None  # a reply's result, described briefly ("[[Selection]]")
    failure: str | None = None  # a reply's exception class ("NoValidHost")
    failure_message: str | None = None
    #: the resource UUIDs a request's arguments name (an instance's, its image's, a port's)
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class AmqpMessage(Message):
    """One AMQP 0-9-1 message on one connection: a Basic.Publish to the broker or a Basic.Deliver from it.

    ``oslo`` is what its body says when it is an oslo.messaging message; ``undecoded``
    says why it is not read otherwise ("compressed body (zlib)", "not JSON", ...).
    """

    method: str  # publish | deliver | return | get-ok
    channel: int = 0
    exchange: str = ""
    routing_key: str = ""
    body_size: int = 0
    oslo: OsloMessage | None = None
    compression: str | None = None  # zlib | gzip | bz2 | lzma, when the body was compressed
    undecoded: str | None = None
    digest: str = ""  # of the body (SHA-256, 16 hex): a delivery is its publish's copy


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class AmqpOpen(Message):
    """A client's Connection.Start-Ok: the process it names (never the password it carries)."""

    connection_name: str | None = None  # oslo.messaging's "<program>:<pid>:<uuid>"
    product: str | None = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Closed(Message):
    """The first FIN or RST a side sent on a connection."""

    reset: bool = False


# --------------------------------------------------------------------------- pair


@dataclass(frozen=True, eq=False, repr=False)
class Exchange(_Fields):
    """A request and its response on one connection (``client`` sent the request)."""

    protocol: Protocol
    stream: int
    client: Address
    server: Address
    request: Message
    response: Message | None

    @property
    def start(self) -> float:
        return self.request.start

    @property
    def end(self) -> float:
        return self.response.end if self.response is not None else self.request.end

    @property
    def frames(self) -> tuple[int, ...]:
        if self.response is None:
            return self.request.frames
        return self.request.frames + self.response.frames


@dataclass(frozen=True, eq=False, repr=False)
class RpcExchange(Exchange):
    """One RPC across the broker: the caller's publish (``request``), its delivery to one callee,
    and for a call the callee's reply publish (``response``) and its delivery back to the caller.

    ``stream``/``client``: the caller's connection to the broker and its end of it;
    ``server_stream``/``server``: the callee's (the broker's own end when nobody took it).
    A fanout delivered to N consumers is N RpcExchanges sharing one publish.
    """

    kind: RpcKind = "cast"
    broker: Address | None = None
    server_stream: int | None = None  # None when no consumer took the message
    delivery: AmqpMessage | None = None
    reply_delivery: AmqpMessage | None = None
    delivered: int = 0  # consumers the publish reached
    keepalives: int = 0  # keep-alive replies (ending false) before the last one

    @property
    def oslo(self) -> OsloMessage:
        return self.request.oslo or OsloMessage()  # type: ignore[attr-defined]

    @property
    def routing_key_topic(self) -> str:
        """The topic it was sent to: the routing key's first word, or a fanout exchange's topic."""
        exchange, key = self.request.exchange, self.request.routing_key  # type: ignore[attr-defined]
        if exchange.endswith("_fanout"):
            return exchange[: -len("_fanout")]
        return key.split(".")[0]

    @property
    def end(self) -> float:
        for m in (self.reply_delivery, self.response, self.delivery):
            if m is not None:
                return m.end
        return self.request.end

    @property
    def served(self) -> tuple[float, float]:
        """When the callee handled it: from the delivery to the reply it published (a call),
        or the delivery itself (a cast: :mod:`osflow.flow` extends it to its last child)."""
        if self.delivery is None:
            return self.request.start, self.request.end
        end = self.response.end if self.response is not None else self.delivery.end
        return self.delivery.start, end

    @property
    def frames(self) -> tuple[int, ...]:
        out: tuple[int, ...] = ()
        for m in (self.request, self.delivery, self.response, self.reply_delivery):
            if m is not None:
                out += m.frames
        return out


@dataclass(frozen=True, eq=False, repr=False)
class ProxiedExchange(Exchange):
    """One request through one or more proxies (HAProxy, nginx, Apache's ``ProxyPass``): the client's
    leg to the first proxy and each leg a proxy re-sent it on, stitched (:mod:`osflow.proxies`).

    ``stream``/``client``/``request``/``response``: the client's leg; ``server``: the service's end of
    the last leg, ``server_stream`` its connection; ``legs``: every leg in order, the client's first;
    ``proxy``: each proxy's name as the evidence says (the join may name it from the tables), with
    ``evidence`` saying why; ``listeners``: the address each proxy was reached at.
    """

    legs: tuple[Exchange, ...] = ()
    server_stream: int = 0
    proxy: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def listeners(self) -> tuple[Address, ...]:
        return tuple(leg.server for leg in self.legs[:-1])

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(sorted({f for leg in self.legs for f in leg.frames}))


@dataclass(frozen=True, eq=False, repr=False)
class ProxyLeg(Exchange):
    """A request a proxy sent (:mod:`osflow.proxies`): with ``--show-proxies``, its leg of ``front``'s
    request (a child of it, not of whatever else the proxy was serving); ``front`` None: the proxy's
    own request, a health check (a child of nothing)."""

    front: Exchange | None = None


@dataclass(frozen=True, eq=False, repr=False)
class AmqpConnection(_Fields):
    """A connection to the broker, with what its traffic says about its owner (for the join)."""

    stream: int
    client: Address
    broker: Address
    start: float
    connection_name: str | None = None
    consumes: tuple[str, ...] = ()  # topics (routing keys, fanout exchanges) delivered to it
    reply_queues: tuple[str, ...] = ()  # reply queues delivered to it (its owner made those calls)
    calls_for: tuple[str, ...] = ()  # reply queues named by the calls it published


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, eq=False, repr=False)
class SocketUser(_Fields):
    """One ``("comm",pid=N,fd=M)`` of ss's ``users:(...)``."""

    comm: str
    pid: int
    fd: int | None = None


@dataclass(frozen=True, eq=False, repr=False)
class SocketEntry(_Fields):
    """One TCP socket line of ``ss`` (a listener has no peer)."""

    state: str
    sockname: Address  # local; host "*" for a wildcard
    peername: Address | None  # remote; None for a listener
    users: tuple[SocketUser, ...] = ()
    time: float | None = None  # epoch of the snapshot, when the file says
    line: int = 0  # line number in its file
    source: str = ""  # file name


@dataclass(frozen=True, eq=False, repr=False)
class Process(_Fields):
    """One process line of ``ps``."""

    pid: int
    args: str
    ppid: int | None = None
    user: str | None = None
    time: float | None = None
    line: int = 0
    source: str = ""
    #: the container it runs in (its name, else its short id: ``nova_conductor``, ``3f2a1b9c0d4e``)
    container: str | None = None


# --------------------------------------------------------------------------- join


@dataclass(frozen=True, eq=False, repr=False)
class Participant(_Fields):
    """Who is on one end of a connection, and why osflow thinks so."""

    label: str  # keystone, placement DB, OpenStackClient, 127.0.0.1:5000 ...
    service: str | None  # the service key (mysql for any DB), None when unknown
    evidence: str  # human-readable: "ss pid 26408 -> ps '(wsgi:placement-a -k start'"
    pid: int | None = None
    source: EvidenceSource = "port"
    host: str = ""  # the recorded host of this end, when several hosts' recordings are merged


@dataclass(frozen=True, eq=False, repr=False)
class ConnectionNames(_Fields):
    """Both ends of one connection, named."""

    stream: int
    client_address: Address
    server_address: Address
    client: Participant
    server: Participant


# --------------------------------------------------------------------------- flow


@dataclass(frozen=True, eq=False, repr=False)
class Pair(_Fields):
    """One request/response pair, named, placed in the tree of calls."""

    id: int
    parent: int | None
    exchange: Exchange
    client: Participant
    server: Participant
    request: str  # plain request text (JSON "request"), secrets already hidden
    response: str | None  # plain response text (JSON "response"), None when none was seen
    message: str = ""  # richer request text for the timeline and diagram
    result: str = ""  # richer response text for the timeline and diagram
    depth: int = 0  # nesting depth (0 at the top)
    notes: tuple[str, ...] = ()  # e.g. "token T1 = admin@admin (3f2a9c01)", "cache miss"
    tokens: tuple[str, ...] = ()  # token ids (T1, ...) this pair mentions
    noise: bool = False  # pool ping / rollback / SET ...
    via: Participant | None = None  # an RPC's broker
    proxies: tuple[Participant, ...] = ()  # the proxies a request went through, in order (ProxiedExchange)
    background: bool = False  # not caused by the command (:mod:`osflow.foreground`)
    #: what made ``parent`` this pair's parent: "time" (the one request in progress), or the evidence
    #: that chose among several ("token T2 (of 3 requests in progress)"); "" for a top-level pair
    placed: str = field(default="", compare=False)

    @property
    def kind(self) -> str | None:
        """An RPC's kind (call, cast, fanout); None for any other pair."""
        return getattr(self.exchange, "kind", None) if self.exchange.protocol == "rpc" else None

    @property
    def protocol(self) -> Protocol:
        return self.exchange.protocol


@dataclass(frozen=True, eq=False, repr=False)
class Token(_Fields):
    """A token seen in the capture: its number, fingerprint and owner when known."""

    id: str  # T1, T2, ...
    fingerprint: str  # first 8 hex digits of sha256(token)
    owner: str | None = None  # user@project
    secret: str | None = field(default=None, repr=False)  # the token itself, when seen

    def describe(self) -> str:
        if self.owner:
            return f"{self.id} {self.owner} ({self.fingerprint})"
        return f"{self.id} ({self.fingerprint})"


@dataclass(frozen=True, eq=False, repr=False)
class Step(_Fields):
    """One line of the timeline / one arrow of the diagram: a pair, or a group of pairs."""

    pairs: tuple[Pair, ...]
    depth: int
    summary: str | None = None  # set for a group: "47 queries (...) + 65 pool pings ..."
    result: str | None = None  # set for a group: what it got back, "OK ×43, 69 result sets (48 rows)"

    @property
    def first(self) -> Pair:
        return self.pairs[0]

    @property
    def is_group(self) -> bool:
        return self.summary is not None


@dataclass(frozen=True, eq=False, repr=False)
class Flow(_Fields):
    """Everything the renderers need."""

    pairs: tuple[Pair, ...]
    steps: tuple[Step, ...]
    tokens: tuple[Token, ...]
    connections: tuple[ConnectionNames, ...]
    origin: float  # epoch of the first frame
    warnings: tuple[str, ...] = ()
    #: with --explain and socket tables: (stream, client label, server label) as named without the tables
    without_tables: tuple[tuple[int, str, str], ...] = ()
    #: the steps hold only the foreground (``pairs`` holds every pair); this line says what they left out
    left_out: str | None = None
    #: who the command is, as :mod:`osflow.foreground` found it (``--explain``)
    client: str = ""
    #: with several hosts' recordings: each clock's offset from the first host's (:mod:`osflow.hosts`)
    clocks: tuple[str, ...] = ()
    #: a part of a flow streamed while the capture is read (:class:`osflow.pipeline.Stream`): the ids of
    #: the pairs, of this part or an earlier one, that get no more children; None for a whole flow
    closed: tuple[int, ...] | None = None

"""Frozen dataclasses passed between the stages.

    source.py     PDML / pcap            -> Packet
    decode.py     Packet                 -> Message (HttpRequest, MysqlReply, ...)
    pair.py       Message                -> Exchange (request + response on one connection)
    tables.py     ss / ps text           -> SocketEntry, Process
    join.py       Exchange + tables      -> Participant for every connection end
    flow.py       Exchange + Participant -> Flow (pairs with parents, groups, tokens; words from prose.py)
    render/       Flow                   -> lines of text (timeline, Mermaid, JSON Lines, Markdown)

Names follow the socket API where there is one (``sockname``/``peername``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, Optional

#: The protocol of a message or pair (``tcp``: a FIN/RST that answers a MySQL quit).
Protocol = Literal["http", "mysql", "memcache", "tcp"]
#: What a MySQL server answered to one command.
ReplyKind = Literal["ok", "error", "rows", "eof", "auth_switch"]
#: Where a participant's name came from, strongest first.
EvidenceSource = Literal["table", "ss-comm", "protocol", "port", "address"]


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

    def _compared(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{self.__class__.__qualname__}({shown})"


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, order=True)
class Address:
    """A TCP endpoint: host (normalised text form, no brackets) and port."""

    host: str
    port: int

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

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.fields:
            if k == name:
                return v
        return default

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    def has(self, name: str) -> bool:
        for k, _ in self.fields:
            if k == name:
                return True
        return False


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
    user: Optional[str] = None
    user_domain: Optional[str] = None
    project: Optional[str] = None
    project_domain: Optional[str] = None
    domain: Optional[str] = None  # domain scope
    system: bool = False
    unscoped: bool = False


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TokenInfo(_Fields):
    """Who a token issued or validated by keystone belongs to (from the response body)."""

    user: Optional[str] = None
    user_domain: Optional[str] = None
    project: Optional[str] = None
    domain: Optional[str] = None
    expires: Optional[str] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HttpRequest(Message):
    """An HTTP request line and its headers (and what a keystone auth body asks for)."""

    method: str
    uri: str
    user_agent: Optional[str] = None
    headers: tuple[tuple[str, str], ...] = ()  # raw, secrets included: redact when rendering
    auth: Optional[KeystoneAuth] = None
    content_type: Optional[str] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class HttpResponse(Message):
    """An HTTP status line and its headers (and whose token keystone issued or validated)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    request_in: Optional[int] = None  # http.request_in: the frame of the request
    token: Optional[TokenInfo] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlGreeting(Message):
    """The server greeting that opens a MySQL connection."""

    version: Optional[str] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlLogin(Message):
    """A client's MySQL login request (user and default schema; never the password)."""

    user: Optional[str] = None
    schema: Optional[str] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlCommand(Message):
    """A MySQL command: a query, quit, ping, init_db, ..."""

    command: str  # query, quit, ping, init_db, ... (lower case, from mysql.command)
    text: Optional[str] = None  # query text / schema of init_db


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MysqlReply(Message):
    """The server's whole reply to one MySQL command (a result set is one reply)."""

    kind: ReplyKind
    rows: int = 0
    affected_rows: Optional[int] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    schemas: tuple[str, ...] = ()  # mysql.field.db of the result's columns
    tables: tuple[str, ...] = ()  # mysql.field.org_table of the result's columns
    complete: bool = True


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MemcacheCommand(Message):
    """A memcached command and the keys it names."""

    command: str  # get, gets, set, add, replace, delete, touch, incr, decr, ...
    keys: tuple[str, ...] = ()
    value_length: Optional[int] = None


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MemcacheReply(Message):
    """A memcached reply: hit, miss, STORED, ..."""

    result: str  # hit | miss | STORED | NOT_STORED | NOT_FOUND | DELETED | EXISTS | TOUCHED | ERROR | <number>
    keys: tuple[str, ...] = ()  # keys of VALUE lines (hits)


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
    response: Optional[Message]

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


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True, eq=False, repr=False)
class SocketUser(_Fields):
    """One ``("comm",pid=N,fd=M)`` of ss's ``users:(...)``."""

    comm: str
    pid: int
    fd: Optional[int] = None


@dataclass(frozen=True, eq=False, repr=False)
class SocketEntry(_Fields):
    """One TCP socket line of ``ss`` (a listener has no peer)."""

    state: str
    sockname: Address  # local; host "*" for a wildcard
    peername: Optional[Address]  # remote; None for a listener
    users: tuple[SocketUser, ...] = ()
    time: Optional[float] = None  # epoch of the snapshot, when the file says
    line: int = 0  # line number in its file
    source: str = ""  # file name


@dataclass(frozen=True, eq=False, repr=False)
class Process(_Fields):
    """One process line of ``ps``."""

    pid: int
    args: str
    ppid: Optional[int] = None
    user: Optional[str] = None
    time: Optional[float] = None
    line: int = 0
    source: str = ""


# --------------------------------------------------------------------------- join


@dataclass(frozen=True, eq=False, repr=False)
class Participant(_Fields):
    """Who is on one end of a connection, and why osflow thinks so."""

    label: str  # keystone, placement DB, OpenStackClient, 127.0.0.1:5000 ...
    service: Optional[str]  # the service key (mysql for any DB), None when unknown
    evidence: str  # human-readable: "ss pid 26408 -> ps '(wsgi:placement-a -k start'"
    pid: Optional[int] = None
    source: EvidenceSource = "port"


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
    parent: Optional[int]
    exchange: Exchange
    client: Participant
    server: Participant
    request: str  # plain request text (JSON "request"), secrets already hidden
    response: Optional[str]  # plain response text (JSON "response"), None when none was seen
    message: str = ""  # richer request text for the timeline and diagram
    result: str = ""  # richer response text for the timeline and diagram
    depth: int = 0  # nesting depth (0 at the top)
    notes: tuple[str, ...] = ()  # e.g. "token T1 = admin@admin (3f2a9c01)", "cache miss"
    tokens: tuple[str, ...] = ()  # token ids (T1, ...) this pair mentions
    noise: bool = False  # pool ping / rollback / SET ...

    @property
    def protocol(self) -> Protocol:
        return self.exchange.protocol


@dataclass(frozen=True, eq=False, repr=False)
class Token(_Fields):
    """A token seen in the capture: its number, fingerprint and owner when known."""

    id: str  # T1, T2, ...
    fingerprint: str  # first 8 hex digits of sha256(token)
    owner: Optional[str] = None  # user@project
    secret: Optional[str] = field(default=None, repr=False)  # the token itself, when seen

    def describe(self) -> str:
        if self.owner:
            return f"{self.id} {self.owner} ({self.fingerprint})"
        return f"{self.id} ({self.fingerprint})"


@dataclass(frozen=True, eq=False, repr=False)
class Step(_Fields):
    """One line of the timeline / one arrow of the diagram: a pair, or a group of pairs."""

    pairs: tuple[Pair, ...]
    depth: int
    summary: Optional[str] = None  # set for a group: "47 queries (...) + 65 pool pings ..."
    result: Optional[str] = None  # set for a group: what it got back, "OK ×43, 69 result sets (48 rows)"

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
    show_secrets: bool = False  # the user asked for tokens in full (--show-secrets)
    #: with --explain and socket tables: (stream, client label, server label) as named without the tables
    without_tables: tuple[tuple[int, str, str], ...] = ()

"""What a protocol module provides: :class:`ProtocolModule`, the hooks the stages call.

Every hook has a default that does nothing (or answers "no"), so a protocol module
overrides only what its protocol needs.  The stages never name a protocol's message
classes: they ask the registry (:mod:`osflow.protocols`) for the module of a layer, a
message or an exchange and call its hooks.

A protocol module imports only the modules around the stages (``model``, ``openstack``,
``portmap``, ``tokens``, ``redact``, ``oslo``, ``quoting``) and this one: every stage may
import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypedDict

from ..model import Address, Exchange, Layer, Message, Packet, Pair, Token
from ..model import Protocol as ProtocolName

if TYPE_CHECKING:
    from lxml import etree

    from .. import tokens as tok

#: What went wrong with a pair, as the renderers colour and count it: "" (nothing), "client"
#: (an HTTP 4xx) or "error" (an HTTP 5xx, a failed RPC call, a MySQL or Redis error reply).
Failure = Literal["", "client", "error"]
#: One OTLP attribute (key, value); a None value is left out.
Attr = tuple[str, object]


class Common(TypedDict):
    """The fields every :class:`~osflow.model.Message` has but ``is_request``: ``Message(**common, ...)``."""

    protocol: ProtocolName
    stream: int
    src: Address
    dst: Address
    start: float
    end: float
    frames: tuple[int, ...]


@dataclass(frozen=True)
class PairText:
    """The words of one pair (secrets already hidden unless asked for)."""

    request: str  # plain request text (JSON "request")
    response: str | None  # plain response text (JSON "response"), None when none was seen
    message: str  # richer request text (timeline, diagram)
    result: str  # richer response text ("" when none was seen)
    tokens: tuple[str, ...] = ()  # token ids mentioned, in order, once each
    notes: tuple[str, ...] = ()


class Words(Protocol):
    """What a protocol's words may use of :class:`osflow.prose.Prose`: the token registry and the
    choice to show secrets."""

    reg: tok.TokenRegistry
    show: bool

    def shown(self, t: Token, raw: str) -> str: ...

    def key(self, key: str) -> tuple[str, str, Token | None]: ...


@dataclass(frozen=True)
class Vote:
    """Protocol evidence for the service on a connection's client end (:mod:`osflow.join`)."""

    key: str
    weight: int
    why: str


class FrameView(Protocol):
    """What a PDML layer may need of the rest of its frame (:mod:`osflow.source.pdml`)."""

    @property
    def ports(self) -> tuple[int, int]:
        """(source port, destination port)."""
        ...

    def payload(self) -> str | None:
        """The hex bytes of the frame's TCP payload (of the reassembled PDU when the frame ends one)."""
        ...


class Row(Protocol):
    """One line of ``tshark -T fields`` output, by field name (:mod:`osflow.source.fields`)."""

    #: ``--service PORT=NAME`` (the port map's word for a port wins otherwise)
    overrides: dict[int, str] | None

    def get(self, name: str) -> str: ...

    def values(self, name: str) -> list[str]: ...


class LayerDecoder:
    """The decode stage's state for one protocol: turns its layers into messages."""

    def packet(self, p: Packet) -> None:
        """Every packet with layers, whatever their protocols, before its layers go to their decoders:
        for a decoder that must know what else a connection carried (TLS: whether a protocol began
        it).  Called only on decoders that override it."""

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        """The messages this layer completes (often none: a part of a reply)."""
        return iter(())

    def closed(self, stream: int, src: Address) -> Iterator[Message]:
        """``src`` closed its end of ``stream``: what it was still sending, marked incomplete."""
        return iter(())

    def flush(self) -> Iterator[Message]:
        """The input ended: what is still being assembled, marked incomplete."""
        return iter(())

    def notes(self) -> list[str]:
        """What it has to say about the input (one line each, for stderr), so far."""
        return []


class ProtocolModule:
    """One protocol: every stage's knowledge of it.  Subclass, override the hooks it needs, and
    register an instance in :data:`osflow.protocols.PROTOCOLS`."""

    #: The ``protocol`` of its messages and exchanges (:data:`osflow.model.Protocol`).
    name: str = ""
    #: Other exchange protocols it answers for (AMQP: ``rpc``, the RPCs across the broker).
    also: tuple[str, ...] = ()
    #: The PDML ``<proto name=...>`` elements it reads (each becomes a :class:`~osflow.model.Layer`).
    pdml_protos: tuple[str, ...] = ()
    #: The fields it asks ``tshark -T fields`` for (``osflow-post -r``).
    tshark_fields: tuple[str, ...] = ()
    #: Its pairs are grouped into one step when several run in a row under one parent (DB and cache calls).
    groups: bool = False
    #: Its layers are a frame's bytes: only the first ``<proto>`` of a frame makes one.
    one_layer_per_frame: bool = False
    #: Its messages are paired across connections by its own pairing (AMQP's RPC), not on their connection.
    pairs_itself: bool = False
    #: The word for its pairs in a group's summary ("queries", "commands").
    group_word: tuple[str, str] = ("command", "commands")

    # ------------------------------------------------------------------ source

    def pdml_layer(self, proto: etree._Element, frame: FrameView) -> Layer | None:
        """The layer of one ``<proto>`` of :attr:`pdml_protos`."""
        return None

    def fields_layers(self, row: Row) -> list[Layer]:
        """The layers one ``-T fields`` line holds, as :meth:`pdml_layer` makes them."""
        return []

    def needs_pdml(self, layers: list[Layer]) -> bool:
        """Must this ``-T fields`` frame be read again as PDML (a table ``-T fields`` cannot write)?"""
        return False

    #: A display filter of the frames :meth:`needs_payload` may ask the bytes of (``-r`` reads them in
    #: one more, short tshark pass, made only when a frame needs them).
    payload_filter: str | None = None

    def needs_payload(self, layers: list[Layer]) -> bool:
        """Do these layers lack what tshark could not read, that the frame's bytes hold?"""
        return False

    def with_payload(self, layers: list[Layer], payload: str | None) -> list[Layer]:
        """``layers`` completed from the frame's TCP payload (hex; the reassembled PDU's when the frame
        ends one)."""
        return layers

    def decode_as(self, overrides: dict[int, str] | None, pdml: bool) -> list[str]:
        """tshark ``-d`` arguments this protocol's ports need (``pdml``: for the PDML command, else for
        ``-T fields``; ``overrides``: ``--service PORT=NAME``)."""
        return []

    # ------------------------------------------------------------------ decode

    def decoder(self) -> LayerDecoder:
        """A fresh decoder for one input."""
        return LayerDecoder()

    # ------------------------------------------------------------------ pair

    def absorbs(self, m: Message) -> bool:
        """Is this a message that answers nothing and asks nothing (a MySQL greeting)?"""
        return False

    def unanswered(self, req: Message) -> bool:
        """Is this a request no reply follows (memcached's ``noreply``)?  It is a pair at once."""
        return False

    def answered_by_close(self, req: Message) -> bool:
        """Is this request answered by the close of its connection (a MySQL quit)?"""
        return False

    def response_for(self, queue: Iterable[Message], resp: Message) -> Message | None:
        """The request of ``queue`` (its connection's, oldest first) ``resp`` answers when the
        protocol says which by an id (HTTP's ``request_in``); None to take the oldest."""
        return None

    # ------------------------------------------------------------------ join

    def votes(self, ex: Exchange) -> Iterator[Vote]:
        """What an exchange says about who its client is."""
        return iter(())

    def serving(self, ex: Exchange) -> str | None:
        """The words for "was serving <this> at that moment" (HTTP and RPC requests), else None."""
        return None

    # ------------------------------------------------------------------ flow

    def tokens(self, m: Message, reg: tok.TokenRegistry) -> None:
        """Note the tokens a message carries (in frame order: the flow numbers them T1, T2, …)."""

    def identifiers(self, ex: Exchange) -> tuple[str, ...]:
        """The resource UUIDs an exchange's request names (the evidence that ties a request, the RPC
        it casts and the statements its handling runs: :func:`osflow.openstack.resource_ids`)."""
        return ()

    def pool_use(self, ex: Exchange) -> str | None:
        """Where a pooled connection's exchange stands: ``checkout`` (the pool's ping as it gives the
        connection out), ``statement`` (the work of whoever holds it), ``checkin`` (the rollback as
        it takes it back), or None (not a pooled connection's)."""
        return None

    def token_lookup(self, ex: Exchange) -> bool:
        """Is this a look-up of a user's token in a cache (keystonemiddleware's first step)?"""
        return False

    def noise(self, ex: Exchange) -> bool:
        """Is this chatter the summary counts apart (a pool's pings and rollbacks)?"""
        return False

    def instrumentation(self, ex: Exchange) -> str | None:
        """What instruments the services rather than works for a request (OSProfiler's writes of its
        trace points), said in a few words; None for a request's own work.  The flow keeps it out
        of the story: no parent, so background (drawn with ``--all``)."""
        return None

    def groupable(self, ex: Exchange) -> bool:
        """May this pair join a group (:attr:`groups`)?"""
        return self.groups

    def group_summary(self, run: list[Pair]) -> list[str]:
        """The parts of a group's summary before ``on N connections, T ms``."""
        counts: dict[str, int] = {}
        for p in run:
            w = self.operation(p.exchange) or p.protocol
            counts[w] = counts.get(w, 0) + 1
        detail = ", ".join(f"{c} ×{n}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        word = self.group_word[0] if len(run) == 1 else self.group_word[1]
        return [f"{len(run)} {word} ({detail})"]

    def group_result(self, ex: Exchange) -> tuple[str, int] | None:
        """How a pair's result adds up in a group's result: ("ok", 0), ("rows", n), else None."""
        return None

    # ------------------------------------------------------------------ words

    def text(self, ex: Exchange, words: Words) -> PairText:
        """The words of one pair (secrets hidden unless ``words.show``)."""
        return PairText(ex.protocol, None, ex.protocol, "")

    # ------------------------------------------------------------------ render

    def operation(self, ex: Exchange) -> str | None:
        """A short name of what was asked (``GET``, ``query``, ``SET``)."""
        return None

    def failure(self, ex: Exchange, response: str | None) -> Failure:
        """What went wrong (``response``: the pair's response words)."""
        return ""

    def badge(self, ex: Exchange) -> str:
        """A failed pair's badge in the HTML report (``500``, ``MySQL 1045``)."""
        return "failure"

    def endpoint(self, pair: Pair) -> str:
        """The stats table's endpoint: what was asked, without what differs call to call."""
        return pair.exchange.request.protocol

    def cache_read(self, ex: Exchange) -> bool | None:
        """For a cache read, whether it hit; None for anything else."""
        return None

    def db_query(self, pair: Pair) -> bool:
        """Is this a database query a request made (the stats' DB queries per request)?"""
        return False

    def otlp_client_span(self, pair: Pair, schema: str | None,
                         common: list[Attr]) -> tuple[str, list[Attr], str | None] | None:
        """(span name, attributes, error) of the one client span a pair of a database or cache
        makes (``schema``: the one its connection uses, when known; ``common``: the attributes
        every span has, to add after the protocol's own); None when the renderer
        draws this protocol's spans itself (HTTP's client and server, RPC's caller and callee)."""
        return None

    def schemas(self, ex: Exchange) -> tuple[str | None, str | None, tuple[str, ...]]:
        """(the schema a login names ("" for a login without one, None for no login), the one a command
        switches to, those its result names)."""
        return None, None, ()


def unescape(text: str) -> str:
    r"""CR, LF and TAB for their backslash escapes, as ``tshark -T fields`` writes them.

    ``-T fields`` writes a CR, LF or TAB inside a value as ``\r``, ``\n``, ``\t`` but a
    backslash as itself, so a newline and a backslash followed by ``n`` (what a driver
    sends for a newline inside a quoted SQL literal: a traceback nova writes to the DB)
    look the same.  Both readers read both as the control character (the PDML reader
    calls this on SQL text too), so that ``-r`` and PDML give the same text byte for byte.

    >>> unescape(r"a\nb\tc") == "a" + chr(10) + "b" + chr(9) + "c", unescape("no escapes")
    (True, 'no escapes')
    """
    if "\\" not in text:
        return text
    return text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")


def to_int(text: str | None, default: int | None = None) -> int | None:
    """A decimal or ``0x`` hexadecimal number, or ``default``."""
    if text is None:
        return default
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return default


def fields_of(proto: etree._Element, keep) -> tuple[tuple[str, str], ...]:
    """(name, show) of every field under ``proto`` whose name ``keep`` accepts, in document order."""
    out = []
    for f in proto.iter("field"):
        n = f.get("name")
        if n and keep(n):
            out.append((n, f.get("show") or ""))
    return tuple(out)


def peer(address: Address, prefix: str = "network.peer") -> list[Attr]:
    """OTLP attributes of the other end of a connection."""
    return [(f"{prefix}.address", address.host), (f"{prefix}.port", address.port)]


def server_attrs(server: Address) -> list[Attr]:
    """The OTLP attributes every client span gives its server (new and old conventions)."""
    return [("server.address", server.host), ("server.port", server.port), *peer(server),
            ("net.peer.name", server.host), ("net.peer.port", server.port)]

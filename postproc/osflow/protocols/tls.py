"""TLS that stays opaque: a connection tshark could not decrypt is one exchange, said once.

tshark recognises TLS on any port by its handshake (its ``tls`` heuristic over TCP) and, given the
key log (``-o tls.keylog_file:…``: ``osflow-post -r DIR`` gives the recording's ``tls-keys.log``,
``--tls-keylog FILE`` another), decrypts it: the HTTP inside is then read as on a plain
connection, and this module says nothing.  A connection whose records carry no protocol osflow
reads, from its first TLS record to its close (or the end of the capture), is one
:class:`TlsSession` exchange between its two ends — the client's first record, the server's last
— with the server name the client asked for (SNI): never a request left hanging.  The decoder
notes each such connection (:meth:`TlsDecoder.notes`): one line each on stderr saying it is TLS
and why it stays opaque.

Read from tshark's ``tls`` layer: ``tls.handshake.type`` (1: ClientHello), the SNI, the records'
content types (``tls.record.content_type``; TLS 1.3's encrypted records show only their
``tls.record.opaque_type``).  A connection on which a frame holds another protocol's layer (HTTP,
decrypted; MySQL, whose SSL request begins the TLS session and whose module draws it) is none of
this module's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..model import Address, Exchange, Layer, Message, Packet
from .base import LayerDecoder, PairText, ProtocolModule, Words, fields_of

__all__ = ["TLS", "TlsDecoder", "TlsSession"]

#: What ``osflow-post -r`` asks tshark for.
TLS_FIELDS = ("tls.handshake.type", "tls.handshake.extensions_server_name", "tls.record.content_type",
              "tls.record.opaque_type")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TlsSession(Message):
    """One side of a TLS connection osflow could not read: the client's first record (the request)
    or the server's last (the response)."""

    server_name: str | None = None  #: the SNI of the client's ClientHello
    frames_sent: int = 0  #: the frames with TLS records this side sent


@dataclass
class _Conn:
    """One TLS connection while it is read."""

    client: Address | None = None  # who sent the ClientHello (else the first record)
    server: Address | None = None
    first: tuple[float, int] | None = None  # (time, frame) of the client's first record
    last: tuple[float, int] | None = None  # (time, frame) of the server's last record
    server_name: str | None = None
    sent: dict[Address, int] | None = None
    inner: bool = False  # a frame of it held another protocol's layer: decrypted, or not TLS alone


class TlsDecoder(LayerDecoder):
    """Per connection, its TLS records; at its first close (or the input's end), when nothing else
    was read on it, one request and one response (:class:`TlsSession`) and a note."""

    def __init__(self) -> None:
        self._conns: dict[int, _Conn] = {}
        self._done: dict[int, None] = {}  # connections closed (the latest): their last frames are not a new one
        #: connections that carried another protocol's layer lately (the latest, in order): a TLS
        #: session a protocol began (MySQL's SSL request) is that protocol's
        self._others: dict[int, None] = {}
        self._notes: list[str] = []  # one line per opaque connection, for stderr

    def packet(self, p: Packet) -> None:
        if any(layer.name != "tls" for layer in p.layers):
            _remember(self._others, p.stream)

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        if p.stream in self._done:
            return
        c = self._conns.get(p.stream)
        if c is None:
            c = self._conns[p.stream] = _Conn(sent={}, inner=p.stream in self._others)
        if p.stream in self._others:
            c.inner = True
        assert c.sent is not None
        hello = "1" in layer.all("tls.handshake.type") or "1" in (layer.get("tls.handshake.type") or "").split(",")
        if c.client is None or (hello and c.first is None):
            c.client, c.server = p.src, p.dst
        if hello and c.server_name is None:
            c.server_name = layer.get("tls.handshake.extensions_server_name") or None
        if p.src == c.client:
            if c.first is None:
                c.first = (start, p.number)
        elif p.src == c.server:
            c.last = (p.time, p.number)
        c.sent[p.src] = c.sent.get(p.src, 0) + 1
        return
        yield  # (a generator: the messages come at the close)

    def closed(self, stream: int, src: Address) -> Iterator[Message]:
        c = self._conns.pop(stream, None)
        if c is not None:
            _remember(self._done, stream)
            yield from self._session(stream, c)

    def flush(self) -> Iterator[Message]:
        conns, self._conns = self._conns, {}
        for stream, c in conns.items():
            yield from self._session(stream, c)

    def notes(self) -> list[str]:
        """One line per connection that stays opaque, in the order they closed."""
        return list(self._notes)

    def _session(self, stream: int, c: _Conn) -> Iterator[Message]:
        if c.inner or c.client is None or c.server is None or c.first is None or c.sent is None:
            return
        client, server = c.client, c.server
        sni = f" (server name {c.server_name})" if c.server_name else ""
        self._notes.append(f"connection {client} → {server}{sni} is TLS; no key for it in the key log: "
                          "drawn as an opaque TLS exchange")
        yield TlsSession(protocol="tls", stream=stream, src=client, dst=server, start=c.first[0], end=c.first[0],
                         frames=(c.first[1],), is_request=True, server_name=c.server_name,
                         frames_sent=c.sent.get(client, 0))
        if c.last is not None:
            yield TlsSession(protocol="tls", stream=stream, src=server, dst=client, start=c.last[0], end=c.last[0],
                             frames=(c.last[1],), is_request=False, server_name=c.server_name,
                             frames_sent=c.sent.get(server, 0))


def _remember(seen: dict[int, None], stream: int) -> None:
    """Note ``stream`` as the latest of ``seen``; the oldest half forgotten past 8192 (flat memory: a
    connection's mark is needed from its first TLS record on, when its own state keeps it)."""
    seen.pop(stream, None)
    seen[stream] = None
    if len(seen) > 8192:
        for old in list(seen)[:4096]:
            del seen[old]


def _keep(name: str) -> bool:
    return name in TLS_FIELDS


class Tls(ProtocolModule):
    name = "tls"
    pdml_protos = ("tls",)
    tshark_fields = TLS_FIELDS

    def pdml_layer(self, proto, frame):
        return Layer("tls", fields_of(proto, _keep))

    def fields_layers(self, row):
        pairs = tuple((n, v) for n in TLS_FIELDS if (v := row.get(n)))
        if not pairs:
            return []
        return [Layer("tls", tuple((n, v.replace("\x1f", ",")) for n, v in pairs))]

    def decoder(self) -> TlsDecoder:
        return TlsDecoder()

    def text(self, ex: Exchange, words: Words) -> PairText:
        req, resp = ex.request, ex.response
        if not isinstance(req, TlsSession):
            return super().text(ex, words)
        sni = f" to {req.server_name}" if req.server_name else ""
        plain = f"TLS session{sni}, not decrypted"
        said = None
        if isinstance(resp, TlsSession):
            said = f"opaque: no key in the key log ({req.frames_sent} + {resp.frames_sent} frames of TLS records)"
        return PairText(plain, said, plain, said or "")

    def operation(self, ex):
        return "TLS"


TLS = Tls()

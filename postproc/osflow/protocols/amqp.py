"""AMQP 0-9-1 (RabbitMQ) and oslo.messaging's RPC over it, every stage's part of it.

Decode: an AMQP message is a method frame, a content header and body frames (several per TCP
segment, or a body split over several frames): :class:`AmqpDecoder` joins them per
connection, direction and channel and emits one :class:`~osflow.model.AmqpMessage` per
Basic.Publish / Basic.Deliver, its oslo.messaging body read by :mod:`osflow.oslo`; a
Connection.Start-Ok gives the client's ``connection_name``.  Heartbeats, acks and the other
AMQP methods are noise and make no message.  Pair: :class:`RpcPairing` ties a caller's
publish to each delivery of it (``_unique_id``), a call to its reply (``_msg_id``), and the
reply to its delivery back to the caller: one :class:`~osflow.model.RpcExchange` per callee.
Join: the ``connection_name``, the topics delivered to a connection, the object methods
nova-compute calls on the conductor.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import oslo
from ..model import AmqpConnection, AmqpMessage, AmqpOpen, Layer, Message, Packet, RpcExchange
from .base import Failure, LayerDecoder, PairText, ProtocolModule, Row, Vote, Words, to_int

if TYPE_CHECKING:
    from lxml import etree

#: The AMQP 0-9-1 fields osflow reads, one ``<proto name="amqp">`` per AMQP frame (method, content
#: header, body, heartbeat); the body (``amqp.payload``) is kept as hex, the rest as shown.
AMQP_FIELDS = (
    "amqp.type", "amqp.channel", "amqp.method.class", "amqp.method.method", "amqp.method.arguments.exchange",
    "amqp.method.arguments.routing_key", "amqp.header.body-size", "amqp.payload",
)
_AMQP_FIELDS = frozenset(AMQP_FIELDS)
#: The Connection.Start-Ok client properties osflow reads (shown as ``<name> (string): <value>``).
_CLIENT_PROPERTIES = ("connection_name (string): ", "product (string): ")
#: The AMQP subtrees that hold fields osflow reads (the rest, e.g. the JSON tree of a body, is skipped).
_AMQP_TREES = frozenset({"amqp.method.arguments"})
#: AMQP methods (class, method) that carry a message: a content header and body follow.
_AMQP_CONTENT = {(60, 40): "publish", (60, 50): "return", (60, 60): "deliver", (60, 71): "get-ok"}
_AMQP_START_OK = (10, 11)
#: oslo.versionedobjects' indirection: the methods a service without DB access calls on the conductor.
OBJECT_METHODS = ("object_action", "object_class_action", "object_class_action_versions", "object_backport_versions")


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


class AmqpDecoder(LayerDecoder):
    """AMQP frames -> one message per publish / deliver (and a Start-Ok's connection name)."""

    def __init__(self) -> None:
        self._amqp: dict[tuple[int, object, int], _AmqpContent] = {}

    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        m = self._amqp_frame(p, layer, frames, start)
        if m is not None:
            yield m

    def _amqp_frame(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
        """The message one AMQP frame completes (the last body frame of a publish or deliver), or None."""
        kind = layer.get("amqp.type")
        key = (p.stream, p.src, to_int(layer.get("amqp.channel"), 0) or 0)
        if kind == "1":
            method = (to_int(layer.get("amqp.method.class"), 0), to_int(layer.get("amqp.method.method"), 0))
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
            st.size = to_int(layer.get("amqp.header.body-size"), 0) or 0
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


def _amqp_fields(proto: etree._Element) -> tuple[tuple[str, str], ...]:
    """The fields of one AMQP frame: :data:`AMQP_FIELDS` (the body as hex) and, in a
    Connection.Start-Ok, the client's ``connection_name`` (``amqp.connection_name``).

    Never the Start-Ok's ``response``: it holds the broker password.
    """
    out = []
    for f in proto:
        n = f.get("name")
        if n in _AMQP_FIELDS:
            out.append((n, (f.get("value") or "") if n == "amqp.payload" else (f.get("show") or "")))
        elif n in _AMQP_TREES:
            for g in f:
                m = g.get("name")
                if m in _AMQP_FIELDS:
                    out.append((m, g.get("show") or ""))
                elif m == "amqp.method.arguments.client_properties":
                    for h in g:  # each entry is shown as "connection_name (string): nova-conductor:7921:<uuid>"
                        label = h.get("showname") or ""
                        if h.get("name") == "amqp.field" and label.startswith(_CLIENT_PROPERTIES):
                            key, _, value = label.partition(" (string): ")
                            out.append((f"amqp.{key}", value))
    return tuple(out)



#: How many exchange and routing-key values each AMQP method (class, method) carries, in the order
#: tshark lists them: what lets the fields of several AMQP frames in one TCP segment be told apart.
_AMQP_ARGUMENTS = {
    (40, 10): (1, 0), (40, 20): (1, 0),  # Exchange.Declare, Exchange.Delete
    (40, 30): (0, 1), (40, 40): (0, 1),  # Exchange.Bind, Exchange.Unbind (destination/source are other fields)
    (50, 20): (1, 1), (50, 50): (1, 1),  # Queue.Bind, Queue.Unbind
    (60, 40): (1, 1), (60, 50): (1, 1), (60, 60): (1, 1), (60, 71): (1, 1),  # Publish, Return, Deliver, Get-Ok
}


def amqp_layers(row: Row) -> list[Layer]:
    """One Layer per AMQP frame of a TCP segment, as the PDML reader makes them.

    ``-T fields`` lists each field's values for the whole segment: the frame types say
    which frame each channel, method, body size and body belongs to, and the methods
    how many exchange and routing-key values are theirs.
    """
    values = row.values
    types, channels = values("amqp.type"), values("amqp.channel")
    classes, methods = values("amqp.method.class"), values("amqp.method.method")
    exchanges, keys = values("amqp.method.arguments.exchange"), values("amqp.method.arguments.routing_key")
    sizes, payloads = values("amqp.header.body-size"), values("amqp.payload")
    # an empty field is an empty column: when the only exchange is "", tshark writes nothing at all
    if not exchanges and row.get("amqp.method.arguments.routing_key"):
        exchanges = [""]
    layers = []
    m = h = b = e = k = 0
    for i, t in enumerate(types):
        fields = [("amqp.type", t)]
        if i < len(channels):
            fields.append(("amqp.channel", channels[i]))
        if t == "1" and m < len(methods):
            cls, meth = (classes[m] if m < len(classes) else ""), methods[m]
            m += 1
            fields += [("amqp.method.class", cls), ("amqp.method.method", meth)]
            n_ex, n_key = _AMQP_ARGUMENTS.get((_num(cls, 0), _num(meth, 0)), (0, 0))
            if n_ex:
                fields.append(("amqp.method.arguments.exchange", exchanges[e] if e < len(exchanges) else ""))
                e += n_ex
            if n_key:
                fields.append(("amqp.method.arguments.routing_key", keys[k] if k < len(keys) else ""))
                k += n_key
        elif t == "2" and h < len(sizes):
            fields.append(("amqp.header.body-size", sizes[h]))
            h += 1
        elif t == "3" and b < len(payloads):
            fields.append(("amqp.payload", payloads[b]))
            b += 1
        layers.append(Layer("amqp", tuple(fields)))
    return layers




def _num(text: str, default: int) -> int:
    n = to_int(text, default)
    return default if n is None else n


# --------------------------------------------------------------------------- pair


class RpcPairing:
    """Tie the AMQP messages of oslo.messaging RPC together across the broker's connections.

    Messages come in capture order.  Publishes are kept by ``_unique_id`` until the
    end (a delivery follows its publish; a reply follows the call's delivery); what
    the capture started in the middle of is counted, not guessed.
    """

    def __init__(self) -> None:
        self._publishes: dict[str, AmqpMessage] = {}  # _unique_id -> publish
        self._order: list[str] = []
        self._deliveries: dict[str, list[AmqpMessage]] = defaultdict(list)  # _unique_id -> deliveries
        self._replies: dict[str, list[AmqpMessage]] = defaultdict(list)  # _msg_id -> reply publishes
        self._links: dict[int, dict] = {}  # stream -> what the join wants to know about the connection
        self._used: set[str] = set()  # _msg_ids of calls paired with their replies
        self._by_content: dict[str, str] = {}  # a message without _unique_id -> the latest publish like it
        self.orphans = 0  # deliveries and replies whose publish or call is not in the capture
        self.undecoded: dict[str, int] = defaultdict(int)  # why -> messages whose body osflow could not read

    def _link(self, m: Message) -> dict:
        client, broker = (m.src, m.dst) if m.is_request else (m.dst, m.src)
        link = self._links.get(m.stream)
        if link is None:
            link = self._links[m.stream] = dict(client=client, broker=broker, start=m.start, name=None,
                                                consumes={}, replies={}, calls_for={})
        link["last"] = m.end
        return link

    def add(self, m: Message) -> None:
        link = self._link(m)
        if isinstance(m, AmqpOpen):
            link["name"] = m.connection_name or link["name"]
            return
        if not isinstance(m, AmqpMessage):
            return
        if m.undecoded and m.compression:
            self.undecoded[m.undecoded] += 1
        o = m.oslo
        uid = (o.unique_id if o is not None else None) or _body_key(m)
        if o is None or not o.unique_id:  # not oslo's: a delivery is a copy of the latest publish like it
            content = _content_key(m)
            if m.method == "publish":
                self._by_content[content] = uid
            else:
                uid = self._by_content.get(content, uid)
        if m.method == "publish":
            if o is not None and o.is_reply:
                if o.msg_id:
                    self._replies[o.msg_id].append(m)
            elif o is not None and o.reply_q:
                link["calls_for"].setdefault(o.reply_q, None)
            if uid not in self._publishes:
                self._order.append(uid)
            self._publishes[uid] = m
            return
        if m.method == "deliver":
            if o is not None and o.is_reply:
                link["replies"].setdefault(m.routing_key, None)
            else:
                link["consumes"].setdefault(m.exchange if m.exchange.endswith("_fanout") else m.routing_key, None)
            self._deliveries[uid].append(m)

    def connections(self) -> dict[int, AmqpConnection]:
        """Every connection to the broker with what its traffic says about its owner."""
        return {
            s: AmqpConnection(s, v["client"], v["broker"], v["start"], v["name"], tuple(v["consumes"]),
                              tuple(v["replies"]), tuple(v["calls_for"]))
            for s, v in self._links.items()
        }  # fmt: skip

    def pending(self) -> Iterable[Message]:
        """Publishes (not replies) not yet paired."""
        for uid in self._order:
            pub = self._publishes[uid]
            if pub.oslo is None or not pub.oslo.is_reply:
                yield pub

    def release(self, cutoff: float, force: float, idle: float = -math.inf) -> tuple[list[RpcExchange], float]:
        """(the RPC exchanges ready, when the first publish still open was made).

        A publish is ready once made before ``cutoff`` (its deliveries come right after it), a
        call once its final reply came back too, or either once made before ``force``.  What is
        left from before ``force`` that no publish claims -- deliveries, replies, reply
        publishes -- is counted as orphans and dropped; connections silent since ``idle`` too.
        """
        out: list[RpcExchange] = []
        keep: list[str] = []
        open_since = math.inf
        for uid in self._order:
            pub = self._publishes[uid]
            o = pub.oslo
            if o is not None and o.is_reply:
                if pub.start < force:
                    del self._publishes[uid]
                else:
                    keep.append(uid)
                continue
            if pub.start >= cutoff or (pub.start >= force and not self._answered(pub)):
                keep.append(uid)
                open_since = min(open_since, pub.start)
                continue
            del self._publishes[uid]
            if self._by_content.get(_content_key(pub)) == uid:
                del self._by_content[_content_key(pub)]
            out += self._build(pub, uid)
        self._order = keep
        if force != math.inf:
            self._expire(force)
        for s in [s for s, link in self._links.items() if link["last"] < idle]:
            del self._links[s]
        return out, open_since

    def _answered(self, pub: AmqpMessage) -> bool:
        """Is this publish complete: not a call, or a call whose final reply came back to the caller?"""
        o = pub.oslo
        if pub.exchange.endswith("_fanout") or o is None or not o.reply_q:
            return True
        for r in self._replies.get(o.msg_id, ()) if o.msg_id else ():
            if r.oslo is not None and r.oslo.ending:
                ruid = r.oslo.unique_id or _body_key(r)
                return bool(self._deliveries.get(ruid))
        return False

    def _build(self, pub: AmqpMessage, uid: str) -> list[RpcExchange]:
        out: list[RpcExchange] = []
        o = pub.oslo
        deliveries = self._deliveries.pop(uid, [])
        kind = "fanout" if pub.exchange.endswith("_fanout") else ("call" if o is not None and o.reply_q else "cast")
        reply = reply_delivery = None
        keepalives = 0
        if kind == "call" and o is not None and o.msg_id:
            replies = self._replies.get(o.msg_id, [])
            final = [r for r in replies if r.oslo is not None and r.oslo.ending]
            keepalives = len(replies) - len(final)
            if final or replies:
                reply = (final or replies)[-1]
                self._used.add(o.msg_id)
                ruid = (reply.oslo.unique_id if reply.oslo is not None else None) or _body_key(reply)
                back = self._deliveries.pop(ruid, [])
                reply_delivery = back[0] if back else None
        broker = pub.dst
        common: dict[str, Any] = dict(kind=kind, broker=broker, delivered=len(deliveries), keepalives=keepalives)
        if not deliveries:
            out.append(RpcExchange("rpc", pub.stream, pub.src, broker, pub, reply, **common,
                                   reply_delivery=reply_delivery))
            return out
        for d in deliveries:  # reply and reply_delivery are None but for a call
            out.append(RpcExchange("rpc", pub.stream, pub.src, d.dst, pub, reply, **common,
                                   server_stream=d.stream, delivery=d, reply_delivery=reply_delivery))
        return out

    def _expire(self, before: float) -> None:
        """Drop (and count) deliveries and replies from before ``before`` that no publish is left to claim."""
        for uid in [u for u, ds in self._deliveries.items() if u not in self._publishes and ds[0].end < before]:
            self.orphans += _drop_old(self._deliveries, uid, before)
        for mid in [m for m, rs in self._replies.items() if rs[0].end < before]:
            used = mid in self._used
            n = _drop_old(self._replies, mid, before)
            self.orphans += 0 if used else n
            if mid not in self._replies:
                self._used.discard(mid)

    def finish(self) -> list[RpcExchange]:
        """Every RPC exchange not released yet; what is left is counted as orphans."""
        out, _ = self.release(math.inf, math.inf)
        # what is left: deliveries of publishes made before the capture, replies to calls made before it
        self.orphans += sum(len(v) for v in self._deliveries.values())
        self.orphans += sum(len(v) for m, v in self._replies.items() if m not in self._used)
        self._deliveries.clear()
        self._replies.clear()
        self._used.clear()
        return out


def _drop_old(lists: dict[str, list[AmqpMessage]], key: str, before: float) -> int:
    """Drop the messages of ``lists[key]`` that ended before ``before`` (the key when none is left);
    how many.  (The same ids come again in a long capture: a copy of a capture, a reused queue.)"""
    kept = [m for m in lists[key] if m.end >= before]
    n = len(lists[key]) - len(kept)
    if kept:
        lists[key] = kept
    else:
        del lists[key]
    return n


def _body_key(m: AmqpMessage) -> str:
    """A key for a message without ``_unique_id`` (not oslo.messaging): exchange, routing key, size."""
    return f"{m.exchange}\0{m.routing_key}\0{m.body_size}\0{m.frames[0] if m.is_request else ''}"


def _content_key(m: AmqpMessage) -> str:
    """What a publish and its deliveries share when the body has no id: exchange, routing key, body."""
    return f"{m.exchange}\0{m.routing_key}\0{m.body_size}\0{m.digest}"


# --------------------------------------------------------------------------- the module


def _rpc_text(ex: RpcExchange, words: Words) -> PairText:
    o = ex.oslo
    publish = ex.request
    assert isinstance(publish, AmqpMessage)
    plain = f"{ex.kind} {o.method or '?'}" + (f" ({o.object_method})" if o.object_method else "")
    ids: list[str] = []
    rich = plain
    if o.token:
        t = words.reg.see_token(o.token)
        ids.append(t.id)
        rich += f" [{words.shown(t, o.token)}]"
    notes: list[str] = []
    if publish.compression:
        notes.append(f"compressed body ({publish.compression})")
    other = publish.oslo is None and not publish.compression
    if other:  # another client's message (Celery, ...): where it went
        plain = rich = " ".join(x for x in ("publish", publish.exchange or "(default exchange)", publish.routing_key)
                                if x)
    elif publish.oslo is None:
        plain = rich = f"{ex.kind} ({publish.undecoded or 'body not read'})"
    if ex.delivery is None:
        notes.append("delivered to no consumer")
    response: str | None
    if other and ex.delivery is not None:
        response = f"delivered in {(ex.delivery.end - publish.start) * 1000:.1f} ms"
    elif ex.kind != "call":
        response = ""
    elif ex.response is None:
        response = None
    else:
        reply = ex.response
        r = reply.oslo if isinstance(reply, AmqpMessage) else None
        if r is None:
            why = reply.undecoded if isinstance(reply, AmqpMessage) else None
            response = f"reply ({why or 'body not read'})"
        elif r.failure:
            response = f"failure {r.failure}"
            if r.failure_message:
                notes.append(f"{r.failure}: {r.failure_message}")
        else:
            response = f"result {r.result}"
        if ex.keepalives:
            notes.append(f"{ex.keepalives} keep-alive replies before it")
    return PairText(plain, response, rich, response or "", tuple(dict.fromkeys(ids)), tuple(notes))


class Amqp(ProtocolModule):
    name = "amqp"
    also = ("rpc",)
    pdml_protos = ("amqp",)
    tshark_fields = AMQP_FIELDS
    pairs_itself = True  # by :class:`RpcPairing`

    def pdml_layer(self, proto, frame):
        return Layer("amqp", _amqp_fields(proto))

    def fields_layers(self, row):
        return amqp_layers(row) if row.get("amqp.type") else []

    def needs_pdml(self, layers: list[Layer]) -> bool:
        """Does this frame hold a Connection.Start-Ok, whose client properties (the
        ``connection_name`` that names the process) are a table ``-T fields`` cannot write?"""
        return any(x.get("amqp.method.class") == "10" and x.get("amqp.method.method") == "11" for x in layers)

    def decoder(self):
        return AmqpDecoder()

    def pairing(self) -> RpcPairing:
        return RpcPairing()

    def votes(self, ex):
        if isinstance(ex, RpcExchange) and ex.oslo.method in OBJECT_METHODS and ex.routing_key_topic == "conductor":
            yield Vote("nova-compute", 1, f"calls the conductor's {ex.oslo.method} (the object indirection "
                                          "nova-compute uses)")

    def serving(self, ex):
        return f"the RPC {ex.kind} {ex.oslo.method}" if isinstance(ex, RpcExchange) else None

    def identifiers(self, ex):
        return ex.oslo.ids if isinstance(ex, RpcExchange) else ()

    def tokens(self, m, reg):
        if isinstance(m, AmqpMessage) and m.oslo is not None and m.oslo.token:
            reg.see_token(m.oslo.token)

    def text(self, ex, words):
        return _rpc_text(ex, words) if isinstance(ex, RpcExchange) else super().text(ex, words)

    def operation(self, ex):
        return ex.kind if isinstance(ex, RpcExchange) else None

    def failure(self, ex, response) -> Failure:
        r = ex.response
        if isinstance(ex, RpcExchange) and isinstance(r, AmqpMessage) and r.oslo is not None and r.oslo.failure:
            return "error"
        return ""

    def endpoint(self, pair):
        ex = pair.exchange
        if isinstance(ex, RpcExchange):
            o = ex.oslo
            return f"{ex.kind} {o.method or '?'}" + (f" ({o.object_method})" if o.object_method else "")
        return super().endpoint(pair)


AMQP = Amqp()

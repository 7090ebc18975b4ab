"""Pair stage: messages -> request/response exchanges, connection by connection.

HTTP pairs by ``http.request_in`` (else in order), one MySQL command with its
reply, one memcached command with its reply; a MySQL login is one pair; a MySQL
quit is answered by the close of the connection.  Requests nobody answered stay,
with no response; responses whose request is not in the capture are counted
(:attr:`Pairing.orphans`).

RPC pairs cross connections: :class:`RpcPairing` ties a caller's Basic.Publish to
each delivery of it (``_unique_id``), a call to its reply (``_msg_id``), and the
reply to its delivery back to the caller: one :class:`~osflow.model.RpcExchange`
per callee (a fanout delivered to N consumers is N of them; a publish nobody
consumed is one, delivered to none).
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Iterable, Optional

from .model import (
    AmqpConnection,
    AmqpMessage,
    AmqpOpen,
    Closed,
    Exchange,
    HttpResponse,
    Message,
    MysqlCommand,
    MysqlGreeting,
    RpcExchange,
)


class Pairing:
    """Match requests with responses, connection by connection."""

    def __init__(self) -> None:
        self._pending: dict[int, deque[Message]] = defaultdict(deque)
        self.exchanges: list[Exchange] = []
        self.orphans = 0  # responses whose request is not in the capture
        self.greetings: dict[int, MysqlGreeting] = {}
        self.rpc = RpcPairing()

    def feed(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.add(m)

    def add(self, m: Message) -> None:
        if m.protocol == "amqp":
            self.rpc.add(m)
            return
        if isinstance(m, MysqlGreeting):
            self.greetings[m.stream] = m
            return
        queue = self._pending[m.stream]
        if m.is_request:
            queue.append(m)
            return
        if isinstance(m, Closed):
            # a MySQL quit is answered by the close of the connection
            for i, req in enumerate(queue):
                if isinstance(req, MysqlCommand) and req.command == "quit":
                    del queue[i]
                    self._pair(req, m)
                    break
            return
        req = self._match(queue, m)
        if req is None:
            self.orphans += 1
            return
        self._pair(req, m)

    @staticmethod
    def _match(queue: deque, resp: Message) -> Optional[Message]:
        if isinstance(resp, HttpResponse) and resp.request_in is not None:
            for i, req in enumerate(queue):
                if resp.request_in in req.frames:
                    del queue[i]
                    return req
        for i, req in enumerate(queue):
            if req.src == resp.dst and req.protocol == resp.protocol:
                del queue[i]
                return req
        return None

    def _pair(self, req: Message, resp: Optional[Message]) -> None:
        self.exchanges.append(Exchange(req.protocol, req.stream, req.src, req.dst, req, resp))

    def finish(self) -> list[Exchange]:
        """All exchanges, unanswered requests included, in request order."""
        for queue in self._pending.values():
            for req in queue:
                self._pair(req, None)
            queue.clear()
        self.exchanges += self.rpc.finish()
        self.exchanges.sort(key=lambda e: (e.start, e.request.frames[0]))
        return self.exchanges


def pair_messages(messages: Iterable[Message]) -> list[Exchange]:
    p = Pairing()
    p.feed(messages)
    return p.finish()


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
        self.orphans = 0  # deliveries and replies whose publish or call is not in the capture
        self.undecoded: dict[str, int] = defaultdict(int)  # why -> messages whose body osflow could not read

    def _link(self, m: Message) -> dict:
        client, broker = (m.src, m.dst) if m.is_request else (m.dst, m.src)
        link = self._links.get(m.stream)
        if link is None:
            link = self._links[m.stream] = dict(client=client, broker=broker, start=m.start, name=None,
                                                consumes={}, replies={}, calls_for={})
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

    def finish(self) -> list[RpcExchange]:
        out: list[RpcExchange] = []
        used_replies: set[int] = set()
        for uid in self._order:
            pub = self._publishes[uid]
            o = pub.oslo
            if o is not None and o.is_reply:
                continue
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
                    used_replies.update(id(r) for r in replies)
                    ruid = (reply.oslo.unique_id if reply.oslo is not None else None) or _body_key(reply)
                    back = self._deliveries.pop(ruid, [])
                    reply_delivery = back[0] if back else None
            broker = pub.dst
            common = dict(kind=kind, broker=broker, delivered=len(deliveries), keepalives=keepalives)
            if not deliveries:
                out.append(RpcExchange("rpc", pub.stream, pub.src, broker, pub, reply, **common,
                                       reply_delivery=reply_delivery))
                continue
            for d in deliveries:  # reply and reply_delivery are None but for a call
                out.append(RpcExchange("rpc", pub.stream, pub.src, d.dst, pub, reply, **common,
                                       server_stream=d.stream, delivery=d, reply_delivery=reply_delivery))
        # what is left: deliveries of publishes made before the capture, replies to calls made before it
        self.orphans += sum(len(v) for v in self._deliveries.values())
        self.orphans += sum(1 for v in self._replies.values() for r in v if id(r) not in used_replies)
        return out


def _body_key(m: AmqpMessage) -> str:
    """A key for a message without ``_unique_id`` (not oslo.messaging): exchange, routing key, size."""
    return f"{m.exchange}\0{m.routing_key}\0{m.body_size}\0{m.frames[0] if m.is_request else ''}"

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

import math
from collections import defaultdict, deque
from collections.abc import Iterable

from .model import (
    AmqpConnection,
    AmqpMessage,
    AmqpOpen,
    Closed,
    Exchange,
    HttpResponse,
    MemcacheCommand,
    Message,
    MysqlCommand,
    MysqlGreeting,
    MysqlLogin,
    RpcExchange,
)


class Pairing:
    """Match requests with responses, connection by connection."""

    def __init__(self) -> None:
        self._pending: dict[int, deque[Message]] = defaultdict(deque)
        self.exchanges: list[Exchange] = []  # paired, not yet released (:meth:`release`)
        self.found = 0  # exchanges paired so far
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
            if isinstance(m, MemcacheCommand) and m.noreply:
                self._pair(m, None)  # no reply comes: the next one is another command's
                return
            queue.append(m)
            return
        if isinstance(m, Closed):
            # a MySQL or memcached quit is answered by the close of the connection
            for i, req in enumerate(queue):
                if (isinstance(req, (MysqlCommand, MemcacheCommand)) and req.command == "quit"
                        or isinstance(req, MysqlLogin) and req.tls):  # a TLS session ends with its connection
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
    def _match(queue: deque, resp: Message) -> Message | None:
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

    def _pair(self, req: Message, resp: Message | None) -> None:
        self.exchanges.append(Exchange(req.protocol, req.stream, req.src, req.dst, req, resp))
        self.found += 1

    def release(self, cutoff: float, force: float, idle: float = -math.inf) -> list[Exchange]:
        """The exchanges nothing still open can come before, in request order, taken out.

        Released: every exchange that started and ended before ``cutoff`` (capture time) and
        started before every request still unanswered and every RPC still open (a call
        waiting for its reply; a publish younger than ``cutoff``, whose deliveries may come).
        Requests unanswered since before ``force`` are given up on: they become exchanges without
        a response (a response that comes later is an orphan), as an RPC still open since then
        becomes one with what it has; connections to the broker silent since before ``idle`` are
        forgotten.  ``release(inf, inf)`` releases everything.
        """
        bound = math.inf
        for stream in list(self._pending):
            queue = self._pending[stream]
            for req in [r for r in queue if r.start < force]:
                queue.remove(req)
                self._pair(req, None)
            if queue:
                bound = min(bound, min(r.start for r in queue))
            else:
                del self._pending[stream]
        built, open_since = self.rpc.release(cutoff, force, idle)
        self.exchanges += built
        bound = min(bound, open_since)
        for ex in self.exchanges:
            if ex.end >= cutoff:
                bound = min(bound, ex.start)
        if bound == math.inf and cutoff == math.inf:
            out, self.exchanges = self.exchanges, []
        else:
            out = [ex for ex in self.exchanges if ex.start < bound]
            if out:
                self.exchanges = [ex for ex in self.exchanges if ex.start >= bound]
        out.sort(key=lambda e: (e.start, e.request.frames[0]))
        return out

    def pending(self) -> Iterable[Message]:
        """Requests still waiting for their response, and RPC publishes not yet paired."""
        for queue in self._pending.values():
            yield from queue
        yield from self.rpc.pending()

    def finish(self) -> list[Exchange]:
        """All exchanges (those not released yet), unanswered requests included, in request order."""
        out = self.release(math.inf, math.inf)
        self.rpc.finish()
        return out


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
        common = dict(kind=kind, broker=broker, delivered=len(deliveries), keepalives=keepalives)
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

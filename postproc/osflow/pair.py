"""Pair stage: messages -> request/response exchanges, connection by connection.

On a connection, a response answers the oldest request of its protocol still waiting,
unless the protocol says which by an id (HTTP's ``http.request_in``); a request its
protocol says the close answers (a MySQL quit) is paired with the FIN; a message that asks
and answers nothing (a MySQL greeting) is left out.  Each protocol's rule is a hook of its
module (:mod:`osflow.protocols`).  Requests nobody answered stay, with no response;
responses whose request is not in the capture are counted (:attr:`Pairing.orphans`).

RPC pairs cross connections: :class:`~osflow.protocols.amqp.RpcPairing` ties a caller's
Basic.Publish to each delivery of it (``_unique_id``), a call to its reply (``_msg_id``),
and the reply to its delivery back to the caller: one :class:`~osflow.model.RpcExchange`
per callee (a fanout delivered to N consumers is N of them; a publish nobody consumed is
one, delivered to none).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable

from . import protocols
from .model import Closed, Exchange, Message
from .protocols.amqp import RpcPairing

__all__ = ["Pairing", "RpcPairing", "pair_messages"]


class Pairing:
    """Match requests with responses, connection by connection."""

    def __init__(self) -> None:
        self._pending: dict[int, deque[Message]] = defaultdict(deque)
        self.exchanges: list[Exchange] = []  # paired, not yet released (:meth:`release`)
        self.found = 0  # exchanges paired so far
        self.orphans = 0  # responses whose request is not in the capture
        self.greetings: dict[int, Message] = {}  # stream -> the message that opened it (a MySQL greeting)
        self.rpc = RpcPairing()

    def feed(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.add(m)

    def add(self, m: Message) -> None:
        module = protocols.of(m)
        if module.pairs_itself:  # RPC: paired across the broker's connections
            self.rpc.add(m)
            return
        if module.absorbs(m):
            self.greetings[m.stream] = m
            return
        queue = self._pending[m.stream]
        if m.is_request:
            if module.unanswered(m):
                self._pair(m, None)  # no reply comes: the next one is another command's
                return
            queue.append(m)
            return
        if isinstance(m, Closed):
            # a MySQL quit is answered by the close of the connection
            for i, req in enumerate(queue):
                if protocols.of(req).answered_by_close(req):
                    del queue[i]
                    self._pair(req, m)
                    break
            return
        asked = self._match(queue, m)
        if asked is None:
            self.orphans += 1
            return
        self._pair(asked, m)

    @staticmethod
    def _match(queue: deque, resp: Message) -> Message | None:
        req = protocols.of(resp).response_for(queue, resp)
        if req is not None:
            for i, r in enumerate(queue):
                if r is req:
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

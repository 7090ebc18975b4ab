"""Pair stage: messages -> request/response exchanges, connection by connection.

HTTP pairs by ``http.request_in`` (else in order), one MySQL command with its
reply, one memcached command with its reply; a MySQL login is one pair; a MySQL
quit is answered by the close of the connection.  Requests nobody answered stay,
with no response; responses whose request is not in the capture are counted
(:attr:`Pairing.orphans`).
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Iterable, Optional

from .model import Closed, Exchange, HttpResponse, Message, MysqlCommand, MysqlGreeting


class Pairing:
    """Match requests with responses, connection by connection."""

    def __init__(self) -> None:
        self._pending: dict[int, deque[Message]] = defaultdict(deque)
        self.exchanges: list[Exchange] = []
        self.orphans = 0  # responses whose request is not in the capture
        self.greetings: dict[int, MysqlGreeting] = {}

    def feed(self, messages: Iterable[Message]) -> None:
        for m in messages:
            self.add(m)

    def add(self, m: Message) -> None:
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
        self.exchanges.sort(key=lambda e: (e.start, e.request.frames[0]))
        return self.exchanges


def pair_messages(messages: Iterable[Message]) -> list[Exchange]:
    p = Pairing()
    p.feed(messages)
    return p.finish()

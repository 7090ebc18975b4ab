"""Flow stage: named exchanges -> the flow the renderers draw.

:func:`build_flow` takes the exchanges (:mod:`osflow.pair`) and the names of
their connections (:mod:`osflow.join`) and builds the :class:`~osflow.model.Flow`:

* tokens numbered T1, T2, … in order of appearance (:mod:`osflow.tokens`);
* each pair's words, secrets hidden (:mod:`osflow.prose`);
* each pair's parent: the innermost pair whose server is this pair's client and
  whose time span contains it (an RPC's span is the time its callee handled it:
  from the delivery to the reply for a call; for a cast, to the callee's last
  RPC or HTTP request carrying the cast's request id);
* the steps the renderers draw: runs of similar childless siblings (DB queries,
  cache commands) collapse into one step with a summary and a result.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import replace

from . import foreground, protocols
from . import tokens as tok
from .foreground import Client
from .join import request_ids_of
from .model import (
    ConnectionNames,
    Exchange,
    Flow,
    Pair,
    Participant,
    ProxiedExchange,
    ProxyLeg,
    RpcExchange,
    Step,
    Token,
)
from .openstack import GREEN_THREADS, MAX_IDS
from .options import AnalysisOptions
from .prose import Prose
from .protocols.mysql import is_pool_noise

__all__ = ["FlowBuilder", "build_flow", "group_result", "is_pool_noise", "participants", "whole_flow"]

#: The options the flow stage runs with when it is given none: osflow-post's defaults.
DEFAULTS = AnalysisOptions()


def build_flow(
    exchanges: list[Exchange],
    names: dict[int, ConnectionNames],
    options: AnalysisOptions = DEFAULTS,
    *,
    origin: float | None = None,
    warnings: tuple[str, ...] = (),
    without_tables: dict[int, ConnectionNames] | None = None,
) -> Flow:
    """The flow of ``exchanges`` (in request order) whose connections ``names`` names.

    ``without_tables``: the same connections named without socket tables (for ``--explain``).
    ``options.client``: who the command is (:mod:`osflow.foreground`, default: every OpenStackClient
    end); the steps hold only what it caused unless ``options.show_all``.  With the default and no
    OpenStackClient end at all, there is nothing to tell apart: every pair is foreground.
    """
    builder = FlowBuilder(options)
    builder.register(exchanges)
    builder.place(exchanges, names)
    pairs = builder.settle(math.inf)
    if origin is None:
        origin = min((ex.start for ex in exchanges), default=0.0)
    return whole_flow(pairs, names, builder.tokens(), options, origin=origin, warnings=warnings,
                      without_tables=without_tables, client=builder.client_why)


def whole_flow(
    pairs: list[Pair],
    names: dict[int, ConnectionNames],
    tokens: tuple[Token, ...],
    options: AnalysisOptions,
    *,
    origin: float,
    warnings: tuple[str, ...],
    without_tables: dict[int, ConnectionNames] | None,
    client: str,
) -> Flow:
    """The whole flow of ``pairs`` (every pair, placed and settled, in request order): the steps the
    renderers draw (the foreground unless ``options.show_all``, grouped unless not ``options.group``)
    and the line on what they leave out.

    :func:`build_flow` ends with it, and so does a streamed flow collected whole
    (:func:`osflow.pipeline.collect`).
    """
    shown = pairs if options.show_all else [p for p in pairs if not p.background]
    return Flow(
        pairs=tuple(pairs),
        steps=tuple(_steps(shown, options.group)),
        tokens=tokens,
        connections=tuple(names[s] for s in sorted(names)),
        origin=origin,
        warnings=warnings,
        without_tables=tuple(
            (s, n.client.label, n.server.label) for s, n in sorted((without_tables or {}).items())
        ),
        left_out=None if options.show_all else foreground.left_out(p for p in pairs if p.background),
        client=client,
    )


class FlowBuilder:
    """The flow stage, run as exchanges come: :func:`build_flow` gives it every exchange at once,
    a streamed flow (:class:`osflow.pipeline.Stream`) a chunk at a time, in request order.

    :meth:`register` numbers the tokens of exchanges in order of appearance (the frames they
    appear in); :meth:`place` gives each exchange its pair: its words, its parent (of the pairs
    still open, :func:`_parent`) and its depth; :meth:`settle` gives out the pairs placed, in
    request order, with their foreground flag fixed; :meth:`forget` drops what is kept for pairs
    given out that no later exchange can be a child of.  What is kept is the pairs not given out
    and the pairs still open: memory follows the requests in progress, not the capture's length.
    """

    def __init__(self, options: AnalysisOptions = DEFAULTS, *, longest_cast: float = math.inf) -> None:
        """``options``: who the client is, whether secrets are shown; ``longest_cast``: a cast's
        handling ends at most this long after its delivery (a streamed flow's bound: the same
        request id seen much later is another request's)."""
        self.command: Client = options.client or foreground.DEFAULT
        self.longest_cast = longest_cast
        self.registry = tok.TokenRegistry()
        self.prose = Prose(self.registry, options.show_secrets)
        self.pairs: dict[int, Pair] = {}  # index (id - 1) -> pair, while kept
        self.served: dict[int, tuple[float, float]] = {}  # index -> when its server worked on it
        # label -> indexes of the pairs served to it that may still contain a later pair (exchanges come
        # in start order: a span that ended before this pair started contains no later one either)
        self.by_server: dict[str, list[int]] = defaultdict(list)
        self.activity = _Activity()
        self.closure = foreground.Closure(self.command)
        self.placed = 0  # pairs placed
        self.given = 0  # pairs given out by settle
        self.frontier = -math.inf  # the latest start placed: later exchanges start no earlier
        # (client label, request id or resource UUID) -> latest end of what it sent naming it
        self._last: dict[tuple[str, str], float] = {}
        self._casts: dict[tuple[str, str], list[int]] = defaultdict(list)  # (callee label, id) -> casts
        # MySQL connection -> (index of the parent its checkout's statements had, given back to the pool since)
        self._checkout: dict[int, tuple[int, bool]] = {}
        self._db: dict[int, str] = {}  # MySQL connection -> the database it is to, while a checkout is kept
        self._touched: set[int] = set()  # indexes of the requests with a database statement placed under them
        self._last_child: dict[int, int] = {}  # index -> index of its last child placed
        self._by_exchange: dict[int, int] = {}  # id of a pair's exchange -> its index, while kept (a proxy's legs)
        self._made: dict[tuple[int, int], list[int]] = defaultdict(list)  # (index, process) -> its children by it
        self._firm: set[int] = set()  # pairs placed by what they carry: a token, a request id, a resource

    @property
    def kept(self) -> int:
        """How many pairs are kept (not given out, or still open)."""
        return len(self.pairs)

    @property
    def client_why(self) -> str:
        """Who the command is, as :mod:`osflow.foreground` found it (``Flow.client``)."""
        return self.command.why

    def tokens(self) -> tuple[Token, ...]:
        """Every token numbered so far, in order."""
        return self.registry.all()

    def served_since(self, start: float) -> list[Exchange]:
        """The exchanges of the pairs kept whose server was still working on them at ``start`` (what
        a streamed flow's join looks at beside a new chunk: the requests in progress)."""
        return [p.exchange for i, p in self.pairs.items() if self.served[i][1] >= start]

    def register(self, exchanges: Iterable[Exchange], before: float = math.inf) -> None:
        """Number the tokens of ``exchanges`` seen before ``before`` (capture time), in frame order."""
        events = []
        for ex in exchanges:
            if ex.request.start < before:
                events.append((ex.request.frames[0], 0, ex))
            if ex.response is not None and ex.response.end < before:
                events.append((ex.response.frames[-1], 1, ex))
        for _, which, ex in sorted(events, key=lambda e: (e[0], e[1])):
            _register_tokens(self.registry, ex, which)

    def place(self, exchanges: list[Exchange], names: dict[int, ConnectionNames],
              later: Iterable[Exchange] = (), later_names: dict[int, ConnectionNames] | None = None) -> None:
        """Make the pairs of ``exchanges`` (in request order, none starting before those placed).

        ``later``: exchanges already seen that come after them (named by ``later_names``): a cast's
        handling lasts until the callee's last request with its request id, which may be one of them.
        """
        ends = [participants(ex, names) for ex in exchanges]
        touched = self._note_last(zip(exchanges, ends, strict=True))
        if later_names is not None:
            touched |= self._note_last((ex, participants(ex, later_names)) for ex in later
                                       if (request_ids_of(ex) or _identifiers(ex)) and ex.stream in later_names)
        for key in touched:  # casts placed before: their callee's work goes on
            for idx in self._casts.get(key, ()):
                if idx in self.served:
                    s, e = self.served[idx]
                    self.served[idx] = (s, max(e, min(self._last[key], s + self._reach(key[1]))))
        pairs, served, prose, activity = self.pairs, self.served, self.prose, self.activity
        for ex, (client, server) in zip(exchanges, ends, strict=True):
            i = self.placed
            served[i] = self._served(i, ex, server)
            text = prose.text(ex)
            open_ = self.by_server.get(client.label)
            if open_:
                open_[:] = [j for j in open_ if j in served and served[j][1] >= ex.start]
            ids = _identifiers(ex)
            proto = protocols.of(ex)
            who = client.pid if client.pid is not None else worker_of_connection(ex.stream)
            pool = proto.pool_use(ex)
            if pool == "checkout":
                self._checkout.pop(ex.stream, None)
            instrument = proto.instrumentation(ex)
            if instrument:  # the services' instrumentation, not their work: out of the story
                parent, placed = None, f"instrumentation: {instrument}"
            elif isinstance(ex, ProxyLeg):  # a proxy's leg of one request (its own health check: of none)
                j = self._by_exchange.get(id(ex.front)) if ex.front is not None else None
                parent, placed = (j + 1, "the proxy's leg of it") if j is not None else (None, "")
            else:
                held, returned = self._checkout.get(ex.stream, (None, False))
                if returned and pool != "checkin":  # back in the pool: only its reset's rollback is the holder's
                    held = None
                holding: frozenset[int] = frozenset()
                untouched: frozenset[int] = frozenset()
                if pool == "checkout" and client.service in GREEN_THREADS:
                    # green threads: each of the requests in progress takes a connection of its own
                    holding = frozenset(j for st, (j, back) in self._checkout.items()
                                        if not back and self._db.get(st) == server.label)
                    untouched = frozenset(j for j in open_ or () if j not in self._touched)
                parent, placed, firm = _parent(pairs, served, open_ or (), ex, text.tokens, who, activity, ids, held,
                                               holding, untouched)
                if firm and parent is not None:
                    self._firm.add(i)
                    if firm == "resource":
                        self._rehome(parent - 1, who, ex.start, open_ or ())
            if parent is not None:
                activity.note(parent - 1, ex, who, ids)
                self._last_child[parent - 1] = i
                self._made[(parent - 1, who)].append(i)
            if parent is None:
                self._checkout.pop(ex.stream, None)
            elif pool is not None:  # whoever took it from the pool holds it until it gives it back
                self._checkout[ex.stream] = (parent - 1, pool == "checkin")
                self._db[ex.stream] = server.label
                self._touched.add(parent - 1)
            depth = 0 if parent is None else pairs[parent - 1].depth + 1
            pair = Pair(
                id=i + 1,
                parent=parent,
                exchange=ex,
                client=client,
                server=server,
                via=names[ex.stream].server if isinstance(ex, RpcExchange) else None,
                proxies=_proxies(ex, names),
                request=text.request,
                response=text.response,
                message=text.message,
                result=text.result,
                notes=text.notes,
                tokens=text.tokens,
                noise=proto.noise(ex),
                depth=depth,
                placed=placed,
            )
            pairs[i] = pair
            self._by_exchange[id(ex)] = i
            self.closure.add(i, pair)
            self.by_server[server.label].append(i)
            self.placed += 1
            self.frontier = max(self.frontier, ex.start)

    def _rehome(self, idx: int, who: int, at: float, candidates: Iterable[int]) -> None:
        """``who`` made a child of pair ``idx`` that only ``idx`` names (a resource, a token's audit id),
        while the flow took it to serve another request in progress: a worker behind a front serves one
        request at a time, so it serves ``idx`` now, and the worker taken to serve ``idx`` serves the
        request ``who`` was taken to serve (two workers that started at once took the two requests the
        other way round).  Their held pool checkouts follow."""
        pids, served = self.activity.pids, self.served
        if who < 0 or any(self.pairs[j].server.pid == who for j in candidates if j in self.pairs):
            return  # a connection (a pool's: it serves one request, then another), or the server itself
        others = [j for j in candidates if j != idx and who in pids.get(j, ()) and served[j][0] <= at <= served[j][1]]
        if not others:
            return
        for j in others:
            pids[j].discard(who)
        if len(others) != 1:
            return
        old = others[0]
        swapped = pids.get(idx, set()) - {who}
        if swapped:
            pids[idx] -= swapped
            pids.setdefault(old, set()).update(swapped)
        # the connections the swapped workers hold for idx: those their children of idx came on
        for stream in {self.pairs[k].exchange.stream for w in swapped for k in self._made.get((idx, w), ())
                       if k in self.pairs}:
            held, returned = self._checkout.get(stream, (None, False))
            if held == idx:
                self._checkout[stream] = (old, returned)
        # what each made under the other so far was the other's too: the one the worker serves now, a
        # request still in progress, is the only one it served since it was taken to serve the other
        self._move(old, idx, who)
        for w in swapped:
            self._move(idx, old, w)

    def _move(self, src: int, dst: int, who: int) -> None:
        """Children of ``src`` that ``who`` made, not placed by what they carry (a token, a request
        id, a resource only ``src`` names), not given out, none with children, and within ``dst``'s
        span: children of ``dst``."""
        made = self._made.get((src, who))
        if not made:
            return
        s, e = self.served[dst]
        moving = [k for k in made if k >= self.given and k in self.pairs and k not in self._last_child
                  and s <= self.pairs[k].exchange.start <= e and k not in self._firm]
        if not moving:
            return
        gone = set(moving)
        made[:] = [k for k in made if k not in gone]
        target = self.pairs[dst]
        for k in moving:
            p = self.pairs[k]
            self.pairs[k] = replace(p, parent=dst + 1, depth=target.depth + 1,
                                    placed=f"{p.placed}; moved: {describe_worker(who)} served this request")
            self.closure.move(k, src, dst, p.exchange.start)
            self.activity.note(dst, p.exchange, who, _identifiers(p.exchange))
            self._last_child[dst] = max(self._last_child.get(dst, -1), k)
        self._made[(dst, who)].extend(moving)

    def _note_last(self, named) -> set[tuple[str, str]]:
        touched = set()
        for ex, (client, _) in named:
            for rid in request_ids_of(ex) + _identifiers(ex):
                key = (client.label, rid)
                if ex.end > self._last.get(key, -math.inf):
                    self._last[key] = ex.end
                    touched.add(key)
        return touched

    def _served(self, i: int, ex: Exchange, server: Participant) -> tuple[float, float]:
        """When the server worked on it: the exchange's span, or an RPC's handling span (a cast's
        ends with the callee's last RPC or HTTP request with its request id, its last child)."""
        if not isinstance(ex, RpcExchange):
            return ex.start, ex.end
        start, end = ex.served
        rid = ex.oslo.request_id
        if ex.kind != "call" and ex.delivery is not None:
            # its handling lasts while the callee works on its request id, or on what its arguments name
            for ident in ([rid] if rid else []) + list(ex.oslo.ids):
                key = (server.label, ident)
                end = max(end, min(self._last.get(key, end), start + self._reach(ident)))
                self._casts[key].append(i)
        return start, end

    def _reach(self, ident: str) -> float:
        """How long after its delivery a cast's handling may go on by ``ident``: by its request id
        (``req-…``) as long as a cast may last, by a resource it names :data:`ID_REACH` at most."""
        return self.longest_cast if ident.startswith("req-") else min(self.longest_cast, ID_REACH)

    def _kept(self, lists: dict) -> None:
        """Keep in each list of ``lists`` the pairs still kept; drop the lists left empty."""
        for key in list(lists):
            kept = [j for j in lists[key] if j in self.served]
            if kept:
                lists[key] = kept
            else:
                del lists[key]

    def settle(self, before: float) -> list[Pair]:
        """The pairs placed that start before ``before``, not given out yet, in request order, with
        their foreground flag: with the default client and no OpenStackClient end so far, there is
        nothing to tell apart and every pair is foreground."""
        out = []
        everything = self.command is foreground.DEFAULT and not self.closure.roots
        while self.given < self.placed and self.pairs[self.given].exchange.start < before:
            i = self.given
            p = self.pairs[i]
            if self.closure.settle(i) and not everything:
                p = self.pairs[i] = replace(p, background=True)
            out.append(p)
            self.given += 1
        return out

    def forget(self, idle: float = -math.inf) -> list[int]:
        """Drop the pairs given out, with their children, that no later exchange can be a child of;
        their ids (a renderer that waits for whole trees knows they are complete).

        ``idle``: also forget request ids not seen since then (a cast's work, the foreground's ids).
        """
        gone = [i for i in self.pairs if i < self.given and self.served[i][1] < self.frontier
                and self._last_child.get(i, -1) < self.given]
        gone_set = set(gone)
        for made in [k for k in self._made if k[0] in gone_set]:
            del self._made[made]
        for i in gone:
            self._firm.discard(i)
            self._by_exchange.pop(id(self.pairs[i].exchange), None)
            del self.pairs[i]
            del self.served[i]
            self._last_child.pop(i, None)
            self.activity.forget(i)
            self.closure.forget(i)
        if gone:
            self._kept(self.by_server)
        for key in [k for k, t in self._last.items() if t < idle]:
            del self._last[key]
            self._casts.pop(key, None)
        self._kept(self._casts)
        for stream in [s for s, (j, _) in self._checkout.items() if j not in self.served]:
            del self._checkout[stream]
        for stream in [s for s in self._db if s not in self._checkout]:
            del self._db[stream]
        self._touched.intersection_update(self.served)
        self.closure.forget_ids(idle)
        return [i + 1 for i in gone]


def participants(ex: Exchange, names: dict[int, ConnectionNames]) -> tuple[Participant, Participant]:
    """(client, server) of an exchange: its connection's two ends, or for an RPC the caller's
    and the callee's ends of their connections to the broker (the broker when nobody took it)."""
    cn = names[ex.stream]
    if isinstance(ex, RpcExchange) and ex.server_stream is not None and ex.server_stream in names:
        return cn.client, names[ex.server_stream].client
    if isinstance(ex, ProxiedExchange) and ex.server_stream in names:
        return cn.client, names[ex.server_stream].server
    return cn.client, cn.server


def _proxies(ex: Exchange, names: dict[int, ConnectionNames]) -> tuple[Participant, ...]:
    """The proxies a request went through, in order: the server end of each leg but the last."""
    if not isinstance(ex, ProxiedExchange):
        return ()
    return tuple(names[leg.stream].server for leg in ex.legs[:-1] if leg.stream in names)


def _register_tokens(reg: tok.TokenRegistry, ex: Exchange, which: int) -> None:
    msg = ex.request if which == 0 else ex.response
    if msg is not None:
        protocols.of(msg).tokens(msg, reg)


#: containing candidates weighed for one child (the innermost ones); time breaks the ties
_CANDIDATES = 16

#: How long after its delivery a cast's handling may be found to go on by the resources its
#: arguments name (the callee working on the instance it was told to build), in seconds.
ID_REACH = 30.0
#: how many of a pair's latest children's ends :class:`_Activity` keeps
_ENDS = 8


def worker_of_connection(stream: int) -> int:
    """Who made an exchange whose process no table names: its connection (as a negative number, never
    a pid).  A connection is one process's (a pool's database connection, a client's HTTP connection,
    a service's AMQP connection), so what the flow learns of a process -- which requests its children
    went to, that a worker behind a front took the oldest request waiting -- it learns of the
    connection instead, for as long as the process uses it.

    >>> worker_of_connection(0), worker_of_connection(41), describe_worker(-42), describe_worker(4242)
    (-1, -42, 'connection 41', 'process 4242')
    """
    return -1 - stream


def describe_worker(who: int) -> str:
    """A pid or a connection (:func:`worker_of_connection`) in words."""
    return f"process {who}" if who >= 0 else f"connection {-1 - who}"


class _Activity:
    """What the flow has placed under each pair so far: when its last child started, and whether it
    looked its caller's token up in the cache (keystonemiddleware does that once, first thing)."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        #: when its latest children ended (answers coming back, a few): a green thread runs again then
        self.ends: dict[int, list[float]] = {}
        self.looked_up: set[int] = set()
        self.pids: dict[int, set[int]] = {}  # the processes its children came from
        self.ids: dict[int, set[str]] = {}  # the resource UUIDs its children named

    def note(self, parent: int, ex: Exchange, pid: int | None = None, ids: tuple[str, ...] = ()) -> None:
        self.last[parent] = max(self.last.get(parent, 0.0), ex.start)
        ends = self.ends.setdefault(parent, [])
        ends.append(ex.end)
        if len(ends) > _ENDS:
            ends.sort()
            del ends[:-_ENDS]
        if ids:
            known = self.ids.setdefault(parent, set())
            if len(known) < 4 * MAX_IDS:
                known.update(ids)
        if _token_lookup(ex):
            self.looked_up.add(parent)
        if pid is not None:
            self.pids.setdefault(parent, set()).add(pid)

    def forget(self, idx: int) -> None:
        self.last.pop(idx, None)
        self.ends.pop(idx, None)
        self.looked_up.discard(idx)
        self.pids.pop(idx, None)
        self.ids.pop(idx, None)

    def since(self, idx: int, start: float, now: float = math.inf) -> float:
        """When the pair ``idx`` (started at ``start``) last did something before ``now``: its start, its
        last child's, or the end of a child (its answer came back, and whoever waited for it ran on)."""
        done = [e for e in self.ends.get(idx, ()) if e <= now]
        return max(start, self.last.get(idx, 0.0), max(done, default=-math.inf))


def _token_lookup(ex: Exchange) -> bool:
    return protocols.of(ex).token_lookup(ex)


def _identifiers(ex: Exchange) -> tuple[str, ...]:
    return protocols.of(ex).identifiers(ex)


def _parent(
    pairs: dict[int, Pair], served: dict[int, tuple[float, float]], candidates, ex: Exchange,
    tokens: tuple[str, ...] = (), pid: int | None = None, activity: _Activity | None = None,
    ids: tuple[str, ...] = (), checkout: int | None = None, holding: frozenset[int] = frozenset(),
    untouched: frozenset[int] = frozenset(),
) -> tuple[int | None, str, str]:
    """(parent id, what placed it, the firm evidence that did: ``resource`` (an identifier only the
    parent names), ``token``, ``request id``, or none) of ``ex``: of the
    pairs served to its client whose serving span contains it (a cast from the moment it was
    published, a call until its reply came back), the one the evidence agrees with -- a token both
    carry (the user's token a cache key or a validation names), a request id, the process that
    served it and made this (or its other children), a token lookup only the first in its request,
    an identifier both name (a resource UUID, a token's audit id: the request's own, which outweighs
    a checkout and a process found by time, or its children's; not one every candidate names), the
    request the statements before it on its database connection went to since the pool gave the
    connection out (``checkout``: a green thread holds its connection from the pool's ping until it
    gives it back), at a checkout in a process of green threads not a request that holds another
    connection to the same database (``holding``) but rather one with none yet (``untouched``), for
    a worker behind a front (Apache's mod_wsgi daemons, uwsgi's workers) with nothing of its own in
    progress the oldest request no process has taken yet --, and of those that
    agree most, the one active last (started, made a child, or had a child's answer come back).
    Several clients at once make several spans contain a child; the evidence says whose."""
    start, end = ex.start, ex.end
    if isinstance(ex, RpcExchange) and ex.kind != "call":
        end = ex.request.end
    sent = set(request_ids_of(ex, sent_only=True))
    found: list[tuple[int, Pair, tuple[str, ...]]] = []  # (index, pair, its request ids when ex sent some)
    for idx in reversed(candidates):  # the spans still open when ex started, latest first
        cand = pairs[idx]
        s, e = served[idx]
        if s <= start and e >= end:
            handled = request_ids_of(cand.exchange) if sent else ()
            # an RPC the callee handles and a request it sends with another request id: another
            # request's work in the same span (a periodic task), not this RPC's child
            if handled and isinstance(cand.exchange, RpcExchange) and sent.isdisjoint(handled):
                continue
            found.append((idx, cand, handled))
            if len(found) >= _CANDIDATES:
                break
    if not found:
        return None, "", ""
    if len(found) == 1:
        return found[0][1].id, "time", ""
    best: Pair | None = None
    # every candidate may score below zero (a process that serves others)
    best_score, best_why, best_firm = -math.inf, "", ""
    mine = set(tokens)
    # without evidence, the request in progress that did something last (started, or made a child):
    # the inner of two nested ones, the one a concurrent server just took, the one a server that takes
    # them one after another (accepted while it still served the one before) is still working on
    activity = activity or _Activity()
    found.sort(key=lambda f: -activity.since(f[0], served[f[0]][0], start))
    lookup = _token_lookup(ex)
    # candidate -> the UUIDs it shares with ex that not every candidate shares: those its own request
    # names (the request is about that resource), and those its children named so far
    own: dict[int, set[str]] = {}
    kids: dict[int, set[str]] = {}
    if ids:
        mine_ids = set(ids)
        for idx, cand, _ in found:
            own[idx] = mine_ids.intersection(_identifiers(cand.exchange))
            kids[idx] = mine_ids.intersection(activity.ids.get(idx, ())) - own[idx]
        for named in (own, kids):
            common = set.intersection(*named.values())
            named.update((idx, shared - common) for idx, shared in named.items())
    # a worker behind a front (no request in progress reached this process itself: Apache handed it to a
    # mod_wsgi daemon, uwsgi's master to a worker) serves one request at a time and takes the waiting ones
    # in the order they came: with nothing of its own in progress, the oldest request no process works on yet
    waiting = None
    if pid is not None and all(c.server.pid != pid for _, c, _ in found) \
            and not any(pid in activity.pids.get(idx, ()) for idx, _, _ in found):
        idle = [idx for idx, _, _ in found if not activity.pids.get(idx)]
        waiting = min(idle, key=lambda idx: (served[idx][0], idx)) if idle else None
    for idx, cand, handled in found:  # a tie keeps the first
        score, why, firm = 0, [], ""
        if idx == waiting:
            score += 1
            why.append("the oldest request waiting for a worker")
        if idx == checkout:
            score += 3
            why.append("its connection's checkout")
        if idx in holding:  # a green thread holds one connection of a pool at a time
            score -= 2
        if idx in untouched:
            score += 1
            why.append("its first database connection")
        if own.get(idx):  # outweighs a checkout and a process placed by time alone: the holder is who names it
            score += 6
            why.append(f"resource {min(own[idx])}")
            firm = "resource"
        elif kids.get(idx):
            score += 2
            why.append(f"resource {min(kids[idx])}, as its other children")
        if lookup and idx not in activity.looked_up:
            score += 1
            why.append("its first token lookup")
        shared = [t for t in cand.tokens if t in mine]
        if shared:
            score += 4
            why.append(f"token {shared[0]}")
            firm = firm or "token"
        if sent.intersection(handled):
            score += 2
            why.append("request id")
            firm = firm or "request id"
        if pid is not None and cand.server.pid == pid:
            score += 1
            why.append(describe_worker(pid))
        elif pid is not None and activity.pids.get(idx):  # one process serves a request: its children's
            if pid in activity.pids[idx]:
                score += 1
                why.append(f"{describe_worker(pid)}, as its other children")
            else:
                score -= 1
        if score > best_score:
            best, best_score, best_why, best_firm = cand, score, ", ".join(why), firm
    assert best is not None
    return best.id, (best_why + f" (of {len(found)} requests in progress)") if best_why else (
        f"time: the last active of {len(found)} requests in progress"), best_firm


def _steps(pairs: list[Pair], group: bool) -> list[Step]:
    """The steps of ``pairs`` in tree order; a pair whose parent is not among them (background
    left out) starts a tree of its own."""
    children: dict[int | None, list[Pair]] = defaultdict(list)
    present = {p.id for p in pairs}
    for p in pairs:
        children[p.parent if p.parent in present else None].append(p)
    steps: list[Step] = []

    def groupable(p: Pair) -> bool:
        if not group or p.id in children:
            return False
        module = protocols.of(p.exchange)
        return module.groups and module.groupable(p.exchange)

    def walk(parent: int | None, depth: int) -> None:
        sibs = children.get(parent, [])
        i = 0
        while i < len(sibs):
            p = sibs[i]
            j = i + 1
            if groupable(p):
                key = (p.client.label, p.server.label, p.protocol)
                while (j < len(sibs) and groupable(sibs[j])
                       and (sibs[j].client.label, sibs[j].server.label, sibs[j].protocol) == key):
                    j += 1
            run = sibs[i:j]
            if len(run) > 1:
                steps.append(Step(tuple(run), depth, _group_summary(run), group_result(run)))
            else:
                steps.append(Step((p,), depth))
                walk(p.id, depth + 1)
            i = j

    walk(None, 0)
    return steps


def _group_summary(run: list[Pair]) -> str:
    """``47 queries (project, user, …) + 65 pool pings/rollbacks on 2 connections, 290 ms``: the
    parts are the protocol's (:meth:`~osflow.protocols.base.ProtocolModule.group_summary`)."""
    streams = {p.exchange.stream for p in run}
    ms = (max(p.exchange.end for p in run) - min(p.exchange.start for p in run)) * 1000
    parts = protocols.of(run[0].exchange).group_summary(run)
    conns = "1 connection" if len(streams) == 1 else f"{len(streams)} connections"
    return f"{' + '.join(parts)} on {conns}, {ms:.0f} ms"


def group_result(run: list[Pair]) -> str:
    """What a group of pairs got back: ``OK ×72, 40 result sets (61 rows)``."""
    ok = rowsets = rows = 0
    other: Counter = Counter()
    for p in run:
        counted = protocols.of(p.exchange).group_result(p.exchange)
        if counted is not None and counted[0] == "rows":
            rowsets += 1
            rows += counted[1]
        elif counted is not None and counted[0] == "ok":
            ok += 1
        else:
            other[p.response or "no response"] += 1
    parts = []
    if ok:
        parts.append(f"OK ×{ok}")
    if rowsets:
        parts.append(f"{rowsets} result set{'s' if rowsets != 1 else ''} ({rows} row{'s' if rows != 1 else ''})")
    parts += [f"{k} ×{n}" for k, n in sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))]
    return ", ".join(parts)

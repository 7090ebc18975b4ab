"""Aggregate stage: messages -> request/response pairs -> a flow with nesting and grouping.

Two steps around the join stage:

* :func:`pair_messages` matches each request with its response on its
  connection (HTTP, one MySQL command and its reply, one memcached command and
  its reply; a MySQL login is one pair; a MySQL quit is answered by the close).
* :func:`build_flow` takes the named connections and builds the :class:`Flow`:
  pair texts (secrets hidden), tokens T1, T2, ..., each pair's parent (the
  innermost pair whose server is this pair's client and whose time span contains
  it) and the steps the renderers draw (runs of similar childless siblings
  collapse into one step).
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from typing import Iterable, Optional

from . import tokens as tok
from .decode import header
from .openstack import TOKEN_HEADERS, tables_in
from .model import (
    Closed,
    ConnectionNames,
    Exchange,
    Flow,
    HttpRequest,
    HttpResponse,
    MemcacheCommand,
    MemcacheReply,
    Message,
    MysqlCommand,
    MysqlGreeting,
    MysqlLogin,
    MysqlReply,
    Pair,
    Step,
    Token,
)


# --------------------------------------------------------------------------- pairing


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


# --------------------------------------------------------------------------- texts


def is_pool_noise(ex: Exchange) -> bool:
    """Connection-pool chatter: pings, ``SELECT 1``, ROLLBACK, COMMIT, SET ...

    >>> from osflow.model import Address
    >>> a = Address("127.0.0.1", 1); b = Address("127.0.0.1", 3306)
    >>> cmd = lambda t: MysqlCommand(protocol="mysql", stream=0, src=a, dst=b, start=0, end=0, frames=(1,),
    ...                              is_request=True, command="query", text=t)
    >>> [is_pool_noise(Exchange("mysql", 0, a, b, cmd(t), None)) for t in ("SELECT 1", "rollback", "SET NAMES utf8", "SELECT x FROM user")]
    [True, True, True, False]
    """
    req = ex.request
    if not isinstance(req, MysqlCommand):
        return False
    if req.command == "ping":
        return True
    text = " ".join((req.text or "").split()).rstrip(";").upper()
    return text in ("SELECT 1", "ROLLBACK", "COMMIT", "BEGIN", "START TRANSACTION") or text.startswith("SET ")


class _Texts:
    """Request/response texts with tokens replaced by their numbers (unless show_secrets)."""

    def __init__(self, registry: tok.TokenRegistry, show_secrets: bool) -> None:
        self.reg = registry
        self.show = show_secrets

    def token_ref(self, raw: str) -> str:
        t = self.reg.see_token(raw)
        return f"{t.id}={raw}" if self.show else t.id

    def key_text(self, key: str) -> tuple[str, str, Optional[Token]]:
        """(plain, rich, token) for a memcached key."""
        if not tok.is_token_key(key):
            return key, key, None
        t = self.reg.see_cache_key(key)
        if t is None:
            shown = key if self.show else "tokens/<HMAC key: cannot be linked to a token>"
            return shown, shown, None
        if self.show:
            return key, f"{key} [{t.id}]", t
        return f"tokens/{t.fingerprint}…", f"tokens/… [{t.id}]", t

    def exchange(self, ex: Exchange) -> tuple[str, Optional[str], str, str, list[str], list[str]]:
        """(request, response, message, result, token ids, notes)."""
        req, resp = ex.request, ex.response
        ids: list[str] = []
        notes: list[str] = []
        if isinstance(req, HttpRequest):
            plain = f"{req.method} {req.uri}"
            rich = plain
            if req.auth is not None:
                rich += f" ({_auth_text(req.auth, self)})"
            subject = header(req.headers, "X-Subject-Token")
            if subject and req.uri.split("?")[0].rstrip("/").endswith("/auth/tokens") and req.method in ("GET", "HEAD"):
                sid = self.token_ref(subject)
                ids.append(sid.split("=")[0])
                rich += f" (validate {sid})"
            refs = []
            auth_tok = header(req.headers, "X-Auth-Token")
            if auth_tok:
                r = self.token_ref(auth_tok)
                ids.append(r.split("=")[0])
                refs.append(r)
            service_tok = header(req.headers, "X-Service-Token")
            if service_tok:
                r = self.token_ref(service_tok)
                ids.append(r.split("=")[0])
                refs.append(f"service {r}")
            if refs:
                rich += f" [{', '.join(refs)}]"
            version = header(req.headers, "OpenStack-API-Version")
            if version:
                rich += f" (microversion {version.split()[-1]})"
            response = None
            result = ""
            if isinstance(resp, HttpResponse):
                response = f"{resp.status} {resp.reason}".strip()
                result = response
                issued = header(resp.headers, "X-Subject-Token")
                if issued:
                    owner = _owner(resp.token) if resp.token else None
                    t = self.reg.see_token(issued, owner)
                    ids.append(t.id)
                    shown = f"{t.id}={issued}" if self.show else t.id
                    if req.method == "POST":
                        result += f", token {shown}"
                        notes.append(f"{t.describe()}")
                    else:
                        result += f", {shown} valid" + (f" ({t.owner})" if t.owner else "")
            return plain, response, rich, result, _unique(ids), notes
        if isinstance(req, MemcacheCommand):
            plains, richs = [], []
            for k in req.keys:
                p, r, t = self.key_text(k)
                plains.append(p)
                richs.append(r)
                if t is not None:
                    ids.append(t.id)
            plain = " ".join([req.command, *plains])
            rich = " ".join([req.command, *richs])
            response = resp.result if isinstance(resp, MemcacheReply) else None
            if response in ("hit", "miss") and ids:
                notes.append(f"cache {response} for {', '.join(_unique(ids))}")
            elif response in ("hit", "miss"):
                notes.append(f"cache {response}")
            return plain, response, rich, response or "", _unique(ids), notes
        if isinstance(req, MysqlLogin):
            plain = f"login {req.user or '?'}@{req.schema or '-'}"
            response = _mysql_response(resp)
            return plain, response, plain, response or "", [], notes
        if isinstance(req, MysqlCommand):
            if req.command == "query":
                plain = " ".join((req.text or "").split())
                if not self.show:
                    plain = tok.hide_sql_secrets(plain)
            else:
                plain = req.command + (f" {req.text}" if req.text else "")
            response = _mysql_response(resp)
            return plain, response, plain, response or "", [], notes
        return req.protocol, None, req.protocol, "", [], notes


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _owner(info) -> Optional[str]:
    if info is None or not info.user:
        return None
    if info.project:
        return f"{info.user}@{info.project}"
    if info.domain:
        return f"{info.user}@domain:{info.domain}"
    return info.user


def _auth_text(auth, texts: _Texts) -> str:
    who = ""
    if auth.user:
        who = auth.user + (f"@{auth.user_domain}" if auth.user_domain else "")
    head = " ".join(x for x in ("+".join(auth.methods) or "?", who) if x)
    if auth.project:
        return f"{head} → project {auth.project}"
    if auth.domain:
        return f"{head} → domain {auth.domain}"
    if auth.system:
        return f"{head} → system"
    return f"{head}, unscoped"


def _mysql_response(resp: Optional[Message]) -> Optional[str]:
    if isinstance(resp, Closed):
        return "closed"
    if not isinstance(resp, MysqlReply):
        return None
    if resp.kind == "error":
        return f"ERR {resp.error_code} {resp.error_message or ''}".strip()
    if resp.kind == "rows":
        text = "1 row" if resp.rows == 1 else f"{resp.rows} rows"
        return text if resp.complete else text + " (incomplete)"
    if resp.kind == "eof":
        return "EOF"
    return "OK"


# --------------------------------------------------------------------------- flow


def build_flow(
    exchanges: list[Exchange],
    names: dict[int, ConnectionNames],
    *,
    group: bool = True,
    show_secrets: bool = False,
    origin: Optional[float] = None,
    warnings: tuple[str, ...] = (),
) -> Flow:
    registry = tok.TokenRegistry()
    texts = _Texts(registry, show_secrets)
    # tokens are numbered in order of appearance: walk messages in frame order first
    events = []
    for ex in exchanges:
        events.append((ex.request.frames[0], 0, ex))
        if ex.response is not None:
            events.append((ex.response.frames[-1], 1, ex))
    for _, which, ex in sorted(events, key=lambda e: (e[0], e[1])):
        _register_tokens(registry, ex, which)

    pairs: list[Pair] = []
    by_server: dict[str, list[int]] = defaultdict(list)  # label -> indexes of pairs served
    for i, ex in enumerate(exchanges):
        cn = names[ex.stream]
        request, response, message, result, ids, notes = texts.exchange(ex)
        parent = _parent(pairs, by_server.get(cn.client.label, ()), ex)
        depth = 0 if parent is None else pairs[parent - 1].depth + 1
        pairs.append(
            Pair(
                id=i + 1,
                parent=parent,
                exchange=ex,
                client=cn.client,
                server=cn.server,
                request=request,
                response=response,
                message=message,
                result=result,
                notes=tuple(notes),
                tokens=tuple(ids),
                noise=is_pool_noise(ex),
                depth=depth,
            )
        )
        by_server[cn.server.label].append(i)
    steps = _steps(pairs, group)
    if origin is None:
        origin = min((ex.start for ex in exchanges), default=0.0)
    return Flow(
        pairs=tuple(pairs),
        steps=tuple(steps),
        tokens=registry.all(),
        connections=tuple(names[s] for s in sorted(names)),
        origin=origin,
        warnings=warnings,
        show_secrets=show_secrets,
    )


def _register_tokens(reg: tok.TokenRegistry, ex: Exchange, which: int) -> None:
    msg = ex.request if which == 0 else ex.response
    if isinstance(msg, HttpRequest):
        for name in TOKEN_HEADERS:
            v = header(msg.headers, name)
            if v:
                reg.see_token(v)
    elif isinstance(msg, HttpResponse):
        v = header(msg.headers, "X-Subject-Token")
        if v:
            reg.see_token(v, _owner(msg.token))
    elif isinstance(msg, MemcacheCommand):
        for k in msg.keys:
            reg.see_cache_key(k)


def _parent(pairs: list[Pair], candidates, ex: Exchange) -> Optional[int]:
    """The innermost (latest-starting) pair served to this client that contains ``ex``."""
    start, end = ex.start, ex.end
    n = 0
    for idx in reversed(candidates):
        cand = pairs[idx]
        if cand.exchange.start <= start and cand.exchange.end >= end:
            return cand.id
        n += 1
        if n > 5000:
            break
    return None


def _steps(pairs: list[Pair], group: bool) -> list[Step]:
    children: dict[Optional[int], list[Pair]] = defaultdict(list)
    for p in pairs:
        children[p.parent].append(p)
    steps: list[Step] = []

    def groupable(p: Pair) -> bool:
        return (
            group
            and p.id not in children
            and p.protocol in ("mysql", "memcache")
            and not isinstance(p.exchange.request, MysqlLogin)
        )

    def walk(parent: Optional[int], depth: int) -> None:
        sibs = children.get(parent, [])
        i = 0
        while i < len(sibs):
            p = sibs[i]
            j = i + 1
            if groupable(p):
                key = (p.client.label, p.server.label, p.protocol)
                while j < len(sibs) and groupable(sibs[j]) and (sibs[j].client.label, sibs[j].server.label, sibs[j].protocol) == key:
                    j += 1
            run = sibs[i:j]
            if len(run) > 1:
                steps.append(Step(tuple(run), depth, _group_summary(run)))
            else:
                steps.append(Step((p,), depth))
                walk(p.id, depth + 1)
            i = j

    walk(None, 0)
    return steps


def _group_summary(run: list[Pair]) -> str:
    """``47 queries (project, user, …) + 65 pool pings/rollbacks on 2 connections, 290 ms``."""
    noise = [p for p in run if p.noise]
    real = [p for p in run if not p.noise]
    streams = {p.exchange.stream for p in run}
    ms = (max(p.exchange.end for p in run) - min(p.exchange.start for p in run)) * 1000
    parts = []
    if run[0].protocol == "mysql":
        if real:
            tables: Counter = Counter()
            order: dict[str, None] = {}
            for p in real:
                for t in tables_in(p.exchange.request.text if isinstance(p.exchange.request, MysqlCommand) else None):
                    tables[t] += 1
                    order.setdefault(t, None)
            names = sorted(order, key=lambda t: -tables[t])  # stable: most used first, then first seen
            shown = ", ".join(names[:4]) + (", …" if len(names) > 4 else "")
            word = "query" if len(real) == 1 else "queries"
            parts.append(f"{len(real)} {word}" + (f" ({shown})" if shown else ""))
        if noise:
            parts.append(f"{len(noise)} pool pings/rollbacks")
    else:
        cmds = Counter(p.exchange.request.command for p in run if isinstance(p.exchange.request, MemcacheCommand))
        detail = ", ".join(f"{c} ×{n}" for c, n in sorted(cmds.items(), key=lambda kv: (-kv[1], kv[0])))
        parts.append(f"{len(run)} commands ({detail})")
    conns = "1 connection" if len(streams) == 1 else f"{len(streams)} connections"
    return f"{' + '.join(parts)} on {conns}, {ms:.0f} ms"


def group_result(run: tuple[Pair, ...]) -> str:
    """What a group of pairs got back: ``OK ×72, 40 result sets (61 rows)``."""
    ok = rowsets = rows = 0
    other: Counter = Counter()
    for p in run:
        resp = p.exchange.response
        if isinstance(resp, MysqlReply) and resp.kind == "rows":
            rowsets += 1
            rows += resp.rows
        elif isinstance(resp, MysqlReply) and resp.kind == "ok":
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

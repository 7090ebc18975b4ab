"""What a pair says, in words: its request and response texts, with secrets hidden.

Part of the flow stage (:mod:`osflow.flow` calls it for every exchange).  Each
exchange gets a :class:`PairText`: the plain request and response (JSON's
``request``/``response``), the richer ``message``/``result`` the timeline and the
diagram show (keystone auth scope, validated token, microversion, cache keys),
the token ids it mentions and its notes (``T1 admin@admin (bb9ff2e7)``, ``cache
miss for T1``).  Tokens appear as ``T1``, ``T2``, … — in full only when the user
asked (``--show-secrets``, then ``T1=<token>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import tokens as tok
from .decode import header
from .model import (
    AmqpMessage,
    Closed,
    Exchange,
    HttpRequest,
    HttpResponse,
    KeystoneAuth,
    MemcacheCommand,
    MemcacheReply,
    Message,
    MysqlCommand,
    MysqlLogin,
    MysqlReply,
    RpcExchange,
    Token,
    TokenInfo,
)


@dataclass(frozen=True)
class PairText:
    """The words of one pair (secrets already hidden unless asked for)."""

    request: str  # plain request text (JSON "request")
    response: str | None  # plain response text (JSON "response"), None when none was seen
    message: str  # richer request text (timeline, diagram)
    result: str  # richer response text ("" when none was seen)
    tokens: tuple[str, ...] = ()  # token ids mentioned, in order, once each
    notes: tuple[str, ...] = ()


class Prose:
    """Texts for exchanges; tokens are numbered by the flow's :class:`~osflow.tokens.TokenRegistry`."""

    def __init__(self, registry: tok.TokenRegistry, show_secrets: bool) -> None:
        self.reg = registry
        self.show = show_secrets

    def text(self, ex: Exchange) -> PairText:
        req = ex.request
        if isinstance(ex, RpcExchange):
            return self._rpc(ex)
        if isinstance(req, HttpRequest):
            return self._http(req, ex.response)
        if isinstance(req, MemcacheCommand):
            return self._memcache(req, ex.response)
        if isinstance(req, MysqlLogin):
            plain = f"login {req.user or '?'}@{req.schema or '-'}"
            if req.tls:
                plain = "TLS session (login and queries encrypted)"
            response = mysql_response(ex.response)
            return PairText(plain, response, plain, response or "")
        if isinstance(req, MysqlCommand):
            if req.command == "query" and req.text is None:
                plain = "query (text not read)"  # tshark 4.0 loses it after typed query attributes (MySQL 8.1+)
            elif req.command == "query":
                plain = " ".join((req.text or "").split())
                if not self.show:
                    plain = tok.hide_sql_secrets(plain)
            else:
                plain = req.command + (f" {req.text}" if req.text else "")
            response = mysql_response(ex.response)
            return PairText(plain, response, plain, response or "")
        return PairText(req.protocol, None, req.protocol, "")

    # ------------------------------------------------------------------ tokens

    def _shown(self, t: Token, raw: str) -> str:
        return f"{t.id}={raw}" if self.show else t.id

    def _key(self, key: str) -> tuple[str, str, Token | None]:
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

    # ------------------------------------------------------------------ protocols

    def _http(self, req: HttpRequest, resp: Message | None) -> PairText:
        ids: list[str] = []
        notes: list[str] = []
        plain = f"{req.method} {req.uri}"
        rich = plain
        if req.auth is not None:
            rich += f" ({auth_text(req.auth)})"
        subject = header(req.headers, "X-Subject-Token")
        if subject and req.uri.split("?")[0].rstrip("/").endswith("/auth/tokens") and req.method in ("GET", "HEAD"):
            t = self.reg.see_token(subject)
            ids.append(t.id)
            rich += f" (validate {self._shown(t, subject)})"
        refs = []
        for name, prefix in (("X-Auth-Token", ""), ("X-Storage-Token", ""), ("X-Service-Token", "service ")):
            raw = header(req.headers, name)
            if raw:
                t = self.reg.see_token(raw)
                ids.append(t.id)
                refs.append(prefix + self._shown(t, raw))
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
                t = self.reg.see_token(issued, token_owner(resp.token))
                ids.append(t.id)
                if req.method == "POST":
                    result += f", token {self._shown(t, issued)}"
                    notes.append(t.describe())
                else:
                    result += f", {self._shown(t, issued)} valid" + (f" ({t.owner})" if t.owner else "")
        return PairText(plain, response, rich, result, _unique(ids), tuple(notes))

    def _memcache(self, req: MemcacheCommand, resp: Message | None) -> PairText:
        ids: list[str] = []
        plains, richs = [], []
        for k in req.keys:
            p, r, t = self._key(k)
            plains.append(p)
            richs.append(r)
            if t is not None:
                ids.append(t.id)
        response = resp.result if isinstance(resp, MemcacheReply) else ("noreply" if req.noreply else None)
        if isinstance(resp, Closed):
            response = "closed"
        elif isinstance(resp, MemcacheReply) and resp.result == "hit" and len(req.keys) > 1:
            response = f"hit ({len(resp.keys)} of {len(req.keys)} keys)"
        notes: tuple[str, ...] = ()
        if isinstance(resp, MemcacheReply) and resp.result in ("hit", "miss"):
            notes = (f"cache {resp.result}" + (f" for {', '.join(_unique(ids))}" if ids else ""),)
        binary = ("(binary protocol)",) if req.binary else ()
        return PairText(
            " ".join([req.command, *plains, *binary]), response, " ".join([req.command, *richs, *binary]),
            response or "", _unique(ids), notes,
        )  # fmt: skip


    def _rpc(self, ex: RpcExchange) -> PairText:
        o = ex.oslo
        plain = f"{ex.kind} {o.method or '?'}" + (f" ({o.object_method})" if o.object_method else "")
        ids: list[str] = []
        rich = plain
        if o.token:
            t = self.reg.see_token(o.token)
            ids.append(t.id)
            rich += f" [{self._shown(t, o.token)}]"
        notes: list[str] = []
        if ex.request.compression:  # type: ignore[attr-defined]
            notes.append(f"compressed body ({ex.request.compression})")  # type: ignore[attr-defined]
        pub = ex.request
        other = isinstance(pub, AmqpMessage) and pub.oslo is None and not pub.compression
        if isinstance(pub, AmqpMessage) and other:  # another client's message (Celery, ...): where it went
            plain = rich = " ".join(x for x in ("publish", pub.exchange or "(default exchange)", pub.routing_key) if x)
        elif ex.request.oslo is None:  # type: ignore[attr-defined]
            plain = rich = f"{ex.kind} ({ex.request.undecoded or 'body not read'})"  # type: ignore[attr-defined]
        if ex.delivery is None:
            notes.append("delivered to no consumer")
        response: str | None
        if other and ex.delivery is not None:
            response = f"delivered in {(ex.delivery.end - ex.request.start) * 1000:.1f} ms"
        elif ex.kind != "call":
            response = ""
        elif ex.response is None:
            response = None
        else:
            r = ex.response.oslo  # type: ignore[attr-defined]
            if r is None:
                response = f"reply ({ex.response.undecoded or 'body not read'})"  # type: ignore[attr-defined]
            elif r.failure:
                response = f"failure {r.failure}"
                if r.failure_message:
                    notes.append(f"{r.failure}: {r.failure_message}")
            else:
                response = f"result {r.result}"
            if ex.keepalives:
                notes.append(f"{ex.keepalives} keep-alive replies before it")
        return PairText(plain, response, rich, response or "", _unique(ids), tuple(notes))


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def token_owner(info: TokenInfo | None) -> str | None:
    """``user@project`` (or ``user@domain:D``, or the user) of a token keystone described."""
    if info is None or not info.user:
        return None
    if info.project:
        return f"{info.user}@{info.project}"
    if info.domain:
        return f"{info.user}@domain:{info.domain}"
    return info.user


def auth_text(auth: KeystoneAuth) -> str:
    """What a token request asks for: ``password admin@Default → project admin``.

    >>> auth_text(KeystoneAuth(methods=("password",), user="admin", user_domain="Default", project="admin"))
    'password admin@Default → project admin'
    >>> auth_text(KeystoneAuth(methods=("token",), unscoped=True))
    'token, unscoped'
    """
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


def mysql_response(resp: Message | None) -> str | None:
    """A MySQL reply in words: ``OK``, ``3 rows``, ``ERR 1045 Access denied…``, ``closed``."""
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
    if resp.kind == "text":
        return " ".join((resp.text or "").split())
    return "OK"

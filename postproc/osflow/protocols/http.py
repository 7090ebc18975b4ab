"""HTTP (every OpenStack API), every stage's part of it.

Decode: a request line and its headers (what a keystone ``POST /v3/auth/tokens`` body asks
for, never its password), a status line and its headers (whose token keystone issued or
validated).  Pair: by ``http.request_in``, else in order.  Join: the User-Agent names the
client; the requests a service answers are what it was "serving at that moment".  Words:
tokens as T1, T2 …, the auth scope, the microversion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from ..model import Exchange, HttpRequest, HttpResponse, KeystoneAuth, Layer, Message, Packet, TokenInfo
from ..openstack import AUDIT_ID, TOKEN_HEADERS, audit_id, catalog_endpoints, resource_ids, service_of_user_agent
from ..redact import url_template
from .base import Common, Failure, LayerDecoder, PairText, ProtocolModule, Vote, Words, fields_of, to_int, unescape

#: The fields osflow reads (the JSON tree is skipped: ``http.file_data`` carries the body).
HTTP_FIELDS = (
    "http.request.method", "http.request.uri", "http.request.version", "http.user_agent", "http.request.line",
    "http.response.code", "http.response.phrase", "http.response.line", "http.request_in", "http.file_data",
    "http.content_type",
)
_HTTP_FIELDS = frozenset(HTTP_FIELDS)


def header_lines(lines: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Split ``http.request.line`` values into (name, value) pairs.

    >>> header_lines(['Host: controller:5000 ', 'X-Auth-Token: gAAA\\\\r\\\\n', 'junk'])
    (('Host', 'controller:5000'), ('X-Auth-Token', 'gAAA'))
    """
    out = []
    for line in lines:
        line = line.replace("\\r\\n", "").strip()
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            out.append((name.strip(), value.strip()))
    return tuple(out)


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """The first header called ``name`` (case-insensitive)."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def keystone_auth(body: str | None) -> KeystoneAuth | None:
    """What a ``POST /v3/auth/tokens`` body asks for; the password is never kept.

    >>> a = keystone_auth('{"auth": {"identity": {"methods": ["password"], "password": {"user": '
    ...                   '{"password": "s3cret", "name": "admin", "domain": {"name": "Default"}}}}, '
    ...                   '"scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}')
    >>> (a.methods, a.user, a.user_domain, a.project)
    (('password',), 'admin', 'Default', 'admin')
    >>> "s3cret" in repr(a)
    False
    >>> keystone_auth('not json') is None
    True
    """
    doc = _json(body)
    auth = doc.get("auth") if isinstance(doc, dict) else None
    if not isinstance(auth, dict):
        return None
    identity = auth["identity"] if isinstance(auth.get("identity"), dict) else {}
    methods = tuple(str(m) for m in identity.get("methods") or () if isinstance(m, str))
    user = user_domain = None
    for method in methods:
        part = identity.get(method)
        if isinstance(part, dict) and isinstance(part.get("user"), dict):
            u = part["user"]
            user = _name(u)
            user_domain = _name(u.get("domain"))
            break
    scope = auth.get("scope")
    project = project_domain = domain = None
    system = unscoped = False
    if isinstance(scope, dict):
        if isinstance(scope.get("project"), dict):
            project = _name(scope["project"])
            project_domain = _name(scope["project"].get("domain"))
        elif isinstance(scope.get("domain"), dict):
            domain = _name(scope["domain"])
        elif "system" in scope:
            system = True
    elif scope == "unscoped" or scope is None:
        unscoped = True
    return KeystoneAuth(
        methods=methods,
        user=user,
        user_domain=user_domain,
        project=project,
        project_domain=project_domain,
        domain=domain,
        system=system,
        unscoped=unscoped,
    )


def token_info(body: str | None) -> TokenInfo | None:
    """Who the token in a keystone token response belongs to."""
    doc = _json(body)
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, dict):
        return None
    user = token["user"] if isinstance(token.get("user"), dict) else {}
    return TokenInfo(
        user=_name(user),
        user_domain=_name(user.get("domain")),
        project=_name(token.get("project")),
        domain=_name(token.get("domain")),
        expires=token.get("expires_at") if isinstance(token.get("expires_at"), str) else None,
        catalog=catalog_endpoints(token.get("catalog")),
        audit_ids=tuple(audit_id(a) for a in token.get("audit_ids") or ()
                        if isinstance(a, str) and AUDIT_ID.fullmatch(a)),
    )


def _json(text: str | None):
    if not text or text[:1] not in "{[":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _name(obj) -> str | None:
    if isinstance(obj, dict):
        v = obj.get("name") or obj.get("id")
        return str(v) if v is not None else None
    return None


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


class HttpDecoder(LayerDecoder):
    def layer(self, p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Iterator[Message]:
        m = _http(p, layer, frames, start)
        if m is not None:
            yield m


def _http(p: Packet, layer: Layer, frames: tuple[int, ...], start: float) -> Message | None:
    common = Common(protocol="http", stream=p.stream, src=p.src, dst=p.dst, start=start, end=p.time, frames=frames)
    method = layer.get("http.request.method")
    if method is not None:
        headers = header_lines(layer.all("http.request.line"))
        uri = layer.get("http.request.uri") or ""
        body = layer.get("http.file_data")
        auth = None
        if method == "POST" and uri.split("?")[0].rstrip("/").endswith("/auth/tokens"):
            auth = keystone_auth(body)
        return HttpRequest(
            **common,
            is_request=True,
            method=method,
            uri=uri,
            user_agent=layer.get("http.user_agent"),
            headers=headers,
            auth=auth,
            content_type=layer.get("http.content_type"),
        )
    code = layer.get("http.response.code")
    if code is not None and code[:1] == "1" and code != "101":
        return None  # an interim response (100 Continue): the final one answers the request
    if code is not None:
        headers = header_lines(layer.all("http.response.line"))
        token = None
        if header(headers, "X-Subject-Token") is not None:
            token = token_info(layer.get("http.file_data"))
        return HttpResponse(
            **common,
            is_request=False,
            status=to_int(code, 0) or 0,
            reason=layer.get("http.response.phrase") or "",
            headers=headers,
            request_in=to_int(layer.get("http.request_in")),
            token=token,
        )
    return None


def _keep(name: str) -> bool:
    return name in _HTTP_FIELDS


def _validates(req: HttpRequest) -> bool:
    return req.uri.split("?")[0].rstrip("/").endswith("/auth/tokens") and req.method in ("GET", "HEAD")


class Http(ProtocolModule):
    name = "http"
    pdml_protos = ("http",)
    tshark_fields = HTTP_FIELDS

    def pdml_layer(self, proto, frame):
        return Layer("http", fields_of(proto, _keep))

    def fields_layers(self, row):
        if not (row.get("http.request.method") or row.get("http.response.code")):
            return []
        return [Layer("http", tuple((n, unescape(v)) for n in HTTP_FIELDS for v in row.values(n)))]

    def decoder(self):
        return HttpDecoder()

    def response_for(self, queue, resp):
        if isinstance(resp, HttpResponse) and resp.request_in is not None:
            for req in queue:
                if resp.request_in in req.frames:
                    return req
        return None

    def votes(self, ex):
        req = ex.request
        if isinstance(req, HttpRequest):
            key = service_of_user_agent(req.user_agent)
            if key:
                yield Vote(key, 50, f"User-Agent '{(req.user_agent or '')[:60]}'")

    def identifiers(self, ex):
        """The resource UUIDs of its path, and the audit ids of the token a keystone response
        describes (what keystone's SQL checking that token names)."""
        ids = resource_ids(ex.request.uri) if isinstance(ex.request, HttpRequest) else ()
        resp = ex.response
        if isinstance(resp, HttpResponse) and resp.token is not None and resp.token.audit_ids:
            ids += resp.token.audit_ids
        return ids

    def serving(self, ex):
        req = ex.request
        return f"{req.method} {req.uri.split('?')[0]}" if isinstance(req, HttpRequest) else None

    def tokens(self, m, reg):
        if isinstance(m, HttpRequest):
            for name in TOKEN_HEADERS:
                v = header(m.headers, name)
                if v:
                    reg.see_token(v)
        elif isinstance(m, HttpResponse):
            v = header(m.headers, "X-Subject-Token")
            if v:
                reg.see_token(v, token_owner(m.token))

    def text(self, ex, words: Words) -> PairText:
        req, resp = ex.request, ex.response
        if not isinstance(req, HttpRequest):
            return super().text(ex, words)
        ids: list[str] = []
        notes: list[str] = []
        plain = f"{req.method} {req.uri}"
        rich = plain
        if req.auth is not None:
            rich += f" ({auth_text(req.auth)})"
        subject = header(req.headers, "X-Subject-Token")
        if subject and _validates(req):
            t = words.reg.see_token(subject)
            ids.append(t.id)
            rich += f" (validate {words.shown(t, subject)})"
        refs = []
        for name, prefix in (("X-Auth-Token", ""), ("X-Storage-Token", ""), ("X-Service-Token", "service ")):
            raw = header(req.headers, name)
            if raw:
                t = words.reg.see_token(raw)
                ids.append(t.id)
                refs.append(prefix + words.shown(t, raw))
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
                t = words.reg.see_token(issued, token_owner(resp.token))
                ids.append(t.id)
                if req.method == "POST":
                    result += f", token {words.shown(t, issued)}"
                    notes.append(t.describe())
                else:
                    result += f", {words.shown(t, issued)} valid" + (f" ({t.owner})" if t.owner else "")
        return PairText(plain, response, rich, result, tuple(dict.fromkeys(ids)), tuple(notes))

    def operation(self, ex: Exchange) -> str | None:
        return ex.request.method if isinstance(ex.request, HttpRequest) else None

    def failure(self, ex, response) -> Failure:
        r = ex.response
        if isinstance(r, HttpResponse):
            return "error" if r.status >= 500 else "client" if r.status >= 400 else ""
        return ""

    def badge(self, ex):
        r = ex.response
        return str(r.status) if isinstance(r, HttpResponse) else "failure"

    def endpoint(self, pair):
        req = pair.exchange.request
        if isinstance(req, HttpRequest):
            return f"{req.method} {url_template(req.uri.split('?')[0])}"
        return super().endpoint(pair)


HTTP = Http()

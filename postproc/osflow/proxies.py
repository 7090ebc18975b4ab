"""Proxy stage, between pair and join: a request through a proxy is one exchange, not two.

HAProxy on a virtual IP (every deployment tool puts it in front of the APIs and the database),
nginx or Apache's ``ProxyPass`` in front of a service: the capture holds the client's leg to the
proxy and the proxy's leg to the service, two exchanges carrying the same request.  This stage
finds them and stitches each chain of legs into one :class:`~osflow.model.ProxiedExchange`
(client -> service, through the proxies in order); ``--show-proxies`` keeps the legs apart.

How legs are matched (:class:`Stitcher`), on what the capture shows alone:

* a leg *back* carries the request of a leg *front* when both say the same (HTTP: the request
  line, and the answer's status; X-Forwarded-For, when the back leg has one, names the front
  leg's client; any other protocol, a proxy in TCP mode: the same message both ways, field for
  field, as the same bytes decode), to another server, and within its time (it starts after the
  front leg's request started and is answered before the front leg is);
* in TCP mode one back connection carries one front connection: once two connections are
  matched, their later exchanges are matched only with each other;
* of several fronts that fit, the earliest still unmatched (a proxy forwards in order).

A proxy in HTTP mode may reuse one back connection for the requests of several clients
(HAProxy's ``http-reuse``) and keep both sides alive: matching is per request, not per
connection.  The proxy's own requests (health checks: an HTTP request without User-Agent,
HAProxy's ``option mysql-check`` login) to a server its legs reach, from the address its legs
come from, are noted as the proxy's, so that the join names their client as the proxy.

The proxy's name (:attr:`Stitcher.ends`, read by :mod:`osflow.join`): the socket tables' process
when they know it, else the evidence -- ``nginx`` when the front answer's ``Server`` says so and
the back answer's does not, ``apache`` when the back request has mod_proxy's
``X-Forwarded-Server``, else ``haproxy``.

One web server in front of several services by path (devstack's Apache on port 80: ``/identity``
to keystone's uwsgi, ``/compute`` to nova-api's, each over a unix socket): the hop behind it is never
on the wire.  A request whose endpoint (``--endpoint URL=SERVICE``, the keystone catalog a token
response in the capture carries, devstack's prefixes: :data:`osflow.openstack.ENDPOINT_PREFIXES`)
names a service, sent to a port of no service of the port map (or to any port, for ``--endpoint``),
gets a leg the capture does not show, from the web server to that service: an exchange on a
connection of its own, numbered below zero (one per web server and service, :attr:`Stitcher.routes`
says whose), so that the request is drawn to the service ``via`` the web server as through HAProxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from . import portmap
from .model import Address, Exchange, HttpRequest, HttpResponse, Message, ProxiedExchange, ProxyLeg, RpcExchange
from .openstack import ENDPOINT_PREFIXES, Endpoint, parse_endpoint

__all__ = ["ProxyEnd", "Stitcher", "streams_of"]

#: Where an endpoint comes from, as the evidence says it: devstack's prefixes, a token's catalog, the
#: command line.
DEVSTACK = "devstack's path prefix"
CATALOG = "the keystone catalog"
GIVEN = "--endpoint"

#: How much one leg may seem to start before, or end after, the leg it is a hop of (seconds): the
#: capture's own jitter, and what is left of two hosts' clock offset once aligned.
SLACK = 0.002

#: How long the leg given out for a front is remembered after the front ended (seconds): its back
#: legs, in a later part of a streamed flow, point at it.
_REMEMBER = 60.0

#: The fields every message has: what a TCP-mode fingerprint leaves out.
_BASE = {f.name for f in fields(Message)}


@dataclass(frozen=True)
class ProxyEnd:
    """One connection end that is a proxy: its name as the evidence says and why."""

    name: str
    evidence: str


def streams_of(ex: Exchange) -> tuple[int, ...]:
    """The connections an exchange crossed: its own, an RPC's callee's, every leg of a proxied one."""
    if isinstance(ex, ProxiedExchange):
        return tuple(leg.stream for leg in ex.legs)
    server = getattr(ex, "server_stream", None)
    return (ex.stream,) if server is None else (ex.stream, server)


def _header(m: Message | None, name: str) -> str | None:
    for k, v in getattr(m, "headers", ()):
        if k.lower() == name:
            return v
    return None


#: A message class's own fields (what its fingerprint holds), worked out once per class.
_OWN: dict[type, tuple[str, ...]] = {}


def _fingerprint(m: Message | None) -> tuple | None:
    """What a message says, without where and when it was seen: two legs a TCP proxy relays say
    the same (the same bytes decode to the same fields)."""
    if m is None:
        return None
    cls = type(m)
    own = _OWN.get(cls)
    if own is None:
        own = _OWN[cls] = tuple(f.name for f in fields(m) if f.name not in _BASE)
    return (cls.__name__,) + tuple(getattr(m, name) for name in own)


def _key(ex: Exchange) -> tuple | None:
    """What two legs of one request share; None for what no proxy relays here (RPC, AMQP)."""
    if isinstance(ex, RpcExchange) or ex.protocol in ("amqp", "rpc", "tcp"):
        return None
    req = ex.request
    if isinstance(req, HttpRequest):
        return ("http", req.method, req.uri)
    return (ex.protocol, _fingerprint(req))


def _closed(ex: Exchange) -> bool:
    """A request the close of the connection answered (a MySQL quit): either side may close first."""
    return ex.response is not None and ex.response.protocol == "tcp"


def _held(front: Exchange) -> float:
    """How long after its end a leg may still be the front of another (the slack; a second for a
    quit its own side's close answered, as the proxy relays the quit and then the close)."""
    return 1.0 if _closed(front) else SLACK


def _answers_agree(front: Exchange, back: Exchange) -> bool:
    f, b = front.response, back.response
    if b is None:
        return True
    if f is None:
        return False  # the proxy got an answer and the client none: not this front's
    if isinstance(f, HttpResponse) and isinstance(b, HttpResponse):
        return f.status == b.status
    return _fingerprint(f) == _fingerprint(b)


def _is_hop(front: Exchange, back: Exchange, relaxed: bool = False) -> bool:
    """Is ``back`` the proxy's leg of ``front``'s request?  (Keys already equal.)  ``relaxed``: the
    connections are known to be relayed one to the other: a close may come on either first."""
    if back.stream == front.stream or back.server == front.server or back.client == front.client:
        return False
    if back.start < front.start - SLACK:
        return False
    if front.response is not None and not (relaxed and _closed(front)) and back.end > front.end + SLACK:
        return False
    if not _answers_agree(front, back):
        return False
    # X-Forwarded-For: a proxy adds the client it got the request from, never removes one
    xff, before = _forwarded(back.request), _forwarded(front.request)
    if len(xff) < len(before):
        return False
    return not xff or len(xff) == len(before) or xff[-1] == front.client.host


def _forwarded(m: Message) -> list[str]:
    xff = _header(m, "x-forwarded-for")
    return [a.strip() for a in xff.split(",")] if xff else []


def _name(front: Exchange, back: Exchange) -> tuple[str, str]:
    """The proxy's name from the two legs, and the words saying why."""
    req = front.request
    if isinstance(req, HttpRequest):
        what = f"{req.method} {req.uri}"
        xff = _header(back.request, "x-forwarded-for")
        said = f"; X-Forwarded-For: {xff}" if xff else ""
        front_server = (_header(front.response, "server") or "").lower()
        back_server = (_header(back.response, "server") or "").lower()
        if _header(back.request, "x-forwarded-server") is not None:
            name, how = "apache", " (mod_proxy's X-Forwarded-Server)"
        elif front_server.startswith("nginx") and not back_server.startswith("nginx"):
            name, how = "nginx", " (its answer's Server: nginx)"
        else:
            name, how = "haproxy", ""
        return name, f"{front.server} re-sent {front.client}'s {what} to {back.server}{said}{how}"
    return "haproxy", (f"{front.server} relayed {front.client}'s {front.protocol} connection to {back.server}, "
                       "the same bytes both ways (a TCP proxy)")


def _web_server(ex: Exchange) -> str:
    """The name of the web server an answer's ``Server`` header says (``Apache/2.4.57 (Debian)`` is
    ``apache2``, ``nginx/1.22.1`` ``nginx``, another its product in lower case); ``apache2``, devstack's,
    when it says none.

    >>> from osflow.model import Address
    >>> a = Address("10.0.0.5", 80)
    >>> def answer(server):
    ...     r = HttpResponse(protocol="http", stream=0, src=a, dst=a, start=0, end=0, frames=(1,), is_request=False,
    ...                      status=200, reason="OK", headers=(("Server", server),) if server else ())
    ...     return _web_server(Exchange("http", 0, a, a, r, r))
    >>> [answer(s) for s in ("Apache/2.4.57 (Debian)", "nginx/1.22.1", "BaseHTTP/0.6 Python/3.11.2", None)]
    ['apache2', 'nginx', 'basehttp', 'apache2']
    """
    said = (_header(ex.response, "server") or "").strip().lower()
    product = said.split("/")[0].split()[0] if said else ""
    if not product or product.startswith("apache") or product == "httpd":
        return "apache2"
    return product


def _health_check(ex: Exchange) -> str | None:
    """Why ``ex`` looks like a proxy's health check of a server, or None."""
    req = ex.request
    if isinstance(req, HttpRequest):
        if _header(req, "user-agent") is None:
            return f"{req.method} {req.uri} without User-Agent (a proxy's health check, HAProxy's option httpchk)"
        return None
    user = getattr(req, "user", None)
    if ex.protocol == "mysql" and user is not None and "haproxy" in user:
        return f"MySQL login as {user} (HAProxy's option mysql-check)"
    if ex.protocol == "mysql" and getattr(req, "command", None) == "quit" and ex.response is not None \
            and ex.response.protocol == "mysql":
        # a quit answered by an OK, not by the close: the login and the quit sent at once, before
        # the server's greeting (HAProxy's option mysql-check post-41)
        return "a MySQL login and quit sent at once, before the greeting (HAProxy's option mysql-check)"
    return None


class Stitcher:
    """Find the legs of requests through proxies and stitch them, exchanges given a batch at a time.

    ``show``: keep the legs apart (``--show-proxies``): the proxies are still found and named
    (:attr:`ends`), each leg stays a pair of its own.  :attr:`ends`: ``(stream, "client" |
    "server")`` -> :class:`ProxyEnd`, the connection ends that are a proxy, for the join.
    """

    def __init__(self, show: bool = False, endpoints: Iterable[tuple[str, str]] = (),
                 overrides: dict[int, str] | None = None) -> None:
        """``endpoints``: ``--endpoint URL=SERVICE``'s (URL, service key); ``overrides``: ``--service``'s
        ports (a port of a service is the service itself, not a web server in front of several)."""
        self.show = show
        #: the legs no capture shows (a web server to the service a path names): their connection
        #: (below zero) -> the service, with the evidence
        self.routes: dict[int, ProxyEnd] = {}
        self._given = tuple(parse_endpoint(url, key, GIVEN) for url, key in endpoints)
        self._catalog: dict[str, tuple[float, Endpoint]] = {}  # URL -> (when its token response ended, it)
        self._devstack = tuple(Endpoint(None, None, p, k, DEVSTACK) for p, k in ENDPOINT_PREFIXES.items())
        self._overrides = overrides or {}
        self._virtual: dict[tuple[Address, str], int] = {}  # (web server, service) -> its connection
        self._hops: dict[int, tuple[str, str]] = {}  # id(a leg no capture shows) -> (web server's name, why)
        self.ends: dict[tuple[int, str], ProxyEnd] = {}
        self._absorbed: dict[int, Exchange] = {}  # id -> a back leg stitched into an exchange given out
        self._links: dict[int, int] = {}  # a TCP-mode front connection -> its back connection
        self._linked_back: dict[int, int] = {}
        self._backends: set[Address] = set()  # servers a proxy's legs reach
        self._proxy_hosts: dict[str, str] = {}  # address a proxy's legs come from -> its name
        self._checks: set[int] = set()  # connections carrying a proxy's health checks
        self._made: dict[int, tuple[Exchange, ProxyLeg]] = {}  # id -> (an exchange, the leg given out for it)

    def stitch(self, exchanges: list[Exchange]) -> list[Exchange]:
        """Every exchange of a whole capture (in request order), legs stitched."""
        return self.stitch_part(exchanges, [])[0]

    def stitch_part(self, chunk: list[Exchange], later: list[Exchange]) -> tuple[list[Exchange], list[Exchange]]:
        """``chunk`` (given out now, in request order) with each chain of legs that starts in it one
        exchange; ``later``: the exchanges already paired that come after it, where a back leg may
        be.  Back legs stitched are left out, now and when they come in a later chunk.  A proxy's
        health check is a :class:`~osflow.model.ProxyLeg` of nothing; with ``show``, a back leg one
        of its front."""
        absorbed = self._absorbed
        chunk = [ex for ex in chunk if absorbed.pop(id(ex), None) is None]
        later = [ex for ex in later if id(ex) not in absorbed]
        self._learn_catalog(chunk + later)
        hops = self._match(sorted(chunk + later, key=lambda ex: ex.start))
        checks = self._note_checks(chunk + later, hops)
        front_of = {id(b): f for f, b in hops.values()}
        if self.show:
            shown: list[Exchange] = []
            for ex in chunk:
                given = self._leg(ex, front_of.get(id(ex)), id(ex) in checks)
                shown.append(given)
                hop = self._route(given) if not (isinstance(given, ProxyLeg) and given.front is None) else None
                if hop is not None:
                    shown.append(ProxyLeg(hop.protocol, hop.stream, hop.client, hop.server, hop.request,
                                          hop.response, front=given))
            return shown, later
        in_chunk = {id(ex) for ex in chunk}
        out: list[Exchange] = []
        for ex in chunk:
            if id(ex) in front_of and _head(ex, front_of) is not ex and id(_head(ex, front_of)) in in_chunk:
                continue  # stitched into the exchange of the chain's first leg
            chain = [ex]
            while id(chain[-1]) in hops:
                chain.append(hops[id(chain[-1])][1])
            for leg in chain[1:]:
                if id(leg) not in in_chunk:
                    absorbed[id(leg)] = leg
            if id(ex) not in checks:
                hop = self._route(chain[-1])
                if hop is not None:
                    chain.append(hop)
            out.append(self._stitched(chain) if len(chain) > 1 else self._leg(ex, None, id(ex) in checks))
        return out, [ex for ex in later if id(ex) not in absorbed]

    def _learn_catalog(self, exchanges: Iterable[Exchange]) -> None:
        """The endpoints of the keystone catalogs the token responses carry, each from the end of the
        first response that carried it (a request sent before it, as the whole capture is read or a
        horizon at a time, is named without it)."""
        for ex in exchanges:
            token = getattr(ex.response, "token", None)
            for url, key in getattr(token, "catalog", ()):
                known = self._catalog.get(url)
                if known is None or known[0] > ex.end:
                    try:
                        self._catalog[url] = (ex.end, parse_endpoint(url, key, CATALOG))
                    except ValueError:
                        continue

    def endpoint(self, ex: Exchange) -> Endpoint | None:
        """The endpoint an HTTP request was sent to, when one names a service behind a web server:
        ``--endpoint``'s on any port; the catalog's, else devstack's prefixes, on a port of no service."""
        req = ex.request
        if not isinstance(req, HttpRequest) or isinstance(ex, RpcExchange):
            return None
        path = req.uri.split("?")[0]
        if "://" in path:  # a request in absolute form: its path only
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        host = (_header(req, "host") or "").strip().lower()
        host = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
        server, port = ex.server.host, ex.server.port
        tiers: list[Iterable[Endpoint]] = [self._given]
        if portmap.service_for_port(port, self._overrides) is None:
            tiers += [[e for since, e in self._catalog.values() if since <= ex.start], self._devstack]
        for tier in tiers:
            found = [e for e in tier if e.matches(host, server, port, path)]
            if found:
                return max(found, key=lambda e: len(e.path))
        return None

    def _route(self, ex: Exchange) -> Exchange | None:
        """The leg no capture shows, from the web server ``ex`` was sent to to the service its
        endpoint names (:meth:`endpoint`), or None."""
        e = self.endpoint(ex)
        if e is None:
            return None
        req = ex.request
        assert isinstance(req, HttpRequest)  # endpoint() said so
        name = _web_server(ex)
        stream = self._virtual.get((ex.server, e.key))
        if stream is None:
            stream = self._virtual[(ex.server, e.key)] = -1 - len(self._virtual)
        where = f"{e.path or '/'}" + (f" at {e.host}:{e.port}" if e.host is not None else "")
        serves = f"{ex.server} ({name}) serves {where} as {e.key} ({e.source}); the hop to it is not on the wire"
        self.routes.setdefault(stream, ProxyEnd(e.key, serves))
        self.ends.setdefault((ex.stream, "server"), ProxyEnd(name, serves))
        self.ends.setdefault((stream, "client"), ProxyEnd(name, serves))
        hop = Exchange(ex.protocol, stream, ex.server, ex.server, ex.request, ex.response)
        if not self.show:
            self._hops[id(hop)] = (name, f"{ex.server} sent {req.method} {req.uri.split('?')[0]} on to {e.key}: "
                                         f"under {where} ({e.source}), over a hop not on the wire")
        return hop

    def forget(self, streams: Iterable[int]) -> None:
        """Forget what is known of connections gone idle (a streamed flow's memory stays flat)."""
        for s in streams:
            self.ends.pop((s, "client"), None)
            self.ends.pop((s, "server"), None)
            self._checks.discard(s)
            for a, b in ((self._links, self._linked_back), (self._linked_back, self._links)):
                other = a.pop(s, None)
                if other is not None and b.get(other) == s:
                    del b[other]

    def _leg(self, ex: Exchange, front: Exchange | None, check: bool) -> Exchange:
        """``ex`` as the flow takes it: a proxy's leg of ``front`` (as given out), a proxy's health
        check (a leg of nothing), or itself."""
        if front is None and not check:
            return ex
        made = self._made
        if front is not None:
            front = made.get(id(front), (front, front))[1]
        leg = ProxyLeg(ex.protocol, ex.stream, ex.client, ex.server, ex.request, ex.response, front=front)
        made[id(ex)] = (ex, leg)
        for key in [k for k, (old, _) in made.items() if old.end < ex.start - _REMEMBER]:
            del made[key]
        return leg

    def _match(self, exchanges: list[Exchange]) -> dict[int, tuple[Exchange, Exchange]]:
        """id(front) -> (front, back), for every leg that carries another's request."""
        hops: dict[int, tuple[Exchange, Exchange]] = {}
        open_: dict[tuple, list[Exchange]] = {}
        links, linked_back = self._links, self._linked_back
        for ex in exchanges:
            key = _key(ex)
            if key is None:
                continue
            fronts = open_.setdefault(key, [])
            fronts[:] = [f for f in fronts if f.response is None or f.end + _held(f) >= ex.start]
            tcp = key[0] != "http"
            for f in fronts:
                linked = links.get(f.stream) == ex.stream
                if tcp and not linked and (_closed(f) or any(
                        s in links or s in linked_back for s in (f.stream, ex.stream))):
                    continue  # a connection is relayed to one other, and to none of its own; a close links none
                if _is_hop(f, ex, relaxed=linked):
                    hops[id(f)] = (f, ex)
                    fronts.remove(f)
                    if tcp:
                        links[f.stream] = ex.stream
                        linked_back[ex.stream] = f.stream
                    self._note(f, ex)
                    break
            fronts.append(ex)
        return hops

    def _note(self, front: Exchange, back: Exchange) -> None:
        name, why = _name(front, back)
        self.ends.setdefault((front.stream, "server"), ProxyEnd(name, why))
        self.ends.setdefault((back.stream, "client"), ProxyEnd(name, why))
        self._backends.add(back.server)
        self._proxy_hosts.setdefault(back.client.host, name)

    def _note_checks(self, exchanges: Iterable[Exchange], hops: dict[int, tuple[Exchange, Exchange]]) -> set[int]:
        """The proxy's own requests to its servers (their client is the proxy): their ids."""
        legs = {id(b) for _, b in hops.values()} | set(hops)
        found: set[int] = set()
        for ex in exchanges:
            if id(ex) in legs:
                continue
            if ex.stream in self._checks:
                found.add(id(ex))
                continue
            if ex.server not in self._backends or ex.client.host not in self._proxy_hosts:
                continue
            why = _health_check(ex)
            if why is None:
                continue
            self._checks.add(ex.stream)
            found.add(id(ex))
            name = self._proxy_hosts[ex.client.host]
            self.ends[(ex.stream, "client")] = ProxyEnd(name, f"{why}, to {ex.server}, a server {name} forwards to")
        return found

    def _stitched(self, chain: list[Exchange]) -> ProxiedExchange:
        front, last = chain[0], chain[-1]
        names = [self._hops.pop(id(b)) if id(b) in self._hops else _name(a, b)
                 for a, b in zip(chain, chain[1:], strict=False)]
        return ProxiedExchange(
            front.protocol, front.stream, front.client, last.server, front.request, front.response,
            legs=tuple(chain), server_stream=last.stream,
            proxy=tuple(n for n, _ in names), evidence=tuple(w for _, w in names),
        )


def _head(ex: Exchange, front_of: dict[int, Exchange]) -> Exchange:
    """The first leg of the chain ``ex`` is a leg of."""
    while id(ex) in front_of:
        ex = front_of[id(ex)]
    return ex


def legs(exchanges: Iterable[Exchange]) -> Iterator[Exchange]:
    """Every leg of ``exchanges``: a proxied one's legs, any other as it is."""
    for ex in exchanges:
        if isinstance(ex, ProxiedExchange):
            yield from ex.legs
        else:
            yield ex

"""Join stage: name the process and service on each end of every connection.

Evidence, strongest first:

1. socket table + process table: 4-tuple -> pid (``ss``) -> command line (``ps``)
   -> service (``(wsgi:placement-a -k start`` is placement);
2. the process name in ``ss``'s ``users:(("openstack",pid=...))`` when the pid is
   in no process table (short-lived clients such as the ``openstack`` CLI);
3. protocol evidence: MySQL login user/schema, ``mysql.field.db``, the
   User-Agent, the request the client service is serving at that moment (an
   HTTP request it answers, an RPC delivered to it), the tables a query touches;
   for a connection to the broker, the ``connection_name`` of its Connection.Start-Ok,
   the topics delivered to it, and the connection that gets the replies to its calls;
4. the port map (servers only; ``--service PORT=NAME`` overrides it).

Apache's listening sockets belong to ``apache2`` workers, which say nothing about
the service behind them: such ends are named by port.
"""

from __future__ import annotations

import bisect
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import portmap, protocols
from .model import (
    Address,
    AmqpConnection,
    ConnectionNames,
    EvidenceSource,
    Exchange,
    Participant,
    Process,
    RpcExchange,
)
from .openstack import component_database, service_of_command, service_of_container, service_of_topic
from .proxies import ProxyEnd, legs
from .redact import command_line

#: Programs that are reverse proxies: a connection end one of them holds is that proxy, whatever its port says.
PROXY_PROGRAMS = ("haproxy", "nginx", "envoy", "traefik")


@dataclass
class _Conn:
    """One connection and its exchanges, while the join runs."""

    stream: int
    client: Address
    server: Address
    protocol: str
    start: float
    exchanges: list
    database: tuple[str | None, str] | None = None  # (schema, why), once worked out


@dataclass(frozen=True)
class Named:
    """A service key with the evidence that named it."""

    key: str
    evidence: str
    source: EvidenceSource
    pid: int | None = None


class Joiner:
    """Name both ends of every connection of a list of exchanges."""

    def __init__(self, sockets=None, processes=None, overrides: dict[int, str] | None = None,
                 show_secrets: bool = False, hosts: dict | None = None, clock: dict[str, float] | None = None,
                 proxies: dict[tuple[int, str], ProxyEnd] | None = None,
                 routes: dict[int, ProxyEnd] | None = None) -> None:
        """``proxies``: the connection ends :class:`osflow.proxies.Stitcher` found to be a proxy;
        ``routes``: the connections no capture shows, from a web server to the service a request's
        path names (:attr:`osflow.proxies.Stitcher.routes`)."""
        self.sockets = sockets
        self.processes = processes
        #: several hosts' recordings: host -> (its socket table, its process table); an end (its
        #: :attr:`~osflow.model.Address.node`) is looked up in its own host's tables only, at its host's
        #: time (``clock``: host -> its clock's offset from the first host's)
        self.hosts = hosts
        self.clock = clock if clock is not None else {}
        self.overrides = overrides or {}
        self.proxies = proxies if proxies is not None else {}
        self.routes = routes if routes is not None else {}
        self._serves: dict[tuple[str, str], tuple[Process, str] | None] = {}  # (host, service) -> its process
        self.in_tables = 0  # connection ends whose 4-tuple the socket tables hold (owner known or not)
        self.show_secrets = show_secrets  #: command lines in evidence as they are (``--show-secrets``), else redacted

    # ------------------------------------------------------------------ tables

    def _from_tables(
        self, local: Address, remote: Address, time: float, server: bool = False
    ) -> tuple[Named | None, str | None]:
        """(named service, description of an unnamed owner) from ss + ps.

        ``server``: ``local`` is the end that accepted the connection; when its socket is in no
        snapshot, the owner of the listening socket it came from answers, if that is one
        process or one process group (:meth:`~osflow.tables.SocketTable.listening_owner`).
        """
        sockets, processes = self.sockets, self.processes
        if self.hosts is not None:
            sockets, processes = self.hosts.get(local.node, (None, None))
            time += self.clock.get(local.node, 0.0)
            local, remote = Address(local.host, local.port), Address(remote.host, remote.port)
        if sockets is None:
            return None, None
        entry = sockets.owner(local, remote, time)
        if entry is not None:
            self.in_tables += 1
        source: EvidenceSource = "table"
        if entry is None or not entry.users:
            listener = sockets.listening_owner(local, processes) if server else None
            if listener is None:
                return None, None
            entry, user, n = listener
            source = "listener"
        else:
            user = entry.users[0]
        where = f"ss {os.path.basename(entry.source)}:{entry.line}" if entry.source else "ss"
        if source == "listener":
            where += (f" (the listening socket on port {local.port}, held by "
                      + (f"pid {user.pid} alone" if n == 1 else f"pid {user.pid} and {n - 1} worker(s) it forked")
                      + "; this connection's own socket is in no snapshot)")
        proc = processes.get(user.pid) if processes is not None else None
        proxy = _proxy_program(proc.args if proc is not None else user.comm)
        if proxy is not None:
            return Named(proxy, f"{where} process name '{user.comm}' pid {user.pid}, a reverse proxy",
                         "ss-comm" if source == "table" else source, user.pid), None
        if proc is not None:
            key, ambiguous = service_of_command(proc.args)
            args = command_line(proc.args, self.show_secrets)  # before the cut: a URL cut before its @ stays whole
            pwhere = f"ps {os.path.basename(proc.source)}:{proc.line}" if proc.source else "ps"
            inside = f" in container {proc.container}" if proc.container else ""
            if key:
                return (
                    Named(key, f"{where} pid {user.pid} -> {pwhere} '{args[:60]}'{inside}", source, user.pid),
                    None,
                )
            # the command line names no service (python3, uwsgi, apache2): its container may
            container = service_of_container(proc.container) if proc.container else None
            if container:
                return (
                    Named(container, f"{where} pid {user.pid} -> {pwhere} '{args[:40]}'{inside}", source, user.pid),
                    None,
                )
            if ambiguous:
                return None, f"{where} pid {user.pid} is {args[:40]!r}{inside}, a web server (ambiguous)"
            return None, f"pid {user.pid} ({user.comm}{inside})"
        key, ambiguous = service_of_command(user.comm)
        if key:
            return Named(key, f"{where} process name '{user.comm}' pid {user.pid} (pid in no ps table)",
                         "ss-comm" if source == "table" else source, user.pid), None
        if ambiguous:
            return None, f"{where} pid {user.pid} is '{user.comm}', a web server (ambiguous)"
        return None, f"pid {user.pid} ({user.comm})"

    # ------------------------------------------------------------------ main

    def join(
        self, exchanges: Iterable[Exchange], amqp: dict[int, AmqpConnection] | None = None,
        wanted: set[int] | None = None,
    ) -> dict[int, ConnectionNames]:
        """Names for every connection; ``amqp``: the connections to the broker (:meth:`RpcPairing.connections`).

        ``wanted``: only these connections' names are wanted (a streamed flow names each connection
        once): the others still give their evidence ("serving at that moment"), and connections to
        the broker that share a reply queue with one of them are named too (their replies name each other).
        """
        conns: dict[int, _Conn] = {}
        rpcs: list[RpcExchange] = []
        for ex in legs(exchanges):
            if isinstance(ex, RpcExchange):
                rpcs.append(ex)
                continue
            c = conns.get(ex.stream)
            if c is None:
                c = conns[ex.stream] = _Conn(ex.stream, ex.client, ex.server, ex.protocol, ex.start, [])
            c.exchanges.append(ex)
        amqp = amqp or {}
        for s, link in amqp.items():
            if s not in conns:
                conns[s] = _Conn(s, link.client, link.broker, "amqp", link.start, [])
        for ex in rpcs:
            c = conns.get(ex.stream)
            if c is None:
                c = conns[ex.stream] = _Conn(ex.stream, ex.client, ex.request.dst, "amqp", ex.start, [])
            c.exchanges.append(ex)

        servers: dict[int, Named | None] = {}
        server_notes: dict[int, str | None] = {}
        for s, c in conns.items():
            if s in self.routes:  # behind a web server, off the wire: the service its path names
                servers[s], server_notes[s] = self._routed(self.routes[s], c.server.node), None
                continue
            named, note = self._from_tables(c.server, c.client, c.start, server=True)
            named = self._proxy(named, s, "server")
            if named is None:
                svc = portmap.service_for_port(c.server.port, self.overrides)
                if svc is not None:
                    how = "--service" if c.server.port in self.overrides else "port map"
                    named = Named(svc.key, f"port {c.server.port} ({how}: {svc.key})" + (f"; {note}" if note else ""),
                                  "port")
            servers[s] = named
            server_notes[s] = note

        clients: dict[int, Named | None] = {}
        client_notes: dict[int, str | None] = {}
        for s, c in conns.items():
            named, note = (None, None) if s in self.routes else self._from_tables(c.client, c.server, c.start)
            named = self._proxy(named, s, "client")
            if named is None and c.protocol == "amqp" and s in amqp:
                named = _from_broker_traffic(amqp[s])
            clients[s] = named
            client_notes[s] = note
        _follow_replies(amqp, clients)

        # spans of requests each service was serving, for "serving at that moment"
        serving = _Serving()
        for s, c in conns.items():
            srv = servers[s]
            if srv is None or c.protocol != "http" or srv.key in PROXY_PROGRAMS or (s, "server") in self.proxies:
                continue  # a proxy serves nothing itself: the service behind it does
            for ex in c.exchanges:
                serving.add(ex.start, ex.end, srv.key, ex, c.server.node)
        for start, end, s, ex in _rpc_spans(rpcs):
            callee = clients.get(s)
            if callee is not None:
                serving.add(start, end, callee.key, ex, conns[s].client.node if s in conns else "")
        serving.freeze()
        # the RPCs a streamed flow has seen end with the latest paired: a statement after it may be inside
        # one not paired yet, so it says nothing of who was serving at its moment
        known_until = max((ex.start for ex in rpcs), default=math.inf)

        if wanted is not None:  # and the broker connections whose replies may name them
            queues = {q for s in wanted if s in amqp for q in amqp[s].calls_for + amqp[s].reply_queues}
            wanted = wanted | {s for s, link in amqp.items() if queues.intersection(link.calls_for + link.reply_queues)}
        for s, c in conns.items():
            if clients[s] is None and (wanted is None or s in wanted):
                clients[s] = self._from_protocol(c, servers[s], serving, known_until)
        _follow_replies(amqp, clients)
        _by_sent_request_id(conns, clients, rpcs, wanted)

        out: dict[int, ConnectionNames] = {}
        for s, c in conns.items():
            if wanted is not None and s not in wanted:
                continue
            cli = clients[s]
            srv = servers[s]
            client_p = self._participant(cli, c.client, client_notes[s])
            server_p = self._server_participant(c, srv, cli, server_notes[s])
            out[s] = ConnectionNames(s, c.client, c.server, client_p, server_p)
        return out

    def _routed(self, route: ProxyEnd, host: str) -> Named:
        """The service a web server's path sends a request to (:mod:`osflow.proxies`), with the process
        that serves it when the process table has one whose command line names it (devstack's
        ``uwsgi --procname-prefix keystone --ini /etc/keystone/keystone-uwsgi-public.ini``; of
        several, its first pid: a master and the workers it forked)."""
        if (host, route.name) in self._serves:
            found = self._serves[(host, route.name)]
        else:
            processes = self.processes if self.hosts is None else self.hosts.get(host, (None, None))[1]
            found = None
            for proc in processes.all() if processes is not None else ():
                if service_of_command(proc.args)[0] == route.name and (found is None or proc.pid < found[0].pid):
                    where = f"ps {os.path.basename(proc.source)}:{proc.line}" if proc.source else "ps"
                    found = (proc, f"{where} pid {proc.pid} '{command_line(proc.args, self.show_secrets)[:60]}'")
            self._serves[(host, route.name)] = found
        if found is None:
            return Named(route.name, route.evidence, "protocol")
        return Named(route.name, f"{route.evidence}; served by {found[1]}", "protocol", found[0].pid)

    def _proxy(self, named: Named | None, stream: int, side: str) -> Named | None:
        """A connection end a proxy holds: named by the tables when they know its process, else
        by the evidence that found it (:mod:`osflow.proxies`)."""
        end = self.proxies.get((stream, side))
        if end is None or named is not None:
            return named
        return Named(end.name, end.evidence, "protocol")

    def _participant(self, named: Named | None, addr: Address, note: str | None) -> Participant:
        if named is None:
            label = _at(str(addr), addr.node)
            pid = None
            if note and note.startswith("pid "):
                label = f"{label} ({note})"
            evidence = "no evidence: " + (note or "not in any socket table, no protocol evidence")
            return Participant(label, None, evidence, pid, "address", addr.node)
        return Participant(_at(portmap.label_for(named.key), addr.node), named.key, named.evidence, named.pid,
                           named.source, addr.node)

    def _server_participant(self, c: _Conn, srv: Named | None, cli: Named | None, note: str | None) -> Participant:
        if srv is None or srv.key != "mysql":
            return self._participant(srv, c.server, note)
        db, why = _database(c)
        proxy = cli is not None and (cli.key in PROXY_PROGRAMS or (c.stream, "client") in self.proxies)
        if db is None and cli is not None and not proxy:  # a proxy's health check names no database
            db = portmap.database_of(cli.key) or component_database(cli.key) or cli.key
            why = f"database of its client {cli.key}"
        node = c.server.node
        if db is None:
            return Participant(_at("MySQL", node), "mysql", srv.evidence + "; database unknown", srv.pid, srv.source,
                               node)
        return Participant(_at(portmap.db_label(db), node), "mysql", f"{srv.evidence}; {why}", srv.pid, srv.source,
                           node)

    def _from_protocol(self, c: _Conn, srv: Named | None, serving: _Serving, known_until: float = math.inf
                       ) -> Named | None:
        votes: Counter = Counter()
        why: dict[str, str] = {}
        schema = _database(c)[0] if c.protocol == "mysql" else None
        exclude = srv.key if srv else None
        # a database connection is one process's, which runs its statements while it serves a request or an
        # RPC: each service serving at a statement's moment could be its client, the one serving at the
        # moment of every statement the likeliest (several serve at once; the innermost alone is a guess);
        # ``known_until``: the spans are known up to then (a streamed flow's)
        covered: Counter = Counter()
        for ex in c.exchanges:
            for vote in protocols.of(ex).votes(ex):
                votes[vote.key] += vote.weight
                why.setdefault(vote.key, vote.why)
            ids = request_ids_of(ex)
            inside = serving.containing(ex.start, ex.end, exclude=exclude, host=c.client.node) \
                if c.protocol == "mysql" else []
            if c.protocol == "mysql" and not ids:  # the innermost: the latest-starting of those (one scan)
                outer = inside[0] if inside else None
            else:
                outer = serving.innermost(ex.start, ex.end if not isinstance(ex, RpcExchange) else ex.request.end,
                                          exclude=exclude, request_ids=ids, host=c.client.node,
                                          sent=request_ids_of(ex, sent_only=True))
            if outer is not None and schema is not None and _uses_other_schema(outer[0], schema):
                outer = None  # a service does not query another service's schema
            if outer is None and isinstance(ex, RpcExchange):
                # published after the request that made it was answered: the service that answered it
                origin = serving.origin(ids, exclude=exclude, host=c.client.node)
                if origin is not None:
                    votes[origin[0]] += 1
                    why.setdefault(origin[0], f"its request id was {origin[0]}'s answer to "
                                              f"{protocols.of(origin[1]).serving(origin[1])}")
            if outer is not None:
                key, outer_ex = outer
                votes[key] += 1 if c.protocol == "mysql" else 2
                what = protocols.of(outer_ex).serving(outer_ex) or "a request"
                why.setdefault(key, f"{key} was serving {what} at that moment")
            if ex.start <= known_until:
                for key in {key for key, _ in inside}:
                    if schema is None or not _uses_other_schema(key, schema):
                        covered[key] += 1
                        why.setdefault(key, f"{key} was serving a request at the moment of its statements")
        for key, n in covered.items():
            votes[key] += 4 * n
        if not votes:
            return None
        key, _ = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return Named(key, why[key], "protocol")


def _at(label: str, host: str) -> str:
    """``service@host`` when ends are placed on hosts (several hosts' recordings), else ``service``.

    >>> _at("nova-compute", "compute1"), _at("keystone", "")
    ('nova-compute@compute1', 'keystone')
    """
    return f"{label}@{host}" if host else label


def _proxy_program(args: str) -> str | None:
    """The reverse proxy a command line runs (``/usr/sbin/haproxy -W -db -f ...``), or None."""
    words = args.split()
    if not words:
        return None
    program = os.path.basename(words[0].strip("()"))
    return program if program in PROXY_PROGRAMS else None


def _from_broker_traffic(link: AmqpConnection) -> Named | None:
    """The owner of a connection to the broker from what it said and what was delivered to it."""
    if link.connection_name:
        program, _, rest = link.connection_name.partition(":")
        key, _ = service_of_command(program)
        pid = rest.split(":")[0]
        if key:
            return Named(key, f"AMQP connection_name '{link.connection_name[:60]}'", "protocol",
                         int(pid) if pid.isdigit() else None)
    for topic in link.consumes:
        key = service_of_topic(topic)
        if key:
            return Named(key, f"consumes the RPC topic {topic}", "protocol")
    return None


def _follow_replies(amqp: dict[int, AmqpConnection], clients: dict[int, Named | None]) -> None:
    """A caller's publish connection and the one its replies come back on have one owner."""
    by_queue: dict[str, list[int]] = {}
    for s, link in amqp.items():
        for q in link.calls_for + link.reply_queues:
            by_queue.setdefault(q, []).append(s)
    for q, streams in by_queue.items():
        known = [n for n in (clients.get(s) for s in streams) if n is not None]
        if not known:
            continue
        owner = known[0]
        for s in streams:
            if clients.get(s) is None:
                clients[s] = Named(owner.key, f"its RPC replies queue {q} is {owner.key}'s ({owner.evidence})",
                                   "protocol", owner.pid)


def _by_sent_request_id(conns: dict[int, _Conn], clients: dict[int, Named | None], rpcs: list[RpcExchange],
                        wanted: set[int] | None) -> None:
    """Name an HTTP client nothing else named by the request id it sends, when the RPCs sent with
    that id came from one named service of its host (nova-compute's periodic task calls the
    conductor and neutron with the task's own request id: no request it serves carries it)."""
    unnamed = [(s, c) for s, c in conns.items()
               if clients[s] is None and c.protocol == "http" and (wanted is None or s in wanted)]
    if not unnamed:  # the usual case: the RPCs' request ids are not worth collecting
        return
    senders: dict[tuple[str, str], dict[str, RpcExchange]] = {}
    for ex in rpcs:
        named = clients.get(ex.stream)
        if named is not None and ex.stream in conns:
            for rid in request_ids_of(ex, sent_only=True):
                senders.setdefault((rid, conns[ex.stream].client.node), {}).setdefault(named.key, ex)
    for s, c in unnamed:
        for rid in (r for ex in c.exchanges for r in request_ids_of(ex, sent_only=True)):
            by = senders.get((rid, c.client.node), {})
            if len(by) == 1:
                (key, rpc), = by.items()
                clients[s] = Named(key, f"sends request id {rid}, as {key}'s {rpc.kind} {rpc.oslo.method}", "protocol")
                break


def _rpc_spans(rpcs: list[RpcExchange]) -> list[tuple[float, float, int, RpcExchange]]:
    """(start, end, callee's stream, exchange) of the time each callee handled an RPC.

    A call is handled until its reply; a cast until the last RPC published later with its
    request id (what the callee's work caused), at least its delivery.
    """
    last: dict[str, float] = {}
    for ex in rpcs:
        rid = ex.oslo.request_id
        if rid:
            last[rid] = max(last.get(rid, 0.0), ex.start)
    out = []
    for ex in rpcs:
        if ex.server_stream is None:
            continue
        start, end = ex.served
        if ex.kind != "call" and ex.oslo.request_id:
            end = max(end, last.get(ex.oslo.request_id, end))
        out.append((start, end, ex.server_stream, ex))
    return out


def _uses_other_schema(key: str, schema: str) -> bool:
    """Does service ``key`` keep its own schemas, none of them ``schema`` (keystone and ``neutron``)?

    A project's schemas are one family: nova's services use ``nova_api``, ``nova`` and the cells'.
    """
    own = portmap.database_of(key) or component_database(key)
    if own is None:
        return False
    return own.split("_")[0] != schema.split("_")[0]


def request_ids_of(ex: Exchange, sent_only: bool = False) -> tuple[str, ...]:
    """The request ids an exchange carries: an RPC's context; an HTTP request's or response's
    ``X-OpenStack-Request-ID`` (and nova's ``X-Compute-Request-Id``).  ``sent_only``: only
    those its request carried as it was sent (not the id the server answered with)."""
    if isinstance(ex, RpcExchange):
        o = ex.oslo
        return tuple(r for r in (o.request_id, o.global_request_id) if r)
    if ex.protocol != "http":
        return ()
    out: list[str] = []
    for m in (ex.request,) if sent_only else (ex.request, ex.response):
        for k, v in getattr(m, "headers", ()):
            if k.lower() in ("x-openstack-request-id", "x-compute-request-id"):
                out += [x.strip() for x in v.split(",") if x.strip()]
    return tuple(out)


def _database(c: _Conn) -> tuple[str | None, str]:
    """The schema a MySQL connection uses and why osflow thinks so (worked out once per connection)."""
    if c.database is None:
        c.database = _find_database(c)
    return c.database


def _find_database(c: _Conn) -> tuple[str | None, str]:
    logins = [s for s in (protocols.of(ex).schemas(ex)[0] for ex in c.exchanges) if s is not None]
    for login in logins:
        if login:
            return login, f"login schema {login}"
    if logins:
        # a login without a schema: its client names the database, as it does when the stream names the
        # connection at its login (the results' schemas come later): the same label in every format
        return None, ""
    dbs: Counter = Counter()
    for ex in c.exchanges:
        dbs.update(d for d in protocols.of(ex).schemas(ex)[2] if d)
    if dbs:
        db = sorted(dbs.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        return db, f"result metadata (mysql.field.db) names {db}"
    return None, ""


class _Serving:
    """Request spans per service, to find the request a service was serving at a moment."""

    def __init__(self) -> None:
        #: (start, end, service, exchange, its request ids, the host that served it)
        self._spans: list[tuple[float, float, str, Exchange, tuple[str, ...], str]] = []
        #: request id -> (service, exchange, host) that answered it
        self._answered: dict[str, list[tuple[str, Exchange, str]]] = {}
        self._starts: list[float] = []

    def add(self, start: float, end: float, key: str, ex: Exchange, host: str = "") -> None:
        ids = request_ids_of(ex)
        self._spans.append((start, end, key, ex, ids, host))
        if not isinstance(ex, RpcExchange) and ex.protocol == "http" and ex.response is not None:
            for rid in ids:
                self._answered.setdefault(rid, []).append((key, ex, host))

    def freeze(self) -> None:
        self._spans.sort(key=lambda s: (s[0], s[1]))
        self._starts = [s[0] for s in self._spans]

    def origin(self, request_ids: tuple[str, ...], exclude: str | None, host: str = "") -> tuple[str, Exchange] | None:
        """The HTTP service that answered a request with one of these request ids (on ``host``)."""
        for rid in request_ids:
            for key, ex, where in self._answered.get(rid, ()):
                if key != exclude and where == host:
                    return key, ex
        return None

    def _around(self, start: float, end: float, exclude: str | None, host: str
                ) -> Iterator[tuple[str, Exchange, tuple[str, ...]]]:
        """(service, exchange, request ids) of each span that contains [start, end], served on ``host``
        by another service than ``exclude``, the latest-starting first (a bounded scan back)."""
        i = bisect.bisect_right(self._starts, start)
        for j in range(i - 1, max(-1, i - 2000), -1):
            _, e, key, ex, ids, where = self._spans[j]
            if e >= end and key != exclude and where == host:
                yield key, ex, ids

    def containing(self, start: float, end: float, exclude: str | None, host: str = "") -> list[tuple[str, Exchange]]:
        """(service, exchange) of every span that contains [start, end] (on ``host``), the
        latest-starting first."""
        return [(key, ex) for key, ex, _ in self._around(start, end, exclude, host)]

    def innermost(
        self, start: float, end: float, exclude: str | None, request_ids: tuple[str, ...] = (), host: str = "",
        sent: tuple[str, ...] = (),
    ) -> tuple[str, Exchange] | None:
        """The latest-starting span that contains [start, end]; with ``request_ids``, one that
        carries one of them first (several services serve at once: the request id says which).
        ``sent``: the request ids the exchange was sent with; a span that carries others is another
        request's (the exchange's process was working on something no span shows: a periodic task).
        Only spans served on ``host`` count: a process serves what its own host's services serve."""
        wanted, mine = set(request_ids), set(sent)
        for restrict in ((True, False) if wanted else (False,)):
            for key, ex, ids in self._around(start, end, exclude, host):
                if wanted.intersection(ids) or (not restrict and not (mine and ids and mine.isdisjoint(ids))):
                    return key, ex
        return None

"""OTLP/JSON: the flow as OpenTelemetry traces, one ``TracesData`` object per line.

This is the OpenTelemetry file exporter's format: the Collector's ``otlpjsonfile`` receiver reads
it, and each line is also the body of an OTLP/HTTP ``POST /v1/traces`` (``--otlp-endpoint``,
:mod:`osflow.export`).  Each line holds one **top-level request** and everything below it (its
subtree in the flow), so a line depends only on that request's pairs and their participants:
it can be written as soon as the request is over.

Mapping (names from the current semantic conventions, with the older ones next to them where
backends and dashboards still key on them):

* each participant is a **resource**: ``service.name`` (osflow's name for it), ``service.namespace``
  ``openstack``, ``process.pid`` when a socket table named the process, ``host.ip`` (its addresses
  in the capture), ``host.name`` (with several hosts' recordings merged: its host), and
  ``osflow.evidence`` (why osflow gave that name);
* each **pair** is one span, or two:

  - HTTP: a ``CLIENT`` span under the caller and a ``SERVER`` span under the callee, child of the
    client span; ``http.request.method``/``http.method``, ``url.full``/``http.url`` (client),
    ``url.path``, ``url.query``, ``http.target`` (server), ``http.response.status_code``/
    ``http.status_code``, ``server.address``/``server.port`` (the ``Host`` header), ``network.peer.*``/
    ``net.peer.*``, ``user_agent.original``/``http.user_agent``, ``openstack.request_id``;
  - MySQL/MariaDB and memcached: a ``CLIENT`` span under the caller (the database is not
    instrumented, so it has no span): ``db.system.name``/``db.system`` (``mariadb`` when the server
    process is ``mariadbd``, else ``mysql``; ``memcached``), ``db.namespace``/``db.name`` (the schema
    the connection logged in to), ``db.operation.name``/``db.operation``, ``db.collection.name``/
    ``db.sql.table``, ``db.query.text``/``db.statement`` with every literal replaced by ``?``
    (:func:`osflow.redact.sql_without_literals`; memcached: the command with keys as osflow shows
    them, tokens as fingerprints);
  - RPC over RabbitMQ: ``CLIENT``/``SERVER`` spans for a call, ``PRODUCER``/``CONSUMER`` for a cast or
    a fanout (the consumer span only when somebody took the message), ``messaging.system``
    ``rabbitmq``, ``messaging.destination.name`` (the exchange), ``messaging.rabbitmq.destination.routing_key``
    and ``rabbitmq.destination.routing_key``, ``messaging.operation.type``/``.name`` and the older
    ``messaging.operation``, ``messaging.message.id`` (oslo's ``_unique_id``),
    ``messaging.message.conversation_id`` (a call's ``_msg_id``), ``rpc.system`` ``oslo_messaging``,
    ``rpc.service`` (the topic), ``rpc.method``, ``openstack.request_id``;
  - every span: ``osflow.pair.id`` (the JSON output's ``id``), ``osflow.request``/``osflow.response``
    (the timeline's words: tokens as ``T1``…), ``osflow.tokens`` (``T1 admin@admin (bb9ff2e7)``:
    fingerprints, never a token unless ``--show-secrets``), ``osflow.frames``, ``osflow.tcp.stream``,
    ``osflow.background`` (not caused by the command: :mod:`osflow.foreground`; every trace is sent,
    a backend's query on it keeps the command's).

* **nesting**: a pair's first span is a child of its parent pair's inner span (the server or
  consumer span of an HTTP request or RPC, the client span otherwise), so ``parentSpanId``
  follows the JSON output's ``parent``; one trace per top-level pair.
* **names**: HTTP ``{method} {path template}`` (ids in the path become ``{id}``, the query goes:
  span names must have low cardinality; the real path is in ``url.full``/``url.path``), SQL
  ``{operation} {first table}`` (``SELECT instances``), memcached the command (``get``), RPC the
  method (``select_destinations``, ``object_action Instance.save``).
* **status** ``ERROR`` (code 2): HTTP 5xx (and 4xx on the client span, as the conventions say), a
  MySQL error reply, a memcached ``ERROR``, an RPC call answered with a failure; ``error.type`` says which.
* **ids** (lowercase hex, 32 digits for a trace, 16 for a span, as OTLP/JSON wants): hashes of what
  the capture fixes — the epoch microsecond, TCP stream and first frame of the request — so the
  same capture gives the same bytes, from PDML as from ``-r``, and two captures never share an id.
  Times are ``timeUnixNano`` strings (to the microsecond), enums integers.
* **OSProfiler**: when a request carries OSProfiler's ``X-Trace-Info`` header (base64 JSON with
  ``base_id`` and ``parent_id``; its signature ``X-Trace-HMAC`` is never read nor written), the trace id
  is the ``base_id`` UUID as 32 hex digits, exactly as osprofiler's OTLP and Jaeger drivers make it
  (``uuid_to_int128``): osflow's trace and OSProfiler's of the same command are one trace in the
  backend.  Span ids stay osflow's own (two sources must not share one), and point at OSProfiler's
  spans with **links** whose span id is osprofiler's ``shorten_id`` of the trace point (the low 64
  bits of its UUID): a client span links to the trace point that sent the request (its
  ``parent_id``, unless that is the ``base_id``: a top-level request); a server span links to the
  trace points its requests were sent from while it handled the request (the callee's own
  OSProfiler span, typically its ``wsgi`` one).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Iterator

from .. import __version__, protocols
from ..model import Address, Flow, HttpRequest, HttpResponse, Pair, Participant, RpcExchange, Token
from ..protocols.base import Attr, peer
from ..protocols.http import header
from ..quoting import one_line
from ..redact import url_template
from .common import DEFAULT, RenderOptions, frame_ranges

#: SpanKind and StatusCode as OTLP/JSON writes them (integers).
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
STATUS_ERROR = 2
#: The instrumentation scope of every span.
SCOPE = {"name": "osflow", "version": __version__}

__all__ = ["Attr", "osprofiler_span_id", "render", "render_parts", "trace_info", "traces", "traces_of_parts"]


# --------------------------------------------------------------------------- ids and values


def _hex(text: str, digits: int) -> str:
    h = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:digits]
    return h if h.strip("0") else "1".rjust(digits, "0")  # an all-zero id is invalid


def _epoch_us(t: float) -> int:
    """Epoch seconds (as the capture has them, to the microsecond) -> integer microseconds."""
    return int(round(t * 1_000_000))


def _nanos(t: float) -> str:
    return str(_epoch_us(t) * 1000)


def osprofiler_span_id(trace_point: str) -> str | None:
    """The span id osprofiler's OTLP/Jaeger drivers give a trace point: the low 64 bits of its UUID.

    >>> osprofiler_span_id("2ff55f92-888d-43e7-bb3d-8769a317746b")
    'bb3d8769a317746b'
    >>> osprofiler_span_id("not a uuid") is None
    True
    """
    u = _uuid(trace_point)
    return None if u is None else u.hex[16:]


def _uuid(text: object) -> uuid.UUID | None:
    if not isinstance(text, str):
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def trace_info(req: HttpRequest) -> tuple[uuid.UUID, uuid.UUID] | None:
    """OSProfiler's (base_id, parent_id) from a request's ``X-Trace-Info`` header, or None.

    The header is ``base64url(json)``; osprofiler checks its HMAC, osflow has no key and needs none.

    >>> from osflow.model import Address
    >>> a = Address("127.0.0.1", 1)
    >>> info = base64.urlsafe_b64encode(b'{"base_id": "2b0fa4b1-0cbb-49d6-b1c6-a48f60d84947", '
    ...                                 b'"parent_id": "2b0fa4b1-0cbb-49d6-b1c6-a48f60d84947"}').decode()
    >>> r = HttpRequest(protocol="http", stream=0, src=a, dst=a, start=0, end=0, frames=(1,), is_request=True,
    ...                 method="GET", uri="/", headers=(("X-Trace-Info", info),))
    >>> [u.hex for u in trace_info(r)]
    ['2b0fa4b10cbb49d6b1c6a48f60d84947', '2b0fa4b10cbb49d6b1c6a48f60d84947']
    """
    raw = header(req.headers, "X-Trace-Info")
    if not raw:
        return None
    raw = raw.strip()
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict):
        return None
    base = _uuid(data.get("base_id"))
    parent = _uuid(data.get("parent_id", data.get("base_id")))
    if base is None or parent is None:
        return None
    return base, parent


def _value(v: object) -> dict:
    """An OTLP ``AnyValue`` in its JSON form (64-bit integers as strings)."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    return {"stringValue": one_line(str(v))}


def _attributes(attrs: list[Attr]) -> list[dict]:
    return [{"key": k, "value": _value(v)} for k, v in attrs if v is not None and v != [] and v != ()]


# --------------------------------------------------------------------------- the flow's context


class _Flow:
    """What the spans of any trace need to know about the whole flow: the tree, connections' schemas."""

    def __init__(self, flow: Flow | None = None) -> None:
        self.children: dict[int, list[Pair]] = defaultdict(list)  # pair id -> its children, until written
        self.tokens: dict[str, Token] = {}
        # the schema each MySQL connection logged in to (or switched to): connection metadata; for a
        # connection opened before the capture, the schema its results come from
        self._logins: OrderedDict[int, str] = OrderedDict()
        self._results: OrderedDict[int, str] = OrderedDict()
        if flow is not None:
            self.add(flow)

    def add(self, flow: Flow) -> None:
        """The pairs of a flow, or of the next part of one."""
        self.tokens = {t.id: t for t in flow.tokens}
        for p in flow.pairs:
            if p.parent is not None:  # top-level pairs are the traces' own (traces_of_parts)
                self.children[p.parent].append(p)
            stream = p.exchange.stream
            login, switch, results = protocols.of(p.exchange).schemas(p.exchange)
            if login:
                _remember(self._logins, stream, login, first=True)
            elif switch:
                _remember(self._logins, stream, switch)
            if results:
                _remember(self._results, stream, results[0], first=True)

    def schema(self, stream: int) -> str | None:
        return self._logins.get(stream) or self._results.get(stream)

    def drop(self, pairs: list[Pair]) -> None:
        """Forget a tree written."""
        for p in pairs:
            self.children.pop(p.id, None)

    def subtree(self, top: Pair) -> list[Pair]:
        out: list[Pair] = []
        stack = [top]
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(reversed(self.children.get(p.id, ())))
        return out

    def last_end(self, pair: Pair) -> float:
        """When the pair and everything under it ended."""
        end = pair.exchange.end
        for c in self.children.get(pair.id, ()):
            end = max(end, self.last_end(c))
        return end


class _Trace:
    """The spans of one top-level pair's subtree, grouped by resource."""

    def __init__(self, ctx: _Flow, top: Pair) -> None:
        self.ctx = ctx
        self.top = top
        self.pairs = ctx.subtree(top)
        self.profiler = self._profiler_base()
        if self.profiler is not None:
            self.trace_id = self.profiler.hex
        else:
            req = top.exchange.request
            self.trace_id = _hex(f"osflow trace {_epoch_us(req.start)} {top.exchange.stream} {req.frames[0]}", 32)
        self.inner: dict[int, str] = {}  # pair id -> span id its children hang under
        self.resources: dict[tuple, tuple[list[Attr], list[dict]]] = {}

    def _profiler_base(self) -> uuid.UUID | None:
        for p in self.pairs:
            if isinstance(p.exchange.request, HttpRequest):
                info = trace_info(p.exchange.request)
                if info is not None:
                    return info[0]
        return None

    def span_id(self, pair: Pair, role: str) -> str:
        ex = pair.exchange
        key = f"{ex.stream} {ex.request.frames[0]}"
        if isinstance(ex, RpcExchange) and ex.delivery is not None:
            key += f" {ex.server_stream} {ex.delivery.frames[0]}"
        return _hex(f"osflow span {self.trace_id} {_epoch_us(ex.request.start)} {key} {role}", 16)

    # ------------------------------------------------------------------ resources

    def _resource(self, who: Participant, address: Address | None) -> list[dict]:
        key = (who.label, who.pid)
        entry = self.resources.get(key)
        if entry is None:
            attrs: list[Attr] = [
                ("service.name", who.label),
                ("service.namespace", "openstack"),
                ("process.pid", who.pid),
                ("host.ip", []),
                ("osflow.service", who.service),
                ("osflow.evidence", who.evidence),
                ("osflow.evidence.source", who.source),
            ]
            if who.host:  # several hosts' recordings merged: the recorded host it runs on
                attrs.append(("host.name", who.host))
            entry = (attrs, [])
            self.resources[key] = entry
        if address is not None:
            ips = entry[0][3][1]
            assert isinstance(ips, list)
            if address.host not in ips:
                ips.append(address.host)
        return entry[1]

    def add(self, who: Participant, address: Address | None, span: dict) -> None:
        self._resource(who, address).append(span)

    # ------------------------------------------------------------------ output

    def data(self) -> dict:
        for pair in self.pairs:
            _spans(self, pair)
        resource_spans = []
        for attrs, spans in self.resources.values():
            attrs = [(k, sorted(v) if isinstance(v, list) else v) for k, v in attrs]
            resource_spans.append({
                "resource": {"attributes": _attributes(attrs)},
                "scopeSpans": [{"scope": dict(SCOPE), "spans": spans}],
            })  # fmt: skip
        return {"resourceSpans": resource_spans}


# --------------------------------------------------------------------------- spans


def _span(trace: _Trace, span_id: str, parent: str | None, name: str, kind: int, start: float, end: float,
          attrs: list[Attr], error: str | None = None, links: tuple[tuple[str, str], ...] = ()) -> dict:
    span: dict = {"traceId": trace.trace_id, "spanId": span_id}
    if parent is not None:
        span["parentSpanId"] = parent
    span["name"] = one_line(name) or "?"
    span["kind"] = kind
    span["startTimeUnixNano"] = _nanos(start)
    span["endTimeUnixNano"] = _nanos(max(start, end))
    span["attributes"] = _attributes(attrs)
    if links:
        span["links"] = [
            {"traceId": trace.trace_id, "spanId": sid, "attributes": _attributes([("osflow.link", why)])}
            for sid, why in links
        ]
    if error is not None:
        span["status"] = {"code": STATUS_ERROR, "message": one_line(error)}
    return span


def _common(trace: _Trace, pair: Pair) -> list[Attr]:
    ex = pair.exchange
    tokens = [trace.ctx.tokens[t].describe() if t in trace.ctx.tokens else t for t in pair.tokens]
    return [
        ("osflow.pair.id", pair.id),
        ("osflow.request", pair.message or pair.request),
        ("osflow.response", pair.result or pair.response),
        ("osflow.tokens", tokens),
        ("osflow.frames", frame_ranges(ex.frames)),
        ("osflow.tcp.stream", ex.stream),
        ("osflow.background", pair.background),
    ]


_peer = peer


def _spans(trace: _Trace, pair: Pair) -> None:
    """Add the span(s) of one pair to its trace."""
    parent = trace.inner.get(pair.parent) if pair.parent is not None else None
    ex = pair.exchange
    req = ex.request
    if isinstance(ex, RpcExchange):
        _rpc(trace, pair, parent)
    elif isinstance(req, HttpRequest):
        _http(trace, pair, req, parent)
    elif (client_span := protocols.of(ex).otlp_client_span(pair, trace.ctx.schema(ex.stream),
                                                           _common(trace, pair))) is not None:
        # a database's or a cache's: one client span, its attributes the protocol's
        name, attrs, error = client_span
        sid = trace.span_id(pair, "client")
        trace.inner[pair.id] = sid
        trace.add(pair.client, ex.client, _span(trace, sid, parent, name, CLIENT, ex.start, ex.end, attrs, error))
    else:  # a span all the same
        sid = trace.span_id(pair, "client")
        trace.inner[pair.id] = sid
        trace.add(pair.client, ex.client, _span(trace, sid, parent, pair.request, CLIENT, ex.start, ex.end,
                                                _common(trace, pair)))


def _host_port(req: HttpRequest, server: Address) -> tuple[str, int]:
    """``server.address``/``server.port``: the ``Host`` header as the client wrote it, else the address."""
    host = header(req.headers, "Host")
    if host:
        name, sep, port = host.strip().rpartition(":")
        if sep and port.isdigit() and not name.endswith(":"):
            return name.strip("[]"), int(port)
        return host.strip().strip("[]"), server.port
    return server.host, server.port


def _http(trace: _Trace, pair: Pair, req: HttpRequest, parent: str | None) -> None:
    ex = pair.exchange
    resp = ex.response if isinstance(ex.response, HttpResponse) else None
    template = url_template(req.uri)
    name = f"{req.method} {template}"
    host, port = _host_port(req, ex.server)
    path, _, query = req.uri.partition("?")
    status = resp.status if resp is not None else None
    request_id = None
    if resp is not None:
        request_id = header(resp.headers, "X-OpenStack-Request-ID") or header(resp.headers, "X-Compute-Request-ID")
    authority = f"[{host}]" if ":" in host else host
    both: list[Attr] = [
        ("http.request.method", req.method),
        ("http.method", req.method),
        ("url.template", template),
        ("server.address", host),
        ("server.port", port),
        ("http.response.status_code", status),
        ("http.status_code", status),
        ("user_agent.original", req.user_agent),
        ("http.user_agent", req.user_agent),
        ("network.protocol.name", "http"),
        ("openstack.request_id", request_id),
    ]
    info = trace_info(req)
    client_links: tuple[tuple[str, str], ...] = ()
    profiler: list[Attr] = []
    if info is not None:
        base, sender = info
        profiler = [("osprofiler.base_id", str(base)), ("osprofiler.parent_id", str(sender))]
        if sender != base and base.hex == trace.trace_id:
            client_links = ((sender.hex[16:], "osprofiler trace point that sent the request"),)
    client_error = server_error = None
    if status is not None and status >= 400:
        client_error = f"{status} {resp.reason}".strip() if resp is not None else str(status)
        if status >= 500:
            server_error = client_error
    error_type = [("error.type", str(status))] if status is not None and status >= 400 else []
    common = _common(trace, pair)
    client_id = trace.span_id(pair, "client")
    client_attrs = both + [
        ("url.full", f"http://{authority}:{port}{req.uri}"),
        ("http.url", f"http://{authority}:{port}{req.uri}"),
        *_peer(ex.server),
        ("net.peer.name", host),
        ("net.peer.port", port),
        *error_type,
        *profiler,
        *common,
    ]
    trace.add(pair.client, ex.client, _span(trace, client_id, parent, name, CLIENT, ex.start, ex.end, client_attrs,
                                            client_error, client_links))
    server_id = trace.span_id(pair, "server")
    server_attrs = both + [
        ("url.path", path),
        ("url.query", query or None),
        ("url.scheme", "http"),
        ("http.target", req.uri),
        ("client.address", ex.client.host),
        ("client.port", ex.client.port),
        *_peer(ex.client),
        *(error_type if server_error else []),
        *profiler,
        *common,
    ]
    trace.add(pair.server, ex.server, _span(trace, server_id, client_id, name, SERVER, req.end, ex.end, server_attrs,
                                            server_error, _handler_links(trace, pair)))
    trace.inner[pair.id] = server_id


def _handler_links(trace: _Trace, pair: Pair) -> tuple[tuple[str, str], ...]:
    """Links from a server span to the OSProfiler trace points its own requests were sent from."""
    if trace.profiler is None:
        return ()
    seen: dict[str, None] = {}
    for c in trace.ctx.children.get(pair.id, ()):
        if isinstance(c.exchange.request, HttpRequest) and not isinstance(c.exchange, RpcExchange):
            info = trace_info(c.exchange.request)
            if info is not None and info[0] == trace.profiler and info[1] != info[0]:
                seen.setdefault(info[1].hex[16:], None)
    return tuple((sid, "osprofiler trace point that handled the request") for sid in seen)


def _rpc(trace: _Trace, pair: Pair, parent: str | None) -> None:
    ex = pair.exchange
    assert isinstance(ex, RpcExchange)
    o = ex.oslo
    publish = ex.request
    call = ex.kind == "call"
    if o.method:
        name = o.method + (f" {o.object_method}" if o.object_method else "")
    else:
        name = pair.request
    error = error_type = None
    if call and ex.response is not None:
        r = ex.response.oslo  # type: ignore[attr-defined]
        if r is not None and r.failure:
            error = r.failure + (f": {r.failure_message}" if r.failure_message else "")
            error_type = r.failure
    broker = ex.broker or ex.server
    key = publish.routing_key or None  # type: ignore[attr-defined]
    both: list[Attr] = [
        ("messaging.system", "rabbitmq"),
        ("messaging.destination.name", publish.exchange),  # type: ignore[attr-defined]
        ("messaging.rabbitmq.destination.routing_key", key),
        ("rabbitmq.destination.routing_key", key),
        ("messaging.message.id", o.unique_id),
        ("messaging.message.conversation_id", o.msg_id),
        ("messaging.message.body.size", publish.body_size or None),  # type: ignore[attr-defined]
        ("rpc.system", "oslo_messaging"),
        ("rpc.service", ex.routing_key_topic or None),
        ("rpc.method", o.method),
        ("server.address", broker.host),
        ("server.port", broker.port),
        *_peer(broker),
        ("net.peer.name", broker.host),
        ("net.peer.port", broker.port),
        ("error.type", error_type),
        ("openstack.request_id", o.request_id),
        ("openstack.global_request_id", o.global_request_id),
        ("osflow.rpc.kind", ex.kind),
        ("osflow.rpc.delivered", ex.delivered),
        ("osflow.broker", pair.via.label if pair.via else None),
    ]
    common = _common(trace, pair)
    caller_id = trace.span_id(pair, "client")
    caller_end = ex.end if call else publish.end
    sender = [("messaging.operation.type", "send"), ("messaging.operation.name", "publish"),
              ("messaging.operation", "publish")]
    trace.add(pair.client, ex.client, _span(trace, caller_id, parent, name, CLIENT if call else PRODUCER, ex.start,
                                            caller_end, both + sender + common, error))
    trace.inner[pair.id] = caller_id
    if ex.delivery is None:
        return
    start, end = ex.served
    if not call:
        end = max(end, trace.ctx.last_end(pair))
    receiver = [("messaging.operation.type", "process"), ("messaging.operation.name", "process"),
                ("messaging.operation", "process")]
    callee_id = trace.span_id(pair, "server")
    trace.add(pair.server, ex.server, _span(trace, callee_id, caller_id, name, SERVER if call else CONSUMER, start,
                                            end, both + receiver + common, error))
    trace.inner[pair.id] = callee_id


# --------------------------------------------------------------------------- render


def traces(flow: Flow) -> Iterator[dict]:
    """One ``TracesData`` (as a dict) per top-level pair, in request order."""
    return traces_of_parts((flow,))


def traces_of_parts(parts: Iterable[Flow], ctx: _Flow | None = None) -> Iterator[dict]:
    """The same for a flow streamed in parts (:class:`osflow.pipeline.Stream`): a top-level pair's
    trace once every pair of its tree gets no more children, and those of the pairs before it.
    ``ctx``: what is kept between parts (given by tests, to see that it stays small)."""
    ctx = ctx if ctx is not None else _Flow()
    tops: deque[Pair] = deque()  # top-level pairs not written yet, in request order
    root: dict[int, int] = {}  # pair id -> its top-level pair's id, while not written
    open_: dict[int, int] = defaultdict(int)  # top-level pair id -> pairs of its tree that may get children
    for part in parts:
        ctx.add(part)
        for p in part.pairs:
            r = root[p.id] = p.id if p.parent is None else root[p.parent]
            if p.parent is None:
                tops.append(p)
            open_[r] += 1
        for i in part.closed or ():
            open_[root[i]] -= 1
        while tops and (part.closed is None or open_[tops[0].id] == 0):
            top = tops.popleft()
            trace = _Trace(ctx, top)
            yield trace.data()
            ctx.drop(trace.pairs)
            for p in trace.pairs:
                del root[p.id]
            del open_[top.id]


def render(flow: Flow, options: RenderOptions = DEFAULT) -> Iterator[str]:
    """Yield one OTLP/JSON ``TracesData`` object per top-level pair (compact JSON, ASCII only)."""
    return render_parts((flow,), options)


def render_parts(parts: Iterable[Flow], options: RenderOptions = DEFAULT) -> Iterator[str]:
    """The same lines for a flow streamed in parts, each as soon as its tree is complete."""
    for data in traces_of_parts(parts):
        yield json.dumps(data, ensure_ascii=True, separators=(",", ":"))


#: connections whose schema is remembered (the latest used): a streamed flow's memory stays bounded
_SCHEMAS = 50_000


def _remember(known: OrderedDict, stream: int, schema: str, first: bool = False) -> None:
    if first and stream in known:
        known.move_to_end(stream)
        return
    known[stream] = schema
    known.move_to_end(stream)
    if len(known) > _SCHEMAS:
        known.popitem(last=False)

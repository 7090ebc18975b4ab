"""``--format otlp`` and ``--otlp-endpoint`` on the real captures.

Every line is parsed strictly with OpenTelemetry's own schema (``opentelemetry-proto``'s
``TracesData``, ids converted from OTLP/JSON's hex to the proto3 JSON mapping's base64 first);
the nesting of the spans is the JSON output's; golden files hold every capture's output (from
``-r``; PDML on stdin gives the same bytes); no secret gets out; the POST reaches a test receiver
decoding ``ExportTraceServiceRequest`` and, when the ``rotel`` wheel is installed, a real OTLP/HTTP
receiver that passes it on.  The OSProfiler capture was recorded in the lab with OSProfiler
enabled in placement and keystone; its ``osprofiler.tsv`` is what OSProfiler itself stored.
"""

from __future__ import annotations

import base64
import csv
import gzip
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from functools import cache
from pathlib import Path

import pytest

from support import CASES, FIXTURES, case_dir, check_golden, header_tokens, pdml_bytes, run_post, tables_args

pytestmark = pytest.mark.tshark

json_format = pytest.importorskip("google.protobuf.json_format")
trace_pb2 = pytest.importorskip("opentelemetry.proto.trace.v1.trace_pb2")
trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

COMPUTE = ("server-create", "image-create", "network-create", "lab-server-create-novalidhost", "lab-server-delete",
           "lab-server-stop")
OSPROFILER = "captures-other/osprofiler-resource-class-list"
#: (case for case_dir, golden name)
ALL = ([(c, c) for c in CASES] + [(f"captures-compute/{c}", f"compute-{c}") for c in COMPUTE]
       + [(OSPROFILER, "osprofiler-resource-class-list")])
IDS = [g for _, g in ALL]
HEX32, HEX16 = re.compile("[0-9a-f]{32}"), re.compile("[0-9a-f]{16}")
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


@cache
def _post(case: str, *args: str, pdml: bool = False) -> str:
    argv = [*tables_args(case), *args]
    if pdml:
        status, out, err = run_post(argv, stdin=pdml_bytes(case))
    else:
        status, out, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *argv])
    assert status == 0, err
    return out


def _otlp(case: str) -> str:
    return _post(case, "--format", "otlp")


def _lines(case: str) -> list[dict]:
    return [json.loads(line) for line in _otlp(case).splitlines()]


def _spans(data: dict) -> list[tuple[dict, dict]]:
    """(resource attributes, span) of one TracesData."""
    out = []
    for rs in data["resourceSpans"]:
        res = _attrs(rs["resource"])
        for ss in rs["scopeSpans"]:
            out += [(res, s) for s in ss["spans"]]
    return out


def _attrs(obj: dict) -> dict:
    def value(v: dict):
        (kind, x), = v.items()
        if kind == "intValue":
            return int(x)
        if kind == "arrayValue":
            return [value(e) for e in x.get("values", [])]
        return x

    return {a["key"]: value(a["value"]) for a in obj.get("attributes", [])}


def _proto_json(data: dict) -> dict:
    """OTLP/JSON -> the proto3 JSON mapping: trace and span ids from hex to base64."""
    def b64(h: str) -> str:
        return base64.b64encode(bytes.fromhex(h)).decode()

    data = json.loads(json.dumps(data))
    for _, s in _spans(data):
        for k in ("traceId", "spanId", "parentSpanId"):
            if k in s:
                s[k] = b64(s[k])
        for link in s.get("links", []):
            link["traceId"], link["spanId"] = b64(link["traceId"]), b64(link["spanId"])
    return data


def _parse(data: dict):
    return json_format.Parse(json.dumps(_proto_json(data)), trace_pb2.TracesData())


# ------------------------------------------------------------------ golden files, both inputs


@pytest.mark.parametrize("case,golden", ALL, ids=IDS)
def test_golden(case, golden):
    check_golden(f"post/{golden}.otlp.jsonl", _otlp(case))


@pytest.mark.parametrize("case,golden", ALL, ids=IDS)
def test_pdml_on_stdin_gives_the_same_bytes_as_r(case, golden):
    assert _post(case, "--format", "otlp", pdml=True) == _otlp(case)


# ------------------------------------------------------------------ the schema


@pytest.mark.parametrize("case,golden", ALL, ids=IDS)
def test_every_line_parses_strictly_as_traces_data(case, golden):
    lines = _lines(case)
    assert lines
    for data in lines:
        message = _parse(data)  # unknown fields, wrong types, bad enums: ParseError
        assert sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans) == len(_spans(data))
        for res, s in _spans(data):
            assert HEX32.fullmatch(s["traceId"]) and HEX16.fullmatch(s["spanId"]), s
            assert "parentSpanId" not in s or HEX16.fullmatch(s["parentSpanId"])
            assert s["kind"] in (SERVER, CLIENT, PRODUCER, CONSUMER)
            assert re.fullmatch(r"\d{19}", s["startTimeUnixNano"])
            assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"])
            assert s["name"] and res["service.name"]
            assert s.get("status", {}).get("code", 2) == 2


def test_one_line_per_top_level_request_and_one_trace_per_line():
    for case, _ in ALL:
        pairs = _json(case)
        lines = _lines(case)
        assert len(lines) == sum(p["parent"] is None for p in pairs), case
        trace_ids = [{s["traceId"] for _, s in _spans(d)} for d in lines]
        assert all(len(t) == 1 for t in trace_ids), case
        if case != OSPROFILER:  # OSProfiler's base id is the whole command's
            assert len({next(iter(t)) for t in trace_ids}) == len(lines), case


@cache
def _json(case: str) -> list[dict]:
    return [json.loads(line) for line in _post(case, "--format", "json").splitlines()]


@pytest.mark.parametrize("case,golden", ALL, ids=IDS)
def test_every_parent_resolves_and_the_nesting_is_the_json_output_s(case, golden):
    parents = {p["id"]: p["parent"] for p in _json(case)}
    seen: set[int] = set()
    for data in _lines(case):
        spans = {s["spanId"]: s for _, s in _spans(data)}
        assert len(spans) == len(_spans(data)), "span ids are unique"
        pair_of = {sid: _attrs(s)["osflow.pair.id"] for sid, s in spans.items()}
        for sid, s in spans.items():
            pair = pair_of[sid]
            seen.add(pair)
            if "parentSpanId" not in s:
                assert parents[pair] is None, (case, pair)
                continue
            parent = spans[s["parentSpanId"]]  # resolves within its trace
            if pair_of[s["parentSpanId"]] == pair:  # the server/consumer half under its client/producer half
                assert (parent["kind"], s["kind"]) in ((CLIENT, SERVER), (PRODUCER, CONSUMER)), (case, pair)
            else:
                assert pair_of[s["parentSpanId"]] == parents[pair], (case, pair)
                assert parent["kind"] in (SERVER, CONSUMER, CLIENT)
    assert seen == set(parents), "every pair is a span"


# ------------------------------------------------------------------ what the spans say


def _all_spans(case: str) -> list[tuple[dict, dict, dict]]:
    return [(res, s, _attrs(s)) for d in _lines(case) for res, s in _spans(d)]


def test_http_spans_client_under_the_caller_server_under_the_callee():
    spans = _all_spans("resource-class-list-cold")
    listing = [(res["service.name"], s["kind"], a) for res, s, a in spans if s["name"] == "GET /resource_classes"]
    assert [(who, kind) for who, kind, _ in listing] == [("OpenStackClient", CLIENT), ("placement", SERVER)]
    for _, _, a in listing:
        assert (a["http.request.method"], a["http.method"]) == ("GET", "GET")
        assert a["http.response.status_code"] == a["http.status_code"] == 200
        assert (a["server.address"], a["server.port"]) == ("controller", 8778)
        assert a["osflow.request"] == "GET /resource_classes [T1] (microversion 1.2)"
        assert a["osflow.tokens"] == ["T1 admin@admin (bb9ff2e7)"]
    assert listing[0][2]["url.full"] == listing[0][2]["http.url"] == "http://controller:8778/resource_classes"
    assert listing[1][2]["url.path"] == "/resource_classes" and listing[1][2]["client.address"] == "127.0.0.1"
    client = next(res for res, s, _ in spans if res["service.name"] == "OpenStackClient")
    assert client["process.pid"] == 26512 and client["service.namespace"] == "openstack"


def test_sql_spans_are_named_after_operation_and_table_with_literals_redacted():
    spans = _all_spans("resource-class-list-cold")
    sql = [(res, s, a) for res, s, a in spans if a.get("db.system.name") in ("mysql", "mariadb")]
    assert sql and all(a["db.system.name"] == a["db.system"] == "mariadb" for _, _, a in sql)  # mariadbd in ps
    assert all(s["kind"] == CLIENT for _, s, _ in sql)
    names = {s["name"] for _, s, _ in sql}
    assert {"SELECT resource_classes", "SELECT traits", "login", "ROLLBACK"} <= names
    for res, _, a in sql:
        text = a.get("db.query.text")
        if text is None:
            continue
        assert a["db.statement"] == text and "'" not in text and '"' not in text, text
        assert not re.search(r"(?<![\w.`$])\d", text), text
        assert a["db.namespace"] == a["db.name"] == ("placement" if res["service.name"] == "placement" else "keystone")
    select = next(a for _, s, a in sql if s["name"] == "SELECT resource_classes")
    assert (select["db.operation.name"], select["db.collection.name"], select["db.sql.table"]) == (
        "SELECT", "resource_classes", "resource_classes")
    assert "osflow.request" not in select  # the statement is db.query.text, redacted


def test_memcached_spans():
    spans = _all_spans("resource-class-list-cold")
    cache = [(s, a) for _, s, a in spans if a.get("db.system.name") == "memcached"]
    assert [(s["name"], a["osflow.response"]) for s, a in cache] == [("get", "miss"), ("set", "STORED")]
    assert all(a["db.query.text"].startswith(s["name"] + " tokens/") for s, a in cache)
    assert all(a["osflow.tokens"] == ["T1 admin@admin (bb9ff2e7)"] for _, a in cache)


def test_rpc_calls_are_client_server_and_casts_producer_consumer():
    spans = _all_spans("captures-compute/server-create")
    by_name: dict[str, list] = {}
    for res, s, a in spans:
        by_name.setdefault(s["name"], []).append((res["service.name"], s["kind"], a))
    assert [(w, k) for w, k, _ in by_name["select_destinations"]] == [("nova-conductor", CLIENT),
                                                                      ("nova-scheduler", SERVER)]
    assert [(w, k) for w, k, _ in by_name["schedule_and_build_instances"]] == [("nova-api", PRODUCER),
                                                                               ("nova-conductor", CONSUMER)]
    assert [(w, k) for w, k, _ in by_name["build_and_run_instance"]] == [("nova-conductor", PRODUCER),
                                                                         ("nova-compute", CONSUMER)]
    assert any(w == "nova-compute" for w, _, _ in by_name["object_action Instance.save"])
    _, _, call = by_name["select_destinations"][0]
    assert (call["messaging.system"], call["messaging.destination.name"], call["rpc.method"]) == (
        "rabbitmq", "nova", "select_destinations")
    assert call["messaging.rabbitmq.destination.routing_key"] == call["rabbitmq.destination.routing_key"] == "scheduler"
    assert call["rpc.system"] == "oslo_messaging" and call["messaging.message.conversation_id"]
    assert call["openstack.request_id"].startswith("req-")
    fanout = by_name["update_instance_info"][0][2]
    assert fanout["messaging.destination.name"] == "scheduler_fanout"
    assert "rabbitmq.destination.routing_key" not in fanout
    # the user's POST and everything it caused is one trace
    (post_trace,) = {s["traceId"] for res, s, a in spans if s["name"] == "POST /v2.1/servers"}
    assert {s["traceId"] for _, s, _ in spans if s["name"] == "build_and_run_instance"} == {post_trace}


def test_errors_are_status_error():
    spans = _all_spans("captures-compute/lab-server-create-novalidhost")
    failed = [(s, a) for _, s, a in spans if s["name"] == "select_destinations"]
    assert failed and all(s["status"]["code"] == 2 and a["error.type"] == "NoValidHost" for s, a in failed)
    assert all(s["status"]["message"].startswith("NoValidHost: ") for s, _ in failed)
    not_found = [(s, a) for case in ("captures-compute/server-create", "captures-compute/image-create")
                 for _, s, a in _all_spans(case) if a.get("http.response.status_code") == 404]
    assert not_found
    for s, a in not_found:  # 4xx: an error for the client, not for the server (semantic conventions)
        assert ("status" in s) == (s["kind"] == CLIENT) and a.get("error.type", "404") == "404"


def test_5xx_and_mysql_errors_are_status_error_on_the_lab_s_error_capture():
    """tests/fixtures/lab-errors (stand-in HTTP servers, real memcached and MariaDB, no tables): a 503
    is an error for both ends, a 401 or 404 for the client only; MySQL's error replies (a refused
    login, a missing table) are errors with their code as error.type."""
    status, out, err = run_post(["-r", str(FIXTURES / "lab-errors" / "capture.pcapng"), "--format", "otlp"])
    assert status == 0, err
    spans = [(s, _attrs(s)) for line in out.splitlines() for _, s in _spans(json.loads(line))]
    by = {(s["name"], s["kind"]): (s.get("status", {}), a) for s, a in spans}
    for kind in (CLIENT, SERVER):
        st, a = by[("GET /resource_classes", kind)]
        assert (st.get("code"), a.get("error.type")) == (2, "503"), kind
    for name, code in (("POST /v3/auth/tokens", "401"), ("GET /v3/auth/tokens", "404")):
        assert by[(name, CLIENT)][0].get("code") == 2 and by[(name, CLIENT)][1]["error.type"] == code
        assert "code" not in by[(name, SERVER)][0]
    failed = {a["error.type"]: st["message"] for s, a in spans for st in [s.get("status", {})]
              if a.get("db.system") == "mysql" and st.get("code") == 2}
    assert set(failed) == {"1045", "1146"} and "no_such_table" in failed["1146"], failed


def test_span_names_template_ids_in_paths():
    names = {s["name"] for _, s, _ in _all_spans("captures-compute/server-create")}
    assert "POST /v2.1/servers" in names and "GET /v2.1/servers/{id}" in names
    assert not [n for n in names if re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", n) or "?" in n]


# ------------------------------------------------------------------ secrets


def _rpc_tokens(case: str) -> set[str]:
    import io

    from osflow.decode import Decoder
    from osflow.model import AmqpMessage
    from osflow.source import PdmlReader

    return {m.oslo.token for m in Decoder().decode(PdmlReader(io.BytesIO(pdml_bytes(case)), case))
            if isinstance(m, AmqpMessage) and m.oslo is not None and m.oslo.token}


@pytest.mark.parametrize("case,golden", ALL, ids=IDS)
def test_no_secret_in_the_output(case, golden):
    out = _otlp(case).replace('{"key":"service.namespace","value":{"stringValue":"openstack"}}', "")
    secrets = set(header_tokens(case)) | _rpc_tokens(case)
    assert secrets, "this test would check nothing"
    for t in secrets:
        assert not [t[i:i + 16] for i in range(0, len(t) - 16, 8) if t[i:i + 16] in out], (case, t[:8])
    assert "password openstack" not in out and '"openstack"' not in out
    assert "X-Trace-HMAC" not in out and "PASSWORD" not in out


def test_show_secrets_shows_the_tokens():
    case = "resource-class-list-cache-hit"
    token = header_tokens(case)[0]
    assert token not in _otlp(case)
    assert f"T1={token}" in _post(case, "--format", "otlp", "--show-secrets")


def test_no_osprofiler_signature_in_the_output():
    import io

    from osflow.decode import Decoder, header
    from osflow.model import HttpRequest
    from osflow.source import PdmlReader

    hmacs = {header(m.headers, "X-Trace-HMAC") for m in Decoder().decode(PdmlReader(io.BytesIO(pdml_bytes(OSPROFILER)),
                                                                                     OSPROFILER))
             if isinstance(m, HttpRequest) and header(m.headers, "X-Trace-HMAC")}
    assert len(hmacs) == 2  # the client's and placement's
    out = _otlp(OSPROFILER)
    assert not [h for h in hmacs if h in out]


# ------------------------------------------------------------------ OSProfiler


def _osprofiler_rows() -> list[dict]:
    with open(case_dir(OSPROFILER) / "osprofiler.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _shorten(trace_point: str) -> str:
    """osprofiler's _utils.shorten_id, as its OTLP and Jaeger drivers use it, in hex."""
    return format(uuid.UUID(trace_point).int & ((1 << 64) - 1), "016x")


def test_osprofiler_trace_and_osflow_trace_are_one_trace():
    rows = _osprofiler_rows()
    (base,) = {r["base_id"] for r in rows}
    spans = _all_spans(OSPROFILER)
    assert {s["traceId"] for _, s, _ in spans} == {format(uuid.UUID(base).int, "032x")}  # uuid_to_int128
    # the trace points osflow links to are OSProfiler's spans, with the ids its drivers give them
    profiler_spans = {_shorten(r["trace_id"]): r for r in rows}
    links = [(res["service.name"], s["kind"], s["name"], link["spanId"])
             for res, s, _ in spans for link in s.get("links", [])]
    assert links and all(sid in profiler_spans for *_, sid in links)
    placement = next(r for r in rows if r["service"] == "placement" and r["name"] == "wsgi-start")
    assert (placement["method"], placement["path"]) == ("GET", "/resource_classes")
    assert sorted(set(links)) == sorted({
        ("placement", SERVER, "GET /resource_classes", _shorten(placement["trace_id"])),
        ("placement", CLIENT, "GET /v3", _shorten(placement["trace_id"])),
        ("placement", CLIENT, "POST /v3/auth/tokens", _shorten(placement["trace_id"])),
        ("placement", CLIENT, "GET /v3/auth/tokens", _shorten(placement["trace_id"])),
    })
    # OSProfiler's own keystone spans for those three requests hang under the same trace point
    under = [r for r in rows if r["name"] == "wsgi-start" and r["parent_id"] == placement["trace_id"]]
    assert [(r["service"], r["method"], r["path"]) for r in under] == [
        ("public", "GET", "/v3"), ("public", "POST", "/v3/auth/tokens"), ("public", "GET", "/v3/auth/tokens")]
    # osflow's span ids are its own: none is one of OSProfiler's
    assert not {s["spanId"] for _, s, _ in spans} & set(profiler_spans)
    client = [a for res, s, a in spans if s["kind"] == CLIENT and a.get("osprofiler.base_id")]
    assert len(client) == 6 and all(a["osprofiler.base_id"] == base for a in client)


def test_without_osprofiler_headers_no_link_and_no_osprofiler_attribute():
    out = _otlp("resource-class-list-cold")
    assert '"links"' not in out and "osprofiler" not in out


# ------------------------------------------------------------------ sending: --otlp-endpoint


class _Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP receiver for the tests: decodes each POST as an ExportTraceServiceRequest."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, object]] = []  # (path, content type, decoded request)
        self.status = status
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        kind = self.headers.get("Content-Type", "")
        request = trace_service_pb2.ExportTraceServiceRequest()
        if kind.startswith("application/json"):
            json_format.Parse(json.dumps(_proto_json(json.loads(body))), request)
        else:
            request.ParseFromString(body)
        server = self.server
        assert isinstance(server, _Receiver)
        server.requests.append((self.path, kind, request))
        status = server.status
        self.send_response(status)
        answer = b"{}" if status == 200 else b'{"code": 13, "message": "the test says no"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _span_ids(requests) -> list[tuple[str, str, str]]:
    return sorted((s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex())
                  for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans)


def _ids_of(case: str) -> list[tuple[str, str, str]]:
    return sorted((s["traceId"], s["spanId"], s.get("parentSpanId", "")) for d in _lines(case) for _, s in _spans(d))


def test_endpoint_gets_one_post_per_trace_and_the_same_output_is_written(no_proxy, tmp_path):
    case = "resource-class-list-cold"
    receiver = _Receiver()
    try:
        out = tmp_path / "traces.otlp.jsonl"
        status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(out),
                                   "--otlp-endpoint", receiver.url])
    finally:
        receiver.shutdown()
    assert status == 0, err
    assert out.read_text() == _otlp(case)  # -o FILE.otlp.jsonl is the OTLP format
    assert [(p, k) for p, k, _ in receiver.requests] == [("/v1/traces", "application/json")] * len(_lines(case))
    assert _span_ids([r for _, _, r in receiver.requests]) == _ids_of(case)


def test_endpoint_with_another_output_format_sends_the_traces_too(no_proxy):
    case = "captures-compute/lab-server-stop"
    receiver = _Receiver()
    try:
        status, out, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case),
                                     "--otlp-endpoint", receiver.url + "/"])
    finally:
        receiver.shutdown()
    assert status == 0, err
    assert out == _post(case)  # the timeline
    assert _span_ids([r for _, _, r in receiver.requests]) == _ids_of(case)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_failed_post_is_one_line_and_exit_6_and_the_output_stays_written(no_proxy, tmp_path):
    case = "resource-class-list-cold"
    out = tmp_path / "traces.otlp.jsonl"
    url = f"http://127.0.0.1:{_closed_port()}"
    status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(out),
                               "--otlp-endpoint", url])
    assert status == 6
    assert err.count("\n") == 1, err
    assert err.startswith(f"osflow-post: error: {url}/v1/traces: cannot send the traces: "), err
    assert out.read_text() == _otlp(case)  # everything written all the same

    receiver = _Receiver(status=500)
    try:
        status, stdout, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case),
                                        "--format", "otlp", "--otlp-endpoint", receiver.url])
    finally:
        receiver.shutdown()
    assert status == 6 and stdout == _otlp(case)
    assert err == (f"osflow-post: error: {receiver.url}/v1/traces: the receiver answered 500 Internal Server Error: "
                   '{"code": 13, "message": "the test says no"}\n')
    assert len(receiver.requests) == 1  # nothing more is sent after the first failure


def test_a_bad_endpoint_is_bad_usage():
    status, out, err = run_post(["--otlp-endpoint", "collector:4318", "-r", "/nonexistent.pcapng"])
    assert status == 2 and out == "" and "http:// or https://" in err


def test_a_real_otlp_http_receiver_takes_it(no_proxy, tmp_path):
    """rotel (the Rust OpenTelemetry collector's wheel) receives osflow's POSTs and exports them,
    as OTLP/HTTP protobuf, to the test receiver: the spans arrive with osflow's ids."""
    rotel = pytest.importorskip("rotel")
    agent = Path(rotel.__file__).parent / "rotel-agent"
    if not agent.exists():
        pytest.skip("the rotel wheel has no rotel-agent binary here")
    sink = _Receiver()
    http_port, grpc_port = _closed_port(), _closed_port()
    proc = subprocess.Popen(
        [str(agent), "start", "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--exporter", "otlp",
         "--otlp-exporter-endpoint", sink.url, "--otlp-exporter-protocol", "http",
         "--batch-timeout", "100ms", "--pid-file", str(tmp_path / "rotel.pid"),
         "--log-file", str(tmp_path / "rotel.log")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "rotel did not start"
                time.sleep(0.1)
        case = "captures-compute/lab-server-stop"
        status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case),
                                   "--format", "otlp", "--otlp-endpoint", f"http://127.0.0.1:{http_port}"])
        assert status == 0, err
        want = _ids_of(case)
        while _span_ids([r for _, _, r in sink.requests]) != want and time.monotonic() < deadline + 20:
            time.sleep(0.2)
        assert _span_ids([r for _, _, r in sink.requests]) == want
        assert {k for _, k, _ in sink.requests} == {"application/x-protobuf"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sink.shutdown()

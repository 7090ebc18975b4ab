"""Proxies are hops, not participants (osflow.proxies): a request through HAProxy is one pair.

On a real recording (tests/fixtures/proxy/haproxy-loopback: HAProxy on 127.0.0.100 in front of a
small web service in HTTP mode, with keep-alive on both sides and ``http-reuse safe``, and in
front of MariaDB in TCP mode, with both health checks), with and without the socket tables,
whole and streamed; and on the loopback captures without a proxy, that nothing is stitched.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from osflow import foreground
from osflow.decode import Decoder
from osflow.model import ProxiedExchange
from osflow.options import AnalysisOptions
from osflow.pair import Pairing
from osflow.pipeline import Stream, Tables, analyse, collect
from osflow.proxies import Stitcher
from osflow.render import jsonl, mermaid, timeline
from osflow.source import PdmlReader
from support import FIXTURES, case_dir, check_golden, pdml_bytes, run_post

pytestmark = pytest.mark.tshark

CASE = "proxy/haproxy-loopback"
WEB = ((8080, "web"),)  # the stand-in service on swift-proxy's port


def _tables(with_tables: bool) -> Tables:
    d = case_dir(CASE)
    return Tables.load([str(d / "ss.txt")], [str(d / "ps.txt")]) if with_tables else Tables()


def _options(with_tables: bool = True, show: bool = False, **kw) -> AnalysisOptions:
    client = foreground.client_from_meta(str(case_dir(CASE) / "meta.json"), _tables(with_tables).processes)
    return AnalysisOptions(overrides=WEB, show_all=True, show_proxies=show, client=client, **kw)


def _flow(with_tables: bool = True, show: bool = False):
    return analyse(io.BytesIO(pdml_bytes(CASE)), CASE, _tables(with_tables), _options(with_tables, show)).flow


def _exchanges(case: str) -> list:
    pairing = Pairing()
    pairing.feed(Decoder().decode(iter(PdmlReader(io.BytesIO(pdml_bytes(case)), case))))
    return pairing.finish()


@pytest.mark.parametrize("with_tables", [True, False], ids=["tables", "capture-only"])
def test_every_request_through_haproxy_is_one_pair_client_to_service(with_tables):
    flow = _flow(with_tables)
    http = [p for p in flow.pairs if p.protocol == "http" and p.request.startswith("GET /items/")]
    # eleven requests of three clients: one pair each, not two
    assert sorted(p.request for p in http) == [f"GET /items/{n}" for n in (1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4)]
    for p in http:
        assert isinstance(p.exchange, ProxiedExchange)
        assert p.server.label == "web" and [v.label for v in p.proxies] == ["haproxy"]
        assert str(p.exchange.server) == "127.0.0.101:8080"  # the service's own address, not the VIP
        assert [str(a) for a in p.exchange.listeners] == ["127.0.0.100:8080"]
        assert p.client.label != "haproxy"
    # every SQL statement through the VIP (TCP mode) is one pair too, from the service to its DB
    sql = [p for p in flow.pairs if p.protocol == "mysql" and p.client.label == "web"]
    assert len(sql) == 11 * 5  # login, SET NAMES, SET AUTOCOMMIT, the SELECT, quit; for each request
    assert all(isinstance(p.exchange, ProxiedExchange) and p.server.label == "web DB" for p in sql)
    assert sum(p.request.startswith("SELECT id, name FROM item") for p in sql) == 11
    # the service's work nests under the request it serves, as if there were no proxy
    by_id = {p.id: p for p in flow.pairs}
    for p in sql:
        assert p.parent is not None and by_id[p.parent].server.label == "web"
    # HAProxy takes part only through its own health checks: background, client haproxy
    assert {p.client.label for p in flow.pairs if p.server.label == "haproxy"} == set()
    checks = [p for p in flow.pairs if p.client.label == "haproxy"]
    assert sorted(p.request for p in checks) == ["OPTIONS /"] * 5 + ["quit"] * 4
    assert all(p.background and p.parent is None and not p.proxies for p in checks)


def test_without_tables_haproxy_is_named_from_the_evidence():
    flow = _flow(with_tables=False)
    ends = {n.client.evidence for n in flow.connections if n.client.label == "haproxy"}
    ends |= {n.server.evidence for n in flow.connections if n.server.label == "haproxy"}
    assert any("X-Forwarded-For: 127.0.0.1" in e for e in ends), ends
    assert any("the same bytes both ways (a TCP proxy)" in e for e in ends), ends
    assert any("option httpchk" in e for e in ends) and any("option mysql-check" in e for e in ends), ends
    with_tables = _flow(with_tables=True)
    assert any(n.server.label == "haproxy" and "ss" in n.server.evidence and "pid 14987" in n.server.evidence
               for n in with_tables.connections)


def test_one_backend_connection_carries_the_requests_of_two_clients():
    """http-reuse safe: HAProxy re-sent requests of several client connections on one connection to
    the service (two of client.py's, after the first closed); each is stitched to its own client's leg."""
    http = [p for p in _flow().pairs if isinstance(p.exchange, ProxiedExchange) and p.protocol == "http"]
    by_back: dict[int, set[int]] = {}
    for p in http:
        by_back.setdefault(p.exchange.server_stream, set()).add(p.exchange.stream)
    assert any(len(fronts) == 2 for fronts in by_back.values()), by_back
    # and a client's keep-alive connection had its requests re-sent on several connections
    by_front: dict[int, set[int]] = {}
    for p in http:
        by_front.setdefault(p.exchange.stream, set()).add(p.exchange.server_stream)
    assert any(len(backs) == 2 for backs in by_front.values()), by_front


def test_show_proxies_draws_both_legs_with_haproxy_a_participant():
    flow = _flow(show=True)
    assert not any(isinstance(p.exchange, ProxiedExchange) for p in flow.pairs)
    by_id = {p.id: p for p in flow.pairs}
    legs = [p for p in flow.pairs if p.client.label == "haproxy" and p.parent is not None]
    assert len(legs) == 11 + 55  # each request's and each statement's second leg
    for p in legs:
        front = by_id[p.parent]
        assert front.server.label == "haproxy" and front.request == p.request
    # and the default flow has one pair for every two legs
    assert len(flow.pairs) - len(_flow().pairs) == 66


def test_the_legs_agree_with_the_stitched_pair_in_json():
    lines = [json.loads(x) for x in jsonl.render(_flow())]
    proxied = [x for x in lines if "via" in x]
    assert {x["via"] for x in proxied} == {"haproxy"}
    assert {x["via_address"] for x in proxied} == {"127.0.0.100:8080", "127.0.0.100:3306"}
    for x in proxied:
        assert x["server_stream"] != x["stream"]
        assert x["server_address"].startswith("127.0.0.101:")
    # a pair that went through no proxy says nothing of it
    assert all("via" not in x for x in lines if x["client"] == "haproxy")


@pytest.mark.parametrize("show", [False, True], ids=["stitched", "show-proxies"])
def test_a_streamed_flow_stitches_as_the_whole_flow_does(show):
    whole = list(jsonl.render(_flow(show=show)))
    stream = Stream(io.BytesIO(pdml_bytes(CASE)), CASE, _tables(True), _options(True, show))
    assert [line for part in stream for line in jsonl.render(part)] == whole
    # and with a horizon shorter than a request: the legs are still found across the parts
    short = Stream(io.BytesIO(pdml_bytes(CASE)), CASE, _tables(True), _options(True, show, horizon=0.05))
    assert sorted(json.loads(x)["request"] for x in jsonl.render(collect(short).flow)) == sorted(
        json.loads(x)["request"] for x in whole)
    # what it knew of the proxy's connections is forgotten once they are idle (flat memory)
    whole_ends = Stitcher(show)
    whole_ends.stitch(_exchanges(CASE))
    assert 0 < len(short.stitcher.ends) < len(whole_ends.ends) / 2


@pytest.mark.parametrize("case", ["resource-class-list-cold", "token-issue", "captures-compute/server-create",
                                  "captures-busy/resource-class-list-4-at-once"])
def test_nothing_is_stitched_where_there_is_no_proxy(case):
    stitcher = Stitcher()
    exchanges = _exchanges(case)
    assert stitcher.stitch(exchanges) == exchanges
    assert stitcher.ends == {}


@pytest.mark.parametrize("show", [False, True], ids=["default", "show-proxies"])
@pytest.mark.parametrize("fmt", ["timeline", "json", "mermaid"])
def test_golden(fmt, show):
    d = FIXTURES / CASE
    argv = ["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"),
            "--service", "8080=web", "--all", "--format", fmt] + (["--show-proxies"] if show else [])
    status, out, err = run_post(argv)
    assert status == 0, err
    ext = {"timeline": "txt", "json": "jsonl", "mermaid": "mmd"}[fmt]
    check_golden(f"proxy/haproxy-loopback{'-show-proxies' if show else ''}.{ext}", out)


def test_the_renderers_draw_a_stitched_pair_straight_through():
    flow = _flow()
    diagram = "\n".join(mermaid.render(flow))
    assert "participant haproxy" in diagram  # its health checks
    assert not re.search(r"[^-]->>haproxy:", diagram)  # nobody sends it a request: they go straight through
    assert any(p.server.label == "haproxy" for p in _flow(show=True).pairs)
    text = "\n".join(timeline.render(flow))
    assert "GET /items/1" in text


# --------------------------------------------------------------------------- the lab: the seed through the VIP

VIP_SEED = "multihost/vip-seed/controller"  # copied byte for byte from the lab's recording


def _vip_seed(with_tables: bool = True, show: bool = False):
    d = case_dir(VIP_SEED)
    tables = Tables.load([str(d / "ss.txt")], [str(d / "ps.txt")]) if with_tables else Tables()
    client = foreground.client_from_meta(str(d / "meta.json"), tables.processes)
    options = AnalysisOptions(client=client, show_proxies=show)
    return analyse(io.BytesIO(pdml_bytes(VIP_SEED)), VIP_SEED, tables, options).flow


def _story(flow) -> list[tuple]:
    """The foreground's steps without times or frames: depth, who, to whom, what."""
    return [(s.depth, s.first.client.label, s.first.server.label, s.first.protocol,
             s.first.message if not s.is_group else (s.summary or "").split(" on ")[0].split(" (")[0])
            for s in flow.steps]


@pytest.mark.parametrize("with_tables", [True, False], ids=["tables", "capture-and-meta"])
def test_the_seed_through_the_vip_tells_the_loopback_story(with_tables):
    """The seed's command through HAProxy: the client's three calls, keystone's queries under its
    token, placement's cache look-up, token validation (keystone's queries under it) and its query
    nested as on loopback (tests/golden/post/resource-class-list-*.txt; placement here already held
    its own token: no login to keystone), each request once, the proxy nowhere."""
    flow = _vip_seed(with_tables)
    assert _story(flow) == [
        (0, "OpenStackClient", "keystone", "http", "GET /v3"),
        (0, "OpenStackClient", "keystone", "http", "POST /v3/auth/tokens (password admin@Default → project admin)"),
        (1, "keystone", "keystone DB", "mysql", "47 queries"),
        (0, "OpenStackClient", "placement", "http", "GET /resource_classes [T1] (microversion 1.2)"),
        (1, "placement", "memcached", "memcache", "get tokens/… [T1]"),
        (1, "placement", "keystone", "http", "GET /v3/auth/tokens (validate T1) [T2]"),
        (2, "keystone", "keystone DB", "mysql", "95 queries"),
        (1, "placement", "memcached", "memcache", "set tokens/… [T1]"),
        (1, "placement", "placement DB", "mysql", "1 query"),
    ]
    assert all(p.proxies and p.proxies[0].label == "haproxy" for s in flow.steps for p in s.pairs
               if p.protocol in ("http", "mysql"))
    # no doubled pair: every request of the foreground once, nobody talks to haproxy
    assert not [p for p in flow.pairs if p.server.label == "haproxy"]
    requests = [(p.exchange.stream, p.exchange.request.frames) for p in flow.pairs]
    assert len(requests) == len(set(requests))
    legs = {leg.stream for p in flow.pairs for leg in getattr(p.exchange, "legs", ())[1:]}
    assert not legs & {p.exchange.stream for p in flow.pairs}  # no back leg is a pair of its own
    # HAProxy's mysql-check probes: background, client haproxy, server MySQL
    checks = [p for p in flow.pairs if p.client.label == "haproxy"]
    assert checks and all(p.background and p.server.label == "MySQL" for p in checks)


def test_the_seed_through_the_vip_is_named_from_the_capture_and_meta_alone():
    flow = _vip_seed(with_tables=False)
    named = [p for p in flow.pairs if p.client.source != "address" and p.server.source != "address"]
    assert len(named) >= 0.95 * len(flow.pairs), [
        (p.client.label, p.server.label) for p in flow.pairs if p not in named]
    haproxy = [n for n in flow.connections if n.server.label == "haproxy"]
    assert haproxy and all("198.18.0.100:" in str(n.server_address) for n in haproxy)
    assert any("X-Forwarded-For: 198.18.0.100" in n.server.evidence for n in haproxy)


def test_show_proxies_draws_the_seed_s_legs():
    flow = _vip_seed(show=True)
    top = [s.first for s in flow.steps if s.depth == 0]
    assert [(p.client.label, p.server.label, p.message) for p in top] == [
        ("OpenStackClient", "haproxy", "GET /v3"),
        ("OpenStackClient", "haproxy", "POST /v3/auth/tokens (password admin@Default → project admin)"),
        ("OpenStackClient", "haproxy", "GET /resource_classes [T1] (microversion 1.2)"),
    ]
    by_id = {p.id: p for p in flow.pairs}
    for p in flow.pairs:
        if p.client.label == "haproxy" and not p.background:
            front = by_id[p.parent]
            assert front.server.label == "haproxy" and front.request == p.request
    assert len(flow.pairs) == 2 * len(_vip_seed().pairs) - len(
        [p for p in _vip_seed().pairs if not isinstance(p.exchange, ProxiedExchange)])


@pytest.mark.parametrize("show", [False, True], ids=["default", "show-proxies"])
@pytest.mark.parametrize("fmt", ["timeline", "json", "mermaid"])
def test_golden_vip_seed(fmt, show):
    d = case_dir(VIP_SEED)
    argv = ["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"),
            "--format", fmt] + (["--show-proxies"] if show else [])
    status, out, err = run_post(argv)
    assert status == 0, err
    ext = {"timeline": "txt", "json": "jsonl", "mermaid": "mmd"}[fmt]
    check_golden(f"proxy/vip-seed{'-show-proxies' if show else ''}.{ext}", out)

"""Services named by their endpoint (osflow.proxies' routes, osflow.openstack's endpoints).

devstack's one Apache on port 80 serves each API under a path prefix, each proxied to a uwsgi
process over a unix socket the capture never shows.  These are unit tests of the naming: the
exchanges are built in the test (a request line, a Host header, an answer's Server header), as
the decode stage makes them; the real capture of the OpenStack client through such a front is
tests/test_endpoint_capture.py's.
"""

from __future__ import annotations

import json

import pytest

from osflow import openstack
from osflow.cli import post_parser
from osflow.errors import UsageError
from osflow.join import Joiner
from osflow.model import Address, Exchange, HttpRequest, HttpResponse, ProxiedExchange, ProxyLeg, TokenInfo
from osflow.pipeline import Tables
from osflow.protocols.http import token_info
from osflow.proxies import Stitcher

CLIENT = Address("10.0.0.9", 40000)
APACHE = Address("10.0.0.5", 80)


def _exchange(uri: str, *, stream: int = 1, server: Address = APACHE, start: float = 1.0,
              answer: str | None = "Apache/2.4.57 (Debian)", token: TokenInfo | None = None,
              method: str = "GET") -> Exchange:
    host = f"{server.host}" if server.port == 80 else f"{server.host}:{server.port}"
    req = HttpRequest(protocol="http", stream=stream, src=CLIENT, dst=server, start=start, end=start,
                      frames=(stream * 10,), is_request=True, method=method, uri=uri,
                      headers=(("Host", host), ("User-Agent", "openstacksdk/0.101.0")))
    resp = HttpResponse(protocol="http", stream=stream, src=server, dst=CLIENT, start=start + 0.1, end=start + 0.1,
                        frames=(stream * 10 + 1,), is_request=False, status=200, reason="OK",
                        headers=(("Server", answer),) if answer else (), token=token)
    return Exchange("http", stream, CLIENT, server, req, resp)


def test_devstack_prefixes_route_a_request_to_apache_on_port_80():
    st = Stitcher()
    out = st.stitch([_exchange("/identity/v3/auth/tokens"), _exchange("/compute/v2.1/servers", stream=2, start=2),
                     _exchange("/placement/resource_classes", stream=3, start=3)])
    assert all(isinstance(ex, ProxiedExchange) for ex in out)
    assert [ex.proxy for ex in out] == [("apache2",)] * 3
    keys = [st.routes[ex.server_stream].name for ex in out]
    assert keys == ["keystone", "nova-api", "placement"]
    assert all(ex.server_stream < 0 and ex.legs[0] is not ex.legs[-1] for ex in out)
    assert "devstack's path prefix" in out[0].evidence[0] and "not on the wire" in out[0].evidence[0]
    assert st.ends[(1, "server")].name == "apache2"


def test_no_route_for_a_service_s_own_port_nor_for_an_unknown_path():
    st = Stitcher()
    own = _exchange("/identity/v3", server=Address("10.0.0.5", 5000))  # keystone's port: Apache is keystone
    unknown = _exchange("/v3/auth/tokens", stream=2, start=2)
    not_a_prefix = _exchange("/identityx/v3", stream=3, start=3)
    assert st.stitch([own, unknown, not_a_prefix]) == [own, unknown, not_a_prefix]
    assert st.routes == {}


def test_one_connection_per_web_server_and_service():
    st = Stitcher()
    out = st.stitch([_exchange("/identity/v3", start=1), _exchange("/placement/", start=2),
                     _exchange("/identity/v3/auth/tokens", stream=2, start=3)])
    assert [ex.server_stream for ex in out] == [-1, -2, -1]


def test_the_web_server_is_named_from_its_answer():
    out = Stitcher().stitch([_exchange("/identity/v3", answer="nginx/1.22.1"),
                             _exchange("/placement", stream=2, start=2, answer=None)])
    assert [ex.proxy for ex in out] == [("nginx",), ("apache2",)]


CATALOG_BODY = json.dumps({"token": {
    "user": {"name": "admin", "domain": {"name": "Default"}}, "project": {"name": "admin"},
    "catalog": [
        {"type": "placement", "endpoints": [{"interface": "public", "url": "http://10.0.0.5/resources"}]},
        {"type": "identity", "endpoints": [{"interface": "public", "url": "http://10.0.0.5/identity"},
                                           {"interface": "admin", "url": "http://10.0.0.5/identity"}]},
        {"type": "no-such-type", "endpoints": [{"url": "http://10.0.0.5/x"}]},
    ]}})


def test_the_token_response_keeps_only_the_catalog_s_endpoints_osflow_knows():
    info = token_info(CATALOG_BODY)
    assert info is not None
    assert info.catalog == (("http://10.0.0.5/resources", "placement"), ("http://10.0.0.5/identity", "keystone"))
    assert token_info(json.dumps({"token": {"user": {"name": "u"}}})).catalog == ()


def test_the_catalog_names_a_prefix_devstack_does_not_from_its_token_response_on():
    token = _exchange("/identity/v3/auth/tokens", method="POST", start=1, token=token_info(CATALOG_BODY))
    before = _exchange("/resources/resource_classes", stream=2, start=0.5)  # sent before the catalog came
    after = _exchange("/resources/resource_classes", stream=3, start=2)
    elsewhere = _exchange("/resources/traits", stream=4, start=3, server=Address("10.0.0.6", 80))
    st = Stitcher()
    out = st.stitch(sorted([token, before, after, elsewhere], key=lambda ex: ex.start))
    by_stream = {ex.stream: ex for ex in out}
    assert not isinstance(by_stream[2], ProxiedExchange)
    assert not isinstance(by_stream[4], ProxiedExchange)  # the catalog's host is 10.0.0.5
    routed = by_stream[3]
    assert isinstance(routed, ProxiedExchange) and st.routes[routed.server_stream].name == "placement"
    assert "the keystone catalog" in routed.evidence[0]


def test_endpoint_option_adds_and_overrides_on_any_port():
    st = Stitcher(endpoints=(("http://10.0.0.5/identity", "my-keystone"), ("http://10.0.0.5:5000/v3", "keystone")))
    out = st.stitch([_exchange("/identity/v3"), _exchange("/v3/users", stream=2, start=2,
                                                          server=Address("10.0.0.5", 5000))])
    assert [st.routes[ex.server_stream].name for ex in out] == ["my-keystone", "keystone"]
    assert "--endpoint" in out[0].evidence[0]


def test_show_proxies_keeps_the_front_and_adds_the_hop_as_its_leg():
    st = Stitcher(show=True)
    front = _exchange("/identity/v3")
    out = st.stitch([front])
    assert out[0] is front and isinstance(out[1], ProxyLeg) and out[1].front is front
    assert out[1].stream == -1 and out[1].client == APACHE


def test_the_join_names_the_hop_s_service_and_the_uwsgi_process_serving_it(tmp_path):
    ps = tmp_path / "ps.txt"
    # uwsgi started as devstack starts it (`uwsgi --procname-prefix keystone --ini …`) renames its
    # processes: ps shows them so (tests/fixtures/devstack/resource-class-list-cold/ps.txt)
    ps.write_text("  PID  PPID USER     COMMAND\n"
                  "  700     1 root     /usr/sbin/apache2 -k start\n"
                  " 1201     1 stack    keystoneuWSGI master\n"
                  " 1203  1201 stack    keystoneuWSGI worker 1\n", encoding="utf-8")
    tables = Tables.load([], [str(ps)])
    st = Stitcher()
    out = st.stitch([_exchange("/identity/v3"), _exchange("/placement", stream=2, start=2)])
    names = Joiner(tables.sockets, tables.processes, proxies=st.ends, routes=st.routes).join(out)
    keystone, placement = names[-1], names[-2]
    assert keystone.server.label == "keystone" and keystone.server.pid == 1201
    assert "ps ps.txt:3 pid 1201" in keystone.server.evidence
    assert keystone.client.label == "apache2"
    assert placement.server.label == "placement" and placement.server.pid is None  # no uwsgi of its own in ps
    assert names[1].server.label == "apache2"


def test_endpoint_option_parsing():
    args = post_parser().parse_args(["--endpoint", "http://10.0.0.5/identity=keystone",
                                     "--endpoint", "https://ctl:8443/compute/v2.1=nova-api"])
    assert args.endpoint == [("http://10.0.0.5/identity", "keystone"), ("https://ctl:8443/compute/v2.1", "nova-api")]
    for bad in ("keystone", "ftp://x/identity=keystone", "http://10.0.0.5/identity="):
        with pytest.raises(UsageError):
            post_parser().parse_args(["--endpoint", bad])
    assert "--endpoint URL=SERVICE" in post_parser().format_help()


@pytest.mark.parametrize("url,path,port,host,ok", [
    ("http://10.0.0.5/identity", "/identity/v3", 80, "10.0.0.5", True),
    ("http://10.0.0.5/identity", "/identity/v3", 8080, "10.0.0.5", False),
    ("http://controller/identity", "/identity", 80, "controller", True),
    ("http://controller/identity", "/identity", 80, "other", False),
    ("https://10.0.0.5/compute/v2.1", "/compute/v2.1/servers", 443, "10.0.0.5", True),
    ("https://10.0.0.5/compute/v2.1", "/compute/", 443, "10.0.0.5", False),
])
def test_endpoint_matching(url, path, port, host, ok):
    e = openstack.parse_endpoint(url, "x", "test")
    assert e.matches(host, "10.0.0.5" if host != "other" else "10.0.0.7", port, path) is ok


def test_the_uwsgi_s_own_requests_nest_under_the_request_it_serves(tmp_path):
    """keystone's uwsgi worker (named from the tables) calls placement while it serves a request
    Apache sent it by path: that call is a child of the request, drawn client -> keystone."""
    from osflow.flow import build_flow
    from osflow.options import AnalysisOptions

    uwsgi = Address("10.0.0.5", 50000)
    (tmp_path / "ps.txt").write_text(
        "  PID  PPID USER     COMMAND\n"
        " 1201     1 stack    keystoneuWSGI master\n"
        " 1203  1201 stack    keystoneuWSGI worker 1\n",
        encoding="utf-8")
    (tmp_path / "ss.txt").write_text(
        'ESTAB 0 0 10.0.0.5:50000 10.0.0.5:8778 users:(("uwsgi",pid=1203,fd=9))\n', encoding="utf-8")
    tables = Tables.load([str(tmp_path / "ss.txt")], [str(tmp_path / "ps.txt")])
    outer = _exchange("/identity/v3/auth/tokens", method="POST", start=1.0)
    outer = Exchange("http", 1, CLIENT, APACHE, outer.request,
                     HttpResponse(protocol="http", stream=1, src=APACHE, dst=CLIENT, start=1.5, end=1.5,
                                  frames=(13,), is_request=False, status=201, reason="Created"))
    inner = _exchange("/placement/traits", stream=2, start=1.1, server=Address("10.0.0.5", 8778))
    inner = Exchange("http", 2, uwsgi, inner.server,
                     HttpRequest(protocol="http", stream=2, src=uwsgi, dst=inner.server, start=1.1, end=1.1,
                                 frames=(20,), is_request=True, method="GET", uri="/traits",
                                 headers=(("Host", "10.0.0.5:8778"),)), inner.response)
    st = Stitcher()
    exchanges = st.stitch([outer, inner])
    names = Joiner(tables.sockets, tables.processes, proxies=st.ends, routes=st.routes).join(exchanges)
    flow = build_flow(exchanges, names, AnalysisOptions(show_all=True))
    by_request = {p.request: p for p in flow.pairs}
    top, child = by_request["POST /identity/v3/auth/tokens"], by_request["GET /traits"]
    assert (top.server.label, [p.label for p in top.proxies]) == ("keystone", ["apache2"])
    assert top.server.pid == 1201
    assert (child.client.label, child.server.label, child.parent) == ("keystone", "placement", top.id)

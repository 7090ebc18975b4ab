"""One truth for what the Lua plugin and the Python package both know.

The port map has its own test (tests/test_portmap_lua.py).  Besides it, dissectors/osflow.lua
carries, each between ``-- BEGIN <NAME>`` and ``-- END <NAME>``, a copy of constants of
:mod:`osflow.openstack`:

  TOKEN_HEADERS   the headers that carry tokens         = openstack.TOKEN_HEADERS
  MYSQL_COMMANDS  mysql.command code -> command name    = openstack.MYSQL_COMMANDS
  USER_AGENTS     USER_AGENT_PRODUCTS, USER_AGENT_CLIENT_WORDS (same names, same order)
  RPC_TOPICS      oslo.messaging topic -> consuming service = openstack.RPC_TOPICS (same order),
                  matched as openstack.service_of_topic does
  ENDPOINT_PREFIXES  URL path prefix -> service = openstack.ENDPOINT_PREFIXES (same order),
                  matched as openstack.service_of_path does

Two kinds of test: each block read strictly and compared with the Python constant; and what
the plugin shows (tshark -X lua_script:...) against what Python says, on the real captures
and on small synthetic captures that exercise every entry of the tables.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from osflow import openstack, portmap
from osflow_wireshark import (
    ALL_CAPTURES,
    CAPTURES,
    PLUGIN,
    amqp_deliver,
    amqp_message,
    fields,
    lua_entries,
    needs_tshark,
    oslo_body,
    write_tcp_capture,
)

STRING_ENTRY = r'    "(?P<value>[^"\\]+)",'
MYSQL_ENTRY = r'    \[(?P<code>\d+)\] = "(?P<name>[a-z_]+)",'
PRODUCT_ENTRY = r'    \{ "(?P<product>[^"\\]+)", "(?P<key>[^"\\]+)" \},'

PLACEMENT_PORT = 8778
MYSQL_PORT = 3306


def lua_token_headers() -> tuple[str, ...]:
    return tuple(m["value"] for m in lua_entries("TOKEN_HEADERS", "TOKEN_HEADERS", STRING_ENTRY))


def lua_mysql_commands() -> list[tuple[int, str]]:
    return [(int(m["code"]), m["name"]) for m in lua_entries("MYSQL_COMMANDS", "MYSQL_COMMANDS", MYSQL_ENTRY)]


def lua_user_agent_products() -> list[tuple[str, str]]:
    return [(m["product"], m["key"]) for m in lua_entries("USER_AGENTS", "USER_AGENT_PRODUCTS", PRODUCT_ENTRY)]


def lua_user_agent_client_words() -> tuple[str, ...]:
    return tuple(m["value"] for m in lua_entries("USER_AGENTS", "USER_AGENT_CLIENT_WORDS", STRING_ENTRY))


def lua_rpc_topics() -> list[tuple[str, str]]:
    return [(m["product"], m["key"]) for m in lua_entries("RPC_TOPICS", "RPC_TOPICS", PRODUCT_ENTRY)]


def lua_endpoint_prefixes() -> list[tuple[str, str]]:
    return [(m["product"], m["key"])
            for m in lua_entries("ENDPOINT_PREFIXES", "ENDPOINT_PREFIXES", PRODUCT_ENTRY)]


# --------------------------------------------------------------------------- the blocks, as text


def test_token_headers_block_equals_python():
    assert lua_token_headers() == openstack.TOKEN_HEADERS


def test_mysql_commands_block_equals_python():
    lua = lua_mysql_commands()
    assert dict(lua) == openstack.MYSQL_COMMANDS
    assert len(lua) == len(dict(lua)), "a code twice"
    assert [c for c, _ in lua] == sorted(openstack.MYSQL_COMMANDS), "in code order, for readable diffs"


def test_user_agent_block_equals_python():
    assert lua_user_agent_products() == list(openstack.USER_AGENT_PRODUCTS.items())
    assert lua_user_agent_client_words() == openstack.USER_AGENT_CLIENT_WORDS


def test_rpc_topics_block_equals_python():
    assert lua_rpc_topics() == list(openstack.RPC_TOPICS.items())


def test_endpoint_prefixes_block_equals_python():
    assert lua_endpoint_prefixes() == list(openstack.ENDPOINT_PREFIXES.items())
    for prefix, key in openstack.ENDPOINT_PREFIXES.items():  # what both matchers read alike
        assert re.fullmatch(r"/[a-z0-9_.-]+", prefix), prefix
        assert key in {s.key for s in portmap.SERVICES}, key


def test_user_agent_data_means_the_same_to_both_matchers():
    """Lua's patterns are ASCII-only: the data must be what Python's and Lua's patterns read alike.

    Products are matched against Python's ``[\\w.-]+`` and Lua's ``[%w_%.%-]+`` on the lower-cased
    User-Agent; client words are found as plain substrings of it.
    """
    for product in openstack.USER_AGENT_PRODUCTS:
        assert re.fullmatch(r"[a-z0-9_.-]+", product), product
    for word in openstack.USER_AGENT_CLIENT_WORDS:
        assert word == word.lower() and word.isascii(), word


@pytest.mark.parametrize("name", ["SERVICES", "TOKEN_HEADERS", "MYSQL_COMMANDS", "USER_AGENT_PRODUCTS",
                                  "USER_AGENT_CLIENT_WORDS", "RPC_TOPICS", "ENDPOINT_PREFIXES"])
def test_each_shared_table_is_assigned_once(name):
    """The block is the table the plugin uses: nothing else defines, changes or extends it."""
    text = PLUGIN.read_text(encoding="utf-8")
    assignments = re.findall(rf"\b{name}\s*(?:\[[^\]]*\]|\.\w+)?\s*=(?!=)", text)
    assert len(assignments) == 1, assignments
    assert not re.search(rf"table\.insert\(\s*{name}\b", text)


# --------------------------------------------------------------------------- what the plugin shows


def http_get(user_agent: str = "", *headers: str) -> bytes:
    lines = ["GET /resource_classes HTTP/1.1", f"Host: controller:{PLACEMENT_PORT}"]
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    lines += [*headers, "Accept: application/json"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def mysql_command(code: int, argument: bytes = b"") -> bytes:
    body = bytes([code]) + argument
    return len(body).to_bytes(3, "little") + b"\0" + body


#: User-Agents that exercise every rule and entry (no commas: -T fields joins occurrences with ",")
def synthetic_user_agents() -> list[str]:
    uas = []
    for product in openstack.USER_AGENT_PRODUCTS:
        uas.append(f"{product}/1.0 keystonemiddleware.auth_token/10.1.0 keystoneauth1/5.0.0")
        uas.append(f"{product.upper()}/27.0.0 openstacksdk/1.0")  # the product before a client word
    for word in openstack.USER_AGENT_CLIENT_WORDS:
        uas.append(f"my-tool/1.0 {word}0.1 python-requests/2.28.1")  # anywhere
        uas.append(f"{word.upper()}9")
    uas += [
        "python-keystoneclient",          # names no service
        "curl/8.0.1",
        "swift-proxy/2.30 keystoneauth1/5.0.0",   # a port-map key that is not a product
        "openstackclient/6.0",
        "openstacksdk 1.0",               # not "openstacksdk/"
        "nova",                           # a product alone
        "nova-api 27.0.0",                # a product, a space, no "/"
        "python-novaclient",              # the OpenStack client's library for nova, alone
        "placement-api/1.0",
    ]
    return uas


@needs_tshark
def test_user_agent_rules_on_every_entry(tmp_path):
    """One request per User-Agent, each on its own connection to placement: osflow.client comes
    from the User-Agent only, and is what service_of_user_agent says (nothing where it says None)."""
    uas = synthetic_user_agents()
    capture = write_tcp_capture(tmp_path / "user-agents.pcap", [(PLACEMENT_PORT, http_get(ua)) for ua in uas])
    rows = fields(capture, ["frame.number", "http.user_agent", "osflow.client"], tmp_path,
                  display_filter="http.request")
    assert [ua for _, ua, _ in rows] == uas
    wrong = [(ua, client, openstack.service_of_user_agent(ua)) for _, ua, client in rows
             if client != (openstack.service_of_user_agent(ua) or "")]
    assert wrong == []
    assert {c for _, _, c in rows} >= {"openstackclient", "nova-api", ""}


@needs_tshark
@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_user_agent_client_agrees_with_python_on_real_captures(name, tmp_path):
    """Every HTTP request whose User-Agent names a service (for Python) shows that client."""
    rows = fields(CAPTURES[name], ["frame.number", "http.user_agent", "osflow.client"], tmp_path,
                  display_filter="http.request")
    assert rows
    compared = 0
    for frame, ua, client in rows:
        expected = openstack.service_of_user_agent(ua)
        if expected is not None:
            assert client == expected, (frame, ua)
            compared += 1
    assert compared > 0


#: argument -> what the plugin shows after the command's name
MYSQL_ARGUMENTS = {2: (b"placement", " placement"), 22: (b"SELECT name FROM traits", " SELECT … FROM traits")}
UNKNOWN_MYSQL_CODES = (11, 30)


@needs_tshark
def test_mysql_command_names_on_every_code(tmp_path):
    """One command of each code (and two codes neither side names): osflow.op uses Python's names."""
    codes = sorted(openstack.MYSQL_COMMANDS) + list(UNKNOWN_MYSQL_CODES)
    segments = []
    for code in codes:
        argument = MYSQL_ARGUMENTS.get(code, (b"SELECT 1",) if code == 3 else (b"\1\0\0\0",))[0]
        segments.append((MYSQL_PORT, mysql_command(code, argument)))
    capture = write_tcp_capture(tmp_path / "mysql-commands.pcap", segments)
    rows = fields(capture, ["frame.number", "mysql.command", "osflow.op"], tmp_path)
    assert [int(c) for _, c, _ in rows] == codes
    for (frame, _command, op), code in zip(rows, codes, strict=True):
        name = openstack.MYSQL_COMMANDS.get(code, f"command {code}")
        if code == 3:
            expected = "mysql: SELECT 1"  # a query shows as its SQL
        else:
            expected = "mysql: " + name + MYSQL_ARGUMENTS.get(code, (b"", ""))[1]
        assert op == expected, (frame, code)


@needs_tshark
@pytest.mark.parametrize("name", sorted(ALL_CAPTURES))
def test_mysql_command_names_on_real_captures(name, tmp_path):
    """Every MySQL command frame's osflow.op starts with Python's name (a query: with its SQL)."""
    rows = fields(ALL_CAPTURES[name], ["frame.number", "mysql.command", "mysql.query", "osflow.op"], tmp_path,
                  display_filter="mysql.command")
    assert rows
    for frame, commands, query, op in rows:
        code = int(commands.split(",")[0])
        assert op.startswith("mysql: "), frame
        shown = op[len("mysql: "):]
        if code == 3 and query:
            assert shown and not shown.startswith(tuple(openstack.MYSQL_COMMANDS.values())), (frame, op)
        else:
            name = openstack.MYSQL_COMMANDS.get(code, f"command {code}")
            assert shown == name or shown.startswith(name + " "), (frame, op)


@needs_tshark
def test_token_headers_on_every_entry(tmp_path):
    """Each token header (any case) gives a fingerprint named after the header; others give none."""
    segments, expected = [], []
    for i, header in enumerate(openstack.TOKEN_HEADERS):
        token = f"gAAAAAtoken{i}"
        segments.append((PLACEMENT_PORT, http_get("", f"{header.lower()}: {token}")))
        expected.append((hashlib.sha256(token.encode()).hexdigest()[:8], header))
    segments.append((PLACEMENT_PORT, http_get("", "X-Auth-Tokens: gAAAAAnot-a-token-header")))
    expected.append(("", ""))
    capture = write_tcp_capture(tmp_path / "tokens.pcap", segments)
    rows = fields(capture, ["osflow.token", "osflow.token.source"], tmp_path, display_filter="http.request")
    assert [tuple(r) for r in rows] == expected


AMQP_PORT = 5672


def synthetic_topics() -> list[tuple[str, str]]:
    """(exchange, routing key) of delivers that exercise every topic and the matching rule."""
    out = []
    for topic in openstack.RPC_TOPICS:
        out += [("nova", topic), ("nova", f"{topic}.controller"), ("nova", f"{topic}-Port-1.1"),
                (f"{topic}_fanout", "")]
        out += [("nova", f"{topic}x"), ("nova", f"x{topic}")]   # not the topic
    out += [("", "reply_0a1b2c"), ("nova", "notifications.info"), ("nova", "")]
    return out


@needs_tshark
def test_rpc_topic_rule_on_every_entry(tmp_path):
    """One deliver per topic, each on its own connection: osflow.rpc.target (and the consumer,
    osflow.client) is what openstack.service_of_topic says (nothing where it says None)."""
    topics = synthetic_topics()
    message = {"method": "ping", "args": {}, "version": "1.0", "_unique_id": "u"}
    segments = [(AMQP_PORT, amqp_message(amqp_deliver(x, k), oslo_body(message))) for x, k in topics]
    capture = write_tcp_capture(tmp_path / "topics.pcap", segments)
    rows = fields(capture, ["osflow.rpc.topic", "osflow.rpc.target", "osflow.client"], tmp_path,
                  display_filter="amqp")
    assert len(rows) == len(topics)
    wrong = []
    for (exchange, key), (topic, target, client) in zip(topics, rows, strict=True):
        wire = exchange if exchange.endswith("_fanout") else (key or exchange)
        expected = openstack.service_of_topic(wire) or ""
        if (target, client) != (expected, expected):
            wrong.append((exchange, key, topic, target, client, expected))
    assert wrong == []
    assert {t for _, t, _ in rows} >= set(openstack.RPC_TOPICS.values()) | {""}


WEB_PORT = 80  # devstack's Apache: a port of no service in the port map


def synthetic_paths() -> list[str]:
    """Request paths that exercise every prefix and the matching rule."""
    paths = []
    for prefix in openstack.ENDPOINT_PREFIXES:
        paths += [prefix, prefix + "/", prefix + "/v3/auth/tokens", prefix + "?x=1"]
        paths += [prefix + "x", prefix + "-v2/y", "/x" + prefix]  # not the prefix
    return paths + ["/", "/v3", "/identityx/v3"]


@needs_tshark
def test_endpoint_prefix_rule_on_every_entry(tmp_path):
    """One request per path to port 80, each on its own connection: osflow.service is what
    openstack.service_of_path says, and a path no prefix names gets no osflow layer at all."""
    assert WEB_PORT not in {p for s in portmap.SERVICES for p in s.ports}
    paths = synthetic_paths()
    segments = [(WEB_PORT, f"GET {p} HTTP/1.1\r\nHost: controller\r\nAccept: */*\r\n\r\n".encode())
                for p in paths]
    capture = write_tcp_capture(tmp_path / "prefixes.pcap", segments)
    rows = fields(capture, ["frame.number", "http.request.uri", "osflow.service", "osflow.direction"], tmp_path,
                  display_filter="http.request")
    assert [uri for _, uri, _, _ in rows] == paths
    wrong = [(uri, service, openstack.service_of_path(uri)) for _, uri, service, _ in rows
             if service != (openstack.service_of_path(uri) or "")]
    assert wrong == []
    assert {d for _, _, s, d in rows if s} == {"request"}
    assert {s for _, _, s, _ in rows} == set(openstack.ENDPOINT_PREFIXES.values()) | {""}

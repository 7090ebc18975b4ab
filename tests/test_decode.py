"""Decode stage: real frames -> HTTP, MySQL and memcached messages."""

from __future__ import annotations

from collections import Counter

import pytest

from osflow.model import (
    Closed,
    HttpRequest,
    HttpResponse,
    MemcacheReply,
    MysqlGreeting,
    MysqlLogin,
    MysqlReply,
)
from support import messages

pytestmark = pytest.mark.tshark


def by_frame(case):
    return {m.frames[-1]: m for m in messages(case)}


def test_cold_capture_message_counts():
    counts = Counter(type(m).__name__ for m in messages("resource-class-list-cold"))
    assert counts["HttpRequest"] == counts["HttpResponse"] == 6
    assert counts["MysqlCommand"] == 460  # every mysql.command in the capture
    assert counts["MysqlReply"] == 461  # one per command, plus the login's OK
    assert counts["MysqlLogin"] == counts["MysqlGreeting"] == 1
    assert counts["MemcacheCommand"] == counts["MemcacheReply"] == 2


def test_keystone_password_auth_is_summarised_without_the_password():
    req = by_frame("resource-class-list-cold")[9]
    assert isinstance(req, HttpRequest)
    assert req.frames == (8, 9)  # reassembled over two segments
    assert (req.method, req.uri) == ("POST", "/v3/auth/tokens")
    a = req.auth
    assert (a.methods, a.user, a.user_domain, a.project, a.project_domain) == (
        ("password",), "admin", "Default", "admin", "Default")
    assert "openstack" not in repr(a)  # the lab's password


def test_token_response_names_its_owner():
    resp = by_frame("resource-class-list-cold")[551]
    assert isinstance(resp, HttpResponse)
    assert (resp.status, resp.reason, resp.request_in) == (201, "CREATED", 315)
    assert (resp.token.user, resp.token.project) == ("placement", "service")


def test_validation_request_headers():
    req = by_frame("resource-class-list-cold")[552]
    names = [k for k, _ in req.headers]
    assert "X-Subject-Token" in names and "X-Auth-Token" in names
    assert req.user_agent == "python-keystoneclient"


def test_mysql_login_greeting_and_result_sets():
    ms = by_frame("resource-class-list-cold")
    assert isinstance(ms[253], MysqlGreeting) and "MariaDB" in ms[253].version
    login = ms[255]
    assert isinstance(login, MysqlLogin) and (login.user, login.schema) == ("placement", "placement")
    select1 = ms[12]
    assert isinstance(select1, MysqlReply) and (select1.kind, select1.rows) == ("rows", 1)
    keystone_rows = ms[15]
    assert keystone_rows.kind == "rows" and "keystone" in keystone_rows.schemas and "project" in keystone_rows.tables
    ok = ms[17]
    assert ok.kind == "ok"


def test_every_row_packet_is_counted():
    # the result of placement's resource class query: one row per class (the command's output lists them)
    rows = [m for m in messages("resource-class-list-cold")
            if isinstance(m, MysqlReply) and "resource_classes" in m.tables]
    assert rows and max(r.rows for r in rows) >= 20


def test_memcached_miss_store_and_hit():
    cold = [m for m in messages("resource-class-list-cold") if m.protocol == "memcache"]
    assert [(type(m).__name__, getattr(m, "command", getattr(m, "result", None))) for m in cold] == [
        ("MemcacheCommand", "get"), ("MemcacheReply", "miss"), ("MemcacheCommand", "set"), ("MemcacheReply", "STORED")]
    hit = [m for m in messages("resource-class-list-cache-hit") if isinstance(m, MemcacheReply)]
    assert [m.result for m in hit] == ["hit"] and hit[0].keys[0].startswith("tokens/")


def test_closes_are_seen_once_per_side():
    closes = [m for m in messages("token-issue") if isinstance(m, Closed)]
    sides = [(m.stream, m.src) for m in closes]
    assert len(sides) == len(set(sides)) and closes

"""The decoders on variants of their protocols that osflow's lab does not make.

Real captures of other servers and clients (tests/fixtures/captures-zeek/: MySQL 8's
authentication methods, ...), read as a user reads them: ``osflow-post`` JSON, from ``-r`` and
from PDML on stdin (which must agree).
"""

from __future__ import annotations

import json

import pytest

from support import FIXTURES, pdml_bytes, run_post

pytestmark = pytest.mark.tshark


def _pairs(case: str, *args: str, pdml: bool = False) -> tuple[list[dict], str]:
    """(the JSON pairs of every connection, stderr) of ``osflow-post`` on a fixture."""
    argv = ["--format", "json", "--all", *args]
    if pdml:
        status, out, err = run_post(argv, stdin=pdml_bytes(case))
    else:
        status, out, err = run_post(["-r", str(FIXTURES / case / "capture.pcapng"), *argv])
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def _both(case: str, *args: str) -> list[dict]:
    """The pairs from ``-r``, checked equal to those from PDML."""
    pairs, _ = _pairs(case, *args)
    assert _pairs(case, *args, pdml=True)[0] == pairs
    return pairs


def _said(pairs: list[dict], stream: int) -> list[tuple[str, str | None]]:
    return [(p["request"], p["response"]) for p in pairs if p["stream"] == stream]


def test_mysql8_result_sets_ending_with_ok_keep_every_row():
    """With CLIENT_DEPRECATE_EOF a result set ends with an OK (0xFE) and no EOF follows its columns:
    ``-r`` counts every row, as PDML does."""
    said = dict(_said(_both("captures-zeek/mysql8-auth-switch"), 0))
    assert said["select @@version_comment limit 1"] == "1 row"
    assert said["select DATABASE(), USER() limit 1"] == "1 row"
    assert said["select @@character_set_client, @@character_set_connection, @@character_set_server, @@"
                "character_set_database limit 1"] == "1 row"


def test_mysql8_full_authentication_is_part_of_the_login():
    """caching_sha2_password's full authentication (public-key request, encrypted password) is the
    login's, not a command: each later reply pairs with its own request."""
    pairs = _both("captures-zeek/mysql8-caching-sha2")
    assert not any("command 202" in p["request"] for p in pairs)
    for stream in (1, 2):  # full authentication, then fast authentication
        said = _said(pairs, stream)
        assert said == [("login root@test", "OK"), ("show databases", "5 rows"), ("show tables", "1 row"),
                        ("field list t", "1 column"), ("select @@version_comment limit 1", "1 row"), ("quit", "closed")]


def test_mysql8_auth_switch_is_not_the_logins_result():
    """An Auth Switch Request (0xFE) does not end the login or change_user: their result does, and a
    refusal is an error."""
    assert _said(_both("captures-zeek/mysql8-auth-switch"), 0)[0] == ("login root@-", "OK")
    said = _said(_both("captures-zeek/mysql8-change-user-error"), 0)
    assert said[:2] == [("login root@-", "OK"), ("ping", "OK")]
    assert said[2][0] == "change_user"
    assert said[2][1].startswith("ERR 1045 Access denied for user 'root2'")
    (login,) = _both("captures-zeek/mysql8-login-failed")
    assert login["request"] == "login dsm1@-" and login["response"].startswith("ERR 1045 Access denied")


def test_service_option_makes_r_decode_that_port():
    """``--service 5432=mysql`` names the port and has ``-r`` decode it as MySQL (tshark does not)."""
    case = "captures-zeek/mysql-on-port-5432"
    assert _pairs(case)[0] == []  # nothing on that port is taken for MySQL by default
    pairs, _ = _pairs(case, "--service", "5432=mysql")
    assert [(p["request"], p["response"]) for p in pairs] == [
        ("login root@-", "OK"), ("ping", "OK"), ("change_user", "OK"),
        ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_0900_ai_ci'", "OK"), ("SET @@session.autocommit = OFF", "OK"),
        ("ping", "OK"), ("quit", "closed")]
    assert {p["server_evidence"].split(";")[0] for p in pairs} == {"port 5432 (--service: mysql)"}


def test_memcached_text_meta_and_binary_protocols():
    """Every reply pairs with its command: storage commands with ``noreply`` get none, ``get`` of several
    keys, ``gets``/``cas``, numeric replies, ``stats`` (its STAT lines are the reply, not commands from
    the server), meta commands, and the binary protocol named as such."""
    said = [(p["stream"], p["request"], p["response"]) for p in _both("captures-other/memcached-protocols")]
    assert said == [
        (0, "set osflow:a", "noreply"), (0, "add osflow:a", "noreply"), (0, "add osflow:b", "noreply"),
        (0, "replace osflow:c", "noreply"), (0, "append osflow:a", "noreply"), (0, "prepend osflow:a", "noreply"),
        (0, "get osflow:a osflow:b osflow:missing", "hit (2 of 3 keys)"), (0, "gets osflow:a", "hit"),
        (0, "cas osflow:a", "STORED"), (0, "cas osflow:a", "EXISTS"), (0, "set osflow:n", "noreply"),
        (0, "incr osflow:n", "15"), (0, "decr osflow:n", "13"), (0, "touch osflow:b", "noreply"),
        (0, "delete osflow:b", "noreply"), (0, "delete osflow:b", "noreply"), (0, "stats", "92 stats"),
        (0, "version", "VERSION 1.6.18"),
        (1, "ms osflow:m", "HD"), (1, "mg osflow:m", "hit"), (1, "mg osflow:nothing", "miss"), (1, "ma osflow:n", "HD"),
        (1, "md osflow:m", "HD"), (1, "mn", "MN"), (1, "gets osflow:a osflow:n", "hit (2 of 2 keys)"),
        (1, "stats", "28 stats"), (1, "bogus", "ERROR"), (1, "quit", "closed"),
        (2, "set osflow:bin (binary protocol)", "STORED"), (2, "get osflow:bin (binary protocol)", "hit"),
        (2, "get osflow:nothing (binary protocol)", "miss"), (2, "delete osflow:bin (binary protocol)", "DELETED")]


def test_amqp_messages_of_other_clients_are_publish_to_consumer():
    """Celery's messages are not oslo.messaging's: each publish is drawn to the consumer it reached with
    its exchange, routing key and delivery latency; events whose JSON has a ``result`` (task-succeeded)
    are publishes, not oslo replies; a consumed message is delivered (1), not 0."""
    pairs, err = _pairs("captures-ndpi/celery-amqp")
    assert _pairs("captures-ndpi/celery-amqp", pdml=True)[0] == pairs
    assert "not in the capture" not in err  # every delivery found its publish
    keys = [p["routing_key"] for p in pairs]
    assert keys.count("task.succeeded") == 5 and keys.count("tasks.#") == 5 and keys.count("worker.heartbeat") == 3
    for p in pairs:
        assert p["request"] == f"publish {p['exchange']} {p['routing_key']}"
        consumed = p["routing_key"] in ("tasks.#", "worker.heartbeat")
        assert p["delivered"] == (1 if consumed else 0), p
        if consumed:
            assert p["server"] == "127.0.0.1:44204" and p["response"].startswith("delivered in ")
            assert p["end"] > p["start"]


def test_mysql_connection_refused_in_the_greeting_is_a_failed_pair():
    """A server that answers the connection with ERR 1130 instead of its greeting: a failed
    ``connect``, not a response whose request is missing."""
    pairs, err = _pairs("captures-zeek/mysql5-refused")
    assert _pairs("captures-zeek/mysql5-refused", pdml=True)[0] == pairs
    assert "mid-conversation" not in err
    refused = [p for p in pairs if p["request"] == "connect"]
    assert [p["stream"] for p in refused] == [0, 1, 2]
    assert all(p["response"].startswith("ERR 1130 Host 'lumberjack.home' is not allowed") for p in refused)
    assert [p["response"][:8] for p in pairs if p["request"].startswith("login")] == ["ERR 1045"] * 9 + ["OK"]


def test_mysql_tls_session_is_named_as_tls():
    """An SSL request turns the connection into TLS: a TLS session that ends with the close, not a
    login of nobody still waiting for its answer."""
    (session,) = _both("captures-zeek/mysql-tls")
    assert (session["request"], session["response"]) == ("TLS session (login and queries encrypted)", "closed")
    assert session["frames"] == [6, 16]


def test_mysql_server_has_one_label_in_every_format():
    """A login without a schema, the schema named by results more than a horizon later: the streamed
    formats (JSON, timeline) and the whole-flow ones (``--explain``, the HTML report) name the server
    alike, after its client's database."""
    case = "captures-zeek/mysql-schema-later"
    pairs, _ = _pairs(case)
    assert {p["server"] for p in pairs} == {"tfoerste DB"}
    for argv in (["--explain"], ["--format", "timeline"]):
        status, out, err = run_post(["-r", str(FIXTURES / case / "capture.pcapng"), *argv])
        assert status == 0, err
        assert "tfoerste DB" in out and "test DB" not in out


def test_mysql_statistics_reply_is_its_text():
    """COM_STATISTICS is answered by a bare text (no OK header): that text is its reply."""
    said = dict(_said(_both("captures-zeek/mysql8-auth-switch"), 0))
    assert said["statistics"] == ("Uptime: 416222 Threads: 2 Questions: 40 Slow queries: 0 Opens: 194 "
                                  "Flush tables: 3 Open tables: 113 Queries per second avg: 0.000")
    assert said["quit"] == "closed"


def test_http_100_continue_is_not_a_response_without_request():
    """An interim ``100 Continue`` is not the request's response nor an orphan: a complete capture
    does not warn that it started mid-conversation."""
    pairs, err = _pairs("captures-other/http-100-continue")
    assert _pairs("captures-other/http-100-continue", pdml=True)[0] == pairs
    assert "mid-conversation" not in err
    assert [(p["request"], p["response"]) for p in pairs] == [("POST /resource_classes", "201 Created")] * 2


def test_mysql_query_with_attributes_shows_its_text():
    """A COM_QUERY with typed query attributes (``CLIENT_QUERY_ATTRIBUTES``), whose text tshark 4.0 does
    not find after them: read from the PDU's bytes, from ``-r`` as from PDML."""
    said = _said(_both("captures-zeek/mysql9-query-attributes"), 0)
    assert said == [("login root@-", "OK"), ("ping", "OK"), ("SELECT version()", "1 row"), ("quit", "closed")]


def test_mysql_field_list_is_a_pair_of_its_table_and_columns():
    """The mariadb client's completion (``--auto-rehash``) sends COM_FIELD_LIST per table: each is
    one pair naming its table, answered by its column count (column definitions and EOF, no
    column-count packet) or by its error; a complete capture does not warn it started mid-conversation."""
    case = "captures-other/mysql-field-list"
    pairs, err = _pairs(case)
    assert "mid-conversation" not in err
    assert _pairs(case, pdml=True) == (pairs, err)
    said = _said(pairs, 0)
    assert said[5:] == [
        ("show tables", "3 rows"),
        ("field list broken", "ERR 1356 View 'shop.broken' references invalid table(s) or column(s) or "
                              "function(s) or definer/invoker of view lack rights to use them"),
        ("field list item", "3 columns"),
        ("field list stock", "2 columns"),
        ("SELECT name FROM item", "1 row"),
        ("quit", "closed"),
    ]

"""Hostile, broken and odd input: one clear line, no traceback, nothing read is lost, no secret leaks."""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osflow.decode import header_lines, keystone_auth, token_info
from osflow.errors import ExitStatus, OsflowError
from osflow.openstack import service_of_command, service_of_user_agent, tables_in
from osflow.render.common import frame_ranges
from osflow.source import PdmlReader
from osflow.tokens import cache_key_token_hash, hide_sql_secrets
from support import ROOT, case_dir, pdml_bytes, run_post, tables_args

SMALL = "resource-class-list-cache-hit"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.tshark
def test_entity_bomb_and_external_entity_through_the_cli(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-FILE-CONTENT")
    real = pdml_bytes(SMALL).decode()
    head, rest = real.split("<pdml", 1)
    doctype = (
        f'<!DOCTYPE pdml [<!ENTITY xxe SYSTEM "file://{secret}">'
        + '<!ENTITY a "AAAAAAAAAA">'
        + "".join(f'<!ENTITY {n} "{("&" + p + ";") * 10}">' for p, n in zip("abcdefgh", "bcdefghi", strict=True))
        + "]>"
    )
    hostile = (head + doctype + "<pdml" + rest).replace('show="GET"', 'show="&xxe;&i;"', 1)
    status, out, err = run_post(["--format", "json"], stdin=hostile.encode())
    assert "TOPSECRET" not in out + err and "AAAAAAAAAA" not in out + err
    # libxml2 refuses the external entity: osflow stops there, keeps what it read and says where
    assert status == ExitStatus.PARTIAL, err
    assert re.search(r"PDML is invalid after frame \d+ \(line \d+: .*external entity 'xxe'\); output holds",
                     one_line(err)), err


@pytest.mark.tshark
def test_a_huge_attribute_value_is_read(tmp_path):
    real = pdml_bytes(SMALL)
    marker = b'name="http.user_agent" showname="User-Agent: '
    i = real.index(marker)
    j = real.index(b'show="', i) + len(b'show="')
    big = real[:j] + b"x" * 20_000_000 + real[j:]
    status, out, err = run_post(["--format", "json"], stdin=big)
    assert status == ExitStatus.OK, err
    assert len(out.splitlines()) == len(run_post(["--format", "json"], stdin=real)[1].splitlines())


@pytest.mark.tshark
def test_invalid_utf8_in_the_middle_keeps_what_came_before():
    real = pdml_bytes("resource-class-list-cold")
    cut = real.index(b"<packet>", len(real) // 2)
    bad = real[:cut] + b"<packet>\xff\xfe\xfa" + real[cut + 8:]
    status, out, err = run_post(["--format", "json"], stdin=bad)
    assert status == ExitStatus.PARTIAL
    assert re.search(r"PDML is invalid after frame \d+ \(line \d+: .*(UTF-8|encoding)", one_line(err)), err
    assert len(out.splitlines()) > 100


@pytest.mark.tshark
def test_pdml_without_tcp_stream_still_pairs_by_connection():
    real = pdml_bytes("resource-class-list-cold")
    stripped = re.sub(rb'\s*<field name="tcp\.stream"[^>]*/>', b"", real)
    assert b'"tcp.stream"' not in stripped
    a = [json.loads(x) for x in run_post(["--format", "json"], stdin=real)[1].splitlines()]
    b = [json.loads(x) for x in run_post(["--format", "json"], stdin=stripped)[1].splitlines()]
    def keep(p):
        return p["client"], p["server"], p["request"], p["response"], p["frames"], p["parent"]

    assert list(map(keep, a)) == list(map(keep, b))


@pytest.mark.tshark
def test_packets_with_missing_fields_never_crash():
    real = pdml_bytes(SMALL)
    for field in (b"num", b"timestamp", b"ip.src", b"tcp.srcport", b"http.request.method", b"mysql.command",
                  b"memcache.command", b"http.response.code", b"tcp.flags"):
        damaged = re.sub(rb'<field name="' + re.escape(field) + rb'"[^>]*/>', b"", real)
        status, out, err = run_post(["--format", "json"], stdin=damaged)
        assert status == ExitStatus.OK and "Traceback" not in err, (field, err)


@pytest.mark.tshark
def test_same_output_whatever_the_hash_seed(tmp_path):
    outputs = []
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"), PYTHONHASHSEED=seed)
        got = []
        # the streamed and collected formats (without --explain) and the whole flow (--explain)
        for fmt, explain in (("timeline", False), ("mermaid", False), ("json", False), ("md", False), ("otlp", False),
                             ("stats", False), ("timeline", True), ("json", True)):
            r = subprocess.run(
                [sys.executable, "-m", "osflow", "post", "-r",
                 str(case_dir("resource-provider-create") / "capture.pcapng"),
                 *tables_args("resource-provider-create"), "--format", fmt, *(["--explain"] if explain else [])],
                env=env, capture_output=True)
            assert r.returncode == 0, r.stderr
            got.append(r.stdout + r.stderr)
        outputs.append(got)
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.tshark
def test_a_socket_table_from_another_host_falls_back_to_evidence():
    other = str(ROOT / "tests/fixtures/field-samples/ss-tp-during-command.txt")
    status, out, err = run_post(["-r", str(case_dir(SMALL) / "capture.pcapng"), "--ss", other, "--format", "json"])
    assert status == ExitStatus.OK
    assert "no connection of the capture is in the socket tables" in err
    pairs = [json.loads(x) for x in out.splitlines()]
    assert {p["client"] for p in pairs} == {"OpenStackClient", "placement"}


# ----------------------------------------------------------------------------- property tests

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_pdml_reader_raises_only_osflow_errors(data):
    try:
        reader = PdmlReader(io.BytesIO(data), "fuzz")
        list(reader)
    except OsflowError as e:
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=80), max_size=10))
def test_header_lines_never_raise(lines):
    for name, _value in header_lines(lines):
        assert ":" not in name and " " not in name


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.text(max_size=40))
def test_keystone_body_parsers_never_raise_and_never_keep_a_password(doc, password):
    password = "S3cr3t!" + password
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {"password": password, "name": doc}}},
                     "scope": doc}}
    for text in (json.dumps(doc), json.dumps(body), json.dumps({"token": doc})):
        a = keystone_auth(text)
        token_info(text)
        if a is not None and password not in json.dumps(doc):
            assert password not in repr(a)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_text_helpers_never_raise(text):
    tables_in(text)
    service_of_command(text)
    service_of_user_agent(text)
    cache_key_token_hash(text)
    assert "\n" not in hide_sql_secrets(text.replace("\n", " "))


@given(st.lists(st.integers(min_value=1, max_value=10**6), max_size=50))
def test_frame_ranges_cover_every_frame(frames):
    text = frame_ranges(frames)
    got = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        got |= set(range(int(a), int(b or a) + 1))
    assert got == set(frames)


# a stream of layers such as tshark makes, in any order: the decoder never raises
_mysql_fields = st.sampled_from([
    ("mysql.num_fields", "3"), ("mysql.field.catalog", "def"), ("mysql.field.db", "keystone"),
    ("mysql.field.org_table", "user"), ("mysql.eof", "254"), ("mysql.response_code", "0xfe"),
    ("mysql.response_code", "0x000000fe"), ("mysql.affected_rows", "1"), ("mysql.error_code", "1146"),
    ("mysql.error.message", "no such table"), ("mysql.row", ""), ("mysql.request", ""), ("mysql.command", "3"),
    ("mysql.command", "x"), ("mysql.query", "SELECT 1"), ("mysql.login_request", ""), ("mysql.user", "u"),
    ("mysql.server_greeting", ""), ("mysql.version", "10.11"), ("mysql.command", "1")])
_memcache_fields = st.sampled_from([
    ("memcache.command", "get"), ("memcache.key", "tokens/" + "ab" * 32), ("memcache.key", "other"),
    ("memcache.response", "END"), ("memcache.response", "STORED"), ("memcache.value.length", "x")])
_http_fields = st.sampled_from([
    ("http.request.method", "POST"), ("http.request.uri", "/v3/auth/tokens"), ("http.response.code", "201"),
    ("http.response.code", "abc"), ("http.request.line", "X-Auth-Token: gAAAA"), ("http.response.line", "junk"),
    ("http.file_data", '{"token": {"user": {"name": 1}}}'), ("http.file_data", "{"), ("http.request_in", "x")])

_OSLO = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(
    {"method": "m", "_msg_id": "x", "_reply_q": "reply_q", "_unique_id": "u", "_context_auth_token": "gAAAAt"})})
_REPLY = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(
    {"result": None, "failure": '{"class": "NoValidHost"}', "ending": True, "_msg_id": "x", "_unique_id": "v"})})
_amqp_fields = st.sampled_from([
    ("amqp.type", "1"), ("amqp.type", "2"), ("amqp.type", "3"), ("amqp.type", "8"), ("amqp.type", "x"),
    ("amqp.channel", "1"), ("amqp.channel", ""), ("amqp.method.class", "60"), ("amqp.method.class", "10"),
    ("amqp.method.method", "40"), ("amqp.method.method", "60"), ("amqp.method.method", "11"),
    ("amqp.method.arguments.exchange", ""), ("amqp.method.arguments.exchange", "scheduler_fanout"),
    ("amqp.method.arguments.routing_key", "reply_q"), ("amqp.method.arguments.routing_key", "conductor"),
    ("amqp.header.body-size", "0"), ("amqp.header.body-size", "5"), ("amqp.header.body-size", "-1"),
    ("amqp.payload", _OSLO.encode().hex()), ("amqp.payload", _REPLY.encode().hex()), ("amqp.payload", "zz"),
    ("amqp.payload", "789c00"), ("amqp.payload", "1f8b0800"), ("amqp.payload", "7b22"),
    ("amqp.connection_name", "nova-conductor:12:u"), ("amqp.connection_name", "::")])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["mysql", "memcache", "http", "amqp"]),
                          st.lists(st.one_of(_mysql_fields, _memcache_fields, _http_fields, _amqp_fields), max_size=6),
                          st.booleans(), st.integers(0, 2)), max_size=30))
def test_decoder_and_pairing_never_raise(frames):
    from osflow.decode import Decoder
    from osflow.flow import build_flow
    from osflow.join import Joiner
    from osflow.model import Address, Layer, Packet
    from osflow.pair import Pairing

    a, b = Address("127.0.0.1", 40000), Address("127.0.0.1", 3306)
    packets = [Packet(number=i + 1, time=float(i), src=a if up else b, dst=b if up else a, stream=stream, fin=fin,
                      payload=1, layers=(Layer(proto, tuple(fields)),))
               for i, (up, proto, fields, fin, stream) in enumerate(frames)]
    pairing = Pairing()
    pairing.feed(Decoder().decode(packets))
    exchanges = pairing.finish()
    flow = build_flow(exchanges, Joiner().join(exchanges, pairing.rpc.connections()))
    assert len(flow.pairs) == len(exchanges)
    assert not any("gAAAAt" in p.request + (p.response or "") + p.message + p.result for p in flow.pairs)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=12).map(lambda d: json.dumps({"oslo.message": json.dumps(d)}).encode())))
def test_oslo_bodies_never_raise(body):
    import zlib

    from osflow.oslo import read_body

    for data in (body, zlib.compress(body), body[:3]):
        message, compression, why = read_body(data)
        assert (message is None) == (why is not None)


@pytest.mark.tshark
def test_memcached_values_never_appear():
    # the cached token data (a keystone token's JSON) travels in memcached values
    from support import (
        GOLDEN,
        messages,  # noqa: F401  (warms the PDML cache)
    )

    for case in ("resource-class-list-cold", "resource-class-list-cache-hit", "resource-provider-create"):
        values = re.findall(rb'name="memcache\.value" [^>]*show="([^"]{40,})"', pdml_bytes(case))
        assert values, case
        texts = [html.unescape(v.decode("utf-8", "replace")) for v in values]
        # JSON fragments of the value (ids inside it also stand, rightly, in SQL queries: they are no secret)
        pieces = {t[i:i + 24] for t in texts for i in range(0, len(t) - 24, 12)}
        pieces = {p for p in pieces if '": ' in p}
        assert len(pieces) > 20
        for ext in ("txt", "mmd", "jsonl"):
            out = (GOLDEN / f"post/{case}.{ext}").read_text()
            assert not [p for p in pieces if p in out], (case, ext)

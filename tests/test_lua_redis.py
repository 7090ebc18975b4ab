"""The plugin's Redis (RESP) analyser, dissectors/osflow/resp.lua, on a real capture.

tests/fixtures/redis/capture.pcapng (its README says how it was recorded): redis-cli and
redis-py doing what OSProfiler's and tooz's Redis drivers do, with AUTH (wrong and right),
HELLO 3 AUTH, MIGRATE ... AUTH, CONFIG SET requirepass, a pipeline, a transaction, errors and
pub/sub.  Golden file: tests/golden/lua/redis.tsv (OSFLOW_UPDATE_GOLDEN=1 rewrites it).
"""

from __future__ import annotations

import pytest

from osflow_wireshark import REPO, fields, needs_tshark, stderr_lines, tshark
from support import check_golden
from test_lua_plugin import GOLDEN_FIELDS, golden_rows

pytestmark = needs_tshark

CAPTURE = REPO / "tests" / "fixtures" / "redis" / "capture.pcapng"
#: every password of the recording (README): none may reach an osflow field
PASSWORDS = ("openstack-redis", "osprofiler-pass", "openstack-redis-new", "wrong-password")
#: every field the plugin writes
OSFLOW_FIELDS = ["osflow.service", "osflow.client", "osflow.server", "osflow.flow", "osflow.direction", "osflow.op",
                 "osflow.token", "osflow.token.source", "osflow.cache", "osflow.db", "osflow.request_in",
                 "osflow.request_id", "osflow.rpc", "_ws.expert.message"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict[int, dict[str, str]]:
    """frame number -> osflow fields, for every frame with a request or a response."""
    home = tmp_path_factory.mktemp("home")
    names = ["frame.number", "osflow.direction", "osflow.op", "osflow.request_in", "osflow.error",
             "osflow.server", "tcp.stream"]
    found = fields(CAPTURE, names, home, display_filter="osflow.direction")
    return {int(r[0]): dict(zip(names, r, strict=True)) for r in found}


def test_fields_match_golden(tmp_path):
    check_golden("lua/redis.tsv", golden_rows(CAPTURE, tmp_path))


def test_golden_has_what_the_capture_holds():
    """Spot checks, so a regenerated golden file cannot silently lose the meaning."""
    lines = (REPO / "tests" / "golden" / "lua" / "redis.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == GOLDEN_FIELDS
    ops = [line.split("\t")[GOLDEN_FIELDS.index("osflow.op")] for line in lines[1:]]
    assert "redis: AUTH *** → error WRONGPASS" in ops
    assert "redis: HELLO 3 AUTH osprofiler *** → 7 pairs" in ops


def test_every_command_is_paired_with_its_reply(rows):
    requests = {n for n, r in rows.items() if r["osflow.direction"] == "request"}
    responses = {n: r for n, r in rows.items() if r["osflow.direction"] == "response"}
    answered = {int(r["osflow.request_in"]) for r in responses.values() if r["osflow.request_in"]}
    assert answered == requests
    # the one response that answers nothing: the message pushed to the subscriber
    unpaired = [n for n, r in responses.items() if not r["osflow.request_in"]]
    assert [rows[n]["osflow.op"] for n in unpaired] == ["redis: message on osprofiler-events"]
    assert all(r["osflow.server"] == "redis" for r in rows.values())


def test_a_reply_says_what_it_answers(rows):
    assert rows[19]["osflow.op"] == "redis: GET osprofiler:missing → nil"
    assert rows[68]["osflow.op"] == "redis: HSET _tooz_group:compute → 1"
    assert rows[64]["osflow.op"] == "redis: SET _tooz_lock:nova-compute-resources → nil"   # the lock is held
    assert rows[43]["osflow.op"].endswith(" → 292 bytes") and rows[43]["osflow.request_in"] == "42"
    assert rows[89]["osflow.op"] == "redis: SUBSCRIBE osprofiler-events → 3 items"


def test_a_pipeline_and_a_transaction_are_read_command_by_command(rows):
    assert rows[75]["osflow.op"] == "redis: SET counter; INCRBY counter; GET counter; EXPIRE counter"
    assert rows[76]["osflow.op"] == ("redis: SET counter → OK; INCRBY counter → 2; GET counter → 1 byte; "
                                     "EXPIRE counter → 1")
    assert rows[76]["osflow.request_in"] == "75"
    assert rows[78]["osflow.op"] == ("redis: MULTI → OK; INCRBY counter → QUEUED; TTL counter → QUEUED; "
                                     "EXEC → 2 items")


def test_error_replies_are_errors(rows):
    errors = {n: r["osflow.op"].rsplit(" → ", 1)[1] for n, r in rows.items() if r["osflow.error"]}
    assert errors == {6: "error NOAUTH", 9: "error NOAUTH", 11: "error NOAUTH", 13: "error WRONGPASS",
                      70: "error NOSCRIPT", 80: "error WRONGTYPE", 118: "error NOAUTH", 121: "error NOAUTH"}


def test_no_password_in_any_osflow_field(tmp_path):
    """AUTH, HELLO ... AUTH, MIGRATE ... AUTH and CONFIG SET requirepass carry passwords:
    the plugin shows none (Wireshark's own resp fields do, as they show every byte)."""
    out = tshark(["-r", str(CAPTURE), "-T", "fields", *[a for n in OSFLOW_FIELDS for a in ("-e", n)]], tmp_path)
    assert stderr_lines(out) == []
    for password in PASSWORDS:
        assert password not in out.stdout
    # the check can fail: Wireshark's own fields hold them
    raw = tshark(["-r", str(CAPTURE), "-T", "fields", "-e", "resp.bulk_string.value"], tmp_path).stdout
    assert bytes("osprofiler-pass", "ascii").hex() in raw.replace(":", "")
    auth = fields(CAPTURE, ["osflow.op"], tmp_path, display_filter='osflow.op contains "AUTH"')
    assert {r[0] for r in auth} >= {"redis: AUTH ***", "redis: HELLO 3 AUTH osprofiler ***"}
    config = fields(CAPTURE, ["osflow.op"], tmp_path, display_filter="frame.number == 103 || frame.number == 101")
    assert [r[0] for r in config] == ["redis: MIGRATE 127.0.0.1", "redis: CONFIG SET requirepass"]


def test_two_passes_agree(tmp_path):
    one = fields(CAPTURE, ["frame.number", "osflow.op", "osflow.request_in"], tmp_path)
    two = fields(CAPTURE, ["frame.number", "osflow.op", "osflow.request_in"], tmp_path, extra=["-2"])
    assert one == two


def test_broken_resp_is_malformed_not_a_lua_error(tmp_path):
    """Bytes on 6379 that are not RESP: expert info, never a Lua error."""
    from osflow_wireshark import write_tcp_capture

    capture = write_tcp_capture(tmp_path / "broken.pcap", [
        (6379, b"*2\r\n$3\r\nGET\r\n$999\r\nshort\r\n"),   # a bulk string longer than the segment
        (6379, b"*x\r\n"),                               # not a number
        (6379, b"*1\r\n" * 40 + b"$4\r\nPING\r\n"),      # nested too deep
    ])
    out = tshark(["-r", str(capture), "-T", "fields", "-e", "osflow.op", "-e", "_ws.expert.message"], tmp_path)
    assert "Lua Error" not in out.stdout + out.stderr and "plugin error" not in out.stdout
    ops = [line.split("\t")[0] for line in out.stdout.splitlines()]
    assert ops[0] == ""   # only the beginning of a value: a segment of a longer message
    assert ops[1] == ops[2] == "redis: unreadable RESP"


def test_a_value_over_several_segments_is_read_once_whole(tmp_path):
    """Wireshark's resp dissector reassembles a long value into the segment that ends it: the
    segments before show the connection's ends only, as HTTP's do; nothing is malformed."""
    from osflow_wireshark import write_tcp_conversations

    value = b"x" * 3000
    command = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000\r\n" + value + b"\r\n"
    capture = write_tcp_conversations(tmp_path / "split.pcap", [
        (0, True, command[:1400]), (0, True, command[1400:2800]), (0, True, command[2800:]),
        (0, False, b"+OK\r\n"),
        (0, True, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        (0, False, b"$3000\r\n" + value[:1000]), (0, False, value[1000:] + b"\r\n"),
    ], server_port=6379)
    got = fields(capture, ["frame.number", "osflow.direction", "osflow.op", "osflow.request_in", "osflow.malformed",
                           "osflow.service"], tmp_path)
    assert got == [
        ["1", "", "", "", "", "redis"], ["2", "", "", "", "", "redis"],
        ["3", "request", "redis: SET k", "", "", "redis"], ["4", "response", "redis: SET k → OK", "3", "", "redis"],
        ["5", "request", "redis: GET k", "", "", "redis"], ["6", "", "", "", "", "redis"],
        ["7", "response", "redis: GET k → 3000 bytes", "5", "", "redis"],
    ]


"""Redis (RESP), the protocol added as one module (osflow/protocols/redis.py) and its registration.

On the real capture of tests/fixtures/redis/ (OSProfiler's and tooz's traffic, recorded with
redis-cli and redis-py; its README says how): requests paired with replies in order (a pipeline
too), pushes to a subscriber left out, passwords hidden unless --show-secrets, error replies as
failed pairs; the same from ``-r``, from the PDML osflow's tshark command makes, and from a PDML
made by plain tshark (Wireshark's own ``resp`` dissector).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from support import FIXTURES, check_golden, run_post, tshark

CAPTURE = FIXTURES / "redis" / "capture.pcapng"
#: The recording's passwords (tests/fixtures/redis/README.md).
PASSWORDS = ("openstack-redis", "osprofiler-pass", "openstack-redis-new")

needs_tshark = pytest.mark.skipif(tshark() is None, reason="tshark is not installed")


def _post(*args: str, stdin: bytes | None = None) -> str:
    argv = list(args) if stdin is not None else ["-r", str(CAPTURE), *args]
    status, out, err = run_post(argv, stdin=stdin)
    assert status == 0, err
    if "html" not in args:  # (the report may warn that it found no mermaid build)
        assert err == "", err  # no orphan: a push to a subscriber answers nothing and is no reply
    return out


def _pairs(*args: str) -> list[dict]:
    return [json.loads(line) for line in _post("--format", "json", *args).splitlines()]


@needs_tshark
@pytest.mark.parametrize("fmt,ext", [("timeline", "txt"), ("json", "jsonl"), ("mermaid", "mmd"), ("stats", "txt")])
def test_golden(fmt, ext):
    check_golden(f"post/redis.{fmt}.{ext}" if fmt == "stats" else f"post/redis.{ext}", _post("--format", fmt))


@needs_tshark
@pytest.mark.parametrize("how", ["osflow's PDML (-d tcp.port==6379,data)", "plain tshark's PDML (resp dissector)"])
def test_pdml_gives_what_r_gives(how):
    extra = ["-d", "tcp.port==6379,data"] if "data" in how else []
    pdml = subprocess.run([tshark(), "-r", str(CAPTURE), *extra, "-T", "pdml"], capture_output=True, check=True).stdout
    assert b'name="resp"' in pdml or extra
    for fmt in ("json", "otlp"):
        assert _post("--format", fmt, stdin=pdml) == _post("--format", fmt)


@needs_tshark
def test_requests_pair_with_their_replies_in_order():
    order = [(p["request"], p["response"]) for p in _pairs()]
    assert len(order) == 50
    pairs = dict(order)
    # a pipeline of four commands in one segment, answered in one segment, then a transaction
    at = order.index(("SET counter (1 byte)", "OK"))
    assert order[at:at + 8] == [
        ("SET counter (1 byte)", "OK"), ("INCRBY counter 1", "2"), ("GET counter", "hit (1 byte)"),
        ("EXPIRE counter 60", "1"), ("MULTI", "OK"), ("INCRBY counter 1", "QUEUED"), ("TTL counter", "QUEUED"),
        ("EXEC", "2 items")]
    # OSProfiler's report: SCAN MATCH, then each key; a missing key is a miss
    scan = next(k for k in pairs if k.startswith("SCAN 0 MATCH osprofiler:"))
    assert pairs[scan] == "2 items" and pairs["GET osprofiler:missing"] == "miss"
    # tooz's lock: taken, then refused while held (nil), released by EVALSHA after SCRIPT LOAD
    locks = [p["response"] for p in _pairs() if p["request"].startswith("SET _tooz_lock:")]
    assert locks == ["OK", "nil"]
    evalsha = [p["response"] for p in _pairs() if p["request"].startswith("EVALSHA ")]
    assert evalsha == ["NOSCRIPT No matching script. Please use EVAL.", "1"]
    # the subscriber's connection: its replies, not the message pushed to it
    sub = [p for p in _pairs() if p["request"] in ("SUBSCRIBE osprofiler-events", "UNSUBSCRIBE")]
    assert [p["response"] for p in sub] == ["3 items", "3 items"]


@needs_tshark
def test_passwords_are_hidden_unless_asked_for():
    for fmt in ("timeline", "json", "otlp", "html", "mermaid"):
        out = _post("--format", fmt)
        assert not any(pw in out for pw in PASSWORDS), fmt
    requests = [p["request"] for p in _pairs()]
    assert {"AUTH …", "HELLO 3 AUTH osprofiler …", "CONFIG SET requirepass …",
            "MIGRATE 127.0.0.1 6380 \"\" 0 5000 AUTH … KEYS to-migrate"} <= set(requests)
    shown = [p["request"] for p in _pairs("--show-secrets")]
    assert "AUTH wrong-password" in shown and "HELLO 3 AUTH osprofiler osprofiler-pass" in shown
    assert "CONFIG SET requirepass openstack-redis-new" in shown


@needs_tshark
def test_error_replies_are_failed_pairs():
    errors = {}
    for line in _post("--format", "otlp").splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: a["value"] for a in span["attributes"]}
                    assert attrs["db.system"] == {"stringValue": "redis"}
                    if span.get("status", {}).get("code") == 2:
                        errors[span["name"]] = attrs["error.type"]["stringValue"]
    assert errors == {"COMMAND DOCS": "NOAUTH", "COMMAND": "NOAUTH", "PING": "NOAUTH", "AUTH": "WRONGPASS",
                      "EVALSHA": "NOSCRIPT", "LPUSH": "WRONGTYPE"}
    stats = _post("--format", "stats").splitlines()
    row = next(r for r in stats if r.split()[:2] == ["Redis", "LPUSH"])
    assert row.split()[-1] == "1"  # its error


def test_resp_values():
    from osflow.protocols.redis import _Incomplete, _inline, parse

    with pytest.raises(_Incomplete):
        parse(b"*2\r\n$3\r\nGET\r\n$1\r\n")
    assert parse(b"%1\r\n+a\r\n:1\r\n")[0] == ("map", [("status", "a", 1), ("integer", "1", 1)], 1)
    assert parse(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n")[0][0] == "push"
    assert parse(b"_\r\n")[0][0] == "nil" and parse(b"$-1\r\n")[0][0] == "nil"
    assert _inline(b"PING\r\n", 0)[0] == ("array", [("bulk", "PING", 4)], 1)


PROFILED = FIXTURES / "osprofiler" / "seed"  # the lab's seed command with OSProfiler on, Redis its store


@needs_tshark
def test_osprofilers_trace_points_are_kept_out_of_the_story():
    status, out, _ = run_post(["-r", str(PROFILED), "--all", "--format", "json"])
    assert status == 0
    pairs = [json.loads(line) for line in out.splitlines()]
    writes = [p for p in pairs if p["protocol"] == "redis" and p["request"].startswith("LPUSH osprofiler_opt:")]
    assert len(writes) > 100  # every trace point of every service: a write each
    # none of them under the request whose trace point it is, none in the command's story
    assert all(p["parent"] is None and p["background"] for p in writes)
    # nothing hangs under them; the story itself is still there
    ids = {p["id"] for p in writes}
    assert not any(p["parent"] in ids for p in pairs)
    assert any(p["protocol"] == "http" and not p["background"] and "/resource_classes" in p["request"] for p in pairs)
    _, explained, _ = run_post(["-r", str(PROFILED), "--explain"])
    assert (f"{len(writes)} pair(s) are the services' instrumentation (OSProfiler's trace point), not their work"
            in explained)
    # without --all they are not drawn
    _, story, _ = run_post(["-r", str(PROFILED), "--format", "timeline"])
    assert "GET /resource_classes" in story and "osprofiler_opt:" not in story


def test_trace_point_writes_are_told_from_other_redis_writes():
    from osflow.protocols.redis import is_trace_point

    assert is_trace_point("LPUSH", ("osprofiler_opt:f831948c-3aaf-4bbd-8324-b8b6e4807dba", "{}"))
    assert is_trace_point("SET", ("osprofiler_error:f831948c-3aaf-4bbd-8324-b8b6e4807dba", ""))
    assert is_trace_point("SET", ("osprofiler:f831948c_0d6e_1765000000.0", "{}"))  # the legacy keys
    assert not is_trace_point("GET", ("osprofiler:f831948c_0d6e_1765000000.0",))  # reading a trace back
    assert not is_trace_point("SET", ("_tooz_lock:resize", "1", "NX"))
    assert not is_trace_point("LPUSH", ())

"""A busy controller (issue #14): the command's own story amid background and concurrent clients.

Real recordings of the compute lab (tests/lab/) while nova ran, made with ``osflow record``
(tests/fixtures/captures-busy/README.md): the seed's command, four of it at once, a quiet
controller's 20 seconds, and the seed's command in the keystone/placement lab alone (nova
stopped) to compare the story with.
"""

from __future__ import annotations

import json
import re

import pytest

from support import FIXTURES, check_golden, pdml_bytes, run_post

BUSY = FIXTURES / "captures-busy"
NAMES = ("resource-class-list-while-nova-runs", "resource-class-list-4-at-once", "idle-20s",
         "resource-class-list-quiet")
pytestmark = pytest.mark.tshark


def _run(name: str, *args: str) -> str:
    d = BUSY / name
    status, out, err = run_post(["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"),
                                 *args])
    assert status == 0, err
    return out


def _pairs(name: str, *args: str) -> list[dict]:
    return [json.loads(line) for line in _run(name, "--format", "json", *args).splitlines()]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt, ext", [("json", "jsonl"), ("timeline", "txt"), ("mermaid", "mmd")])
def test_golden(name, fmt, ext):
    check_golden(f"post/busy-{name}.{ext}", _run(name, "--format", fmt))


@pytest.mark.parametrize("name", NAMES)
def test_pdml_told_the_meta_json_gives_the_same_json(name):
    d = BUSY / name
    status, out, err = run_post(["--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"), "--meta", str(d / "meta.json"),
                                 "--format", "json"], stdin=pdml_bytes(f"captures-busy/{name}"))
    assert status == 0, err
    assert out == _run(name, "--format", "json")


def _story(pairs: list[dict]) -> list[tuple]:
    """What happened, without what differs from run to run (times, ids, token numbers, ports,
    how many pool pings): (depth, client, server, protocol, operation) per pair, SQL as its tables."""
    by_id = {p["id"]: p for p in pairs}

    def depth(p):
        return 0 if p["parent"] is None else 1 + depth(by_id[p["parent"]])

    out = []
    for p in pairs:
        if p["noise"]:
            continue
        op = p["request"]
        if p["protocol"] == "mysql":
            op = " ".join(sorted(set(re.findall(r"(?:FROM|JOIN|UPDATE|INTO)\s+`?(\w+)", op)))) or op.split()[0]
        elif p["protocol"] == "memcache":
            op = op.split()[0]
        else:
            op = re.sub(r"[0-9a-f]{32}|[0-9a-f-]{36}", "{id}", op.split("?")[0])
        out.append((depth(p), p["client"], p["server"], p["protocol"], op, (p["response"] or "").split(",")[0]))
    return out


def test_the_foreground_of_a_busy_controller_is_the_quiet_story():
    busy = [p for p in _pairs("resource-class-list-while-nova-runs") if not p["background"]]
    quiet = _pairs("resource-class-list-quiet")
    assert all(not p["background"] for p in quiet)
    # keystone answers the token request with queries that vary with its caches: compare what the
    # services said to each other, and keystone's SQL only as a count of table sets
    def calls(story):
        return [s for s in story if s[3] != "mysql" or s[1] != "keystone"]
    assert calls(_story(busy)) == calls(_story(quiet))
    assert {p["client"] for p in _pairs("resource-class-list-while-nova-runs") if p["background"]} >= {
        "nova-conductor", "nova-scheduler"}


def test_an_idle_controller_is_all_background():
    pairs = _pairs("idle-20s")
    assert len(pairs) > 20 and all(p["background"] for p in pairs)
    timeline = _run("idle-20s")
    assert f"{len(pairs)} background pairs left out (--all shows them), by client: nova-conductor" in timeline
    assert "Service.save" not in timeline and "Service.save" in _run("idle-20s", "--all")


def _user_tokens(p: dict) -> set[str]:
    """The user's token a pair carries for its caller: a cache key's, a validation's subject."""
    if p["protocol"] == "memcache" and p["request"].split()[0] in ("get", "set", "delete"):
        return set(p["tokens"])
    m = re.search(r"\(validate (T\d+)", p.get("message", "") or p["request"])
    return {m.group(1)} if m else set()


def test_four_clients_at_once_every_token_call_is_under_the_request_that_carried_it():
    pairs = _pairs("resource-class-list-4-at-once")
    by_id = {p["id"]: p for p in pairs}
    gets = [p for p in pairs if p["client"] == "OpenStackClient" and p["request"].startswith("GET /resource_classes")]
    assert len(gets) == 4 and len({tuple(p["tokens"]) for p in gets}) == 4  # four tokens, four requests
    # placement took them one after another while Apache had accepted the next ones already
    assert sum(1 for a in gets for b in gets if a is not b and a["start"] < b["start"] < a["end"]) >= 3
    checked = 0
    for p in pairs:
        if p["parent"] is None or p["client"] != "placement":
            continue
        parent = by_id[p["parent"]]
        if p["protocol"] == "memcache" and p["request"].startswith(("get tokens/", "set tokens/")):
            assert set(p["tokens"]) <= set(parent["tokens"]), (p["id"], p["request"], p["tokens"], parent["id"])
            checked += 1
        if p["protocol"] == "http" and "/v3/auth/tokens" in p["request"]:
            # the validation carries placement's own token and the user's it validates: the parent's
            assert set(p["tokens"]) & set(parent["tokens"]), (p["id"], p["tokens"], parent["tokens"])
            checked += 1
    assert checked == 12  # per request: the cache lookup, the validation, the cache store
    # and each request's own query of its resource classes under it, not all under the latest
    for g in gets:
        mine = [p for p in pairs if p["parent"] == g["id"] and p["protocol"] == "mysql" and not p["noise"]]
        assert [p["request"].split(" FROM ")[1].split()[0] for p in mine] == ["resource_classes"], g["id"]


def test_explain_says_which_evidence_placed_a_child():
    out = _run("resource-class-list-4-at-once", "--explain")
    section = out[out.index("Parents chosen by evidence"):].splitlines()
    tokens = [line for line in section if "placement → memcached" in line]
    under_token = re.compile(r": under \d+ GET /resource_classes, by .*token T\d+")
    assert tokens and all(under_token.search(line) for line in tokens), tokens
    assert any("by its first token lookup, token T" in line for line in tokens)
    assert any(re.search(r"keystone → keystone DB .*by process \d+, as its other children", line) for line in section)

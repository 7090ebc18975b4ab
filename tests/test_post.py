"""osflow-post end to end on the real captures: golden files, the story, both input paths."""

from __future__ import annotations

import json

import pytest

from support import CASES, case_dir, check_golden, post_cached, run_post, tables_args

pytestmark = pytest.mark.tshark
FORMATS = {"timeline": "txt", "mermaid": "mmd", "json": "jsonl"}


def capture(case):
    return str(case_dir(case) / "capture.pcapng")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES)
def test_golden_output_from_a_capture(case, fmt):
    status, out, err = post_cached(("-r", capture(case), *tables_args(case), "--format", fmt))
    assert status == 0, err
    check_golden(f"post/{case}.{FORMATS[fmt]}", out)


@pytest.mark.parametrize("case", CASES)
def test_pdml_on_stdin_gives_the_same_output_as_r(case):
    for fmt in FORMATS:
        _, from_r, _ = post_cached(("-r", capture(case), *tables_args(case), "--format", fmt))
        status, from_pdml, err = post_cached((*tables_args(case), "--format", fmt), case)
        assert status == 0, err
        assert from_pdml == from_r, fmt


def story(case, *extra):
    status, out, err = post_cached(("-r", capture(case), *tables_args(case), "--format", "json", *extra))
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_cold_capture_tells_the_story_an_engineer_would_draw():
    pairs = story("resource-class-list-cold")
    by_id = {p["id"]: p for p in pairs}
    top = [(p["client"], p["server"], p["request"], p["response"]) for p in pairs if p["parent"] is None]
    assert top == [
        ("OpenStackClient", "keystone", "GET /v3", "200 OK"),
        ("OpenStackClient", "keystone", "POST /v3/auth/tokens", "201 CREATED"),
        ("OpenStackClient", "placement", "GET /resource_classes", "200 OK"),
    ]
    auth = next(p for p in pairs if p["parent"] is None and p["request"] == "POST /v3/auth/tokens")
    assert any(p["parent"] == auth["id"] and p["server"] == "keystone DB" for p in pairs)
    listing = next(p for p in pairs if p["request"] == "GET /resource_classes")
    inner = [p for p in pairs if p["parent"] == listing["id"]]
    # placement's own calls, in order, with DB queries in between
    calls = [(p["server"], p["request"].split(" ")[0] if p["protocol"] != "http" else p["request"], p["response"])
             for p in inner if not (p["server"] == "placement DB" and p["request"] != "login placement@placement")]
    assert calls == [
        ("placement DB", "login", "OK"),
        ("memcached", "get", "miss"),
        ("keystone", "GET /v3", "200 OK"),
        ("keystone", "POST /v3/auth/tokens", "201 CREATED"),
        ("keystone", "GET /v3/auth/tokens", "200 OK"),
        ("memcached", "set", "STORED"),
    ]
    # placement queries its DB after storing the token, before answering
    store = next(p for p in inner if p["request"].startswith("set "))
    assert any(p["server"] == "placement DB" and p["start"] > store["end"] for p in inner)
    # the keystone calls placement makes have their own DB bursts
    for p in inner:
        if p["server"] == "keystone" and p["request"] != "GET /v3":
            assert any(q["parent"] == p["id"] and q["server"] == "keystone DB" for q in pairs)
    participants = {p[k] for p in pairs for k in ("client", "server")}
    assert participants == {"OpenStackClient", "keystone", "keystone DB", "placement", "placement DB", "memcached"}
    assert all(":" not in name for name in participants)
    assert by_id[1]["start"] == 0.000041  # seconds from the first frame


def test_json_lines_fields():
    pairs = story("resource-class-list-cold")
    assert [p["id"] for p in pairs] == list(range(1, len(pairs) + 1))
    starts = [p["start"] for p in pairs]
    assert starts == sorted(starts)
    for p in pairs:
        for key in ("id", "parent", "start", "end", "client", "server", "client_evidence", "server_evidence",
                    "protocol", "request", "response", "frames"):
            assert key in p
        assert p["protocol"] in ("http", "mysql", "memcache")
        assert p["end"] >= p["start"]
    login = next(p for p in pairs if p["request"].startswith("login "))
    assert (login["request"], login["response"], login["frames"]) == ("login placement@placement", "OK", [255, 257])
    created = next(p for p in pairs if p["response"] == "201 CREATED")
    assert created["frames"] == [8, 9, 241]


def test_mermaid_story_and_notes():
    status, out, _ = post_cached(("-r", capture("resource-class-list-cold"), *tables_args("resource-class-list-cold"),
                                  "--format", "mermaid"))
    lines = out.splitlines()
    assert lines[:2] == ["sequenceDiagram", "    autonumber"]
    assert "    participant keystone_DB as keystone DB" in lines
    assert "    OpenStackClient->>+placement: GET /resource_classes [T1] (microversion 1.2)" in lines
    assert "    Note over placement,memcached: cache miss for T1" in lines
    assert lines[-1] == "    placement-->>-OpenStackClient: 200 OK"
    assert sum(line.count("->>+") for line in lines) == sum(line.count("-->>-") for line in lines)


def test_no_token_or_password_in_any_output():
    from support import GOLDEN, header_tokens

    for case in CASES:
        secrets = []
        for t in header_tokens(case):
            secrets += [t[i:i + 16] for i in range(0, len(t) - 16, 8)]
        assert secrets
        # timeline, Mermaid and JSON are the golden files (compared above); md and --explain here
        outputs = {ext: (GOLDEN / f"post/{case}.{ext}").read_text() for ext in FORMATS.values()}
        _, outputs["md+explain"], _ = run_post(["-r", capture(case), *tables_args(case), "--format", "md", "--explain"])
        for name, out in outputs.items():
            assert not [s for s in secrets if s in out], (case, name)
            assert "password openstack" not in out and '"openstack"' not in out, (case, name)


def test_show_secrets_shows_them():
    from support import header_tokens

    case = "resource-class-list-cache-hit"
    token = header_tokens(case)[0]
    _, out, _ = run_post(["-r", capture(case), *tables_args(case), "--show-secrets"])
    assert f"T1 = {token}" in out
    _, out, _ = run_post(["-r", capture(case), *tables_args(case), "--format", "json", "--show-secrets"])
    key = json.loads(out.splitlines()[1])["request"]
    assert key.startswith("get tokens/") and len(key) == len("get tokens/") + 64

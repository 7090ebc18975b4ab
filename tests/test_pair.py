"""Pair and flow stages: pairs, parents, grouping, tokens."""

from __future__ import annotations

import hashlib
import re

import pytest

from osflow.model import MysqlCommand
from osflow.pair import pair_messages
from support import CASES, case_dir, flow, header_tokens, messages

pytestmark = pytest.mark.tshark


def pairs_by(case, pred):
    return [p for p in flow(case).pairs if pred(p)]


@pytest.mark.parametrize("case", CASES)
def test_every_request_gets_its_response(case):
    exchanges = pair_messages(messages(case))
    assert exchanges and all(ex.response is not None for ex in exchanges)
    for ex in exchanges:
        assert ex.response.start >= ex.request.start
        assert ex.request.src == ex.client and ex.response.src == ex.server


def test_memcached_get_is_a_child_of_the_clients_request():
    f = flow("resource-class-list-cold")
    get = pairs_by("resource-class-list-cold", lambda p: p.request.startswith("get tokens/"))[0]
    parent = f.pairs[get.parent - 1]
    assert (parent.client.label, parent.server.label, parent.request) == (
        "OpenStackClient", "placement", "GET /resource_classes")


def test_keystone_db_queries_are_children_of_the_request_keystone_serves():
    f = flow("resource-class-list-cold")
    queries = [p for p in f.pairs if p.server.label == "keystone DB"]
    assert len(queries) > 100
    for p in queries:
        parent = f.pairs[p.parent - 1]
        assert parent.server.label == "keystone" and parent.protocol == "http"
        assert parent.exchange.start <= p.exchange.start and p.exchange.end <= parent.exchange.end


def test_keystones_own_calls_nest_under_placement():
    f = flow("resource-class-list-cold")
    validate = pairs_by("resource-class-list-cold", lambda p: p.request == "GET /v3/auth/tokens")[0]
    assert f.pairs[validate.parent - 1].request == "GET /resource_classes"
    assert validate.depth == 1


def test_db_burst_collapses_into_one_step():
    f = flow("resource-class-list-cold")
    groups = [s for s in f.steps if s.is_group and s.first.server.label == "keystone DB"]
    assert groups[0].summary.startswith("47 queries (project, user,")
    assert "+ 65 pool pings/rollbacks on 2 connections" in groups[0].summary
    # HTTP exchanges and pairs with children never collapse, a login stays visible
    for s in f.steps:
        if s.is_group:
            assert all(p.protocol in ("mysql", "memcache") for p in s.pairs)
            assert not any(q.parent == p.id for p in s.pairs for q in f.pairs)
    assert any(not s.is_group and s.first.request == "login placement@placement" for s in f.steps)


def test_no_group_gives_one_step_per_pair():
    f = flow("resource-class-list-cold", group=False)
    assert len(f.steps) == len(f.pairs) and not any(s.is_group for s in f.steps)


def test_pool_noise_is_counted_apart():
    noise = pairs_by("resource-class-list-cold", lambda p: p.noise)
    assert noise and all(isinstance(p.exchange.request, MysqlCommand) for p in noise)
    settings = {p.request for p in noise if p.request.startswith("SET ")}
    assert {p.request for p in noise} <= {"SELECT 1", "ROLLBACK", "COMMIT"} | settings


def test_tokens_numbered_in_order_with_owners_and_sha256_fingerprints():
    f = flow("resource-class-list-cold")
    assert [t.describe() for t in f.tokens][:2] == [
        f"T1 admin@admin ({f.tokens[0].fingerprint})", f"T2 placement@service ({f.tokens[1].fingerprint})"]
    raw = header_tokens("resource-class-list-cold")
    fps = {hashlib.sha256(t.encode()).hexdigest()[:8] for t in raw}
    assert {t.fingerprint for t in f.tokens} == fps


def test_memcached_key_maps_to_the_same_token_as_the_header():
    # cache-hit: the token comes from the command line, placement finds it in memcached
    command = (case_dir("resource-class-list-cache-hit") / "command.txt").read_text()
    token = re.search(r"--os-token (\S+)", command).group(1)
    fp = hashlib.sha256(token.encode()).hexdigest()[:8]
    f = flow("resource-class-list-cache-hit")
    assert [t.fingerprint for t in f.tokens] == [fp]
    get = pairs_by("resource-class-list-cache-hit", lambda p: p.protocol == "memcache")[0]
    http = pairs_by("resource-class-list-cache-hit", lambda p: p.protocol == "http")[0]
    assert get.tokens == http.tokens == ("T1",)
    assert get.request == f"get tokens/{fp}…" and get.response == "hit"
    assert "cache hit for T1" in get.notes


def test_validation_names_subject_and_caller_tokens():
    v = pairs_by("resource-class-list-cold", lambda p: p.request == "GET /v3/auth/tokens")[0]
    assert v.message == "GET /v3/auth/tokens (validate T1) [T2]"
    assert v.result == "200 OK, T1 valid (admin@admin)"

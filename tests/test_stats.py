"""--format stats: count, latency, errors per service and endpoint, on real captures."""

from __future__ import annotations

import json
import re

import pytest

from support import FIXTURES, check_golden, run_post

pytestmark = pytest.mark.tshark
CASES = {
    "server-create": FIXTURES / "captures-compute" / "server-create",
    "lab-server-create-novalidhost": FIXTURES / "captures-compute" / "lab-server-create-novalidhost",
    "resource-class-list-4-at-once": FIXTURES / "captures-busy" / "resource-class-list-4-at-once",
    "resource-class-list-cold": FIXTURES / "captures" / "resource-class-list-cold",
}


def _run(name: str, *args: str) -> str:
    d = CASES[name]
    status, out, err = run_post(["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"),
                                 *args])
    assert status == 0, err
    return out


def _rows(name: str) -> dict[tuple[str, str], list[str]]:
    """(service, endpoint) -> the other columns, from the table (columns split on 2+ spaces)."""
    lines = _run(name, "--format", "stats").splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]  # the columns, as the rule under the header has them
    out = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = [line[a:b + 2 if i else b].strip() for i, (a, b) in enumerate(spans)]
        out[(cells[0], cells[1])] = cells[2:]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    check_golden(f"post/stats-{name}.txt", _run(name, "--format", "stats"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_pair_is_counted_once(name):
    pairs = [json.loads(line) for line in _run(name, "--format", "json").splitlines()]
    rows = _rows(name)
    assert sum(int(r[0]) for r in rows.values()) == len(pairs)
    assert f"{len(pairs)} pairs, {len(rows)} endpoints" in _run(name, "--format", "stats")


def test_four_clients_at_once():
    rows = _rows("resource-class-list-4-at-once")
    count, p50, p95, p99, top, *rest = rows[("placement", "GET /resource_classes")]
    assert count == "4" and float(p50) <= float(p95) <= float(p99) <= float(top)
    # four new tokens: four misses; and nova-compute's periodic report, whose token placement had cached
    assert rows[("memcached", "get")][7] == "20% of 5"
    assert rows[("keystone", "POST /v3/auth/tokens")][0] == "4"


def test_errors_and_client_errors():
    rows = _rows("lab-server-create-novalidhost")
    # the scheduler's NoValidHost: a failed call, counted as an error
    select = rows[("nova-scheduler", "call select_destinations")]
    assert select[0] == "1" and select[5] == "1", select
    flavor = [r for (svc, ep), r in rows.items() if svc == "nova-api" and ep.startswith("GET /v2.1/flavors/")]
    assert any("1" in r[5:7] for r in flavor), flavor  # the 404 of the flavor looked up by name


def test_ids_are_templated_and_queries_counted_per_request():
    rows = _rows("server-create")
    assert ("glance", "GET /v2/images/{id}") in rows
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", ep) for _, ep in rows)
    post = rows[("nova-api", "POST /v2.1/servers")]
    assert post[0] == "1" and float(post[-1]) > 5  # its SQL, and the SQL of what it caused below it

"""``osflow diff A B`` on real captures: placement's ``resource class list`` right after a restart with
memcached flushed (cold), and again with the user's token in memcached (cache hit)."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from functools import cache

import pytest
from lxml import html as lxml_html

from osflow import cli
from osflow.diff import match
from support import case_dir, check_golden, header_tokens, run_post, tables_args

pytestmark = pytest.mark.tshark

COLD, WARM = "resource-class-list-cold", "resource-class-list-cache-hit"


def run_diff(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["diff", *argv])
    return status, out.getvalue(), err.getvalue()


@cache
def diff_of(fmt: str = "text") -> str:
    status, out, err = run_diff(str(case_dir(COLD)), str(case_dir(WARM)), "--format", fmt)
    assert status == 0, err
    return out


def test_golden_text():
    check_golden("diff/resource-class-list-cold-vs-cache-hit.txt", diff_of("text"))


def test_golden_json():
    check_golden("diff/resource-class-list-cold-vs-cache-hit.json", diff_of("json"))


def _section(text: str, title: str) -> list[str]:
    block = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_warm_run_skips_the_token_validation_and_the_cache_miss():
    text = diff_of("text")
    removed = _section(text, "only in A (B does not make these calls)")
    # placement validates the user's token with keystone (as itself: its own token first), then caches it
    for want in ("placement → keystone: GET /v3/auth/tokens (validate T1) [T2]",
                 "placement → keystone: POST /v3/auth/tokens (password placement@Default → project service)",
                 "placement → memcached: set tokens/… [T1]", "keystone → keystone DB: 85 queries"):  # fmt: skip
        assert any(want in line for line in removed), want
    assert "only in B (A does not make these calls): none" in text
    # the same cache lookup, a miss then a hit
    (changed,) = _section(text, "answered otherwise")
    assert changed.startswith("A7 → B2  placement → memcached: get tokens/… [T1]") and changed.endswith("(miss → hit)")
    # the request itself, 1.8 s cold, 8 ms warm
    faster = _section(text, "faster in B")
    assert faster[0] == ("A4 → B1  OpenStackClient → placement: GET /resource_classes [T1] (microversion 1.2)  "
                         "(1820.2 → 7.9 ms, −1812.3 ms)")


def test_json_says_the_same_as_the_text():
    doc = json.loads(diff_of("json"))
    assert doc["counts"] == {"both": 3, "removed": 11, "added": 0, "slower": 0, "faster": 2, "changed": 1}
    removed = [x["a"]["request"] for x in doc["lines"] if x["kind"] == "removed"]
    assert "GET /v3/auth/tokens" in removed and "set" in removed
    (changed,) = [x for x in doc["lines"] if x["changed"]]
    assert (changed["a"]["outcome"], changed["b"]["outcome"]) == ("miss", "hit")
    assert [x["delta_ms"] for x in doc["lines"] if x["kind"] == "faster"][0] == pytest.approx(-1812.29, abs=0.01)


def test_a_run_against_itself_changes_nothing():
    status, out, _ = run_diff(str(case_dir(COLD)), str(case_dir(COLD)), "-f", "json")
    doc = json.loads(out)
    assert status == 0 and {x["kind"] for x in doc["lines"]} == {"same"} and len(doc["lines"]) == 14


def test_json_lines_and_captures_compare_pair_by_pair(tmp_path):
    paths = []
    for case in (COLD, WARM):
        path = tmp_path / f"{case}.json"
        status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(path)])
        assert status == 0, err
        paths.append(str(path))
    status, from_jsonl, err = run_diff(*paths, "-f", "json")
    assert status == 0, err
    status, mixed, err = run_diff(paths[0], str(case_dir(WARM) / "capture.pcapng"), "-f", "json")
    assert status == 0, err
    a, b = json.loads(from_jsonl), json.loads(mixed)
    assert a["lines"] == b["lines"] and a["counts"] == b["counts"]
    removed = [x["a"]["text"] for x in a["lines"] if x["kind"] == "removed"]
    assert "GET /v3/auth/tokens" in removed and any(t.startswith("set tokens/") for t in removed)
    (changed,) = [x for x in a["lines"] if x["changed"]]
    assert changed["a"]["text"].startswith("get tokens/")
    assert (changed["a"]["outcome"], changed["b"]["outcome"]) == ("miss", "hit")


def test_the_side_by_side_page(tmp_path):
    out = tmp_path / "diff.html"
    status, stdout, err = run_diff(str(case_dir(COLD)), str(case_dir(WARM)), "-o", str(out))
    assert status == 0 and stdout == "", err
    page = out.read_text(encoding="utf-8")
    doc = lxml_html.fromstring(page)
    rows = doc.xpath("//table[@class='diff']/tbody/tr")
    assert len(rows) == 14 and [r.get("class") for r in rows].count("removed") == 11
    (changed,) = doc.xpath("//tr[contains(@class, 'changed')]")
    assert "miss → hit" in changed.text_content()
    # one offline file: nothing from elsewhere, no script
    assert not doc.xpath("//script | //link | //img | //*[@src]") and "default-src 'none'" in page
    for token in header_tokens(COLD) + header_tokens(WARM):
        assert token not in page


def test_a_missing_run_is_one_line_and_status_3(tmp_path):
    status, out, err = run_diff(str(tmp_path / "nothing"), str(case_dir(WARM)))
    assert status == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert re.match(r"osflow diff: error: .*nothing: no such file or folder \(expected a recording folder", err)
    bad = tmp_path / "x.json"
    bad.write_text("not json\n")
    status, _, err = run_diff(str(bad), str(case_dir(WARM)))
    assert status == 3 and "x.json:1: expected a JSON object a line" in err


def test_templates_leave_out_what_differs_call_to_call():
    assert match.template("http", "GET /v2.1/servers/0f3c5a3e-1d2b-4c5d-9e8f-0a1b2c3d4e5f [T3]") == (
        "GET /v2.1/servers/{id}")
    assert match.template("mysql", "SELECT x FROM instances WHERE id = 7") == match.template(
        "mysql", "SELECT y FROM instances WHERE id = 8")


def test_same_diff_and_map_whatever_the_hash_seed():
    import os
    import subprocess
    import sys

    from support import ROOT

    got: dict[str, set[bytes]] = {"diff": set(), "map": set()}
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"), PYTHONHASHSEED=seed)
        argv = [sys.executable, "-m", "osflow", "diff", str(case_dir(COLD)), str(case_dir(WARM)), "-f", "json"]
        r = subprocess.run(argv, env=env, capture_output=True, check=True)
        got["diff"].add(r.stdout)
        r = subprocess.run([sys.executable, "-m", "osflow", "post", "-r", str(case_dir(COLD) / "capture.pcapng"),
                            *tables_args(COLD), "-f", "map"], env=env, capture_output=True, check=True)  # fmt: skip
        got["map"].add(r.stdout)
    assert len(got["diff"]) == len(got["map"]) == 1

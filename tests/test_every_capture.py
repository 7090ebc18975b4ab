"""Every real capture in tests/fixtures/ through every output format.

The golden tests (test_post, test_rpc, test_otlp, test_report, test_busy, test_stats) pin the
output of the story captures; this runs every capture the fixtures hold, the small and odd ones
too (IPv6 and UDP, MySQL escapes, the lab's error cases, AMQP-only cuts, OSProfiler), through
each format, checks what each format promises, and for the OTLP traces and the HTML report that
PDML on stdin gives what ``-r`` gives.
"""

from __future__ import annotations

import functools
import json
import subprocess

import pytest
from lxml import html as lxml_html

from support import FIXTURES, run_post, tshark
from test_otlp import _parse, _spans

pytestmark = pytest.mark.tshark
# multihost/: one osflow record folder per host of one story, read together (-r DIR -r DIR), not one by one
CAPTURES = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.rglob("capture.pcapng")
                  if p.relative_to(FIXTURES).parts[0] != "multihost")
FORMATS = ("timeline", "mermaid", "json", "md", "html", "otlp", "stats")


def _args(case: str) -> list[str]:
    d = FIXTURES / case
    out = []
    for flag, name in (("--ss", "ss.txt"), ("--ps", "ps.txt"), ("--meta", "meta.json")):
        if (d / name).exists():
            out += [flag, str(d / name)]
    return out


@functools.cache
def _pdml(case: str) -> bytes:
    from osflow.source import tshark_pdml_command

    cmd = tshark_pdml_command(str(FIXTURES / case / "capture.pcapng"), tshark())
    done = subprocess.run(cmd, capture_output=True)
    assert done.returncode in (0, 2), done.stderr  # 2: the lab's capture cut short on purpose
    return done.stdout


def _post(case: str, fmt: str, pdml: bool = False) -> str:
    if not pdml and fmt == "otlp":  # the same -r output is read three times: made once
        return _post_kept(case, fmt)
    return _post_now(case, fmt, pdml)


@functools.cache
def _post_kept(case: str, fmt: str) -> str:
    """``-r`` output read by each format's check, PDML on stdin and the golden files.  Only OTLP's
    is kept: an HTML report embeds Mermaid (~3.7 MB a capture, ~200 MB for the run) and is read
    twice, not three times."""
    return _post_now(case, fmt)


def _post_now(case: str, fmt: str, pdml: bool = False) -> str:
    argv = [*_args(case), "--format", fmt]
    if pdml:
        status, out, err = run_post(argv, stdin=_pdml(case))
    else:
        status, out, err = run_post(["-r", str(FIXTURES / case / "capture.pcapng"), *argv])
    assert status in (0, 4), err  # 4: a capture cut short on purpose (the lab's error cases)
    assert "internal error" not in err and "Traceback" not in err, err
    return out


def test_the_fixtures_hold_the_captures_this_runs():
    assert len(CAPTURES) >= 20 and "captures-busy/resource-class-list-4-at-once" in CAPTURES


@pytest.mark.parametrize("case", CAPTURES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_on_every_capture(case, fmt):
    out = _post(case, fmt)
    if fmt == "json":
        pairs = [json.loads(line) for line in out.splitlines()]
        ids = {p["id"] for p in pairs}
        assert all(p["parent"] is None or p["parent"] in ids for p in pairs)
        assert all(isinstance(p["background"], bool) for p in pairs)
    elif fmt == "otlp":
        ids = {}
        for line in out.splitlines():
            data = json.loads(line)
            _parse(data)  # strictly, as opentelemetry-proto's TracesData
            spans = [span for _, span in _spans(data)]
            ids.update({s["spanId"]: s for s in spans})
            assert len({s["traceId"] for s in spans}) <= 1
        assert all(s.get("parentSpanId", "") in ("", *ids) for s in ids.values())
    elif fmt == "html":
        page = lxml_html.fromstring(out)
        assert page.get_element_by_id("waterfall") is not None
    elif fmt == "stats":
        assert out.splitlines()[0].split()[:3] == ["service", "endpoint", "count"]


@pytest.mark.parametrize("case", CAPTURES)
@pytest.mark.parametrize("fmt", ["otlp", "html"])
def test_pdml_on_stdin_gives_what_r_gives(case, fmt):
    assert _post(case, fmt, pdml=True) == _post(case, fmt)


def _golden_name(case: str) -> str:
    """``captures-busy/idle-20s`` -> ``every/captures-busy-idle-20s``."""
    return "every/" + case.replace("/", "-")


def _golden_elsewhere(fmt: str) -> set[str]:
    """The captures test_report (html) or test_otlp (otlp) already pin with golden files."""
    import test_otlp
    import test_report

    pinned = test_report.ALL if fmt == "html" else test_otlp.ALL
    return {case if "/" in case else f"captures/{case}" for case, _ in pinned}


@pytest.mark.parametrize("case", CAPTURES)
@pytest.mark.parametrize("fmt", ["otlp", "html"])
def test_golden_traces_and_report_of_every_other_capture(case, fmt, tmp_path_factory):
    """Golden files for the captures the story tests leave out, so every real capture's traces and
    report are pinned (the report written with test_report's stand-in for mermaid's build, its build
    and assets cut out as there)."""
    if case in _golden_elsewhere(fmt):
        pytest.skip("pinned by test_report / test_otlp")
    from support import check_golden

    if fmt == "otlp":
        check_golden(f"{_golden_name(case)}.otlp.jsonl", _post(case, "otlp"))
        return
    import test_report

    stand_in = tmp_path_factory.mktemp("mermaid") / "mermaid.min.js"
    stand_in.write_text(test_report.STAND_IN)
    status, out, err = run_post(["-r", str(FIXTURES / case / "capture.pcapng"), *_args(case), "--format", "html",
                                 "--mermaid-js", str(stand_in)])
    assert status in (0, 4), err
    check_golden(f"{_golden_name(case)}.html", test_report.without_assets(test_report.without_library(out)))


def test_every_capture_has_golden_traces_and_a_golden_report():
    """No capture left without: the golden files here plus those of test_report and test_otlp."""
    for fmt, ext in (("otlp", "otlp.jsonl"), ("html", "html")):
        for case in set(CAPTURES) - _golden_elsewhere(fmt):
            from support import ROOT

            assert (ROOT / "tests" / "golden" / f"{_golden_name(case)}.{ext}").exists(), (case, fmt)

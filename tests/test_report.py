"""The HTML report (``--format html``) on the real captures: golden files, PDML = ``-r``, no secret,
and the report loaded in real headless Chromium (the diagram drawn by mermaid, the waterfall).

Golden files (``tests/golden/post/*.html``) hold the report with mermaid's build cut out
(:func:`without_library`): the reports here are written with a stand-in build, and a test checks
that the real build gives the same document around it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
from lxml import html as lxml_html

import chromium
import mermaid_cli
from osflow import mermaidjs
from osflow.errors import InputError
from osflow.render import html as report
from support import CASES, case_dir, check_golden, header_tokens, pdml_bytes, post_cached, run_post, tables_args, tshark

pytestmark = pytest.mark.tshark

COMPUTE = ("server-create", "image-create", "network-create", "lab-server-create-novalidhost", "lab-server-delete",
           "lab-server-stop")
#: (fixture case, golden file's name) for every real capture the report is checked on
ALL = tuple((c, c) for c in CASES) + tuple((f"captures-compute/{n}", f"compute-{n}") for n in COMPUTE)
#: What mermaid's browser build ends with; the stand-in only has to be taken for one.
STAND_IN = "/* a stand-in for mermaid.min.js: the golden files cut the build out */\nglobalThis.mermaid = undefined;\n"
_LIBRARY = re.compile(r'(<script id="osflow-mermaid-js">\n).*?\n(</script>\n)', re.S)


def without_library(page: str) -> str:
    """The report with the inlined mermaid build replaced by one comment line."""
    out, n = _LIBRARY.subn(r"\1/* mermaid.min.js, cut out */\n\2", page)
    assert n == 1, "the report inlines no mermaid build"
    return out


def _asset_text(name: str) -> str:
    return (Path(report.__file__).parent.parent / "data" / "report" / name).read_text(encoding="utf-8").rstrip("\n")


def without_assets(page: str) -> str:
    """The report with its own stylesheet and script (the package's data/report/report.css and .js,
    the same in every report: test_the_report_inlines_its_own_assets_whole) replaced by one line each,
    so that the golden files hold what differs from capture to capture."""
    for name in ("report.css", "report.js"):
        text = _asset_text(name)
        assert page.count(text) == 1, f"the report does not inline {name} whole"
        page = page.replace(text, f"/* {name}, cut out */")
    return page


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mermaid") / "mermaid.min.js"
    path.write_text(STAND_IN)
    return str(path)


def post_html(case: str, *extra: str, pdml: bool = False) -> str:
    argv = (*tables_args(case), "--format", "html", *extra)
    if pdml:
        status, out, err = post_cached(argv, case)
    else:
        status, out, err = post_cached(("-r", str(case_dir(case) / "capture.pcapng"), *argv))
    assert status == 0, err
    return out


# ------------------------------------------------------------------ golden files, both input paths


@pytest.mark.parametrize("case,golden", ALL, ids=[g for _, g in ALL])
def test_golden_report(case, golden, stand_in):
    check_golden(f"post/{golden}.html", without_assets(without_library(post_html(case, "--mermaid-js", stand_in))))


def test_the_report_inlines_its_own_assets_whole(stand_in):
    page = post_html("resource-class-list-cold", "--mermaid-js", stand_in)
    for name, opening in (("report.css", "<style>\n"), ("report.js", "<script>\n")):
        assert opening + _asset_text(name) + "\n" in page, name


@pytest.mark.parametrize("case,golden", ALL, ids=[g for _, g in ALL])
def test_pdml_on_stdin_gives_the_same_report_as_r(case, golden, stand_in):
    assert post_html(case, "--mermaid-js", stand_in, pdml=True) == post_html(case, "--mermaid-js", stand_in)


def test_the_real_mermaid_build_is_inlined_whole_and_changes_nothing_else(stand_in):
    build = mermaidjs.find()
    if build is None:
        pytest.skip(f"no mermaid build found ({mermaid_cli.INSTALL_HINT})")
    case = "resource-class-list-cold"
    page = post_html(case, "--mermaid-js", build.path)
    assert without_library(page) == without_library(post_html(case, "--mermaid-js", stand_in))
    assert build.source.rstrip("\n") in page  # mermaid 11 holds no "</script": inlined as it is


def test_a_server_create_report_stays_under_8_mb(stand_in):
    page = post_html("captures-compute/server-create", "--mermaid-js", stand_in)
    # with mermaid 12's browser build (5.5 MB; 11's is 3.6 MB)
    assert len(page.encode()) - len(STAND_IN) + 5_500_000 < 8_000_000


def test_html_follows_the_output_file_s_extension(tmp_path, stand_in):
    case = "token-issue"
    out = tmp_path / "report.html"
    status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(out),
                               "--mermaid-js", stand_in])
    assert status == 0, err
    assert out.read_text(encoding="utf-8") == post_html(case, "--mermaid-js", stand_in)


# ------------------------------------------------------------------ finding mermaid


def test_without_a_mermaid_build_the_report_shows_the_source_and_says_how_to_draw_it(monkeypatch):
    monkeypatch.delenv(mermaidjs.ENV, raising=False)
    monkeypatch.setattr(mermaidjs, "candidates", lambda env=None: [])
    case = "resource-class-list-cold"
    status, page, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "--format", "html"])
    assert status == 0, err
    assert err.count("warning: no mermaid build found") == 1 and "install-mermaid-js.sh" in err
    assert 'id="osflow-mermaid-js"' not in page and 'data-mermaid="missing"' in page
    assert page.count('id="mermaid-missing"') == 1
    doc = lxml_html.fromstring(page)
    (source,) = doc.xpath('//section[@id="diagram"]//details//pre[@class="mermaid-source"]')
    assert source.text_content().startswith("sequenceDiagram\n    autonumber\n")
    (the_map,) = doc.xpath('//section[@id="map"]//pre[@class="mermaid-source"]')  # the map as source too
    assert the_map.text_content().startswith("flowchart LR\n")
    assert "OpenStackClient->>+placement: GET /resource_classes [T1] (microversion 1.2)" in source.text_content()


@pytest.mark.parametrize("given,why", [("/nonexistent/mermaid.min.js", "cannot read"),
                                       ("/etc/hostname", "is not mermaid's browser build"),
                                       ("x/dist/mermaid.esm.min.mjs", "ES module build")])
def test_a_wrong_mermaid_build_is_one_line_and_status_3(given, why):
    case = "token-issue"
    capture = str(case_dir(case) / "capture.pcapng")
    status, out, err = run_post(["-r", capture, "--format", "html", "--mermaid-js", given])
    assert status == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and why in err and err.startswith("osflow-post: error: --mermaid-js")


def test_osflow_mermaid_js_names_the_build(monkeypatch, stand_in):
    monkeypatch.setenv(mermaidjs.ENV, stand_in)
    assert mermaidjs.find().path == stand_in
    assert mermaidjs.find(stand_in).source == STAND_IN
    monkeypatch.setenv(mermaidjs.ENV, "/nonexistent.js")
    with pytest.raises(InputError, match=r"\$OSFLOW_MERMAID_JS: cannot read"):
        mermaidjs.find()


# ------------------------------------------------------------------ what the report says


def _doc(case: str, stand_in: str, *extra: str):
    return lxml_html.fromstring(post_html(case, "--mermaid-js", stand_in, *extra))


def _data(doc) -> dict:
    (script,) = doc.xpath('//script[@id="osflow-data"]')
    return json.loads(script.text)


def test_the_waterfall_has_a_row_per_step_nested_under_its_caller(stand_in):
    doc = _doc("resource-class-list-cold", stand_in)
    rows = doc.xpath('//section[@id="waterfall"]//div[contains(@class, "wf-row")]')
    timeline_rows = doc.xpath('//section[@id="timeline"]//tbody/tr')
    assert len(rows) == len(timeline_rows) == 14
    depth = [int(r.get("data-depth")) for r in rows]
    assert depth == [0, 0, 1, 0, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1]
    parent = [r.get("data-parent") for r in rows]
    assert parent[2] == "1" and parent[9] == "8" and parent[0] is None
    steps = _data(doc)["steps"]
    assert [s["request"] for s in steps][3] == "GET /resource_classes [T1] (microversion 1.2)"
    # GET /resource_classes waits for placement's two keystone calls: both on its critical path
    crit = {s["request"].split(" (")[0] for s in steps if s["critical"]}
    assert {"POST /v3/auth/tokens", "GET /v3/auth/tokens"} <= crit
    assert "crit" in rows[8].get("class") and "crit" in rows[10].get("class")
    # colour = the service called: both keystone rows share one, placement DB another
    colour = [next(c for c in r.get("class").split() if re.fullmatch(r"s\d+", c)) for r in rows]
    assert colour[0] == colour[1] == colour[8] and colour[4] == colour[5] != colour[0]
    widths = [float(re.search(r"width:([\d.]+)%", r.xpath('.//span[@class="bar"]')[0].get("style")).group(1))
              for r in rows]
    assert max(widths) == widths[3] > 75  # the 1.8 s GET /resource_classes, of 2.2 s


def test_errors_are_marked_http_4xx_and_failed_rpc_calls(stand_in):
    doc = _doc("captures-compute/lab-server-create-novalidhost", stand_in)
    steps = _data(doc)["steps"]
    failed = [s for s in steps if s["error"] == "error"]
    assert any(s["request"].startswith("call select_destinations") and s["response"].startswith("failure NoValidHost")
               for s in failed), [(s["request"], s["response"]) for s in failed]
    doc = _doc("captures-compute/server-create", stand_in)
    rows = doc.xpath('//section[@id="waterfall"]//div[contains(@class, "wf-row")]')
    client = [r for r in rows if "bad-client" in r.get("class")]
    assert [r.xpath('string(.//b[@class="badge"])') for r in client] == ["404", "404"]


def test_a_large_flow_gets_an_overview_and_diagram_parts(stand_in):
    doc = _doc("captures-compute/server-create", stand_in)
    parts = doc.xpath('//section[@id="diagram"]//details')
    captions = [p.xpath("string(summary)") for p in parts]
    assert captions[0].startswith("Overview: HTTP and RPC only") and parts[0].get("open") is not None
    assert len(parts) >= 3 and all(c.startswith("Every step, part ") for c in captions[1:])
    assert all(p.get("open") is None for p in parts[1:])
    for p in parts:
        text = p.xpath("string(.//pre)")
        assert text.startswith("sequenceDiagram\n") and len(text) <= report.DIAGRAM_CHARS + 2000
    overview = parts[0].xpath("string(.//pre)")
    assert "cast schedule_and_build_instances" in overview and "queries" not in overview


def test_each_step_carries_its_own_diagram_and_its_caller(stand_in):
    doc = _doc("resource-class-list-cold", stand_in)
    steps = _data(doc)["steps"]
    rows = doc.xpath('//section[@id="waterfall"]//div[contains(@class, "wf-row")]')
    # the parent is the caller's step number, as the timeline numbers steps
    callers = [None if r.get("data-parent") is None else int(r.get("data-parent")) + 1 for r in rows]
    assert [s.get("parent") for s in steps] == callers
    # GET /resource_classes (step 4): placement's whole story, nothing of the client's token request before it
    (own,) = steps[3]["diagram"]
    assert own.startswith("sequenceDiagram\n    autonumber\n    participant OpenStackClient\n")
    participants = re.findall(r"^    participant (\S+)", own, re.M)
    assert participants == ["OpenStackClient", "placement", "placement_DB", "memcached", "keystone", "keystone_DB"]
    assert "GET /v3/auth/tokens (validate T1) [T2]" in own and "85 queries" in own
    assert "POST /v3/auth/tokens (password admin@Default" not in own and "background" not in own
    # a step two levels down: only its own two participants
    (own,) = steps[11]["diagram"]
    assert re.findall(r"^    participant (\S+)", own, re.M) == ["keystone", "keystone_DB"]
    # the whole diagram is still there, as before
    assert doc.xpath('string(//section[@id="diagram"]//details[@id="d1"]//pre)').count("participant ") == 6


def test_the_report_s_map_shows_every_participant_and_edge(stand_in):
    from osflow.render import map as svcmap
    from support import flow

    case = "captures-compute/server-create"
    doc = _doc(case, stand_in)
    (pre,) = doc.xpath('//section[@id="map"]//pre[@id="map-diagram"]')
    f = flow(case)
    assert pre.text_content().rstrip("\n").split("\n") == list(svcmap.render(f))  # the same as --format map
    graph = svcmap.graph(f)
    table = [[td.text_content() for td in tr.xpath("td")[:4]] for tr in doc.xpath('//table[@class="edges"]//tbody/tr')]
    assert table == [[e.client, e.server, e.kind, str(e.count)] for e in graph.edges]
    pairs = {(p.client.label, p.server.label) for s in f.steps for p in s.pairs}
    assert {(a, b) for a, b, _, _ in table} == pairs
    assert {x for a, b, _, _ in table for x in (a, b)} == set(graph.nodes) and len(graph.nodes) == 16


def test_participants_tokens_and_timeline_tables(stand_in):
    doc = _doc("resource-class-list-cold", stand_in)
    participants = [r.xpath("string(td[1])") for r in doc.xpath('//section[@id="participants"]//tbody/tr')]
    assert participants[:2] == ["OpenStackClient", "keystone"] and "placement DB" in participants
    placement = next(r for r in doc.xpath('//section[@id="participants"]//tbody/tr')
                     if r.xpath("string(td[1])") == "placement")
    assert "wsgi:placement" in placement.xpath("string(td[7])")
    tokens = [[c.text_content() for c in r.xpath("td")] for r in doc.xpath('//section[@id="tokens"]//tbody/tr')]
    assert [t[:3] for t in tokens] == [["T1", "admin@admin", "bb9ff2e7"], ["T2", "placement@service", "8bfe2166"]]
    cells = doc.xpath('//section[@id="timeline"]//tbody/tr[4]/td')
    assert [c.text_content() for c in cells][5:7] == ["http", "GET /resource_classes [T1] (microversion 1.2)"]


# ------------------------------------------------------------------ secrets


@cache
def _passwords(case: str) -> frozenset[str]:
    """The passwords of the capture's keystone logins (real secrets of the lab), read with tshark."""
    out = subprocess.run([tshark(), "-r", str(case_dir(case) / "capture.pcapng"), "-d", "tcp.port==5000,http",
                          "-Y", 'http.request.method == "POST"', "-T", "fields", "-e", "http.file_data"],
                         capture_output=True, text=True, check=True).stdout
    found = set()
    for body in out.splitlines():
        try:
            found.add(json.loads(body)["auth"]["identity"]["password"]["user"]["password"])
        except (ValueError, KeyError, TypeError):
            continue
    return frozenset(found)


@cache
def _rpc_tokens(case: str) -> frozenset[str]:
    from osflow.decode import Decoder
    from osflow.model import AmqpMessage
    from osflow.source import PdmlReader

    return frozenset(m.oslo.token for m in Decoder().decode(PdmlReader(io.BytesIO(pdml_bytes(case)), case))
                     if isinstance(m, AmqpMessage) and m.oslo is not None and m.oslo.token)


@pytest.mark.parametrize("case,golden", ALL, ids=[g for _, g in ALL])
def test_no_token_or_password_in_any_report(case, golden, stand_in):
    page = post_html(case, "--mermaid-js", stand_in)
    secrets = set(_rpc_tokens(case))
    for t in header_tokens(case):
        secrets |= {t[i:i + 16] for i in range(0, len(t) - 16, 8)}
    assert secrets
    assert not [s for s in secrets if s in page]
    passwords = _passwords(case)
    if case != "resource-class-list-cache-hit":  # the only one that logs in to nobody (a cached token)
        assert passwords
    for pw in passwords:
        for quoted in (f'"{pw}"', f"&quot;{pw}&quot;", f"password {pw}", f"password:{pw}"):
            assert quoted not in page, (case, pw)
    if case == "captures-compute/server-create":
        assert _rpc_tokens(case), "this test would check nothing"
        assert any(t in post_html(case, "--mermaid-js", stand_in, "--show-secrets") for t in _rpc_tokens(case))


def test_no_broker_password_in_the_report(stand_in):
    # the Start-Ok's response holds the AMQPLAIN login (LOGIN guest PASSWORD guest)
    case = "captures-compute/lab-service-start"
    for extra in ((), ("--explain",)):
        page = post_html(case, "--mermaid-js", stand_in, *extra)
        assert "PASSWORD" not in page and "AMQPLAIN" not in page and "0850415353574f5244" not in page


# ------------------------------------------------------------------ in real Chromium


@pytest.fixture
def report_browser():
    """Skip when Chromium or a mermaid build is missing (``sh tests/tools/install-mermaid.sh``);
    with ``OSFLOW_REQUIRE_MERMAID`` set (CI) that is a failure instead."""
    reason = chromium.available()
    if reason:
        if os.environ.get("OSFLOW_REQUIRE_MERMAID"):
            pytest.fail(f"OSFLOW_REQUIRE_MERMAID is set but {reason}")
        pytest.skip(reason)
    return chromium


def _write_report(tmp_path: Path, case: str, *extra: str) -> Path:
    out = tmp_path / "report.html"
    capture = str(case_dir(case) / "capture.pcapng")
    status, _, err = run_post(["-r", capture, *tables_args(case), "-o", str(out), *extra])
    assert status == 0, err
    assert "no mermaid build found" not in err
    return out


@pytest.mark.mermaid
@pytest.mark.parametrize("case", ["resource-class-list-cold", "captures-compute/server-create"])
def test_chromium_draws_the_diagram_and_the_waterfall(case, tmp_path, report_browser):
    page = _write_report(tmp_path, case)
    dom = report_browser.dump_dom(page)
    doc = lxml_html.fromstring(dom)
    body = doc.xpath("//body")[0]
    failed = doc.xpath('string(//*[@id="mermaid-failed"])')
    assert body.get("data-mermaid") == "drawn", (body.get("data-script-error"), failed)
    svgs = doc.xpath('//section[@id="diagram"]//details[@open]//pre[@class="mermaid"]/svg')
    assert len(svgs) == 1 and svgs[0].get("aria-roledescription") == "sequence"
    svg = lxml_html.tostring(svgs[0], encoding="unicode")
    assert mermaid_cli.svg_error(svg) is None
    # mermaid wraps long messages (one <tspan> a line): compared without white space
    drawn = "".join("".join(t.itertext()) for t in svgs[0].iter("text")).replace(" ", "")
    if case == "resource-class-list-cold":
        want = ["GET /resource_classes [T1] (microversion 1.2)", "cache miss for T1", "47 queries (project, user,"]
    else:
        want = ["cast schedule_and_build_instances [T1]", "call select_destinations [T1]", "result [[Selection]]"]
    assert [w for w in want if w.replace(" ", "") not in drawn] == []
    rows = doc.xpath('//section[@id="waterfall"]//div[contains(@class, "wf-row")]')
    assert len(rows) == len(doc.xpath('//section[@id="timeline"]//tbody/tr')) > 10
    # offline: after load the page refers to nothing outside itself (and its CSP forbids it)
    assert not doc.xpath("//link | //img | //iframe | //object | //embed | //*[@src]")
    assert [h for h in doc.xpath("//@href") if not h.startswith("#")] == []
    styles = " ".join(doc.xpath("//style/text() | //@style"))
    assert "@import" not in styles and not re.search(r"url\((?!#)", styles)
    assert "default-src 'none'" in doc.xpath('string(//meta[@http-equiv="Content-Security-Policy"]/@content)')
    assert "critical" in doc.xpath("//body")[0].get("class", "")  # the script ran: the critical path is shown
    # a closed part of the diagram is left as source until it is opened
    assert all(not p.xpath(".//svg") for p in doc.xpath('//section[@id="diagram"]//details[not(@open)]'))


@pytest.mark.mermaid
def test_chromium_shows_the_source_when_there_was_no_mermaid_build(tmp_path, report_browser, monkeypatch):
    monkeypatch.delenv(mermaidjs.ENV, raising=False)
    monkeypatch.setattr(mermaidjs, "candidates", lambda env=None: [])
    case = "token-issue"
    out = tmp_path / "report.html"
    status, _, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-o", str(out)])
    assert status == 0 and "no mermaid build found" in err
    doc = lxml_html.fromstring(report_browser.dump_dom(out))
    assert doc.xpath("//body")[0].get("data-mermaid") == "missing" and not doc.xpath("//svg")
    assert doc.xpath('string(//section[@id="diagram"]//details//pre[@class="mermaid-source"])').startswith(
        "sequenceDiagram")
    assert doc.xpath('string(//section[@id="map"]//pre[@class="mermaid-source"])').startswith("flowchart LR")
    assert "critical" in doc.xpath("//body")[0].get("class", "")


@pytest.mark.mermaid
def test_chromium_draws_a_step_s_own_diagram_from_a_deep_link(tmp_path, report_browser):
    case = "captures-compute/server-create"
    page = _write_report(tmp_path, case)
    source = page.read_text(encoding="utf-8")
    n = int(re.search(r'id="w(\d+)"[^>]*title="\d+\. nova-conductor → nova-scheduler: call select_destinations',
                      source).group(1))  # fmt: skip
    shared = tmp_path / "shared" / "report.html"  # the file as someone else opens it, elsewhere
    shared.parent.mkdir()
    shared.write_bytes(page.read_bytes())
    doc = lxml_html.fromstring(report_browser.dump_dom(shared, f"#step={n}"))
    body = doc.xpath("//body")[0]
    assert body.get("data-script-error") is None
    assert body.get("data-drill") == "drawn" and body.get("data-mermaid") == "drawn"
    (drill,) = doc.xpath('//div[@id="drill"]')
    assert drill.get("hidden") is None and drill.get("data-step") == str(n)
    crumbs = drill.xpath('string(.//nav[@id="crumbs"])')
    assert crumbs.startswith("the whole flow › ") and "OpenStackClient → nova-api: POST /v2.1/servers" in crumbs
    assert crumbs.endswith(f"{n}. nova-conductor → nova-scheduler: call select_destinations [T1]")
    assert [a.get("href") for a in drill.xpath('.//nav[@id="crumbs"]/a')][0] == "#diagram"
    (svg,) = drill.xpath('.//div[@id="drill-parts"]//pre[@class="mermaid"]/svg')
    assert svg.get("aria-roledescription") == "sequence"
    assert mermaid_cli.svg_error(lxml_html.tostring(svg, encoding="unicode")) is None
    drawn = "".join("".join(t.itertext()) for t in svg.iter("text")).replace(" ", "")
    for want in ("nova-conductor", "nova-scheduler", "placement", "GET/allocation_candidates"):
        assert want in drawn, want
    assert "nova-api" not in drawn and "neutron-server" not in drawn  # only its own participants
    # the pair is shown, the whole diagram and the map stay drawn
    assert doc.xpath('//aside[@id="detail"]')[0].get("hidden") is None
    assert doc.xpath('//section[@id="diagram"]//details[@open]//pre[@class="mermaid"]/svg')
    (svg,) = doc.xpath('//section[@id="map"]//pre[@id="map-diagram"]/svg')
    assert svg.get("aria-roledescription") == "flowchart-v2"
    labels = " ".join(" ".join("".join(t.itertext()).split()) for t in svg.iter() if t.text)
    assert "nova-conductor" in labels and "neutron DB" in labels


# ------------------------------------------------------------------ escaping, determinism

NASTY = "</script><script>alert(1)</script><!-- <script> & \"quoted\" 'single' <b>bold</b> #59; %%{init}%% \u202eevil"


def _nasty_flow():
    """The token-issue capture's flow with its first request's words and the client's evidence made hostile
    (everything else as captured): what a crafted URL, header or command line could put there."""
    from dataclasses import replace

    from support import flow

    f = flow("token-issue")
    first = f.steps[0].first
    client = replace(first.client, evidence=NASTY)
    changed = replace(first, message=NASTY, request=NASTY, result=NASTY, client=client)
    pairs = tuple(changed if p is first else p for p in f.pairs)
    steps = (replace(f.steps[0], pairs=(changed,) + f.steps[0].pairs[1:]),) + f.steps[1:]
    return replace(f, pairs=pairs, steps=steps, warnings=(NASTY,))


def test_hostile_text_stays_text(stand_in):
    page = "\n".join(report.render(_nasty_flow(), library=mermaidjs.load(stand_in, "test")))
    doc = lxml_html.fromstring(page)
    assert [s.get("id") for s in doc.xpath("//script")] == ["osflow-data", report.LIBRARY_ID, None]
    assert not doc.xpath("//b[not(@class)]")  # no <b>bold</b> became markup
    shown = NASTY.replace("\u202e", "")
    assert shown in doc.xpath('string(//div[@id="w1"]//span[@class="msg"])')
    assert doc.xpath('string(//section[@id="warnings"]//li)') == shown
    steps = json.loads(doc.xpath('//script[@id="osflow-data"]')[0].text)["steps"]
    assert steps[0]["request"] == steps[0]["response"] == NASTY and steps[0]["client_evidence"] == NASTY
    # the diagram's source: Mermaid's entity codes, then HTML's
    whole = doc.xpath('string(//section[@id="diagram"]//pre[@class="mermaid"])')
    assert "#lt;/script#gt;#lt;script#gt;alert(1)" in whole
    # and in the step's own diagram, in the data, for the script to draw
    assert "#lt;/script#gt;#lt;script#gt;alert(1)" in steps[0]["diagram"][0]


@pytest.mark.mermaid
def test_chromium_draws_hostile_text_as_text(tmp_path, report_browser):
    page = tmp_path / "nasty.html"
    page.write_text("\n".join(report.render(_nasty_flow(), library=mermaidjs.find())) + "\n", encoding="utf-8")
    doc = lxml_html.fromstring(report_browser.dump_dom(page))
    assert doc.xpath("//body")[0].get("data-mermaid") == "drawn"
    assert len(doc.xpath("//script")) == 3 and not doc.xpath("//b[not(@class)]")
    (svg,) = doc.xpath('//section[@id="diagram"]//pre[@class="mermaid"]/svg')
    drawn = [" ".join("".join(t.itertext()).split()) for t in svg.iter("text")]
    assert " ".join(NASTY.replace("\u202e", "").split()) in drawn


def test_same_report_whatever_the_hash_seed(stand_in):
    import sys

    from support import ROOT

    case = "resource-provider-create"
    got = set()
    for seed in ("1", "2", "random"):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"), PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-m", "osflow", "post", "-r", str(case_dir(case) / "capture.pcapng"),
                            *tables_args(case), "--format", "html", "--mermaid-js", stand_in],
                           env=env, capture_output=True, check=True)
        got.add(r.stdout)
    assert len(got) == 1

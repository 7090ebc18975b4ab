"""The streamed flow (osflow.pipeline.Stream): the same output as the whole flow, in bounded memory.

JSON Lines, OTLP and stats are written while the input is read (their declarations in
render.OUTPUTS say they are streamed); the timeline, Markdown and Mermaid are drawn at the end
from the same streamed stages (collected, pipeline.collect).  On every real capture of the
fixtures they must be byte for byte what the whole flow renders (the golden files pin that one);
and a long input -- many copies of a real capture, one after the other, each on its own
connections -- must keep only what is in progress: the pairs and exchanges held, the connections
named, the renderers' own state stay bounded whatever the number of copies.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import subprocess

import pytest

from osflow import foreground
from osflow.model import Flow, Packet
from osflow.options import AnalysisOptions
from osflow.pipeline import Stream, Tables, analyse, collect
from osflow.render import OUTPUTS, otlp, renderer
from osflow.render.stats import Table
from osflow.source import PdmlReader
from support import FIXTURES, tshark

pytestmark = pytest.mark.tshark
CAPTURES = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.rglob("capture.pcapng"))
STREAMED = ("json", "otlp", "stats")
COLLECTED = ("timeline", "md", "mermaid", "map")


@functools.cache
def _pdml(case: str) -> bytes:
    from osflow.source import tshark_pdml_command

    done = subprocess.run(tshark_pdml_command(str(FIXTURES / case / "capture.pcapng"), tshark()), capture_output=True)
    assert done.returncode in (0, 2), done.stderr  # 2: the lab's capture cut short on purpose
    return done.stdout


def _inputs(case: str):
    d = FIXTURES / case
    tables = Tables.load([str(d / "ss.txt")] if (d / "ss.txt").exists() else [],
                         [str(d / "ps.txt")] if (d / "ps.txt").exists() else [])
    meta = d / "meta.json"
    client = foreground.client_from_meta(str(meta), tables.processes) if meta.exists() else None
    return _pdml(case), tables, client


@functools.cache
def _whole(case: str) -> Flow:
    pdml, tables, client = _inputs(case)
    return analyse(io.BytesIO(pdml), case, tables, AnalysisOptions(client=client)).flow


def test_every_capture_is_here():
    assert len(CAPTURES) >= 20


@pytest.mark.parametrize("case", CAPTURES)
@pytest.mark.parametrize("fmt", STREAMED)
def test_streamed_output_is_the_whole_flow_s(case, fmt):
    pdml, tables, client = _inputs(case)
    r = renderer(fmt)
    whole = list(r.render(_whole(case)))
    streamed = Stream(io.BytesIO(pdml), case, tables, AnalysisOptions(client=client))
    assert list(r.render_parts(streamed)) == whole
    assert streamed.pairs == len(_whole(case).pairs)
    assert streamed.warnings == _whole(case).warnings


def test_the_streamed_and_drawn_formats_are_the_declared_ones():
    assert tuple(o.format for o in OUTPUTS if o.needs == "streamed") == STREAMED
    assert sorted(o.format for o in OUTPUTS if o.needs == "collected") == sorted(COLLECTED)


@pytest.mark.parametrize("case", CAPTURES)
def test_a_collected_flow_draws_what_the_whole_flow_draws(case):
    pdml, tables, client = _inputs(case)
    whole = _whole(case)
    result = collect(Stream(io.BytesIO(pdml), case, tables, AnalysisOptions(client=client)))
    assert result.flow.pairs == whole.pairs
    assert result.flow.steps == whole.steps
    assert (result.flow.left_out, result.flow.tokens, result.flow.origin, result.flow.warnings) == (
        whole.left_out, whole.tokens, whole.origin, whole.warnings)
    for fmt in COLLECTED:
        assert list(renderer(fmt).render(result.flow)) == list(renderer(fmt).render(whole)), fmt


@pytest.mark.parametrize("case", ["captures-compute/server-create", "captures-busy/resource-class-list-4-at-once"])
def test_a_collected_flow_shows_everything_or_ungrouped_as_asked(case):
    pdml, tables, client = _inputs(case)
    for opts in (AnalysisOptions(client=client, show_all=True), AnalysisOptions(client=client, group=False)):
        whole = analyse(io.BytesIO(pdml), case, tables, opts).flow
        collected = collect(Stream(io.BytesIO(pdml), case, tables, opts)).flow
        assert collected.steps == whole.steps and collected.left_out == whole.left_out, opts


def test_a_short_horizon_writes_before_the_end_and_still_tells_the_same_story():
    """Horizon 1 s on a 27 s capture: pairs are given out in many parts, the first long before
    the end, and the story is the whole flow's."""
    case = "captures-compute/lab-server-delete"
    pdml, tables, client = _inputs(case)
    streamed = Stream(io.BytesIO(pdml), case, tables, AnalysisOptions(client=client, horizon=1.0))
    parts = list(streamed)
    assert len([p for p in parts if p.pairs]) > 10
    whole = _whole(case)
    assert len(parts[0].pairs) > 0 and parts[0].pairs[-1].exchange.start < whole.pairs[-1].exchange.start - 10
    assert list(renderer("json").render_parts(parts)) == list(renderer("json").render(whole))
    assert streamed.held < len(whole.pairs) / 2


class _Copies:
    """A reader giving ``n`` copies of a capture's packets one after the other, each copy ``gap``
    seconds after the previous one ended, on connections of its own (tcp.stream shifted)."""

    def __init__(self, packets: list[Packet], n: int, gap: float = 160.0) -> None:
        self.packets, self.n = packets, n
        self.span = packets[-1].time - packets[0].time + gap
        self.streams = max(p.stream for p in packets) + 1
        self.first_time = packets[0].time
        self.partial = None
        self.count = 0
        self.seen: list[dict] = []  # what the stream held, sampled at the start of each copy

    def __iter__(self):
        for k in range(self.n):
            for p in self.packets:
                self.count += 1
                yield dataclasses.replace(p, time=p.time + k * self.span, stream=p.stream + k * self.streams)


def _sampled(parts, sample):
    for part in parts:
        yield part
        sample()


def _held(s: Stream) -> dict:
    b = s.builder
    return dict(pairs=len(b.pairs), exchanges=len(s.pairing.exchanges), names=len(s.names),
                servers=len(b.by_server), closure=len(b.closure._fg), links=len(s.pairing.rpc._links),
                lasts=len(b._last))


@pytest.mark.parametrize("case", ["captures/resource-class-list-cold", "captures-compute/server-create"])
def test_memory_holds_what_is_in_progress_not_the_capture(case):
    """Many copies of a real capture: the pairs found grow with the copies, what is held does not."""
    packets = list(PdmlReader(io.BytesIO(_pdml(case)), case))
    one = len(_whole(case).pairs)

    def run(n: int) -> tuple[dict, Table, int]:
        reader = _Copies(packets, n)
        s = Stream(io.BytesIO(b""), case, reader=reader)
        most: dict = {}
        table = Table()
        trees = 0
        parts = []
        for part in s:
            table.add(part)
            parts.append(part)
            for k, v in {**_held(s), "stats": len(table._above)}.items():
                most[k] = max(most.get(k, 0), v)
        kept = otlp._Flow()
        for _ in otlp.traces_of_parts(_sampled(parts, lambda: most.__setitem__(
                "otlp", max(most.get("otlp", 0), sum(map(len, kept.children.values()))))), kept):
            trees += 1
        assert not kept.children  # every tree written, nothing kept
        assert s.pairs == table.pairs == n * one
        return most, table, trees

    few, _, trees_few = run(3)
    many, table, trees_many = run(12)
    assert trees_many == 4 * trees_few
    connections = len(_whole(case).connections)
    for what, n in many.items():
        # at most about two copies' pairs (the copy in progress, the end of the one before, whose last
        # pairs close when the next copy's come); a connection's name is kept until it
        # has been silent for 30 horizons (300 s; copies here come 160 s or more apart: three copies' connections)
        limit = {"names": 3 * connections}.get(what, 2 * one)
        assert n <= limit, (what, n, limit, few, many)
    assert few["pairs"] > 0 and few["names"] > 0


@pytest.mark.parametrize("fmt, explain, collected", [("timeline", False, True), ("md", False, True),
                                                      ("mermaid", False, True), ("timeline", True, False),
                                                      ("html", False, False)])
def test_the_app_draws_from_a_collected_flow_unless_it_shows_the_connections(fmt, explain, collected, monkeypatch,
                                                                             tmp_path):
    """The timeline's -r comes within 1.15x of tshark alone only if the flow is built while tshark runs
    (benchmarks/bench_post.py, goal 6); --explain and the report show the connections: the whole flow."""
    from osflow import app

    calls = []
    monkeypatch.setattr(app, "collect", lambda *a, **k: calls.append(1) or collect(*a, **k))
    case = "captures-compute/server-create"
    pdml = tmp_path / "capture.pdml"
    pdml.write_bytes(_pdml(case))
    d = FIXTURES / case
    out = tmp_path / "out.txt"
    app.post(app.PostOptions(pdml=str(pdml), ss=(str(d / "ss.txt"),), ps=(str(d / "ps.txt"),), format=fmt,
                             explain=explain, output=str(out)), stderr=io.StringIO())
    assert bool(calls) == collected
    assert out.stat().st_size > 0

"""Render stage: Mermaid structure and splitting, the real renderer, the timeline."""

from __future__ import annotations

import re

import pytest

from osflow.render import mermaid, timeline
from osflow.render.common import frame_ranges
from support import CASES, GOLDEN, flow

ARROW = re.compile(r"^    (\w+)(->>|-->>)([+-]?)(\w+): ")


def check_diagram(lines: list[str]) -> None:
    assert lines[:2] == ["sequenceDiagram", "    autonumber"]
    declared = [line.split()[1] for line in lines if line.startswith("    participant ")]
    used = []
    depth = {}
    for line in lines:
        words = line.split()
        if words[:2] == ["Note", "over"]:
            used += words[2].rstrip(":").split(",")
            continue
        if words and words[0] in ("activate", "deactivate"):
            depth[words[1]] = depth.get(words[1], 0) + (1 if words[0] == "activate" else -1)
            assert depth[words[1]] >= 0, line
            continue
        m = ARROW.match(line)
        if not m:
            continue
        a, kind, act, b = m.groups()
        used += [a, b]
        if act == "+":
            depth[b] = depth.get(b, 0) + 1
        elif act == "-":
            depth[a] = depth.get(a, 0) - 1
            assert depth[a] >= 0, line
    assert set(used) <= set(declared) and set(declared) <= set(used)
    assert all(v == 0 for v in depth.values())  # every activation is closed in its own diagram


@pytest.mark.tshark
@pytest.mark.parametrize("case", CASES)
def test_mermaid_structure(case):
    (lines,) = mermaid.diagrams(flow(case))
    check_diagram(lines)


@pytest.mark.tshark
def test_long_flows_split_between_steps_with_open_requests_carried_over():
    f = flow("resource-class-list-cold", group=False)
    whole = mermaid.diagrams(f, max_chars=10**9)
    parts = mermaid.diagrams(f, max_chars=8000)
    assert len(whole) == 1 and len(parts) > 3
    for lines in parts:
        check_diagram(lines)

    def body(ds: list[list[str]]) -> list[str]:
        return [line for d in ds for line in d
                if ARROW.match(line) or line.startswith("    Note over") and "continued: " not in line]

    assert body(parts) == body(whole)
    # a split inside placement's GET /resource_classes carries it over to the next diagram
    assert any("continued: GET /resource_classes" in line for d in parts for line in d)
    # the default limit keeps each diagram under Mermaid's 50,000 characters
    for lines in mermaid.diagrams(f):
        assert sum(len(line) + 1 for line in lines) < 50_000


@pytest.mark.tshark
def test_ungrouped_cold_flow_needs_several_diagrams_by_default():
    ds = mermaid.diagrams(flow("resource-class-list-cold", group=False))
    text = "\n".join(mermaid.render(flow("resource-class-list-cold", group=False)))
    # one stream is one Mermaid document: the first diagram, said to be part 1 (tests/test_mermaid_split.py)
    assert len(ds) >= 2 and f"this is part 1 of {len(ds)}" in text and text.count("sequenceDiagram") == 1


@pytest.mark.tshark
def test_timeline_rows():
    rows = list(timeline.rows(flow("resource-class-list-cold")))
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0][3:8] == ("OpenStackClient", "keystone", "http", "GET /v3", "200 OK")
    assert rows[2][6].startswith("· 47 queries")


def test_frame_ranges():
    assert frame_ranges([]) == ""
    assert frame_ranges([5]) == "5"


@pytest.mark.mermaid
@pytest.mark.tshark
def test_golden_diagrams_render_in_mermaid(mermaid_render):
    # one file with every case's diagram, and a split flow: the renderer accepts them all
    for case in CASES:
        mermaid_render((GOLDEN / f"post/{case}.mmd").read_text(), name=case)
    for n, lines in enumerate(mermaid.diagrams(flow("resource-class-list-cold", group=False))):
        mermaid_render("\n".join(lines), name=f"split-{n}")

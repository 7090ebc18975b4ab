"""The service map (``--format map``): a bare Mermaid flowchart of who calls whom, on real captures,
rendered by the real mermaid-cli."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from lxml import etree

from osflow.render import map as svcmap
from support import case_dir, check_golden, post_cached, tables_args

pytestmark = pytest.mark.tshark

CASES = ("resource-class-list-cold", "resource-class-list-cache-hit", "captures-compute/server-create")
_EDGE = re.compile(r'^    (n\d+) (-->|-\.->)\|"([^"]*)"\| (n\d+)$')


def post_map(case: str, *extra: str) -> str:
    status, out, err = post_cached(("-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "-f", "map",
                                    *extra))  # fmt: skip
    assert status == 0, err
    return out


@pytest.mark.parametrize("case", CASES)
def test_golden_map(case):
    check_golden(f"map/{case.replace('/', '-')}.mmd", post_map(case))


def _nodes_and_edges(text: str) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    nodes = dict(re.findall(r'^    (n\d+)\["([^"]*)"\]$', text, re.M))
    edges = [m.groups() for m in map(_EDGE.match, text.splitlines()) if m]
    return nodes, edges


def test_every_participant_and_call_of_the_story_is_on_the_map():
    from support import flow

    f = flow("captures-compute/server-create")
    nodes, edges = _nodes_and_edges(post_map("captures-compute/server-create"))
    labels = {p.client.label for s in f.steps for p in s.pairs} | {p.server.label for s in f.steps for p in s.pairs}
    assert set(nodes.values()) == labels and len(labels) == 16
    drawn = {(nodes[a], nodes[b]) for a, _, _, b in edges}
    assert drawn == {(p.client.label, p.server.label) for s in f.steps for p in s.pairs}
    # each edge's count adds up to the story's pairs; RPC edges are the dotted ones
    assert sum(int(label.split("×")[0]) for _, _, label, _ in edges) == sum(len(s.pairs) for s in f.steps)
    rpc = {(nodes[a], nodes[b]) for a, arrow, _, b in edges if arrow == "-.->"}
    assert ("nova-conductor", "nova-scheduler") in rpc and ("nova-api", "nova-conductor") in rpc
    assert all(arrow == "-->" for a, arrow, _, b in edges if nodes[b].endswith(" DB") or nodes[b] == "memcached")


def test_all_draws_the_background_too():
    nodes, edges = _nodes_and_edges(post_map("captures-compute/server-create"))
    all_nodes, all_edges = _nodes_and_edges(post_map("captures-compute/server-create", "--all"))
    assert set(nodes.values()) <= set(all_nodes.values())
    count = sum(int(label.split("×")[0]) for _, _, label, _ in all_edges)
    assert count > sum(int(label.split("×")[0]) for _, _, label, _ in edges)


def test_edges_of_each_kind_are_styled_and_the_critical_path_is_thick():
    text = post_map("resource-class-list-cold")
    _, edges = _nodes_and_edges(text)
    styles = dict(re.findall(r"^    linkStyle ([\d,]+) (.*)$", text, re.M))
    by_edge = {int(i): s for ks, s in styles.items() for i in ks.split(",")}
    assert sorted(by_edge) == list(range(len(edges)))
    # the client's GET /resource_classes is on the critical path, so is keystone's DB work for the token
    assert svcmap.CRITICAL in by_edge[2] and "#4e79a7" in by_edge[2]
    assert any("stroke-dasharray:3 3" in s for s in by_edge.values())  # memcached
    assert "class n1," in text


def test_groups_split_by_host_when_there_are_several():
    from support import flow

    f = flow("resource-class-list-cold")
    moved = []
    for p in f.pairs:  # as if placement ran on another host: every exchange's placement end moves there
        ex = p.exchange
        if p.server.label == "placement":
            ex = replace(ex, server=replace(ex.server, host="198.18.0.2"))
        if p.client.label == "placement":
            ex = replace(ex, client=replace(ex.client, host="198.18.0.2"))
        moved.append(replace(p, exchange=ex))
    by_id = {p.id: p for p in moved}
    steps = tuple(replace(s, pairs=tuple(by_id[p.id] for p in s.pairs)) for s in f.steps)
    text = "\n".join(svcmap.render(replace(f, pairs=tuple(moved), steps=steps)))
    assert '    subgraph h1["127.0.0.1"]' in text and '    subgraph h2["198.18.0.2"]' in text
    block = text.split('subgraph h2["198.18.0.2"]')[1].split("    end")[0]
    assert re.findall(r'\["([^"]*)"\]', block) == ["placement"]


def test_hostile_labels_stay_labels():
    from support import flow

    f = flow("token-issue")
    nasty = 'a"] --> evil["x`y`'
    first = f.steps[0].first
    changed = replace(first, client=replace(first.client, label=nasty))
    steps = (replace(f.steps[0], pairs=(changed,) + f.steps[0].pairs[1:]),) + f.steps[1:]
    text = "\n".join(svcmap.render(replace(f, steps=steps)))
    assert '"] --> evil' not in text and "#quot;] --#gt; evil[#quot;x#96;y#96;" in text


@pytest.mark.mermaid
@pytest.mark.parametrize("case", ["resource-class-list-cold", "captures-compute/server-create"])
def test_mermaid_cli_renders_the_map(case, mermaid_render):
    text = post_map(case)
    svg = etree.parse(str(mermaid_render(text, name="map")))
    root = svg.getroot()
    assert root.get("aria-roledescription") == "flowchart-v2"
    drawn = " ".join(" ".join("".join(t.itertext()).split()) for t in root.iter() if t.text or len(t))
    nodes, edges = _nodes_and_edges(text)
    assert [n for n in nodes.values() if n not in drawn] == []
    assert [lbl for _, _, lbl, _ in edges if lbl.replace("#quot;", '"') not in drawn] == []
    paths = root.xpath('//*[local-name()="path" and contains(@class, "flowchart-link")]')
    assert len(paths) == len(edges)

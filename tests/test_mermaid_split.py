"""A flow too long for one Mermaid diagram: standard output is one document mermaid reads (the first
part, saying so), stderr says so too; ``-o x.mmd`` writes one file per part, each of which mermaid renders."""

from __future__ import annotations

import re

import pytest

from osflow.errors import ExitStatus
from support import case_dir, run_post, tables_args

CASE = "resource-class-list-cold"  # ungrouped, it needs 3 diagrams


def _args(*extra):
    return ["-r", str(case_dir(CASE) / "capture.pcapng"), *tables_args(CASE), "--no-group", *extra]


@pytest.mark.tshark
def test_stdout_holds_one_document_and_says_it_is_part_1(mermaid_render_or_none):
    status, out, err = run_post(_args("--format", "mermaid"))
    assert status == ExitStatus.OK, err
    assert out.count("sequenceDiagram") == 1, out.count("sequenceDiagram")
    first = out.splitlines()[0]
    m = re.fullmatch(r"%% osflow: the flow is too long for one Mermaid diagram: this is part 1 of (\d+); "
                     r"-o FILE\.mmd writes all \1, one file each \(FILE\.mmd, FILE-2\.mmd, \.\.\.\)", first)
    assert m and int(m[1]) >= 2, first
    assert re.search(rf"warning: the flow is too long for one Mermaid diagram: standard output holds part 1 of "
                     rf"{m[1]}; -o FILE\.mmd writes all {m[1]}", err), err
    if mermaid_render_or_none is not None:
        mermaid_render_or_none(out, name="stdout")


@pytest.mark.tshark
def test_o_writes_one_file_per_part_each_a_document(tmp_path, mermaid_render_or_none):
    target = tmp_path / "flow.mmd"
    status, out, err = run_post(_args("-o", str(target)))
    assert status == ExitStatus.OK, err
    files = sorted(tmp_path.glob("flow*.mmd"))
    assert len(files) >= 2 and f"the diagram was split into {len(files)} files" in err, err
    stdout_first = run_post(_args("--format", "mermaid"))[1].split("\n", 1)[1]
    assert target.read_text() == stdout_first  # the part on stdout is the first file, comment aside
    for f in files:
        text = f.read_text()
        assert text.startswith("sequenceDiagram") and text.count("sequenceDiagram") == 1, f
        if mermaid_render_or_none is not None:
            mermaid_render_or_none(text, name=f.stem)


@pytest.mark.tshark
def test_a_flow_of_one_diagram_has_no_comment():
    status, out, err = run_post(["-r", str(case_dir(CASE) / "capture.pcapng"), *tables_args(CASE), "--format",
                                 "mermaid"])
    assert status == ExitStatus.OK and out.startswith("sequenceDiagram") and "Mermaid diagram" not in err, err


@pytest.fixture
def mermaid_render_or_none(tmp_path):
    """mermaid-cli's renderer when installed (CI, with OSFLOW_REQUIRE_MERMAID, requires it), else None:
    the text checks run everywhere."""
    import os

    import mermaid_cli

    reason = mermaid_cli.available()
    if reason:
        if os.environ.get("OSFLOW_REQUIRE_MERMAID"):
            pytest.fail(f"OSFLOW_REQUIRE_MERMAID is set but {reason}")
        return None
    return lambda text, name: mermaid_cli.render(text, tmp_path, name=name)

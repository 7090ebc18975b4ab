"""What goes wrong around the analysis: bad table lines by the thousand, a helper tshark pass or tshark
itself failing, output that cannot be written, files that are not captures.  One clear line, the
documented exit status, nothing the main pass produced is lost."""

from __future__ import annotations

import json
import re

import pytest

from osflow.errors import ExitStatus
from support import case_dir, run_post, tables_args

SMALL = "resource-class-list-cache-hit"


@pytest.mark.tshark
@pytest.mark.parametrize("table", ["--ss", "--ps"])
def test_thousands_of_bad_table_lines_are_counted_after_the_first_few(tmp_path, table):
    d = case_dir(SMALL)
    real = (d / ("ss.txt" if table == "--ss" else "ps.txt")).read_text()
    bad = tmp_path / "table.txt"
    bad.write_text(real + "".join(f"garbage line {n} --os-password S3cret{n}\n" for n in range(5000)))
    args = ["-r", str(d / "capture.pcapng"), *tables_args(SMALL), "--format", "json"]
    i = args.index(table)
    args[i + 1] = str(bad)
    status, out, err = run_post(args)
    assert status == ExitStatus.OK, err
    lines = err.splitlines()
    assert len(lines) < 10, lines[:12]
    assert "… and 4,997 more lines like it" in err, err
    assert "S3cret" not in err, err
    assert len(out.splitlines()) == len(run_post(["-r", str(d / "capture.pcapng"), *tables_args(SMALL),
                                                  "--format", "json"])[1].splitlines())

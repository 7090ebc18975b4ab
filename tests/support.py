"""Helpers shared by the tests: the real captures, their PDML, golden files."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CAPTURES = FIXTURES / "captures"
GOLDEN = ROOT / "tests" / "golden"
CASES = ("resource-class-list-cold", "resource-class-list-cache-hit", "resource-provider-create", "token-issue")
#: The one rule for golden files: OSFLOW_UPDATE_GOLDEN=1 rewrites them (then review ``git diff``).
UPDATE = os.environ.get("OSFLOW_UPDATE_GOLDEN") == "1"

sys.path.insert(0, str(ROOT / "postproc"))


def tshark() -> str | None:
    """The tshark the tests run: $OSFLOW_TSHARK, else the one on PATH (None: the tshark tests skip)."""
    return os.environ.get("OSFLOW_TSHARK") or shutil.which("tshark")


def case_dir(case: str) -> Path:
    """A real capture's folder: a name in fixtures/captures/, or a path under fixtures/
    (``captures-compute/server-create``)."""
    return FIXTURES / case if "/" in case else CAPTURES / case


@functools.cache
def pdml_bytes(case: str) -> bytes:
    """The PDML of a real capture, as the analyst's pipeline makes it."""
    from osflow.source import tshark_pdml_command

    cmd = tshark_pdml_command(str(case_dir(case) / "capture.pcapng"), tshark())
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def run_post(argv: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run osflow-post in-process: (exit status, stdout, stderr)."""
    from osflow import cli

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            status = cli.post(argv)
    finally:
        sys.stdin = old_stdin
    return status, out.getvalue(), err.getvalue()


def tables_args(case: str) -> list[str]:
    d = case_dir(case)
    return ["--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt")]


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/<name>; with OSFLOW_UPDATE_GOLDEN=1, write it there instead.

    Every golden file of the suite goes through here (one rule for updating them).
    """
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing: run with OSFLOW_UPDATE_GOLDEN=1 and review it")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file (OSFLOW_UPDATE_GOLDEN=1 rewrites it after review)"


@functools.cache
def messages(case: str) -> tuple:
    from osflow.decode import Decoder
    from osflow.source import PdmlReader

    return tuple(Decoder().decode(PdmlReader(io.BytesIO(pdml_bytes(case)), case)))


@functools.cache
def result(case: str, with_tables: bool = True, group: bool = True, explain: bool = False):
    from osflow.options import AnalysisOptions
    from osflow.pipeline import Tables, analyse

    d = case_dir(case)
    tables = Tables.load([str(d / "ss.txt")], [str(d / "ps.txt")]) if with_tables else None
    return analyse(io.BytesIO(pdml_bytes(case)), case, tables, AnalysisOptions(group=group, explain=explain))


def flow(case: str, with_tables: bool = True, group: bool = True):
    return result(case, with_tables, group).flow


def header_tokens(case: str) -> list[str]:
    """Every token the capture carries in an HTTP header (real secrets of the lab)."""
    from osflow.decode import header
    from osflow.model import HttpRequest, HttpResponse
    from osflow.openstack import TOKEN_HEADERS

    found = []
    for m in messages(case):
        if isinstance(m, (HttpRequest, HttpResponse)):
            for name in TOKEN_HEADERS:
                v = header(m.headers, name)
                if v and v not in found:
                    found.append(v)
    return found


@functools.cache
def post_cached(argv: tuple[str, ...], stdin_case: str | None = None) -> tuple[int, str, str]:
    """run_post for arguments that name only fixture files (the output is deterministic)."""
    return run_post(list(argv), stdin=pdml_bytes(stdin_case) if stdin_case else None)

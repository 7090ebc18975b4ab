"""The command line: formats, files, exit statuses, one-line errors."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from osflow.errors import ExitStatus
from support import ROOT, case_dir, pdml_bytes, run_post, tables_args, tshark

CASE = "resource-class-list-cache-hit"


def one_clear_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "stdin, expected",
    [
        (b"", "expected PDML (tshark -T pdml), found empty input"),
        (b"GET / HTTP/1.1\r\n", "expected PDML (tshark -T pdml), found not XML"),
        (b"<?xml version='1.0'?><capture/>", "found an XML document whose root is <capture>"),
    ],
)
def test_bad_pdml_is_one_line_and_exit_3(stdin, expected):
    status, out, err = run_post([], stdin=stdin)
    assert status == ExitStatus.INPUT
    assert expected in one_clear_line(err) and err.startswith("osflow-post: error: <stdin>:")
    assert out == ""


@pytest.mark.tshark
def test_truncated_pdml_keeps_its_pairs_warns_and_exits_4():
    data = pdml_bytes("resource-class-list-cold")
    full_status, full, _ = run_post(["--format", "json"], stdin=data)
    cut = data[: int(len(data) * 0.6)]
    status, out, err = run_post(["--format", "json"], stdin=cut)
    assert full_status == ExitStatus.OK and status == ExitStatus.PARTIAL
    assert "PDML ends early after frame" in err and "warning" in err
    # every pair read before the cut is there, as in the full run; only a pair whose response, or
    # whose parent's response, lay beyond the cut may differ (its end, its parent, a name the parent told)
    full_by_id = {p["id"]: p for p in map(json.loads, full.splitlines())}
    got = {p["id"]: p for p in map(json.loads, out.splitlines())}
    assert len(got) > 100
    for g in got.values():
        f = full_by_id[g["id"]]
        # a request whose response lies beyond the cut no longer holds its children: their subtree is no
        # longer tied to the command and may be background in the cut run, never the other way round
        assert not (f["background"] and not g["background"]), (g, f)
        differ = {k for k in g if g[k] != f[k]} - {"background"}
        assert not differ & {"id", "start", "protocol", "request", "stream"}, (g, f)
        if differ:
            assert g["response"] is None or got[f["parent"]]["response"] is None, (g, f)

    def same(g: dict, f: dict) -> bool:
        return {k: v for k, v in g.items() if k != "background"} == {k: v for k, v in f.items() if k != "background"}

    assert sum(same(g, full_by_id[g["id"]]) for g in got.values()) > len(got) // 2


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["timeline", "md"])
def test_a_capture_without_a_single_pair(fmt):
    # the cold capture's first three frames: the TCP handshake to keystone, nothing to pair
    from osflow.source import tshark_pdml_command

    cap = str(case_dir("resource-class-list-cold") / "capture.pcapng")
    pdml = subprocess.run(tshark_pdml_command(cap, tshark(), ("-Y", "frame.number <= 3")), check=True,
                          capture_output=True).stdout
    assert pdml.count(b"<packet>") == 3
    status, out, err = run_post(["-f", fmt], stdin=pdml)
    assert status == ExitStatus.OK, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip("| ").startswith("step"))
    assert set(lines[header + 1]) <= set("-| ")  # the table's rule, then no row
    assert header + 2 == len(lines) or not lines[header + 2].startswith("|")


@pytest.mark.tshark
def test_not_a_capture(tmp_path):
    bad = tmp_path / "random.pcap"
    # fixed bytes: about one os.urandom(4096) in 200 reads as an empty IxVeriWave capture to tshark
    bad.write_bytes(random.Random(0).randbytes(4096))
    status, _, err = run_post(["-r", str(bad)])
    assert status == ExitStatus.INPUT
    assert "tshark could not read it" in one_clear_line(err)


@pytest.mark.tshark
def test_truncated_capture_is_partial(tmp_path):
    data = (case_dir("resource-class-list-cold") / "capture.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2])
    status, out, err = run_post(["-r", str(cut), "--format", "json"])
    assert status == ExitStatus.PARTIAL and out.count("\n") > 50
    assert "cut short" in err


def test_missing_tshark_says_how_to_install(monkeypatch):
    monkeypatch.setenv("TSHARK", "/nonexistent/tshark")
    status, _, err = run_post(["-r", str(case_dir(CASE) / "capture.pcapng")])
    assert status == ExitStatus.TOOL and "apt-get install tshark" in one_clear_line(err)


def test_usage_errors_exit_2():
    for argv in (["--format", "pdf"], ["--service", "abc"], ["--bogus"]):
        status, _, err = run_post(argv)
        assert status == ExitStatus.USAGE, argv
        one_clear_line(err)


def test_missing_files_exit_3(tmp_path):
    for argv in (["-r", str(tmp_path / "nope.pcap")], [str(tmp_path / "nope.pdml")],
                 ["--ss", str(tmp_path / "nope.txt")]):
        status, _, err = run_post(argv, stdin=b"")
        assert status == ExitStatus.INPUT, argv
        one_clear_line(err)


def test_a_table_that_is_not_a_table_exits_3():
    status, _, err = run_post(["--ss", str(case_dir(CASE) / "ps.txt")], stdin=b"")
    assert status == ExitStatus.INPUT and "ps.txt:" in one_clear_line(err)


@pytest.mark.tshark
@pytest.mark.parametrize("ext, first", [(".txt", "  step"), (".mmd", "sequenceDiagram"), (".json", '{"id": 1,'),
                                        (".md", "# osflow")])
def test_output_file_format_from_extension(tmp_path, ext, first):
    out = tmp_path / f"flow{ext}"
    status, stdout, err = run_post(["-r", str(case_dir(CASE) / "capture.pcapng"), *tables_args(CASE), "-o", str(out)])
    assert status == ExitStatus.OK, err
    assert stdout == ""
    assert out.read_text().startswith(first)


@pytest.mark.tshark
def test_md_wraps_mermaid_under_the_timeline(tmp_path):
    out = tmp_path / "flow.md"
    run_post(["-r", str(case_dir(CASE) / "capture.pcapng"), *tables_args(CASE), "-o", str(out)])
    text = out.read_text()
    assert text.index("step |") < text.index("```mermaid\nsequenceDiagram") < text.rindex("```")


@pytest.mark.tshark
def test_explain_lists_every_connection():
    status, out, _ = run_post(["-r", str(case_dir(CASE) / "capture.pcapng"), *tables_args(CASE), "--explain"])
    assert status == 0
    expl = out[out.index("Connections:"):]
    assert "127.0.0.1:47354 → 127.0.0.1:8778" in expl and "OpenStackClient" in expl and "ss.txt:" in expl


@pytest.mark.tshark
def test_service_override_renames_a_port():
    status, out, _ = run_post(["-r", str(case_dir(CASE) / "capture.pcapng"), "--service", "11211=my-cache",
                               "--format", "mermaid"])
    assert status == 0 and "participant my_cache as my-cache" in out


@pytest.mark.tshark
def test_osflow_post_subcommand_and_console_scripts(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    cap = str(case_dir(CASE) / "capture.pcapng")
    a = subprocess.run([sys.executable, "-m", "osflow", "post", "-r", cap, "--format", "json"], env=env,
                       capture_output=True, text=True)
    b = subprocess.run([sys.executable, "-c", "import sys; from osflow.cli import post_main; sys.exit(post_main())",
                        "-r", cap, "--format", "json"], env=env, capture_output=True, text=True)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and a.stdout


def test_help_imports_nothing_heavy_and_documents_exit_statuses():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    r = subprocess.run([sys.executable, "-c", "import sys; from osflow.cli import post_main; sys.exit(post_main())",
                        "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "exit status:" in r.stdout and "partial" in r.stdout
    # fast: no heavy import at start-up (the benchmark times it: benchmarks/bench_post.py, goal 5)
    r = subprocess.run(
        [sys.executable, "-c", "import sys, osflow.cli; print('lxml' in sys.modules, 'tabulate' in sys.modules)"],
        env=env, capture_output=True, text=True,
    )
    assert r.stdout.strip() == "False False"


def _last_stderr_line(code: str) -> str:
    """Run ``code`` in a fresh interpreter with osflow importable: the last line it wrote to stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert lines, r.stderr
    return lines[-1]


def test_reading_pdml_imports_only_what_it_uses():
    # Start-up imports are most of osflow-post's fixed cost (benchmarks/bench_post.py, goal 1): reading PDML
    # from stdin and writing the timeline needs neither subprocess (only -r runs tshark) nor
    # importlib.metadata (which tabulate 0.10 imports to learn its own version: ~50 ms).
    pdml = ROOT / "tests/fixtures/pdml/tshark-3.4/resource-class-list-cache-hit.pdml.gz"
    code = (
        "import gzip, io, sys\n"
        "from osflow import cli\n"
        f"sys.stdin = io.TextIOWrapper(io.BytesIO(gzip.decompress(open({str(pdml)!r}, 'rb').read())))\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "status = cli.post([])\n"
        "print(status, sorted(m for m in ('subprocess', 'importlib.metadata') if m in sys.modules), file=sys.stderr)\n"
    )
    assert _last_stderr_line(code) == "0 []"


def test_only_the_entry_points_freeze_the_collector():
    # osflow-post spares the collector's last pass at exit (gc.freeze); a program calling post() keeps its collector
    code = (
        "import gc, io, sys\n"
        "from osflow import cli\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b''))\n"
        "status = cli.post([])\n"
        "library = gc.get_freeze_count()\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(b''))\n"
        "sys.argv = ['osflow-post']\n"
        "cli.post_main()\n"
        "print(status, library, gc.get_freeze_count() > 0, file=sys.stderr)\n"
    )
    assert _last_stderr_line(code) == f"{ExitStatus.INPUT} 0 True"


def test_every_dataclass_has_its_own_docstring():
    # A dataclass without a docstring gets one made from inspect.signature when the class is created:
    # about 1 ms each at start-up (the model's eight undocumented messages were a quarter of its import).
    import ast

    missing = []
    for path in sorted((ROOT / "postproc/osflow").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list)
                    and ast.get_docstring(node) is None):
                missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert not missing


def test_broken_pipe_is_quiet():
    if tshark() is None:
        pytest.skip("tshark is not installed")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    cap = str(case_dir("resource-class-list-cold") / "capture.pcapng")
    r = subprocess.run(f"{sys.executable} -m osflow post -r {cap} --no-group | head -1", shell=True, env=env,
                       capture_output=True, text=True)
    assert r.stdout.strip().startswith("step") and "Traceback" not in r.stderr and "Error" not in r.stderr


@pytest.mark.tshark
def test_progress_on_a_terminal_only():
    import pty

    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    pdml = pdml_bytes("resource-class-list-cold")
    # on a pipe: nothing but the output
    r = subprocess.run([sys.executable, "-m", "osflow", "post"], input=pdml, env=env, capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
    # on a terminal: frames read, pairs found, rate (the interval is shortened to see it on a small capture)
    primary, secondary = pty.openpty()
    code = ("import sys, osflow.pipeline as p; p.Progress.__init__.__defaults__ = (0.0,); "
            "from osflow.cli import post_main; sys.exit(post_main())")
    proc = subprocess.run([sys.executable, "-c", code], input=pdml, env=env, stdout=subprocess.DEVNULL,
                          stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.returncode == 0
    assert re.search(rb"osflow: \d+ frames read, \d+ pairs found, [\d,]+ frames/s", seen), seen[:200]

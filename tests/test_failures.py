"""What goes wrong around the analysis: bad table lines by the thousand, a helper tshark pass or tshark
itself failing, output that cannot be written, files that are not captures.  One clear line, the
documented exit status, nothing the main pass produced is lost."""

from __future__ import annotations

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


# ----------------------------------------------------------------------------- tshark and its helper pass

#: A stand-in for tshark that runs the real one and, in the -T fields pass, dies by SIGKILL in the middle of
#: line ``{after}`` (after writing half of it), as a tshark killed by the OOM killer does.
DYING_TSHARK = """#!{python}
import os, signal, subprocess, sys
args = sys.argv[1:]
proc = subprocess.Popen([{tshark!r}] + args, stdout=subprocess.PIPE)
out = sys.stdout.buffer
if "fields" not in args:
    out.write(proc.stdout.read())
    sys.exit(proc.wait())
for n, line in enumerate(proc.stdout, 1):
    if n == {after}:
        out.write(line[: len(line) // 2])
        out.flush()
        proc.kill()
        os.kill(os.getpid(), signal.SIGKILL)
    out.write(line)
"""


def _fake_tshark(tmp_path, after: int) -> str:
    import shutil
    import sys

    from support import tshark

    path = tmp_path / "tshark"
    path.write_text(DYING_TSHARK.format(python=sys.executable, tshark=tshark() or shutil.which("tshark"), after=after))
    path.chmod(0o755)
    return str(path)


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["json", "timeline"])
def test_a_tshark_killed_by_a_signal_is_named_and_what_it_wrote_is_kept(tmp_path, monkeypatch, fmt):
    case = "resource-provider-create"
    d = case_dir(case)
    monkeypatch.setenv("TSHARK", _fake_tshark(tmp_path, after=120))
    status, out, err = run_post(["-r", str(d / "capture.pcapng"), *tables_args(case), "--format", fmt])
    assert status == ExitStatus.PARTIAL, err
    assert re.search(r"tshark was killed by SIGKILL after frame \d+", err), err
    assert "tab-separated" not in err, err  # not blamed on the input
    assert "Traceback" not in err
    assert len(out.splitlines()) > 5


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["json", "timeline"])
def test_a_failing_helper_pass_keeps_what_the_main_pass_read(tmp_path, monkeypatch, fmt):
    import shutil
    import subprocess

    from osflow import tshark as tshark_module

    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("no editcap")
    case = "captures-compute/lab-compressed"
    d = case_dir(case)
    damaged = tmp_path / "capture.pcapng"
    # the issue's own reproduction: one damaged byte in a Connection.Start-Ok frame's client properties
    subprocess.run([editcap, "-E", "0.01", "--seed", "1", str(d / "capture.pcapng"), str(damaged)], check=True,
                   capture_output=True)
    args = ["-r", str(damaged), *tables_args(case), "--format", fmt]
    status, out, err = run_post(args)
    assert status == ExitStatus.PARTIAL, err
    assert re.search(r"the AMQP connection names \(second tshark pass .*\) could not be read: .*"
                     r"every other packet was read", err), err
    monkeypatch.setattr(tshark_module.FieldsReader, "_connection_names", lambda self: iter(()))
    without = run_post(args)
    assert without[0] == ExitStatus.OK and out == without[1] and out.strip()
    if fmt == "json":
        assert len(out.splitlines()) == len(without[1].splitlines()) > 10


# ----------------------------------------------------------------------------- not a capture


def _not_captures(tmp_path):
    import shutil
    import subprocess

    from support import pdml_bytes

    real = (case_dir(SMALL) / "capture.pcapng").read_bytes()
    files = {
        "empty": (b"", r"found an empty file"),
        "pdml": (pdml_bytes(SMALL), r"found PDML \(give it without -r"),
        "cut30": (real[:30], r"found a pcapng file that ends early, inside its first block \(30 bytes\)"),
    }
    out = {}
    for name, (data, expected) in files.items():
        path = tmp_path / f"{name}.pcapng"
        path.write_bytes(data)
        out[name] = (path, expected)
    editcap = shutil.which("editcap")
    if editcap is not None:  # the capture's header, no frame: editcap keeping a frame it does not have
        path = tmp_path / "noframe.pcapng"
        subprocess.run([editcap, "-r", str(case_dir(SMALL) / "capture.pcapng"), str(path), "99999999"], check=True,
                       capture_output=True)
        out["noframe"] = (path, r"found a capture that holds no frame")
    return out


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["timeline", "json"])
def test_a_file_that_is_not_a_capture_or_holds_no_frame_is_exit_3(tmp_path, fmt):
    for name, (path, expected) in _not_captures(tmp_path).items():
        status, out, err = run_post(["-r", str(path), "--format", fmt])
        assert status == ExitStatus.INPUT, (name, err)
        line = one_line(err)
        assert re.search(r"expected a capture \(pcap or pcapng\).*, " + expected, line), (name, line)
        assert out == "", name


@pytest.mark.tshark
def test_a_pdml_cut_inside_an_attribute_ends_early(tmp_path):
    from support import pdml_bytes

    real = pdml_bytes(SMALL)
    for marker, extra in ((b'show="', 6), (b'<field name="', 20), (b"<proto", 3)):
        at = real.index(marker, len(real) // 2) + extra
        status, out, err = run_post(["--format", "json"], stdin=real[:at])
        assert status == ExitStatus.PARTIAL, err
        assert re.search(r"PDML ends early after frame \d+", one_line(err)), (marker, err)
        assert out.strip()


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- output errors


def _osflow(args, **kw):
    import os
    import subprocess
    import sys

    from support import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT / "postproc"))
    return subprocess.Popen([sys.executable, "-m", "osflow", "post", *args], env=env, stderr=subprocess.PIPE, **kw)


BIG = "captures-compute/server-create"


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["timeline", "json", "mermaid"])
def test_a_full_disk_is_one_line_and_exit_7(tmp_path, fmt):
    capture = str(case_dir(BIG) / "capture.pcapng")
    with open("/dev/full", "w") as full:
        p = _osflow(["-r", capture, "--format", fmt], stdout=full)
        _, err = p.communicate(timeout=300)
    assert p.returncode == ExitStatus.OUTPUT, err
    assert one_line(err.decode()) == "osflow-post: error: cannot write to standard output: No space left on device" \
        .replace("osflow-post", "osflow post")
    p = _osflow(["-r", capture, "-o", "/dev/full", "--format", fmt], stdout=subprocess_devnull())
    _, err = p.communicate(timeout=300)
    assert p.returncode == ExitStatus.OUTPUT, err
    assert one_line(err.decode()) == "osflow post: error: /dev/full: cannot write it: No space left on device"


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["timeline", "json"])
def test_a_closed_stdout_is_one_line_and_exit_7_and_o_still_works(tmp_path, fmt):
    capture = str(case_dir(SMALL) / "capture.pcapng")
    p = _osflow(["-r", capture, "--format", fmt], stdout=subprocess_devnull(), close_fds=True,
                preexec_fn=lambda: __import__("os").close(1))
    _, err = p.communicate(timeout=300)
    assert p.returncode == ExitStatus.OUTPUT, err
    assert one_line(err.decode()) == "osflow post: error: cannot write to standard output: it is closed (give -o FILE)"
    out = tmp_path / "flow.out"
    p = _osflow(["-r", capture, "--format", fmt, "-o", str(out)], stdout=subprocess_devnull(),
                preexec_fn=lambda: __import__("os").close(1))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and err == b"" and out.stat().st_size > 100, err


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["timeline", "json"])
def test_a_reader_that_goes_away_is_quiet(fmt):
    import subprocess

    p = _osflow(["-r", str(case_dir(BIG) / "capture.pcapng"), "--format", fmt], stdout=subprocess.PIPE)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read() if p.stderr else b""
    assert p.wait(timeout=300) == ExitStatus.OK
    assert err == b"", err


@pytest.mark.tshark
def test_a_capture_on_a_named_pipe_is_left_to_tshark(tmp_path):
    import os
    import threading

    capture = case_dir(SMALL) / "capture.pcapng"
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(capture.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    status, out, err = run_post(["-r", str(fifo), "--format", "json"])
    writer.join(timeout=60)
    assert status == ExitStatus.OK, err
    assert out == run_post(["-r", str(capture), "--format", "json"])[1]

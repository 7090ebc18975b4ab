"""``osflow-post -r`` reads a capture in pieces (tshark's memory bounded): every line the same as one
tshark run over the whole capture gives, on every real capture of the fixtures, cut into pieces small
enough that every one of them is cut several times."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from osflow.errors import ExitStatus
from osflow.source.pieces import Cutter, cuttable
from support import FIXTURES, run_post, tshark

CAPTURES = sorted(p for p in FIXTURES.rglob("*.pcap*") if cuttable(str(p)))


def _frames(capture: Path) -> int:
    out = subprocess.run([shutil.which("capinfos") or "capinfos", "-c", "-M", str(capture)], capture_output=True,
                         text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[-1])


def _size(capture: Path, pieces: int = 4) -> int:
    """A piece size that cuts the capture into about ``pieces`` pieces."""
    return max(8, _frames(capture) // pieces)


def _tables(capture: Path) -> list[str]:
    args = []
    for opt, name in (("--ss", "ss.txt"), ("--ps", "ps.txt")):
        if (capture.parent / name).exists():
            args += [opt, str(capture.parent / name)]
    return args


def _both(monkeypatch, args: list[str], size: int) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """osflow-post in one tshark run, and in pieces of ``size`` frames."""
    monkeypatch.setenv("OSFLOW_PIECE_FRAMES", "0")
    whole = run_post(args)
    monkeypatch.setenv("OSFLOW_PIECE_FRAMES", str(size))
    return whole, run_post(args)


def test_every_fixture_capture_is_cut(tmp_path):
    """The fixtures are captures the cutter reads, and at the test's sizes it really cuts them: each
    frame is a piece's own exactly once, in order, and pieces after the first carry frames."""
    assert len(CAPTURES) >= 30
    carried = 0
    for capture in CAPTURES:
        size = _size(capture, 8)
        folder = tmp_path / "-".join(capture.parent.relative_to(FIXTURES).parts)  # multihost/*/controller
        folder.mkdir()
        pieces = list(Cutter(str(capture), str(folder), size))
        own = [n for p in pieces for n in p.frames if n >= p.first]
        assert own == list(range(1, _frames(capture) + 1)), capture
        assert len(pieces) >= min(4, _frames(capture) // size), capture
        carried += sum(1 for p in pieces for n in p.frames if n < p.first)
    assert carried > 1000


@pytest.mark.tshark
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.parent.relative_to(FIXTURES)))
def test_pieces_give_the_same_output_as_one_tshark_run(monkeypatch, capture):
    """Every pair, its names and frames (JSON Lines), stderr and the exit status: about four pieces."""
    whole, pieces = _both(monkeypatch, ["-r", str(capture), *_tables(capture), "--format", "json"], _size(capture))
    assert whole[0] in (ExitStatus.OK, ExitStatus.PARTIAL), whole[2]
    assert pieces == whole


#: the busiest captures: the timeline (steps grouped, parents) from about eight pieces
BUSY = ("captures-busy/resource-class-list-4-at-once", "captures-compute/lab-server-delete",
        "captures-compute/image-create", "captures/resource-class-list-cold")


@pytest.mark.tshark
@pytest.mark.parametrize("case", BUSY)
def test_pieces_give_the_same_timeline(monkeypatch, case):
    capture = FIXTURES / case / "capture.pcapng"
    whole, pieces = _both(monkeypatch, ["-r", str(capture), *_tables(capture)], _size(capture, 8))
    assert whole[0] == ExitStatus.OK, whole[2]
    assert pieces == whole


@pytest.mark.tshark
def test_pieces_of_a_pcap_file(monkeypatch, tmp_path):
    """pcap (not pcapng): its own header and records."""
    case = FIXTURES / "captures-compute/server-create"
    pcap = tmp_path / "capture.pcap"
    subprocess.run([shutil.which("editcap") or "editcap", "-F", "pcap", str(case / "capture.pcapng"), str(pcap)],
                   check=True, capture_output=True)
    assert cuttable(str(pcap))
    whole, pieces = _both(monkeypatch, ["-r", str(pcap), *_tables(case / "capture.pcapng"), "--format", "json"], 150)
    assert whole[0] == ExitStatus.OK and whole[1].count("\n") > 900
    assert pieces == whole


@pytest.mark.tshark
@pytest.mark.parametrize("cut", [0.37, 0.81])
def test_a_capture_cut_short_reads_the_same_in_pieces(monkeypatch, tmp_path, cut):
    """A capture that ends in the middle of a block: the same lines, the same warning, the same exit."""
    case = FIXTURES / "captures/resource-provider-create"
    data = (case / "capture.pcapng").read_bytes()
    short = tmp_path / "capture.pcapng"
    short.write_bytes(data[: int(len(data) * cut)])
    whole, pieces = _both(monkeypatch, ["-r", str(short), *_tables(case / "capture.pcapng"), "--format", "json"], 40)
    assert whole[0] == ExitStatus.PARTIAL, whole[2]
    assert str(short) in whole[2]
    assert pieces == whole


@pytest.mark.tshark
def test_a_damaged_capture_reads_the_same_in_pieces(monkeypatch, tmp_path):
    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("no editcap")
    case = FIXTURES / "captures-compute/lab-compressed"
    damaged = tmp_path / "capture.pcapng"
    subprocess.run([editcap, "-E", "0.01", "--seed", "1", str(case / "capture.pcapng"), str(damaged)], check=True,
                   capture_output=True)
    whole, pieces = _both(monkeypatch, ["-r", str(damaged), *_tables(case / "capture.pcapng"), "--format", "json"],
                          30)
    assert pieces == whole


@pytest.mark.tshark
def test_a_tshark_killed_in_a_later_piece_is_named(monkeypatch, tmp_path):
    """tshark killed while it reads a piece: what the pieces before gave is kept, the frame is the
    capture's, not the piece's."""
    from test_failures import _fake_tshark

    case = FIXTURES / "captures/resource-provider-create"
    monkeypatch.setenv("TSHARK", _fake_tshark(tmp_path, after=20))
    monkeypatch.setenv("OSFLOW_PIECE_FRAMES", "300")
    status, out, err = run_post(["-r", str(case / "capture.pcapng"), *_tables(case / "capture.pcapng"),
                                 "--format", "json"])
    assert status == ExitStatus.PARTIAL, err
    found = re.search(r"tshark was killed by SIGKILL after frame (\d+)", err)
    assert found, err
    assert int(found.group(1)) < 300  # the first piece's 20th line
    assert "Traceback" not in err and out.strip()


def test_the_pieces_are_removed(monkeypatch, tmp_path):
    """The pieces hold the capture's bytes: gone once read (also when tshark fails)."""
    if tshark() is None:
        pytest.skip("no tshark")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    case = FIXTURES / "captures-compute/server-create"
    monkeypatch.setenv("OSFLOW_PIECE_FRAMES", "500")
    status, out, _ = run_post(["-r", str(case / "capture.pcapng"), "--format", "json"])
    assert status == ExitStatus.OK and out.strip()
    assert list(tmp_path.iterdir()) == []

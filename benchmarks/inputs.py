#!/usr/bin/env python3
"""The benchmarks' large inputs: N copies of real captures, each copy with its own addresses.

A copy shifted in time alone (``editcap -t``) keeps the 4-tuples of the original, so
tshark takes it for retransmissions of the first copy: three merged copies of a capture
give the request/response pairs of one, and a benchmark on them measures mostly tshark
skipping retransmitted frames.  Here copy ``i`` has every ``127.0.0.1`` rewritten to
:func:`host` ``(i)`` (``127.0.0.1``, ``127.0.0.2``, … ``127.0.0.254``, ``127.0.1.1``, …) with
``tcprewrite --pnat`` (Debian's ``tcpreplay`` package), is shifted in time to start one
second after the previous copy ends (``editcap -t``), and the copies are concatenated
(``mergecap -a``).  tcprewrite writes microsecond pcap, so the copies' timestamps lose their
nanoseconds, and it recomputes the TCP/IP checksums that loopback captures leave unset
(tshark does not check them by default); nothing else changes.

Every built input is CHECKED each time a benchmark asks for it, with the osflow of this
working tree (whatever it decodes at the time): ``osflow-post -r --format json`` on one
copy and on all ``k`` copies must give ``pairs(k) == k * pairs(1)`` (``--tolerance`` allows
a relative difference; none by default), and tshark must flag ``k`` times as many frames
of all copies as retransmissions as of one copy.  A failed check ends the benchmark.

Inputs are cached under ``benchmarks/build/`` (ignored by git, never committed) and
rebuilt when the source captures, the copy count or this recipe change.

    python3 benchmarks/inputs.py [keystone|compute ...] [--frames 50000] [--tolerance 0]

builds (or reuses) the named inputs and prints the check.  Needs tshark, editcap,
mergecap, capinfos (``apt-get install tshark``) and tcprewrite (``apt-get install tcpreplay``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "benchmarks" / "build"
ADDRESS = "127.0.0.1"  # every real capture of the fixtures is loopback on this one address
RECIPE = 1  # bump when the way copies are made changes: cached inputs are then rebuilt

#: The named inputs: which real captures one copy is made of.
SOURCES = {
    # keystone + placement + memcached + MariaDB, the four captures merged in time order (2,051 frames)
    "keystone": tuple(sorted((REPO / "tests/fixtures/captures").glob("*/capture.pcapng"))),
    # nova, glance, neutron and RPC over RabbitMQ (AMQP on 5672): server create (2,314 frames)
    "compute": (REPO / "tests/fixtures/captures-compute/server-create/capture.pcapng",),
}

_PACKAGES = {"tcprewrite": "tcpreplay"}

#: the osflow-post of this working tree, as its console script runs it
POST = [sys.executable, "-c", "import sys; from osflow.cli import post_main; sys.exit(post_main())"]


def osflow_env() -> dict:
    """The environment the benchmarks run osflow in: this tree's package, byte-compiled."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO / "postproc")
    return env


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        sys.exit(f"{name} not found (apt-get install {_PACKAGES.get(name, 'tshark')})")
    return path


def _run(cmd: list[str], **kw) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr.strip()}")
    return proc.stdout


def host(i: int) -> str:
    """The address of copy ``i`` (from 0): 127.0.0.1 … 127.0.0.254, 127.0.1.1, …"""
    if not 0 <= i < 254 * 256:
        raise ValueError(f"copy {i}: at most {254 * 256} copies")
    return f"127.0.{i // 254}.{i % 254 + 1}"


def frame_count(path: Path) -> int:
    out = _run([tool("capinfos"), "-c", "-M", str(path)])
    return int(out.strip().splitlines()[-1].split()[-1])


def duration(path: Path) -> float:
    out = _run([tool("capinfos"), "-u", "-M", str(path)])
    return float(out.strip().splitlines()[-1].split()[-2])


def pairs(capture: Path) -> int:
    """Request/response pairs osflow-post finds in a capture (JSON Lines, one per pair), no tables."""
    proc = subprocess.run([*POST, "-r", str(capture), "--format", "json"], capture_output=True, env=osflow_env())
    if proc.returncode != 0:
        sys.exit(f"osflow-post -r {capture} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
    return sum(1 for line in proc.stdout.splitlines() if line.strip())


def retransmissions(capture: Path) -> int:
    """Frames tshark flags as (spurious) retransmissions."""
    out = _run([tool("tshark"), "-r", str(capture), "-Y",
                "tcp.analysis.retransmission || tcp.analysis.spurious_retransmission", "-T", "fields",
                "-e", "frame.number"])
    return len(out.split())


def _addresses(path: Path) -> set[str]:
    out = _run([tool("tshark"), "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                "-e", "ipv6.src", "-e", "ipv6.dst"])
    return set(out.split())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Input:
    """A built input: ``capture`` is ``copies`` copies of ``one`` (copy 0, as built)."""

    name: str
    capture: Path
    one: Path
    copies: int
    frames: int

    @property
    def folder(self) -> Path:
        return self.capture.parent


def build(name: str, frames: int = 50_000, build_dir: Path = BUILD, quiet: bool = False,
          copies: int | None = None) -> Input:
    """The input ``name`` (see :data:`SOURCES`) of at least ``frames`` frames (or of ``copies``
    copies), built or reused."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    sources = SOURCES[name]
    if not sources or not all(p.exists() for p in sources):
        sys.exit(f"input {name}: missing source captures {[str(p) for p in sources]}")
    folder = build_dir / (f"{name}-{frames}" if copies is None else f"{name}-x{copies}")
    folder.mkdir(parents=True, exist_ok=True)
    capture, one, manifest = folder / "capture.pcapng", folder / "one.pcapng", folder / "manifest.json"
    base = folder / "base.pcapng"
    # one copy's source: the captures merged in time order (mergecap without -a)
    _run([tool("mergecap"), "-w", str(base), *map(str, sources)])
    per_copy = frame_count(base)
    if copies is None:
        copies = max(1, math.ceil(frames / per_copy))
    want = {"recipe": RECIPE, "sources": {str(p.relative_to(REPO)): _sha256(p) for p in sources},
            "copies": copies}
    if capture.exists() and one.exists() and manifest.exists() and json.loads(manifest.read_text()) == {
            **want, "frames": frame_count(capture)}:
        base.unlink()
        say(f"{name}: reusing {capture} ({copies} copies of {per_copy} frames)")
        return Input(name, capture, one, copies, frame_count(capture))
    found = _addresses(base)
    if found != {ADDRESS}:
        sys.exit(f"input {name}: expected only {ADDRESS} in the source captures (each copy maps it to its own "
                 f"address), found {sorted(found)}")
    step = math.ceil(duration(base)) + 1  # each copy starts a second (or more) after the previous one ends
    say(f"{name}: building {copies} copies of {per_copy} frames, copy i on {host(0)}…{host(copies - 1)}, "
        f"{step} s apart, in {folder}")
    parts = []
    for i in range(copies):
        rewritten, part = folder / f"part{i}.pcap", folder / f"part{i}.pcapng"
        _run([tool("tcprewrite"), f"--pnat={ADDRESS}/32:{host(i)}/32", "-i", str(base), "-o", str(rewritten)])
        _run([tool("editcap"), "-F", "pcapng", "-t", str(step * i), str(rewritten), str(part)])
        rewritten.unlink()
        parts.append(part)
    _concatenate(parts, capture)
    parts[0].replace(one)
    for p in parts[1:]:
        p.unlink()
    base.unlink()
    n = frame_count(capture)
    if n != copies * per_copy:
        sys.exit(f"input {name}: {n} frames, expected {copies} x {per_copy}")
    manifest.write_text(json.dumps({**want, "frames": n}, indent=1) + "\n")
    for derived in [*folder.glob("*.pdml"), *folder.glob("*.cmd")]:  # made from the previous capture
        derived.unlink()
    return Input(name, capture, one, copies, n)


def _concatenate(parts: list[Path], out: Path, at_once: int = 256) -> None:
    """``mergecap -a`` of ``parts`` into ``out``, ``at_once`` files a run (a thousand copies and more)."""
    if len(parts) <= at_once:
        _run([tool("mergecap"), "-a", "-w", str(out), *map(str, parts)])
        return
    pieces = []
    for k in range(0, len(parts), at_once):
        piece = out.with_name(f"piece{k // at_once}.pcapng")
        _run([tool("mergecap"), "-a", "-w", str(piece), *map(str, parts[k:k + at_once])])
        pieces.append(piece)
    _run([tool("mergecap"), "-a", "-w", str(out), *map(str, pieces)])
    for piece in pieces:
        piece.unlink()


def build_pairs(name: str, pairs_wanted: int, build_dir: Path = BUILD, quiet: bool = False) -> Input:
    """The input ``name`` with at least ``pairs_wanted`` request/response pairs: as many copies as
    that takes of one copy's pairs (osflow-post without tables, counted on a one-copy build)."""
    one = pairs(build(name, build_dir=build_dir, quiet=True, copies=1).capture)
    return build(name, build_dir=build_dir, quiet=quiet, copies=max(1, math.ceil(pairs_wanted / one)))


def check(inp: Input, tolerance: float = 0.0, quiet: bool = False) -> tuple[int, int]:
    """Fail loudly unless the copies add up: pairs and retransmissions grow ``copies``-fold.

    Returns (pairs of one copy, pairs of all copies).
    """
    one, all_ = pairs(inp.one), pairs(inp.capture)
    expected = inp.copies * one
    ok = one > 0 and abs(all_ - expected) <= tolerance * expected
    r_one, r_all = retransmissions(inp.one), retransmissions(inp.capture)
    r_ok = r_all == inp.copies * r_one
    line = (f"{inp.name}: pairs {one} (1 copy) x {inp.copies} = {expected}, found {all_} in {inp.frames:,} frames"
            f" ({'ok' if ok else 'FAILED'}, tolerance {tolerance:.1%}); retransmissions {r_one} (1 copy),"
            f" {r_all} ({'ok' if r_ok else 'FAILED'})")
    if not (ok and r_ok):
        sys.exit(f"input check failed: {line}\nthe copies do not add up: tshark sees some of them as the same "
                 f"connections; fix benchmarks/inputs.py before measuring anything")
    if not quiet:
        print(line, file=sys.stderr)
    return one, all_


def pdml(capture: Path, out: Path) -> Path:
    """``out``: the capture's PDML as osflow's own ``tshark -T pdml`` command writes it (cached)."""
    sys.path.insert(0, str(REPO / "postproc"))
    from osflow.source import tshark_pdml_command

    cmd = tshark_pdml_command(str(capture), tool("tshark"))
    made_by = out.with_suffix(".cmd")  # rebuilt when osflow's tshark options change (decode-as of a new port)
    if (out.exists() and made_by.exists() and made_by.read_text() == json.dumps(cmd)
            and out.stat().st_mtime >= capture.stat().st_mtime):
        return out
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.DEVNULL, check=True)
    tmp.replace(out)
    made_by.write_text(json.dumps(cmd))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"inputs to build: {', '.join(sorted(SOURCES))} (default all)")
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--tolerance", type=float, default=0.0, help="relative difference allowed in the pairs check")
    args = ap.parse_args()
    unknown = set(args.names) - set(SOURCES)
    if unknown:
        ap.error(f"unknown input {', '.join(sorted(unknown))} (one of {', '.join(sorted(SOURCES))})")
    for name in args.names or sorted(SOURCES):
        check(build(name, args.frames), args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())

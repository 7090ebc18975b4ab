#!/usr/bin/env python3
"""Long captures: the peak RSS of osflow-post's whole process tree (osflow-post and its tshark) at 1x and
100x a capture.

``osflow-post -r`` runs tshark, and tshark keeps its session (every frame's data, conversations,
reassembled PDUs) for the whole capture: osflow-post's own memory stays flat (bench_stream.py), the
tree's does not unless tshark's is bounded too: osflow-post reads a capture in pieces of
``OSFLOW_PIECE_FRAMES`` frames (osflow.tshark, osflow.source.pieces), one tshark run each.  Target:
the tree's peak at 100x within 20% of 1x.  The largest input is also run in one piece
(``OSFLOW_PIECE_FRAMES=0``, as before the bound), in the same run: its peak and its wall-clock time
beside the bound's.

Inputs: ``copies`` copies of a real capture, each with its own addresses (``benchmarks/inputs.py``:
tcprewrite, 127.0.0.N per copy, one after the other in time; cached in benchmarks/build/).  For each,
one run of ``osflow-post -r capture --format FORMAT`` to a pipe that is read and counted, sampled every
20 ms: the sum of VmRSS over osflow-post and its descendants (the tree's peak), and each process's own
VmHWM.  The runs alternate sizes when ``--repeat`` > 1 and the medians are printed, side by side, with the
ratio of 100x to 1x.

    python3 benchmarks/bench_tree_rss.py [--input compute] [--copies 1,100] [--format json] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "postproc"))

import inputs  # noqa: E402

ENV = inputs.osflow_env()
#: the tree's peak at the largest input may be at most this much above the smallest's
FLAT = 1.20


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return out


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def measure(cmd: list[str], pieces: str | None = None) -> tuple[float, int, dict[str, int], int]:
    """(wall seconds, the tree's peak RSS in KB, each process name's own peak in KB, lines written);
    ``pieces``: OSFLOW_PIECE_FRAMES (None: osflow's default)."""
    env = dict(ENV)
    if pieces is not None:
        env["OSFLOW_PIECE_FRAMES"] = pieces
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    tree_peak = [0]
    own: dict[str, int] = {}

    def sample() -> None:
        while proc.poll() is None:
            pids = _descendants(proc.pid)
            tree_peak[0] = max(tree_peak[0], sum(_status_kb(p, "VmRSS:") for p in pids))
            for p in pids:
                name = "osflow-post" if p == proc.pid else _name(p)
                own[name] = max(own.get(name, 0), _status_kb(p, "VmHWM:"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    stdout = proc.stdout
    assert stdout is not None
    for chunk in iter(lambda: stdout.read(1 << 20), b""):
        lines += chunk.count(b"\n")
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.wait()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.strip()}")
    return time.perf_counter() - start, tree_peak[0], own, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default="compute", choices=sorted(inputs.SOURCES), help="what one copy is made of")
    ap.add_argument("--copies", default="1,100",
                    help="input sizes in copies (comma-separated; the first and the last are compared)")
    ap.add_argument("--format", default="json", help="osflow-post's --format (json: the pairs are counted)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size, alternating sizes; medians printed")
    ap.add_argument("--no-whole", action="store_true", help="do not run the largest input in one piece too")
    args = ap.parse_args()
    sizes = [int(x) for x in args.copies.split(",")]
    built = {n: inputs.build(args.input, copies=n, quiet=True) for n in sizes}
    results: dict[int, list[tuple[float, int, dict[str, int], int]]] = {n: [] for n in sizes}
    whole: list[tuple[float, int, dict[str, int], int]] = []  # the largest input in one piece
    for r in range(args.repeat):
        for n in (sizes if r % 2 == 0 else list(reversed(sizes))):
            inp = built[n]
            results[n].append(measure([*inputs.POST, "-r", str(inp.capture), "--format", args.format]))
            s, kb, own, lines = results[n][-1]
            print(f"  {n} copies: {s:.1f} s, tree peak {kb / 1024:.0f} MB, {lines:,} lines", file=sys.stderr)
        if not args.no_whole:
            whole.append(measure([*inputs.POST, "-r", str(built[sizes[-1]].capture), "--format", args.format],
                                 pieces="0"))
            s, kb, own, lines = whole[-1]
            print(f"  {sizes[-1]} copies in one piece: {s:.1f} s, tree peak {kb / 1024:.0f} MB, {lines:,} lines",
                  file=sys.stderr)
    one_pairs = results[sizes[0]][0][3]
    print(f"\npeak RSS of osflow-post -r --format {args.format} and its tshark, {args.input} copies "
          f"(target: {sizes[-1]}x within {FLAT - 1:.0%} of {sizes[0]}x)")
    print("| copies | frames | lines | wall | tree peak RSS | osflow-post own | tshark own |")
    print("|---|---|---|---|---|---|---|")
    peaks = {}
    for n in sizes:
        rows = results[n]
        peaks[n] = statistics.median(x[1] for x in rows)
        mine = {k: statistics.median(x[2].get(k, 0) for x in rows) for k in ("osflow-post", "tshark")}
        lines = rows[0][3]
        if args.format == "json" and lines * sizes[0] != n * one_pairs:  # the input's own check, as inputs.check
            sys.exit(f"the copies do not add up: {lines:,} pairs in {n} copies, {one_pairs:,} in {sizes[0]}")
        print(f"| {n} | {built[n].frames:,} | {lines:,} | {statistics.median(x[0] for x in rows):.1f} s "
              f"| {peaks[n] / 1024:.0f} MB | {mine['osflow-post'] / 1024:.0f} MB | {mine['tshark'] / 1024:.0f} MB |")
    if whole:
        mine = {k: statistics.median(x[2].get(k, 0) for x in whole) for k in ("osflow-post", "tshark")}
        if whole[0][3] != results[sizes[-1]][0][3]:
            sys.exit(f"one piece and pieces differ: {whole[0][3]:,} lines, {results[sizes[-1]][0][3]:,}")
        wall, peak = statistics.median(x[0] for x in whole), statistics.median(x[1] for x in whole)
        print(f"| {sizes[-1]}, one piece | {built[sizes[-1]].frames:,} | {whole[0][3]:,} | {wall:.1f} s "
              f"| {peak / 1024:.0f} MB | {mine['osflow-post'] / 1024:.0f} MB | {mine['tshark'] / 1024:.0f} MB |")
    ratio = peaks[sizes[-1]] / peaks[sizes[0]] if peaks[sizes[0]] else float("inf")
    verdict = "ok" if ratio <= FLAT else "MISSED"
    print(f"\ntree peak at {sizes[-1]}x / at {sizes[0]}x: {ratio:.2f}× (target ≤ {FLAT:.2f}×): {verdict}")
    if whole:
        cost = statistics.median(x[0] for x in results[sizes[-1]]) / statistics.median(x[0] for x in whole)
        print(f"wall-clock at {sizes[-1]}x, in pieces / in one piece: {cost:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

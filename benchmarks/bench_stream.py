#!/usr/bin/env python3
"""Streamed output on long captures: peak RSS as the capture grows, and stats' time against the bare loop.

JSON Lines, OTLP and stats are written while the capture is read (their declarations in ``osflow.render.OUTPUTS``), so
osflow-post's memory should hold what is in progress, not the capture (issue #14: at most 150 MB
for each of them, whatever the length).  Inputs: copies of a real capture, each with its own
addresses (``benchmarks/inputs.py``: ``tcprewrite``, 127.0.0.N per copy, one after the other in
time), as many as it takes for 100k and 1M request/response pairs; cached in benchmarks/build/.

For each input and format it runs ``osflow-post -r capture --format F`` once, counts the lines
it writes (for json: the pairs, which must be copies x one copy's pairs -- the input's check),
and samples osflow-post's own peak RSS (``VmHWM`` of its process in /proc, every 50 ms: tshark,
its child, keeps its own conversation state, which grows with the capture and is not osflow's).
Then stats against the bare loop: ``osflow-post -r --format stats`` and the tshark command it runs
(``osflow.tshark.tshark_fields_command``) alone to /dev/null, alternately, ``--repeat`` rounds; and
``osflow-post --format stats`` on the PDML of server-create on stdin against the bare iterparse
loop (bench_post's goal 1 loop), at least 5 rounds.

    python3 benchmarks/bench_stream.py [--pairs 100000,1000000] [--input compute] [--repeat 3]
                                       [--formats json,otlp,stats]
"""

from __future__ import annotations

import argparse
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
from bench_post import BARE, SERVER_CREATE, paired, run, tree_state  # noqa: E402  (the same timing as the other goals)
from osflow.tshark import tshark_fields_command  # noqa: E402

ENV = inputs.osflow_env()
LIMIT_MB = 150


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, osflow-post's own peak RSS in KB, lines written) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _hwm_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):
        lines += chunk.count(b"\n")
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.wait()
    sampler.join()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err.strip()}")
    return elapsed, peak[0], lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="100000,1000000", help="input sizes in pairs (comma-separated)")
    ap.add_argument("--input", default="compute", choices=sorted(inputs.SOURCES), help="what one copy is made of")
    ap.add_argument("--formats", default="json,otlp,stats")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of stats against the bare loop (per input)")
    ap.add_argument("--timed-up-to", type=int, default=200_000,
                    help="time stats against the bare loop on inputs of at most this many pairs")
    args = ap.parse_args()
    sizes = [int(x) for x in args.pairs.split(",")]
    formats = args.formats.split(",")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "postproc" / "osflow")], env=ENV,
                   stdout=subprocess.DEVNULL, check=True)
    print(f"osflow {tree_state()}", file=sys.stderr)
    one = inputs.pairs(inputs.build(args.input, quiet=True, copies=1).capture)
    rss_rows, time_rows = [], []
    for want in sizes:
        t0 = time.perf_counter()
        inp = inputs.build_pairs(args.input, want)
        print(f"{inp.capture}: {inp.copies} copies, {inp.frames:,} frames "
              f"({time.perf_counter() - t0:.0f} s to build or find)", file=sys.stderr)
        expected = inp.copies * one
        for fmt in formats:
            cmd = [*inputs.POST, "-r", str(inp.capture), "--format", fmt]
            seconds, kb, lines = measure(cmd)
            if fmt == "json" and lines != expected:
                sys.exit(f"input check failed: {lines} pairs in {inp.capture}, expected {inp.copies} x {one} = "
                         f"{expected}: the copies do not add up")
            print(f"  {fmt}: {seconds:.1f} s, peak RSS {kb / 1024:.0f} MB, {lines:,} lines", file=sys.stderr)
            rss_rows.append((f"{expected:,}", fmt, f"{seconds:.1f} s", f"{kb / 1024:.0f} MB",
                             "ok" if kb / 1024 <= LIMIT_MB else "MISSED"))
        if "stats" in formats and expected <= args.timed_up_to:
            ours = [*inputs.POST, "-r", str(inp.capture), "--format", "stats"]
            bare = tshark_fields_command(str(inp.capture), inputs.tool("tshark"))
            times: tuple[list, list] = ([], [])
            for i in range(args.repeat):
                for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                    times[side].append(run((ours, bare)[side])[0])
            a, b = statistics.median(times[0]), statistics.median(times[1])
            rounds = [x / y for x, y in zip(*times, strict=True)]
            time_rows.append((f"-r, {expected:,} pairs, vs its tshark -T fields alone", f"{a:.1f} s", f"{b:.1f} s",
                              f"{a / b:.2f}×", f"{min(rounds):.2f}–{max(rounds):.2f}×"))
    if "stats" in formats:  # PDML on stdin: stats against the bare iterparse loop (bench_post's goal 1 loop)
        server_create = inputs.pdml(SERVER_CREATE, inputs.BUILD / "server-create.pdml")
        a, b, rounds = paired([*inputs.POST, "--format", "stats"], BARE, max(args.repeat, 5), stdin=server_create)
        mb = server_create.stat().st_size / 1e6
        time_rows.append((f"PDML of server-create ({mb:.0f} MB) on stdin, vs the bare iterparse loop",
                          f"{a:.2f} s", f"{b:.2f} s", f"{a / b:.2f}×", f"{min(rounds):.2f}–{max(rounds):.2f}×"))
    print(f"\npeak RSS of osflow-post itself (not its tshark), {args.input} copies (target ≤ {LIMIT_MB} MB):")
    print("| pairs | format | wall | peak RSS | |\n|---|---|---|---|---|")
    for r in rss_rows:
        print("| " + " | ".join(r) + " |")
    if time_rows:
        print("\n--format stats vs the bare loop (-r: its tshark -T fields alone; PDML: the bare iterparse loop),"
              " medians:")
        print("| input | osflow-post --format stats | bare loop | ratio | rounds |\n|---|---|---|---|---|")
        for r in time_rows:
            print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

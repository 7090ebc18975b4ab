#!/usr/bin/env python3
"""How fast osflow-post is, next to the unavoidable cost of its input.

Inputs (benchmarks/inputs.py builds and caches them in benchmarks/build/, or --workdir):
the cold capture's PDML (1,005 frames, ~30 MB, one real capture as recorded), ``keystone``
(copies of the four keystone/placement captures, 50k+ frames) and its PDML (~1 GB), and
``compute`` (copies of the server-create capture: nova, glance, neutron, RPC over
RabbitMQ, 50k+ frames).  Each copy has its own address (127.0.0.N), so tshark sees
k copies as k times the connections, not as retransmissions; inputs.py checks that the
pairs osflow-post finds grow k-fold and stops otherwise.  The copies no longer match the
fixtures' ss/ps tables, so every run here is without tables (throughput, not naming).
Then runs each comparison --repeat times, side by side, and prints the medians, the
ratios and the goals:

1. ``osflow-post < x.pdml`` (timeline) vs a bare ``lxml.etree.iterparse(tag="packet")``
   loop with ``clear()`` over the same file: at most 1.3x;
2. ``tshark -T pdml | osflow-post`` vs ``tshark -T pdml | <bare loop>``: at most 1.25x;
3. ``osflow-post -r x.pcapng`` vs ``tshark -r x.pcapng -T pdml > /dev/null``: at most 1x,
   and vs a pyshark FileCapture loop reading the HTTP/MySQL/memcached fields: at least 20x
   faster on the keystone input (pyshark runs once: it takes minutes);
4. peak RSS of osflow-post reading PDML on stdin, 30 MB and 1 GB: at most 150 MB each (and,
   for information, of ``osflow-post -r`` on one copy and on all copies: that figure is the
   larger of osflow-post and its tshark, whose own state grows with the capture);
5. ``osflow-post --help``: under 0.3 s;
6. ``osflow-post -r x.pcapng`` vs the tshark command it runs, alone, to /dev/null
   (``osflow.tshark.tshark_fields_command``: the same fields, decode-as and frame
   filter, taken from the package at run time): at most 1.15x; for ``--format json``
   (written while tshark runs) and the timeline (drawn at the end from the same streamed stages).

    python3 benchmarks/bench_post.py [--repeat 5] [--repeat-small 21] [--frames 50000] [--quick] [--only 1,6]
                                     [--workdir DIR]

``--quick`` skips the 1 GB PDML and pyshark; ``--only`` runs only the goals listed.  pyshark
comes with the ``bench`` extra (``pip install -e '.[bench]'``); without it that one comparison is
left out, with a line saying so.
Run it on an otherwise idle machine.

Each comparison runs each command once untimed (a warm-up), then the two alternately,
``--repeat`` rounds (``--repeat-small`` on the 1,000-frame capture, whose ~1 s runs vary
most), which one goes first alternating too, so that a shared machine whose speed drifts
slows both sides alike; the ratio is that of the two medians, and the table also shows the
lowest and highest single-round ratio.
osflow runs as installed, from byte-compiled modules (pip compiles them at install;
the benchmark compiles the source tree once and clears PYTHONDONTWRITEBYTECODE).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "postproc"))

import inputs  # noqa: E402  (the same inputs as the plugin benchmark)
from osflow.source import tshark_pdml_command  # noqa: E402
from osflow.tshark import tshark_fields_command  # noqa: E402  (what osflow-post -r runs)

COLD = REPO / "tests/fixtures/captures/resource-class-list-cold/capture.pcapng"
#: One real compute capture: HTTP, SQL, memcached and RPC over RabbitMQ (AMQP decoding on).
SERVER_CREATE = REPO / "tests/fixtures/captures-compute/server-create/capture.pcapng"
ENV = inputs.osflow_env()
# what the osflow-post console script runs
POST = inputs.POST
BARE = [sys.executable, "-c", (
    "import sys\n"
    "from lxml import etree\n"
    "for _, el in etree.iterparse(sys.stdin.buffer, tag='packet'):\n"
    "    el.clear()\n"
)]
PYSHARK = (
    "import sys, pyshark\n"
    "cap = pyshark.FileCapture(sys.argv[1], decode_as={'tcp.port==5000': 'http', 'tcp.port==8778': 'http'},"
    " keep_packets=False)\n"
    "n = 0\n"
    "for p in cap:\n"
    "    for layer in p.layers:\n"
    "        name = layer.layer_name\n"
    "        if name == 'http':\n"
    "            n += bool(getattr(layer, 'request_method', None) or getattr(layer, 'response_code', None))\n"
    "        elif name == 'mysql':\n"
    "            n += bool(getattr(layer, 'query', None) or getattr(layer, 'response_code', None))\n"
    "        elif name == 'memcache':\n"
    "            n += bool(getattr(layer, 'command', None) or getattr(layer, 'response', None))\n"
    "cap.close()\n"
    "print(n)\n"
)


def tshark() -> str:
    return inputs.tool("tshark")


def run(cmd, stdin=None, shell=False) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one command: the largest of its process and the children it waited for."""
    with open(stdin, "rb") if stdin else contextlib.nullcontext(subprocess.DEVNULL) as stdin_f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin_f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                                shell=shell)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {cmd}")
    return elapsed, usage.ru_maxrss


def median(cmd, repeat, stdin=None, shell=False) -> float:
    return statistics.median(run(cmd, stdin, shell)[0] for _ in range(repeat))


def paired(ours, base, repeat, stdin=None, shell=False) -> tuple[float, float, list[float]]:
    """Median seconds of ``ours`` and ``base`` run alternately, and each round's ratio.

    Each side first runs once untimed (as ``hyperfine --warmup 1`` does), so that no timed run
    pays for reading its input, interpreter or modules back from disk into the page cache.
    """
    for cmd in (ours, base):
        run(cmd, stdin, shell)
    times: tuple[list, list] = ([], [])
    for i in range(repeat):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            times[side].append(run((ours, base)[side], stdin, shell)[0])
    return statistics.median(times[0]), statistics.median(times[1]), [a / b for a, b in zip(*times, strict=True)]


def pipeline(capture: Path, consumer: list[str]) -> str:
    return f"{shlex.join(tshark_pdml_command(str(capture), tshark()))} 2>/dev/null | {shlex.join(consumer)}"


def tree_state() -> str:
    """The commit measured, and the package's files changed in the working tree (shared with others)."""

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--", "postproc").splitlines() if line[3:]]
    return git("rev-parse", "--short", "HEAD").strip() + (f" + uncommitted {', '.join(changed)}" if changed else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds on the 50k-frame and 1 GB inputs")
    ap.add_argument("--repeat-small", type=int, default=21,
                    help="rounds on the 1,000-frame capture (~1 s each: run-to-run noise weighs more there)")
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="skip the 1 GB PDML and pyshark")
    ap.add_argument("--only", default="1,2,3,4,5,6", help="the goals to measure, e.g. 6 or 1,3 (default all)")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="relative difference allowed in the inputs' pairs check")
    ap.add_argument("--workdir", type=Path, default=inputs.BUILD, help="where the built inputs are cached")
    args = ap.parse_args()
    goals = set(args.only.split(","))

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"osflow {tree_state()}; inputs in {work}", file=sys.stderr)
    big_inputs = {}
    for name in ("keystone", "compute"):
        inp = inputs.build(name, args.frames, work)
        inputs.check(inp, args.tolerance)  # stops here if the copies do not add up
        big_inputs[name] = inp
    keystone, compute = big_inputs["keystone"], big_inputs["compute"]
    big = keystone.capture
    cold_pdml = inputs.pdml(COLD, work / "cold.pdml")
    compute_pdml = inputs.pdml(SERVER_CREATE, work / "server-create.pdml")
    big_pdml = work / keystone.folder.name / "capture.pdml"
    if not args.quick and goals & {"1", "4"}:
        print(f"PDML of {big} (cached) ...", file=sys.stderr)
        inputs.pdml(big, big_pdml)

    # as pip leaves an installed package: byte-compiled (not compiled again by every run)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "postproc" / "osflow")], env=ENV,
                   stdout=subprocess.DEVNULL, check=True)
    rows = []

    def compare(goal, what, measured, limit, kind="max"):
        ours, base, rounds = measured
        ratio = ours / base
        ok = ratio <= limit if kind == "max" else ratio >= limit
        target = f"≤ {limit}×" if kind == "max" else f"≥ {limit}×"
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}×"
        rows.append((goal, what, f"{ours:.2f} s", f"{base:.2f} s", f"{ratio:.2f}×", spread, target,
                     "ok" if ok else "MISSED"))
        print(" | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)

    def frames(inp):
        return f"{inp.name}, {inp.frames // 1000}k frames"

    r = args.repeat
    small = args.repeat_small
    if "1" in goals:
        mb = cold_pdml.stat().st_size / 1e6
        compare("1", f"osflow-post < PDML ({mb:.0f} MB) vs bare iterparse",
                paired(POST, BARE, small, stdin=cold_pdml), 1.3)
        mb = compute_pdml.stat().st_size / 1e6
        compare("1", f"osflow-post < PDML ({mb:.0f} MB, server-create: RPC) vs bare iterparse",
                paired(POST, BARE, small, stdin=compute_pdml), 1.3)
        if not args.quick:
            gb = big_pdml.stat().st_size / 1e9
            compare("1", f"osflow-post < PDML ({gb:.1f} GB, {frames(keystone)}) vs bare iterparse",
                    paired(POST, BARE, r, stdin=big_pdml), 1.3)
    if "2" in goals:
        compare("2", "tshark -T pdml piped to osflow-post vs to bare (cold)",
                paired(pipeline(COLD, POST), pipeline(COLD, BARE), small, shell=True), 1.25)
        if not args.quick:
            compare("2", f"tshark -T pdml piped to osflow-post vs to bare ({frames(keystone)})",
                    paired(pipeline(big, POST), pipeline(big, BARE), r, shell=True), 1.25)
    ours_r = None
    if "3" in goals:
        for inp in (keystone, compute):
            measured = paired([*POST, "-r", str(inp.capture)], tshark_pdml_command(str(inp.capture), tshark()), r)
            ours_r = ours_r or measured[0]
            compare("3", f"osflow-post -r vs tshark -T pdml > /dev/null ({frames(inp)})", measured, 1.0)
        if not args.quick and importlib.util.find_spec("pyshark") is None:
            print("pyshark is not installed: its comparison (goal 3) is left out; "
                  "pip install -e '.[bench]' brings it", file=sys.stderr)
        elif not args.quick:
            pyshark_s, _ = run([sys.executable, "-c", PYSHARK, str(big)])
            rows.append(("3", f"pyshark loop vs osflow-post -r ({frames(keystone)})", f"{pyshark_s:.2f} s",
                         f"{ours_r:.2f} s", f"{pyshark_s / ours_r:.1f}× faster", "", "≥ 20×",
                         "ok" if pyshark_s / ours_r >= 20 else "MISSED"))
    if "6" in goals:
        # JSON Lines is written while tshark runs; the timeline is drawn at the end from the same streamed stages
        for inp in (compute, keystone):
            for fmt in ("json", "timeline"):
                compare("6", f"osflow-post -r --format {fmt} vs its tshark -T fields alone ({frames(inp)})",
                        paired([*POST, "-r", str(inp.capture), "--format", fmt],
                               tshark_fields_command(str(inp.capture), tshark()), r),
                        1.15)
    if "4" in goals:
        for pdml in (cold_pdml, big_pdml):
            if pdml.exists():
                kb = statistics.median(run(POST, stdin=pdml)[1] for _ in range(3 if pdml == cold_pdml else 1))
                rows.append(("4", f"peak RSS, PDML of {pdml.stat().st_size / 1e6:,.0f} MB on stdin",
                             f"{kb / 1024:.0f} MB", "", "", "", "≤ 150 MB", "ok" if kb <= 150 * 1024 else "MISSED"))
        for inp in (keystone, compute):
            for what, capture in ((f"{inp.name}, 1 copy", inp.one), (frames(inp), inp.capture)):
                kb = run([*POST, "-r", str(capture)])[1]
                rows.append(("4", f"peak RSS, osflow-post -r or its tshark ({what})",
                             f"{kb / 1024:.0f} MB", "", "", "", "(info)", ""))
    if "5" in goals:
        help_s = median([*POST, "--help"], max(r, 5))
        rows.append(("5", "osflow-post --help", f"{help_s:.2f} s", "", "", "", "< 0.3 s",
                     "ok" if help_s < 0.3 else "MISSED"))

    from tabulate import tabulate

    print(tabulate(rows, headers=("goal", "comparison", "osflow", "baseline", "ratio", "rounds", "target", ""),
                   tablefmt="github", disable_numparse=True))
    print(f"\nmedian seconds of {small} (cold capture) or {r} (50k frames, 1 GB) rounds, the two sides run "
          f"alternately; ratio = ratio of the medians; rounds = the lowest and highest ratio of a single round; "
          f"no ss/ps tables; osflow {tree_state()}; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

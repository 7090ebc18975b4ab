#!/usr/bin/env python3
"""How fast osflow-post is, next to the unavoidable cost of its input.

Builds its inputs from the real captures in tests/fixtures/captures (in a
temporary folder, or --workdir): the cold capture's PDML (~30 MB), a capture of
50k+ frames (copies of the real ones shifted in time with editcap, merged with
mergecap) and that capture's PDML (~1 GB).  Then runs each comparison --repeat
times, side by side, and prints the medians, the ratios and the goals:

1. ``osflow-post < x.pdml`` (timeline) vs a bare ``lxml.etree.iterparse(tag="packet")``
   loop with ``clear()`` over the same file: at most 1.3x;
2. ``tshark -T pdml | osflow-post`` vs ``tshark -T pdml | <bare loop>``: at most 1.25x;
3. ``osflow-post -r x.pcapng`` vs ``tshark -r x.pcapng -T pdml > /dev/null``: at most 1x,
   and vs a pyshark FileCapture loop reading the HTTP/MySQL/memcached fields: at least 20x
   faster on the 50k-frame capture (pyshark runs once: it takes minutes);
4. peak RSS of osflow-post reading PDML on stdin, 30 MB and 1 GB: at most 150 MB each;
5. ``osflow-post --help``: under 0.3 s.

    python3 benchmarks/bench_post.py [--repeat 5] [--repeat-small 21] [--frames 50000] [--quick] [--workdir DIR]

``--quick`` skips the 1 GB PDML and pyshark.  Run it on an otherwise idle machine.

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
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "postproc"))

from bench_plugin import build_capture  # noqa: E402  (same 50k-frame capture as the plugin benchmark)

COLD = REPO / "tests/fixtures/captures/resource-class-list-cold/capture.pcapng"
DECODE = ["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = str(REPO / "postproc")
# what the osflow-post console script runs
POST = [sys.executable, "-c", "import sys; from osflow.cli import post_main; sys.exit(post_main())"]
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
    path = shutil.which("tshark")
    if not path:
        sys.exit("tshark not found (apt-get install tshark)")
    return path


def run(cmd, stdin=None, shell=False) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one command (the RSS of its own process, not its children)."""
    stdin_f = open(stdin, "rb") if stdin else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=stdin_f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            shell=shell)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if stdin:
        stdin_f.close()
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
    return statistics.median(times[0]), statistics.median(times[1]), [a / b for a, b in zip(*times)]


def pipeline(capture: Path, consumer: list[str]) -> str:
    q = lambda args: " ".join(shlex.quote(a) for a in args)
    return f"{q([tshark(), '-r', str(capture), *DECODE, '-T', 'pdml'])} 2>/dev/null | {q(consumer)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds on the 50k-frame and 1 GB inputs")
    ap.add_argument("--repeat-small", type=int, default=21,
                    help="rounds on the 1,000-frame capture (~1 s each: run-to-run noise weighs more there)")
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="skip the 1 GB PDML and pyshark")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="osflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"inputs in {work}", file=sys.stderr)
    cold_pdml = work / "cold.pdml"
    if not cold_pdml.exists():
        with open(cold_pdml, "wb") as f:
            subprocess.run([tshark(), "-r", str(COLD), *DECODE, "-T", "pdml"], stdout=f, stderr=subprocess.DEVNULL,
                           check=True)
    big = work / "big.pcapng"
    if not big.exists():
        built = build_capture(work, args.frames, dict(os.environ))
        if built != big:
            built.rename(big)
    big_pdml = work / "big.pdml"
    if not args.quick and not big_pdml.exists():
        with open(big_pdml, "wb") as f:
            subprocess.run([tshark(), "-r", str(big), *DECODE, "-T", "pdml"], stdout=f, stderr=subprocess.DEVNULL,
                           check=True)

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

    r = args.repeat
    small = args.repeat_small
    mb = cold_pdml.stat().st_size / 1e6
    compare("1", f"osflow-post < PDML ({mb:.0f} MB) vs bare iterparse", paired(POST, BARE, small, stdin=cold_pdml),
            1.3)
    if big_pdml.exists():
        gb = big_pdml.stat().st_size / 1e9
        compare("1", f"osflow-post < PDML ({gb:.1f} GB) vs bare iterparse", paired(POST, BARE, r, stdin=big_pdml), 1.3)
    compare("2", "tshark -T pdml piped to osflow-post vs to bare (cold)",
            paired(pipeline(COLD, POST), pipeline(COLD, BARE), small, shell=True), 1.25)
    if not args.quick:
        compare("2", f"tshark -T pdml piped to osflow-post vs to bare ({args.frames // 1000}k frames)",
                paired(pipeline(big, POST), pipeline(big, BARE), r, shell=True), 1.25)
    tshark_pdml = [tshark(), "-r", str(big), *DECODE, "-T", "pdml"]
    measured = paired([*POST, "-r", str(big)], tshark_pdml, r)
    ours_r = measured[0]
    compare("3", f"osflow-post -r vs tshark -T pdml > /dev/null ({args.frames // 1000}k frames)", measured, 1.0)
    if not args.quick:
        pyshark_s, _ = run([sys.executable, "-c", PYSHARK, str(big)])
        rows.append(("3", f"pyshark loop vs osflow-post -r ({args.frames // 1000}k frames)", f"{pyshark_s:.2f} s",
                     f"{ours_r:.2f} s", f"{pyshark_s / ours_r:.1f}× faster", "", "≥ 20×",
                     "ok" if pyshark_s / ours_r >= 20 else "MISSED"))

    mem = []
    for pdml in (cold_pdml, big_pdml):
        if pdml.exists():
            _, kb = run(POST, stdin=pdml)
            mem.append((pdml.stat().st_size / 1e6, kb / 1024))
    for size, rss in mem:
        rows.append(("4", f"peak RSS, PDML of {size:,.0f} MB on stdin", f"{rss:.0f} MB", "", "", "", "≤ 150 MB",
                     "ok" if rss <= 150 else "MISSED"))
    help_s = median([*POST, "--help"], max(r, 5))
    rows.append(("5", "osflow-post --help", f"{help_s:.2f} s", "", "", "", "< 0.3 s", "ok" if help_s < 0.3 else "MISSED"))

    from tabulate import tabulate

    print(tabulate(rows, headers=("goal", "comparison", "osflow", "baseline", "ratio", "rounds", "target", ""),
                   tablefmt="github", disable_numparse=True))
    print(f"\nmedian seconds of {small} (cold capture) or {r} (50k frames, 1 GB) rounds, the two sides run "
          f"alternately; ratio = ratio of the medians; rounds = the lowest and highest ratio of a single round; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if not args.workdir:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())

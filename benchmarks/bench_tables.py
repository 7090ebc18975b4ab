#!/usr/bin/env python3
"""How long reading socket and process tables takes: ``parse_ss`` and ``parse_ps`` against splitting the text.

The largest socket log of the fixtures (resource-class-list-cache-hit/ss.txt, ~340 KB,
3,745 lines of ``ss -tnpH`` snapshots) and the netstat and lsof samples repeated 100 times
(~3,800 lines each), and the largest ps.txt (ps -eo and ps aux sections) repeated 20 times, as
it is and without its section and header lines (each line's shape found by trying them: a section
keeps the shape its previous line matched), each parsed ``--rounds`` times; the baseline is
``str.split`` of each line (what any reader of the file must do at least).  Prints the best time
of each, the ratio and the time per 1,000 lines; the goal is at most 15 ms per 1,000 lines (a
socket log is read once per run).

    python3 benchmarks/bench_tables.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "postproc"))

from osflow.tables import parse_ps, parse_ss  # noqa: E402

#: (file, copies): netstat and lsof lines are tried only after the ss regex fails, so their
#: files are repeated to the size of the ss log
FILES = (
    (REPO / "tests/fixtures/captures/resource-class-list-cache-hit/ss.txt", 1),
    (REPO / "tests/fixtures/tables/netstat-tnp.txt", 100),
    (REPO / "tests/fixtures/tables/lsof-nP-iTCP.txt", 100),
)
PS_FILE = REPO / "tests/fixtures/captures-compute/lab-server-delete/ps.txt"


def _bare(text: str) -> str:
    """ps text without its ``#####`` section and header lines."""
    return "\n".join(
        ln for ln in text.splitlines() if not ln.startswith("#") and not ln.lstrip().startswith(("PID", "USER"))
    )


def best(fn, text: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    print(f"{'file':62} {'lines':>6} {'parse':>10} {'split':>9} {'ratio':>7} {'per 1k':>8}  goal <= 15 ms/1k")
    ps = "\n".join([PS_FILE.read_text()] * 20)
    inputs = [(parse_ss, str(path.relative_to(REPO)), path.name, "\n".join([path.read_text()] * copies))
              for path, copies in FILES]
    inputs += [(parse_ps, str(PS_FILE.relative_to(REPO)), "ps.txt", ps),
               (parse_ps, "  the same without section and header lines", "ps.txt", _bare(ps))]
    for parser, label, name, text in inputs:
        parser(text, name)  # warm-up: caches, page cache
        parse = best(lambda t, parser=parser, name=name: parser(t, name), text, args.rounds)
        split = best(lambda t: [line.split() for line in t.splitlines()], text, args.rounds)
        lines = text.count("\n") + 1
        per_k = parse * 1000 / (lines / 1000)
        print(f"{label:62} {lines:6} {parse * 1000:8.1f}ms {split * 1000:7.1f}ms"
              f" {parse / split:6.1f}× {per_k:6.1f}ms  {'ok' if per_k <= 15 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

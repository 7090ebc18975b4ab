#!/usr/bin/env python3
"""How long reading socket tables takes: ``tables.parse_ss`` against splitting the same text.

The largest socket log of the fixtures (resource-class-list-cache-hit/ss.txt, ~340 KB,
3,745 lines of ``ss -tnpH`` snapshots) and the netstat and lsof samples repeated 100 times
(~3,800 lines each), each parsed ``--rounds`` times; the baseline is ``str.split`` of each line (what any reader of
the file must do at least).  Prints the best time of each, the ratio and the time per
1,000 lines; the goal is at most 15 ms per 1,000 lines (a socket log is read once per run).

    python3 benchmarks/bench_tables.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "postproc"))

from osflow.tables import parse_ss  # noqa: E402

#: (file, copies): netstat and lsof lines are tried only after the ss regex fails, so their
#: files are repeated to the size of the ss log
FILES = (
    (REPO / "tests/fixtures/captures/resource-class-list-cache-hit/ss.txt", 1),
    (REPO / "tests/fixtures/tables/netstat-tnp.txt", 100),
    (REPO / "tests/fixtures/tables/lsof-nP-iTCP.txt", 100),
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
    print(f"{'file':62} {'lines':>6} {'parse_ss':>10} {'split':>9} {'ratio':>7} {'per 1k':>8}  goal <= 15 ms/1k")
    for path, copies in FILES:
        text = "\n".join([path.read_text()] * copies)
        parse_ss(text, path.name)  # warm-up: caches, page cache
        parse = best(lambda t: parse_ss(t, path.name), text, args.rounds)
        split = best(lambda t: [line.split() for line in t.splitlines()], text, args.rounds)
        lines = text.count("\n") + 1
        per_k = parse * 1000 / (lines / 1000)
        print(f"{str(path.relative_to(REPO)):62} {lines:6} {parse * 1000:8.1f}ms {split * 1000:7.1f}ms"
              f" {parse / split:6.1f}× {per_k:6.1f}ms  {'ok' if per_k <= 15 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

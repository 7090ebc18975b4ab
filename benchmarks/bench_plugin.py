#!/usr/bin/env python3
"""How much the osflow Lua plugin costs tshark.

Builds a 50k+ frame capture from the real captures in tests/fixtures/captures
(copies shifted in time with editcap -t, merged with mergecap) in a temporary
folder, then times tshark on it with and without ``-X lua_script:dissectors/osflow.lua``:

* ``-T pdml`` (what the osflow pipeline runs): target at most 1.20x;
* plain ``tshark -r`` (the packet list; the plugin's field extractors force a
  full protocol tree): target at most 2x.

Both runs use an empty personal configuration (temporary HOME), the same
``-d tcp.port==...,http`` options, and the best of ``--repeat`` runs.

    python3 benchmarks/bench_plugin.py [--frames 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "dissectors" / "osflow.lua"
CAPTURES = sorted((REPO / "tests" / "fixtures" / "captures").glob("*/capture.pcapng"))
DECODE = ["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        sys.exit(f"{name} not found (apt-get install tshark)")
    return path


def frame_count(path: Path, env: dict) -> int:
    out = subprocess.run([tool("capinfos"), "-c", "-M", str(path)], capture_output=True, text=True, env=env).stdout
    return int(out.strip().splitlines()[-1].split()[-1])


def build_capture(workdir: Path, frames: int, env: dict) -> Path:
    base = workdir / "base.pcapng"
    subprocess.run([tool("mergecap"), "-a", "-w", str(base), *map(str, CAPTURES)], check=True, env=env)
    per_copy = frame_count(base, env)
    copies = -(-frames // per_copy)
    parts = []
    for i in range(copies):
        part = workdir / f"part{i}.pcapng"
        subprocess.run([tool("editcap"), "-t", str(10.0 * i), str(base), str(part)], check=True, env=env)
        parts.append(part)
    big = workdir / "big.pcapng"
    subprocess.run([tool("mergecap"), "-a", "-w", str(big), *map(str, parts)], check=True, env=env)
    for p in parts:
        p.unlink()
    return big


def best_time(cmd: list[str], env: dict, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50000, help="at least this many frames (default 50000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default 3)")
    args = ap.parse_args()
    tshark = tool("tshark")
    with tempfile.TemporaryDirectory(prefix="osflow-bench-") as tmp:
        work = Path(tmp)
        env = dict(os.environ, HOME=str(work / "home"), XDG_CONFIG_HOME=str(work / "home" / ".config"))
        big = build_capture(work, args.frames, env)
        n = frame_count(big, env)
        print(f"capture: {n} frames ({big.stat().st_size // 1024} KiB) from {len(CAPTURES)} real captures")
        rows = []
        for label, extra, target in (("tshark -T pdml", ["-T", "pdml"], 1.20), ("tshark -r (packet list)", [], 2.0)):
            base_cmd = [tshark, "-r", str(big), *DECODE, *extra]
            without = best_time(base_cmd, env, args.repeat)
            with_plugin = best_time([tshark, "-X", f"lua_script:{PLUGIN}", *base_cmd[1:]], env, args.repeat)
            ratio = with_plugin / without
            rows.append((label, without, with_plugin, ratio, target))
        print(f"{'mode':<26}{'without':>10}{'with osflow':>13}{'ratio':>8}{'target':>8}")
        ok = True
        for label, without, with_plugin, ratio, target in rows:
            flag = "ok" if ratio <= target else "OVER"
            ok &= ratio <= target
            print(f"{label:<26}{without:>9.2f}s{with_plugin:>12.2f}s{ratio:>7.2f}x{target:>7.2f}x  {flag}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

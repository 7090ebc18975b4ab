#!/usr/bin/env python3
"""How much the osflow Lua plugin costs tshark.

On the large inputs of benchmarks/inputs.py (built and cached in benchmarks/build/:
``keystone``, copies of the four keystone/placement captures, and ``compute``, copies of
the server-create capture, 50k+ frames each, every copy on its own address so that
tshark dissects each copy's connections instead of skipping them as retransmissions;
the inputs are checked before anything is timed), times tshark with and without
``-X lua_script:dissectors/osflow.lua``:

* ``-T pdml`` (what the osflow pipeline runs): target at most 1.20x;
* plain ``tshark -r`` (the packet list; the plugin's field extractors force a
  full protocol tree): target at most 2x.

Both use an empty personal configuration (temporary HOME) and osflow's own decode-as
options (``osflow.portmap.tshark_decode_as``); each side runs once untimed, then the two
alternately ``--repeat`` times; the ratio is that of the medians (this machine's runs vary
by ±25%), and "rounds" the lowest and highest ratio of a single round.

    python3 benchmarks/bench_plugin.py [--frames 50000] [--repeat 5] [--inputs keystone,compute]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "postproc"))

import inputs  # noqa: E402
from osflow.portmap import tshark_decode_as  # noqa: E402

PLUGIN = REPO / "dissectors" / "osflow.lua"


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - t0


def paired(ours: list[str], base: list[str], env: dict, repeat: int) -> tuple[float, float, list[float]]:
    for cmd in (ours, base):  # warm-up: page cache, Lua and dissector start-up files
        timed(cmd, env)
    times: tuple[list, list] = ([], [])
    for i in range(repeat):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            times[side].append(timed((ours, base)[side], env))
    return statistics.median(times[0]), statistics.median(times[1]), [a / b for a, b in zip(*times, strict=True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50000, help="at least this many frames (default 50000)")
    ap.add_argument("--repeat", type=int, default=5,
                    help="alternating rounds per measurement, medians kept (default 5)")
    ap.add_argument("--inputs", default="keystone,compute", help="which inputs of benchmarks/inputs.py")
    args = ap.parse_args()
    tshark = inputs.tool("tshark")
    ok = True
    with tempfile.TemporaryDirectory(prefix="osflow-bench-") as tmp:
        env = dict(os.environ, HOME=str(Path(tmp) / "home"), XDG_CONFIG_HOME=str(Path(tmp) / "home" / ".config"))
        print(f"{'input':<30}{'mode':<26}{'without':>10}{'with osflow':>13}{'ratio':>8}{'rounds':>13}{'target':>8}")
        for name in args.inputs.split(","):
            inp = inputs.build(name, args.frames)
            inputs.check(inp)
            label = f"{name} ({inp.frames:,} frames)"
            for mode, extra, target in (("tshark -T pdml", ["-T", "pdml"], 1.20),
                                        ("tshark -r (packet list)", [], 2.0)):
                base_cmd = [tshark, "-r", str(inp.capture), *tshark_decode_as(), *extra]
                with_plugin = [tshark, "-X", f"lua_script:{PLUGIN}", *base_cmd[1:]]
                ours, without, rounds = paired(with_plugin, base_cmd, env, args.repeat)
                ratio = ours / without
                ok &= ratio <= target
                print(f"{label:<30}{mode:<26}{without:>9.2f}s{ours:>12.2f}s{ratio:>7.2f}x"
                      f"{min(rounds):>6.2f}–{max(rounds):.2f}x{target:>7.2f}x  {'ok' if ratio <= target else 'OVER'}",
                      flush=True)
    print(f"\nmedians of {args.repeat} alternating rounds after one untimed run each; {os.cpu_count()} cores")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

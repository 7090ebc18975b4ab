#!/usr/bin/env python3
"""How much longer the HTML report takes to write than the timeline (issue #13: under 1.5x).

On the 1,000-frame capture ``tests/fixtures/captures/resource-class-list-cold/`` (1,005 frames, with
its ss/ps tables), ``osflow-post ... -o report.html`` (mermaid's build inlined: the one osflow finds,
or ``--mermaid-js``) against ``osflow-post ... -o timeline.txt``, from the capture (``-r``) and from
its PDML on stdin.  Each side runs once untimed, then the two alternately (``bench_post.paired``);
the ratio is that of the two medians, "rounds" the lowest and highest single-round ratio.

    python3 benchmarks/bench_report.py [--repeat 21] [--mermaid-js PATH] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inputs  # noqa: E402
from bench_post import COLD, ENV, POST, REPO, paired, tree_state  # noqa: E402  (its runner and environment)

LIMIT = 1.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=21, help="timed rounds of each side")
    ap.add_argument("--mermaid-js", help="the mermaid build to inline (default: the one osflow finds)")
    ap.add_argument("--workdir", type=Path, default=inputs.BUILD, help="where the capture's PDML is cached")
    args = ap.parse_args()
    from osflow import mermaidjs

    build = mermaidjs.find(args.mermaid_js)
    if build is None:
        sys.exit(f"no mermaid build found: {mermaidjs.INSTALL_HINT}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    pdml = inputs.pdml(COLD, args.workdir / "cold.pdml")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "postproc" / "osflow")], env=ENV,
                   stdout=subprocess.DEVNULL, check=True)  # as pip leaves it: byte-compiled
    tables = ["--ss", str(COLD.parent / "ss.txt"), "--ps", str(COLD.parent / "ps.txt")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="osflow-bench-report-") as tmp:
        html = [*tables, "-o", os.path.join(tmp, "report.html"), "--mermaid-js", build.path]
        txt = [*tables, "-o", os.path.join(tmp, "timeline.txt")]
        for what, extra, stdin in ((f"-r {COLD.parent.name}/capture.pcapng", ["-r", str(COLD)], None),
                                   (f"PDML on stdin ({pdml.stat().st_size / 1e6:.0f} MB)", [], pdml)):
            ours, base, rounds = paired([*POST, *extra, *html], [*POST, *extra, *txt], args.repeat, stdin=stdin)
            ratio = ours / base
            rows.append((f"-o report.html vs -o timeline.txt, {what}", f"{ours:.3f} s", f"{base:.3f} s",
                         f"{ratio:.2f}×", f"{min(rounds):.2f}–{max(rounds):.2f}×", f"≤ {LIMIT}×",
                         "ok" if ratio <= LIMIT else "MISSED"))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
        size = os.path.getsize(os.path.join(tmp, "report.html"))
    from tabulate import tabulate

    print(tabulate(rows, headers=("comparison", "report", "timeline", "ratio", "rounds", "target", ""),
                   tablefmt="github", disable_numparse=True))
    print(f"\nmedian seconds of {args.repeat} rounds, the two sides run alternately; the report is {size / 1e6:.1f} MB "
          f"with mermaid {build.version} inlined ({len(build.source.encode()) / 1e6:.1f} MB); osflow {tree_state()}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What ``osflow record`` costs the machine it records: a connection-heavy workload and an idle minute.

Workload: short HTTP/1.0 connections (connect, GET, the response, close) from one client process to
a one-process local server, at a fixed rate (``--rates``, default 100 and 1,000 per second, for
``--seconds`` each) and flat out (``--flat`` connections, as fast as the client can).  Each is run
alone and under ``osflow record --ports <the server's port> --duration …`` (started first, the
workload once it is capturing, Ctrl-C once the workload is done), alternating which goes first,
``--rounds`` rounds.  Measured in each run:

* the workload's slowdown: at a fixed rate the mean time of one connection (the schedule fixes the
  wall time), flat out the wall time of them all; recorded / alone, the median over the rounds; at a
  fixed rate also the rounds pooled (the mean of their means, the median of their median
  connections), which one round's hiccup moves less, each with its 95% interval (the rounds drawn
  again with replacement): a ratio is shown below a target only when its whole interval is;
* the CPU seconds the recorder used while the workload ran (``osflow record`` and its dumpcap, from
  /proc/<pid>/stat, sampled when the workload starts and ends: the start-up and the coverage
  computed at the end are not the workload's cost), and that per connection;
* the recorder's peak RSS (``VmHWM`` of its process), and the coverage its ``meta.json`` gives.

Idle: ``osflow record --duration`` on the machine as it is, no workload, ``--idle`` seconds; the
recorder's CPU over those seconds once it is capturing (the marginal cost of recording that much
longer), against the machine's own busy CPU over as long without a recorder, alternating.

Peak RSS over a long recording with a ring buffer (``--rss L1,L2``): the workload at 1,000 (default)
connections per second (``--rss-rate``) under ``osflow record --duration L -b filesize:2000 -b files:3``
for two lengths; a flat memory gives the same peak at both.

The latencies osflow draws (``--only lab``, with the project's lab up: ``tests/lab/up.sh``): the seed's
command (``openstack --os-placement-api-version 1.2 resource class list --sort-column name``) with the
client's ``--timing``, alone and under ``osflow record`` (its default ports), alternating,
``--lab-rounds`` rounds: the placement request's latency as the client measured it, recorded / alone.

The machine's load (``/proc/loadavg``, and the share of CPU busy during each run) is printed with
the results: other processes on a shared machine weigh on every figure.

    sudo python3 benchmarks/bench_record.py [--rounds 5] [--rates 100,1000] [--seconds 10] [--flat 5000]
        [--idle 60] [--rss 60,180] [--paths kernel,polls] [--only workload,idle,rss,lab] [--lab-rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import inputs  # noqa: E402

ENV = inputs.osflow_env()
RECORD = [sys.executable, "-c", "import sys; from osflow.cli import main; sys.exit(main(['record', *sys.argv[1:]]))"]
TICK = os.sysconf("SC_CLK_TCK")

SERVER = r"""
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(1024)
print(l.getsockname()[1], flush=True)
body = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
while True:
    c, _ = l.accept()
    c.recv(4096); c.sendall(body); c.close()
"""

CLIENT = r"""
import json, socket, sys, time
port, rate, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
request = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
spent = []
start = time.perf_counter()
for i in range(n):
    if rate:
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    while s.recv(4096):
        pass
    s.close()
    spent.append(time.perf_counter() - t)
wall = time.perf_counter() - start
spent.sort()
print(json.dumps({"wall": wall, "mean": sum(spent) / len(spent), "p50": spent[len(spent) // 2], "n": n}))
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and of its live children (dumpcap), in seconds; 0 when gone."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def children(pid: int) -> list[int]:
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / TICK, sum(v[:8]) / TICK


class Recording:
    """``osflow record --duration`` in the background, on ``port``, until :meth:`stop`."""

    def __init__(self, port: int, path: str, duration: float = 36000, ring: tuple[str, ...] = ()) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-record-")
        out = os.path.join(self.dir, "rec")
        env = dict(ENV, OSFLOW_NO_BPF="1") if path == "polls" else ENV
        self.proc = subprocess.Popen([*RECORD, "-o", out, "--ports", str(port), "--duration", str(duration), *ring],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.out = Path(out)
        deadline = time.monotonic() + 60
        while not (self.out / "ps.txt").exists():  # written once the capture is live
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"osflow record did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.05)
        time.sleep(0.3)  # ps.txt's BEFORE snapshot is being written: let it finish
        self.cpu0 = cpu_seconds(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) - self.cpu0

    def stop(self) -> dict:
        """SIGTERM (osflow record takes it as Ctrl-C; a SIGINT would be ignored when this benchmark
        was started in the background, as shells start a background job), wait; ``meta.json``, with
        the peak RSS (MB) under ``peak_rss_mb``."""
        peak = hwm_mb(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        try:
            meta = json.loads((self.out / "meta.json").read_text())
        except (OSError, ValueError):
            sys.exit(f"osflow record wrote no meta.json: {err}")
        meta["peak_rss_mb"] = peak
        subprocess.run(["rm", "-rf", self.dir], check=False)
        return meta


def interval(alone: list[dict], rec: list[dict], stat, draws: int = 2000) -> tuple[float, float]:
    """The 95% interval of ``stat(rec) / stat(alone)`` over the rounds: the rounds (each an alone run
    and a recorded run, side by side) drawn again with replacement, ``draws`` times (a fixed seed:
    the same runs give the same interval).  How far the ratio could move had other rounds been run:
    a target is shown met only when the whole interval is below it."""
    rng = random.Random(0)
    pairs = list(zip(alone, rec, strict=True))
    ratios = []
    for _ in range(draws):
        drawn = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        ratios.append(stat([r for _, r in drawn]) / stat([a for a, _ in drawn]))
    ratios.sort()
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


def run_client(port: int, rate: float, n: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(rate), str(n)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def workload(port: int, rate: float, n: int, path: str | None) -> dict:
    """One run of the workload, recorded (``path``: kernel or polls) or alone (None)."""
    rec = Recording(port, path) if path else None
    b0 = busy()
    got = run_client(port, rate, n)
    b1 = busy()
    got["busy"] = (b1[0] - b0[0]) / max(1e-9, b1[1] - b0[1])
    if rec is not None:
        got["cpu"] = rec.cpu()
        meta = rec.stop()
        got["rss"] = meta["peak_rss_mb"]
        got["coverage"] = (meta.get("coverage") or {}).get("percent")
        got["owners"] = meta["socket_log"]["owners"].split(":")[0]
        got["lost"] = meta["socket_log"].get("kernel_events_lost")
        missing = (meta.get("coverage") or {}).get("without_owner") or []
        if missing:
            print(f"  (a run without owners for {len(missing)} ends, e.g. {missing[:3]}; events lost in the kernel: "
                  f"{got['lost']})", flush=True)
    return got


SEED = ["--os-placement-api-version", "1.2", "resource", "class", "list", "--sort-column", "name"]


def openrc_env(path: str) -> dict[str, str]:
    """The environment with the ``export NAME=VALUE`` lines of an openrc file."""
    env = dict(ENV)
    for line in Path(path).read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            env[name.strip()] = value.strip().strip("'\"")
    return env


def seed_latency(env: dict[str, str], recorded: bool) -> dict[str, float]:
    """One run of the seed's command with ``--timing``: each request's seconds (method and path, no
    host or query) and the total, as the client measured them."""
    command = ["/usr/bin/openstack", "--timing", *SEED]
    folder = tempfile.mkdtemp(prefix="bench-record-lab-")
    if recorded:
        command = [*RECORD, "--linger", "0", "-o", os.path.join(folder, "rec"), "--", *command]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["rm", "-rf", folder], check=False)
    if done.returncode != 0:
        sys.exit(f"the seed's command failed ({'recorded' if recorded else 'alone'}): {done.stderr.strip()[-300:]}")
    out: dict[str, float] = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2:
            continue
        try:
            seconds = float(cells[1])
        except ValueError:
            continue
        words = cells[0].split()
        key = cells[0] if len(words) != 2 else f"{words[0]} {'/' + words[1].split('/', 3)[-1].split('?')[0]}"
        out[key] = out.get(key, 0.0) + seconds
    return out


def lab_latency(rounds: int, openrc: str) -> None:
    env = openrc_env(openrc)
    alone: list[dict[str, float]] = []
    rec: list[dict[str, float]] = []
    for k in range(rounds):
        for recorded in ([False, True] if k % 2 == 0 else [True, False]):
            (rec if recorded else alone).append(seed_latency(env, recorded))
    for key in ("GET /resource_classes", "POST /v3/auth/tokens", "Total"):
        a = [r[key] for r in alone if key in r]
        b = [r[key] for r in rec if key in r]
        if not a or not b:
            print(f"[lab] {key}: not in the client's --timing table", flush=True)
            continue
        spread = statistics.pstdev(a) / statistics.median(a) if len(a) > 1 else 0.0
        print(f"[lab] seed's {key}: recorded/alone {statistics.median(b) / statistics.median(a):.3f}x (median "
              f"{statistics.median(a) * 1000:.1f} ms alone, {statistics.median(b) * 1000:.1f} ms recorded; "
              f"alone's own spread ±{spread:.0%}; {rounds} rounds)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rates", default="100,1000", help="connections per second (comma-separated)")
    ap.add_argument("--seconds", type=float, default=10, help="how long each fixed-rate run lasts")
    ap.add_argument("--flat", type=int, default=5000, help="connections flat out (0: none)")
    ap.add_argument("--idle", type=float, default=60, help="seconds of the idle measurement")
    ap.add_argument("--idle-rounds", type=int, default=3)
    ap.add_argument("--rss", default="60,180", help="two recording lengths (s) with a ring buffer for the peak RSS")
    ap.add_argument("--rss-rate", type=float, default=1000, help="connections per second during the RSS runs")
    ap.add_argument("--paths", default="kernel", help="kernel (owners from the kernel where it allows), polls, or both")
    ap.add_argument("--only", default="workload,idle,rss", help="also: lab (the seed's command in the lab)")
    ap.add_argument("--lab-rounds", type=int, default=7)
    ap.add_argument("--openrc", default="/var/lib/osflow-lab/openrc", help="the lab's credentials (--only lab)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    paths = args.paths.split(",")
    with open("/proc/loadavg") as f:
        print(f"load average at the start: {' '.join(f.read().split()[:3])} ({os.cpu_count()} CPUs)", flush=True)
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]  # stdout is a pipe
        rates = [float(r) for r in args.rates.split(",") if r] if "workload" in only else []
        loads = [(r, int(r * args.seconds)) for r in rates]
        if "workload" in only and args.flat:
            loads.append((0.0, args.flat))
        for path in paths:
            for rate, n in loads:
                what = f"{rate:g}/s x {n}" if rate else f"flat out x {n}"
                alone, rec = [], []
                for k in range(args.rounds):
                    order = [None, path] if k % 2 == 0 else [path, None]
                    for p in order:
                        (rec if p else alone).append(workload(port, rate, n, p))
                key = "mean" if rate else "wall"
                ratios = [r[key] / a[key] for a, r in zip(alone, rec, strict=True)]
                cpu = statistics.median(r["cpu"] for r in rec)
                print(f"[{path}] {what}: recorded/alone {statistics.median(ratios):.3f}x "
                      f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; {key} alone "
                      f"{statistics.median(a[key] for a in alone) * 1000:.2f} ms, recorded "
                      f"{statistics.median(r[key] for r in rec) * 1000:.2f} ms); recorder CPU {cpu:.2f} s "
                      f"({cpu / n * 1e6:.0f} us per connection); peak RSS "
                      f"{max(r['rss'] for r in rec):.0f} MB; coverage {sorted({r['coverage'] for r in rec})}; "
                      f"owners from {sorted({r['owners'] for r in rec})}; machine busy "
                      f"{statistics.median(a['busy'] for a in alone):.0%} alone, "
                      f"{statistics.median(r['busy'] for r in rec):.0%} recorded", flush=True)
                if rate:  # the rounds pooled: less at the mercy of one round's hiccup than their median
                    ma, mr = (statistics.fmean(x["mean"] for x in runs) for runs in (alone, rec))
                    pa, pr = (statistics.median(x["p50"] for x in runs) for runs in (alone, rec))
                    lo_m, hi_m = interval(alone, rec, lambda runs: statistics.fmean(x["mean"] for x in runs))
                    lo_p, hi_p = interval(alone, rec, lambda runs: statistics.median(x["p50"] for x in runs))
                    print(f"[{path}] {what}, all {args.rounds} rounds pooled: mean connection "
                          f"{ma * 1000:.3f} -> {mr * 1000:.3f} ms ({mr / ma:.3f}x, 95% interval {lo_m:.3f}-"
                          f"{hi_m:.3f}x), median connection {pa * 1000:.3f} -> {pr * 1000:.3f} ms ({pr / pa:.3f}x, "
                          f"95% interval {lo_p:.3f}-{hi_p:.3f}x)", flush=True)
            if "idle" in only:
                cpus, machine, rss, cov = [], [], [], []
                for k in range(args.idle_rounds):
                    for recorded in ([False, True] if k % 2 == 0 else [True, False]):
                        if not recorded:
                            b0 = busy()
                            time.sleep(args.idle)
                            b1 = busy()
                            machine.append(b1[0] - b0[0])
                            continue
                        r = Recording(port, path)
                        time.sleep(args.idle)
                        cpus.append(r.cpu())
                        meta = r.stop()
                        rss.append(meta["peak_rss_mb"])
                        cov.append((meta.get("coverage") or {}).get("percent"))
                per_min = statistics.median(cpus) * 60 / args.idle
                print(f"[{path}] idle {args.idle:g} s: recorder CPU {statistics.median(cpus):.3f} s "
                      f"(rounds {', '.join(f'{c:.3f}' for c in cpus)}) = {per_min:.3f} CPU-s per minute = "
                      f"{per_min / 60:.2%} of one CPU; peak RSS {max(rss):.0f} MB; coverage {cov}; "
                      f"the machine's own busy CPU meanwhile, without the recorder: "
                      f"{statistics.median(machine):.1f} s", flush=True)
            if "rss" in only:
                for length in (float(x) for x in args.rss.split(",")):
                    r = Recording(port, path, ring=("-b", "filesize:2000", "-b", "files:3"))
                    got = run_client(port, args.rss_rate, int(args.rss_rate * length))
                    cpu = r.cpu()
                    meta = r.stop()
                    print(f"[{path}] ring buffer, {args.rss_rate:g}/s for {length:g} s ({got['n']} connections, "
                          f"{got['wall']:.0f} s): peak RSS {meta['peak_rss_mb']:.1f} MB, recorder CPU {cpu:.1f} s, "
                          f"coverage {(meta.get('coverage') or {}).get('percent')}, "
                          f"{len(meta['ring_buffer']['capture_files'])} capture files kept", flush=True)
        if "lab" in only:
            lab_latency(args.lab_rounds, args.openrc)
    finally:
        server.kill()
        server.wait()
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

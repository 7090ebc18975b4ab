"""End to end with OSProfiler on (``OSFLOW_LAB_PROFILER=1 tests/lab/up.sh``): every command of
docs/accuracy.md recorded with ``tests/lab/record-profiled.sh`` (osflow record around the command, its
OSProfiler trace beside the capture) and scored with ``benchmarks/score_osprofiler.py``, with the socket
and process tables and without them.

Each score's lines are printed as they come (the figures of docs/accuracy.md, measured again on this
run), and each must stay at or above the floor below: 99% of the spans matched everywhere, 99% of the
parents for one user's commands with the tables (server create aside: see its line), and, where osflow
does not reach the goal of 99% (several users at once; no tables), a floor below what
docs/accuracy.md reports, so that a change that loses ground fails here. A fresh recording of
concurrent requests differs from run to run (which request each keystone daemon takes, the
conductor's green threads): the floors leave room for that.

Runs only with ``OSFLOW_LAB=1`` and ``OSFLOW_LAB_PROFILER=1``: ``tests/lab/run-e2e.sh`` does both,
after the compute lab's tests, in the plain shape.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lab_support import LAB, OPENSTACK, ROOT, _env
from shape_support import lab_env

pytestmark = pytest.mark.lab

SCORER = ROOT / "benchmarks" / "score_osprofiler.py"
LINE = re.compile(r"^(?P<trace>[0-9a-f-]{36}|ALL): spans matched (?P<m>\d+)/(?P<n>\d+) \([\d.]+%\), "
                  r"parents agree (?P<a>\d+)/(?P<am>\d+) \([\d.]+%\), "
                  r"foreground precision (?P<p>[\d.]+%|n/a), recall (?P<r>[\d.]+%|n/a)$")
RUN = uuid.uuid4().hex[:6]  # names of this run's servers, image and network (a lab keeps earlier runs')
SERVER = ["--os-compute-api-version", "2.37", "server", "create", "--flavor", "m1.nano", "--image", "tiny",
          "--nic", "none", "--wait"]

#: name -> (command after `openstack`, users at once, floors: parents with the tables, parents without,
#: foreground precision and recall with the tables, without)
COMMANDS = {
    "seed": (["--os-placement-api-version", "1.2", "resource", "class", "list", "--sort-column", "name"],
             1, (99.0, 99.0, 99.0, 99.0)),
    "image-create": (["image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", "@IMG",
                      f"prof-image-{RUN}"], 1, (99.0, 99.0, 98.0, 98.0)),
    "network-create": (["network", "create", "--provider-network-type", "flat", "--provider-physical-network",
                        f"profnet-{RUN}", f"prof-net-{RUN}"], 1, (99.0, 99.0, 98.0, 98.0)),
    # neutron-server and placement have the user's token validated at keystone within a millisecond of
    # each other, and two keystone daemons take them in either order: the workers' order (the oldest
    # request to the first daemon that starts on one) was right on docs/accuracy.md's recording (99.9%)
    # and wrong on another (74.9%: both validations' SQL swapped)
    "server-create": ([*SERVER, f"prof-vm-{RUN}"], 1, (70.0, 70.0, 98.0, 98.0)),
    "server-stop": (["server", "stop", f"prof-vm-{RUN}"], 1, (99.0, 95.0, 98.0, 98.0)),
    "server-delete": (["server", "delete", "--wait", f"prof-vm-{RUN}"], 1, (99.0, 95.0, 97.0, 97.0)),
    "server-create-novalidhost": (["--os-compute-api-version", "2.37", "server", "create", "--flavor", "m1.toobig",
                                   "--image", "tiny", "--nic", "none", "--wait", f"prof-big-{RUN}"],
                                  1, (99.0, 90.0, 97.0, 93.0)),
    # several users at once vary by ten points and more from run to run (docs/accuracy.md): parents with the
    # tables, 4 users 93.0% (docs/accuracy.md), then 92.4, 94.1, 82.5% on the e2e's first three runs; 8 users
    # 88.2%, then 90.0, 77.9, 88.2%, 91.4, 89.0%, and 68.5% on a clean-clone run of 2026-12-08 (67.1% with the
    # code of the day before on the same recording: 772 of its 986 disagreements are keystone's SQL between
    # the clients' token requests and glance's validations, its daemons taking requests in another order
    # than the flow gives them). These floors catch a collapse, not a loss of a few points.
    "server-create-4-users": ([*SERVER, f"prof-four-{RUN}"], 4, (70.0, 55.0, 95.0, 88.0)),
    "server-create-8-users": ([*SERVER, f"prof-eight-{RUN}"], 8, (60.0, 35.0, 93.0, 75.0)),
}


@pytest.fixture(scope="module")
def profiled_lab(tmp_path_factory):
    env = lab_env("OSFLOW_LAB_PROFILER", "1", "OSProfiler's tests")
    env["OSFLOW_PYTHON"] = sys.executable
    image = tmp_path_factory.mktemp("image") / "prof-image.raw"
    image.write_bytes(os.urandom(64 * 1024))
    yield env, image
    # what the commands left in the lab (the servers of 4 and 8 users, the image, the network): gone again
    names = [f"prof-{kind}-{RUN}-{i}" for kind, n in (("four", 4), ("eight", 8)) for i in range(1, n + 1)]
    for args in (["server", "delete", "--wait", *names, f"prof-big-{RUN}"], ["image", "delete", f"prof-image-{RUN}"],
                 ["network", "delete", f"prof-net-{RUN}"]):
        subprocess.run(["timeout", "600", OPENSTACK, *args], env=env, capture_output=True, text=True)


def _scores(folder: Path, no_tables: bool) -> tuple[dict[str, dict], list[str]]:
    """The scorer's figures on ``folder`` (per trace and ``ALL``) and its lines."""
    r = subprocess.run([sys.executable, str(SCORER), str(folder), *(["--no-tables"] if no_tables else [])],
                       env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    figures = {m["trace"]: m.groupdict() for m in map(LINE.match, lines) if m}
    assert figures, r.stdout
    return figures, lines


def _pct(a: str, b: str) -> float:
    return 100.0 * int(a) / int(b) if int(b) else 100.0


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_parent_scored_against_osprofiler(name, profiled_lab, tmp_path_factory, capsys):
    env, image = profiled_lab
    command, users, (parents_floor, bare_floor, fg_floor, bare_fg_floor) = COMMANDS[name]
    folder = tmp_path_factory.mktemp("profiled") / name
    argv = [OPENSTACK, *(str(image) if a == "@IMG" else a for a in command)]
    r = subprocess.run(["bash", str(LAB / "record-profiled.sh"), *(["-n", str(users)] if users > 1 else []),
                        str(folder), "--", *argv], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"record-profiled exited {r.returncode}\n{r.stderr[-4000:]}"
    assert (folder / "osprofiler.json").exists()
    failures = []
    for no_tables, floor, fg in ((False, parents_floor, fg_floor), (True, bare_floor, bare_fg_floor)):
        figures, lines = _scores(folder, no_tables)
        with capsys.disabled():
            for line in lines:
                if LINE.match(line) or line.startswith("not traced"):
                    print(f"\n{name}{' --no-tables' if no_tables else ''}: {line}", end="")
        whole = figures.get("ALL") or next(iter(figures.values()))
        traces = [f for t, f in figures.items() if t != "ALL"]
        assert len(traces) == users, lines
        matched, parents = _pct(whole["m"], whole["n"]), _pct(whole["a"], whole["am"])
        if matched < 99.0:
            failures.append(f"{'no tables: ' if no_tables else ''}spans matched {matched:.1f}% < 99%")
        if parents < floor:
            failures.append(f"{'no tables: ' if no_tables else ''}parents agree {parents:.1f}% < {floor}%")
        for key in ("p", "r"):
            value = whole[key]
            if value != "n/a" and float(value.rstrip("%")) < fg:
                failures.append(f"{'no tables: ' if no_tables else ''}foreground "
                                f"{'precision' if key == 'p' else 'recall'} {value} < {fg}%")
    assert not failures, f"{name}: " + "; ".join(failures)

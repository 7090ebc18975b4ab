"""What the lab's devstack and TLS shapes' end-to-end tests share: the lab's environment when it is up in
their shape (:func:`shape_env`), the seed's command recorded cold (:func:`record_seed_cold`),
``osflow-post --format json`` on a recording, and the install-guide lab's story of the seed's command
(tests/fixtures/captures/resource-class-list-cold, recorded cold, as these tests record it) to compare
theirs with."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lab_support import LAB, RESOURCE_CLASS_LIST, ROOT, STATE, _env, _osflow_record

from shapes import Step, story

PLAIN = ROOT / "tests" / "fixtures" / "captures" / "resource-class-list-cold"
UNNAMED = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+")  # an end osflow could not name


def lab_env(variable: str, value: str, tests: str) -> dict[str, str]:
    """The lab's environment (its openrc) when the end-to-end run has the lab up as ``variable=value``
    says (``OSFLOW_LAB_SHAPE=tls``, ``OSFLOW_LAB_PROFILER=1``) and ``OSFLOW_LAB=1``
    (``tests/lab/run-e2e.sh`` sets both); ``tests`` are skipped otherwise, and fail when the lab is not up."""
    if os.environ.get("OSFLOW_LAB") != "1":
        pytest.skip("end-to-end lab tests: run tests/lab/run-e2e.sh "
                    "(needs root; sets up the OpenStack lab, OSFLOW_LAB=1)")
    if os.environ.get(variable) != value:
        pytest.skip(f"{tests}: run-e2e.sh runs them after {variable}={value} up.sh")
    if not (STATE / "openrc").exists():
        pytest.fail(f"OSFLOW_LAB=1 but the lab is not up ({STATE / 'openrc'} missing): run tests/lab/up.sh")
    return _env()


def shape_env(shape: str, auth_url: str) -> dict[str, str]:
    """:func:`lab_env` of the lab up in ``shape``; fails when its openrc is another shape's."""
    env = lab_env("OSFLOW_LAB_SHAPE", shape, f"the {shape} shape's tests")
    assert env.get("OS_AUTH_URL") == auth_url, f"the lab's openrc is not the {shape} shape's"
    return env


def record_seed_cold(env: dict[str, str], folder: Path, *options: str) -> subprocess.CompletedProcess:
    """The seed's command recorded cold (``tests/lab/cold.sh``: placement restarted, memcached flushed)
    with ``osflow record OPTIONS --render -o FOLDER``; its exit status 0 asserted."""
    cold = subprocess.run(["bash", str(LAB / "cold.sh")], capture_output=True, text=True, timeout=300)
    assert cold.returncode == 0, cold.stderr
    proc = subprocess.run([*_osflow_record(), *options, "--render", "-o", str(folder), "--", "timeout", "300",
                           *RESOURCE_CLASS_LIST], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"record exited {proc.returncode}\n{proc.stderr}"
    return proc


def json_pairs(argv: list[str]) -> tuple[list[dict], str]:
    """The pairs ``osflow-post ARGV --format json`` writes, and its stderr (exit status 0 asserted)."""
    r = subprocess.run([sys.executable, "-m", "osflow", "post", *argv, "--format", "json"], env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()], r.stderr


@functools.cache
def plain_story() -> frozenset[tuple[Step, ...]]:
    pairs, _ = json_pairs(["-r", str(PLAIN / "capture.pcapng"), "--ss", str(PLAIN / "ss.txt"),
                           "--ps", str(PLAIN / "ps.txt")])
    return frozenset(story(pairs))

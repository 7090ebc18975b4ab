"""What the end-to-end tests on the lab (tests/lab/) share: the lab's paths and credentials, the
``osflow record`` command, and ``Recording`` (a recording's files, its coverage line and the pairs
``osflow-post --format json`` finds in it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "tests" / "lab"
STATE = Path(os.environ.get("OSFLOW_LAB_STATE", "/var/lib/osflow-lab"))
OPENSTACK = "/usr/bin/openstack"  # Debian's client, as on the controller
RESOURCE_CLASS_LIST = [
    OPENSTACK, "--os-placement-api-version", "1.2", "resource", "class", "list", "--sort-column", "name",
]
PASSWORD_VARS = (
    "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_AUTH_URL",
)
COVERAGE = re.compile(
    r"^coverage: (\d+(?:\.\d+)?)% \((\d+)/(\d+) connection ends(?:, \d+ of them through their listening socket)?\)$",
    re.M,
)


def _openrc() -> dict[str, str]:
    env = {}
    for line in (STATE / "openrc").read_text().splitlines():
        m = re.match(r"export (\w+)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(_openrc())
    env["PYTHONPATH"] = str(ROOT / "postproc") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _osflow_record() -> list[str]:
    """``osflow record`` when the CLI has it, else the same module called directly."""
    r = subprocess.run([sys.executable, "-m", "osflow", "record", "--help"], env=_env(), capture_output=True, text=True,
                       timeout=60)
    if r.returncode == 0 and "--render" in r.stdout:
        return [sys.executable, "-m", "osflow", "record"]
    code = ("import argparse,sys; from osflow import record, cli; p=argparse.ArgumentParser(prog='osflow record'); "
            "record.add_arguments(p); a=cli.record_options(p.parse_args(sys.argv[1:])); "
            "sys.exit(cli.run(lambda: record.run(a), False, 'osflow record'))")
    return [sys.executable, "-c", code]


class Recording:
    def __init__(self, name: str, folder: Path, proc: subprocess.CompletedProcess) -> None:
        self.name = name
        self.dir = folder
        self.proc = proc
        self.meta = json.loads((folder / "meta.json").read_text())
        m = COVERAGE.search(proc.stderr)
        self.coverage = (float(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None
        post = subprocess.run(
            [sys.executable, "-m", "osflow", "post", "-r", str(folder / "capture.pcapng"),
             "--ss", str(folder / "ss.txt"), "--ps", str(folder / "ps.txt"), "-f", "json"],
            env=_env(), capture_output=True, text=True, timeout=300,
        )
        assert post.returncode == 0, post.stderr
        self.pairs = [json.loads(line) for line in post.stdout.splitlines() if line.strip()]

    def calls(self, client=None, server=None, protocol=None, parent="any"):
        """The pairs matching, in request order."""
        return [
            p for p in self.pairs
            if (client is None or p["client"] == client) and (server is None or p["server"] == server)
            and (protocol is None or p["protocol"] == protocol) and (parent == "any" or p["parent"] == parent)
        ]

    def story(self, parent):
        """(client, server, request, response) of the HTTP/memcache calls made while serving ``parent``."""
        return [(p["client"], p["server"], p["request"], p["response"]) for p in self.pairs
                if p["parent"] == parent and p["protocol"] in ("http", "memcache")]

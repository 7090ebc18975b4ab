"""What the lab's devstack and TLS shapes' end-to-end tests share: ``osflow-post --format json`` on a
recording, and the install-guide lab's story of the seed's command (tests/fixtures/captures/
resource-class-list-cold, recorded cold, as these tests record it) to compare theirs with."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

from lab_support import ROOT, _env

from shapes import Step, story

PLAIN = ROOT / "tests" / "fixtures" / "captures" / "resource-class-list-cold"
UNNAMED = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+")  # an end osflow could not name


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

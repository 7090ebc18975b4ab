"""End to end on the lab's devstack shape (``OSFLOW_LAB_SHAPE=devstack tests/lab/up.sh``): keystone and
placement each under a uwsgi of its own behind one Apache on port 80 (``/identity``, ``/placement``,
mod_proxy_uwsgi over unix sockets), the catalog's endpoints with those prefixes, placement's token
checks through ``/identity``.

The seed's command is recorded cold (``tests/lab/cold.sh``: placement's uwsgi restarted, memcached
flushed) with ``osflow record --render``, and must tell the install-guide lab's story
(tests/fixtures/captures/resource-class-list-cold, :mod:`shapes`): the same participants, the same
nesting, Apache only a hop (``via``); with the socket tables and from the capture and ``meta.json``
alone (≥ 95% of the ends named).

Runs only with ``OSFLOW_LAB=1`` and ``OSFLOW_LAB_SHAPE=devstack``: ``tests/lab/run-e2e.sh`` does both.
"""

from __future__ import annotations

import subprocess

import pytest
from lab_support import COVERAGE
from shape_support import UNNAMED, json_pairs, plain_story, record_seed_cold, shape_env

from shapes import difference, story

pytestmark = pytest.mark.lab

KEYSTONE = "http://controller/identity/v3"
PLACEMENT = "http://controller/placement"


@pytest.fixture(scope="module")
def devstack_lab():
    env = shape_env("devstack", KEYSTONE)
    for url in (KEYSTONE, PLACEMENT + "/"):
        r = subprocess.run(["timeout", "20", "curl", "-fsS", "-o", "/dev/null", url], capture_output=True, text=True)
        assert r.returncode == 0, f"Apache does not answer on {url}: {r.stderr}"
    return env


@pytest.fixture(scope="module")
def seed(devstack_lab, tmp_path_factory):
    folder = tmp_path_factory.mktemp("devstack") / "seed"
    return folder, record_seed_cold(devstack_lab, folder)


def test_recorded_on_port_80_with_its_owners(seed):
    folder, proc = seed
    for f in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json", "flow.md"):
        assert (folder / f).exists(), f
    m = COVERAGE.search(proc.stderr)
    assert m and float(m.group(1)) >= 90.0, proc.stderr
    # the uwsgi processes as devstack starts them (`uwsgi --procname-prefix NAME --ini …`) name themselves
    # NAMEuWSGI in the process table the join reads
    ps = (folder / "ps.txt").read_text()
    assert " keystoneuWSGI master" in ps and " keystoneuWSGI worker 1" in ps
    assert " placementuWSGI master" in ps and " placementuWSGI worker 1" in ps


def test_the_seed_tells_the_install_guide_s_story(seed):
    folder, _ = seed
    pairs, _ = json_pairs(["-r", str(folder)])
    got, want = story(pairs), plain_story()
    assert got == want, difference(got, want)
    # every request to keystone or placement went through Apache on port 80: a hop, not a participant
    http = [p for p in pairs if p["protocol"] == "http" and not p["background"]]
    assert http and all(p.get("via") == "apache2" and p["via_address"].endswith(":80") for p in http), http
    assert not [p for p in pairs if "apache2" in (p["client"], p["server"])]
    # the service's participant is its uwsgi: placement's own calls are named from its process
    assert any("placementuWSGI worker" in p["client_evidence"] for p in pairs if p["client"] == "placement")


def test_named_from_the_capture_and_meta_alone(seed):
    folder, _ = seed
    pairs, _ = json_pairs(["-r", str(folder / "capture.pcapng"), "--meta", str(folder / "meta.json")])
    ends = [e for p in pairs for e in (p["client"], p["server"])]
    unnamed = [e for e in ends if UNNAMED.match(e)]
    assert ends and len(unnamed) <= 0.05 * len(ends), unnamed
    got, want = story(pairs), plain_story()
    assert got == want, difference(got, want)


"""A busy controller, recorded live in the compute lab (issue #14): ``osflow record`` while nova's
services run and while four clients run at once, and an idle controller's ten seconds.

The same situations as tests/fixtures/captures-busy/ (whose goldens tests/test_busy.py checks),
recorded anew on every run: coverage 100% under that load, the command's story as the
foreground, every token call under the request that carried the token.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lab_support import RESOURCE_CLASS_LIST, STATE, Recording, _env, _osflow_record

pytestmark = pytest.mark.lab
FOUR = "for i in 1 2 3 4; do " + " ".join(RESOURCE_CLASS_LIST) + " > /dev/null & done; wait"


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    if os.environ.get("OSFLOW_LAB") != "1":
        pytest.skip("end-to-end lab tests: run tests/lab/run-e2e.sh "
                    "(needs root; sets up the OpenStack lab, OSFLOW_LAB=1)")
    if not (STATE / "openrc").exists():
        pytest.fail(f"OSFLOW_LAB=1 but the lab is not up ({STATE / 'openrc'} missing): run tests/lab/up.sh")
    env = _env()
    base = tmp_path_factory.mktemp("busy")
    out = {}
    for name, args in (("one", ["--", *RESOURCE_CLASS_LIST]), ("four", ["--", "bash", "-c", FOUR]),
                       ("idle", ["--render", "--duration", "10"])):
        folder = base / name
        proc = subprocess.run([*_osflow_record(), "-o", str(folder), *args], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        out[name] = Recording(name, folder, proc)
    return out


@pytest.mark.parametrize("name", ["one", "four", "idle"])
def test_coverage_is_100_percent_while_the_services_run(busy, name):
    r = busy[name]
    assert r.coverage is not None, r.proc.stderr
    percent, owned, total = r.coverage
    without = r.meta["coverage"]["without_owner"]
    assert (owned, percent) == (total, 100.0), f"{name}: {r.coverage}, without owner: {without}"
    assert "no connection of the capture is in the socket tables" not in r.proc.stderr


def test_the_command_is_the_foreground_and_nova_the_background(busy):
    pairs = busy["one"].pairs
    fg = [p for p in pairs if not p["background"]]
    top = [(p["client"], p["server"], p["request"].split(" [")[0].split(" (")[0]) for p in fg if p["parent"] is None]
    assert top == [("OpenStackClient", "keystone", "GET /v3"), ("OpenStackClient", "keystone", "POST /v3/auth/tokens"),
                   ("OpenStackClient", "placement", "GET /resource_classes")], top
    get = [p for p in fg if p["request"].startswith("GET /resource_classes")][0]
    below = [(p["server"], p["request"].split()[0]) for p in fg if p["parent"] == get["id"] and not p["noise"]]
    assert ("memcached", "get") in below and ("placement DB", "SELECT") in below, below
    assert all(p["client"] != "OpenStackClient" for p in pairs if p["background"])


def test_four_clients_every_token_call_under_the_request_that_carried_it(busy):
    pairs = busy["four"].pairs
    by_id = {p["id"]: p for p in pairs}
    gets = [p for p in pairs if p["client"] == "OpenStackClient" and p["request"].startswith("GET /resource_classes")]
    assert len(gets) == 4
    checked = 0
    for p in pairs:
        if p["client"] == "placement" and p["parent"] is not None and (
                p["request"].startswith(("get tokens/", "set tokens/")) or "/v3/auth/tokens" in p["request"]):
            parent = by_id[p["parent"]]
            assert set(p["tokens"]) & set(parent["tokens"]), (p["id"], p["request"], p["tokens"], parent["tokens"])
            checked += 1
    assert checked >= 4  # at least a lookup per request (a token placement already cached needs no validation)


def test_an_idle_controller_is_all_background(busy):
    r = busy["idle"]
    assert r.meta["command_pid"] is None and r.pairs
    assert all(p["background"] for p in r.pairs)
    flow = (r.dir / "flow.md").read_text()
    # record --render draws all of a running system: there is no command whose story to pick out
    assert "background pairs left out" not in flow and "nova-conductor" in flow
    post = subprocess.run([sys.executable, "-m", "osflow", "post", "-r", str(r.dir / "capture.pcapng"),
                           "--ss", str(r.dir / "ss.txt"), "--ps", str(r.dir / "ps.txt")],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert post.returncode == 0, post.stderr
    assert f"{len(r.pairs)} background pairs left out (--all shows them)" in post.stdout

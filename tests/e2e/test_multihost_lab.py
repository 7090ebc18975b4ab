"""End to end on the lab's kolla shape (``OSFLOW_LAB_SHAPE=kolla tests/lab/up.sh``): HAProxy on the VIP
198.18.0.100 in front of every API and of MariaDB, and a compute node, compute1, in its own network and
UTS namespaces (198.18.0.2) running nova-compute.  Each scenario is recorded on both hosts at once by
``osflow record -i any`` on each host (``tests/lab/record-hosts.sh``), in this order: the seed command
through the VIP (the controller only), ``server create --wait`` (scheduled onto compute1), ``server
stop`` and ``server delete --wait`` of that server.

What today's ``osflow-post`` tells from each host's folder alone is checked always: the client's calls
through the VIP and the services' work behind HAProxy on the controller, the conductor's casts to
``compute.compute1``, compute1's nova-compute reaching the controller's RabbitMQ and placement and
neutron through the VIP, both hosts named in ``meta.json``, the socket log's coverage.  The merged story
(``osflow-post -r DIR -r DIR``: ``service@host`` labels, RPC paired across hosts, the clock offset) and
the proxy stitching (``via`` haproxy) are checked once ``osflow-post`` has them (a feature check on
its ``--help``; skipped with the reason until then).

Runs only with ``OSFLOW_LAB=1``, as root, with the lab up in the kolla shape: ``tests/lab/run-e2e.sh``
does all three.  The server it creates is deleted again in every case.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from lab_support import LAB, OPENSTACK, RESOURCE_CLASS_LIST, STATE, Recording, _env

from shapes import below

pytestmark = pytest.mark.lab

VIP = "198.18.0.100"
CONTROLLER_IP = "198.18.0.1"
COMPUTE1_IP = "198.18.0.2"
BROKER = f"{CONTROLLER_IP}:5672"  # compute1's RabbitMQ
COMPUTE = [OPENSTACK, "--os-compute-api-version", "2.37"]  # --nic none needs 2.37
UNNAMED = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+")  # an end osflow could not name
HOSTS = ("controller", "compute1")
SHIFT = Decimal("0.35")  # compute1's clock made this far ahead, for the shifted scenario


def _os(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", str(timeout), OPENSTACK, *args], env=env, capture_output=True, text=True,
                          timeout=timeout + 30)


def _post_help() -> str:
    r = subprocess.run([sys.executable, "-m", "osflow", "post", "--help"], env=_env(), capture_output=True,
                       text=True, timeout=60)
    return r.stdout


def _need_merge() -> None:
    if "--clock-offset" not in _post_help():
        pytest.skip("this osflow-post does not merge hosts yet (no -r DIR -r DIR / --clock-offset)")


def _need_proxies() -> None:
    if "--show-proxies" not in _post_help():
        pytest.skip("this osflow-post does not stitch proxies yet (no --show-proxies)")


@pytest.fixture(scope="module")
def kolla_lab():
    if os.environ.get("OSFLOW_LAB") != "1":
        pytest.skip("end-to-end lab tests: run tests/lab/run-e2e.sh "
                    "(needs root; sets up the OpenStack lab, OSFLOW_LAB=1)")
    if os.environ.get("OSFLOW_LAB_SHAPE") != "kolla":
        pytest.skip("the kolla shape's tests: run-e2e.sh runs them after OSFLOW_LAB_SHAPE=kolla up.sh")
    if os.geteuid() != 0:
        pytest.fail("the kolla shape's tests record inside compute1's namespaces: run them as root")
    if not (STATE / "openrc").exists():
        pytest.fail(f"OSFLOW_LAB=1 but the lab is not up ({STATE / 'openrc'} missing): run tests/lab/up.sh")
    if not Path("/run/netns/compute1").exists():
        pytest.fail("no network namespace compute1: bring the lab up with OSFLOW_LAB_SHAPE=kolla tests/lab/up.sh")
    env = _env()
    assert env.get("OS_AUTH_URL") == f"http://{VIP}:5000/v3", "the lab's openrc does not point at the VIP"
    for port, path in ((5000, "/v3"), (8778, "/"), (9292, "/versions"), (9696, "/"), (8774, "/")):
        url = f"http://{VIP}:{port}{path}"
        r = subprocess.run(["timeout", "20", "curl", "-sS", "-o", "/dev/null", url], capture_output=True, text=True)
        assert r.returncode == 0, f"HAProxy does not answer on {url}: {r.stderr}"
    for _ in range(30):
        state = _os(env, "compute", "service", "list", "--service", "nova-compute", "--host", "compute1",
                    "-f", "value", "-c", "State", "-c", "Status")
        if state.stdout.split() == ["enabled", "up"]:
            break
        time.sleep(3)
    assert state.stdout.split() == ["enabled", "up"], \
        f"nova-compute on compute1 is not up: {state.stdout} {state.stderr}"
    return env


class Story:
    """One host's folder as today's osflow-post reads it (capture, ss, ps)."""

    def __init__(self, name: str, folder: Path) -> None:
        out = (folder.parent / f"{folder.name}.out").read_text()
        self.rec = Recording(name, folder, subprocess.CompletedProcess([], 0, "", out))
        self.pairs = self.rec.pairs
        self.meta = self.rec.meta
        self.dir = folder

    def calls(self, client=None, server=None, protocol=None, request=None, **fields):
        return [
            p for p in self.pairs
            if (client is None or p["client"] == client) and (server is None or p["server"] == server)
            and (protocol is None or p["protocol"] == protocol)
            and (request is None or (p["request"] or "").startswith(request))
            and all(p.get(k) == v for k, v in fields.items())
        ]

    def has_rpc(self) -> bool:
        return any(p["protocol"] == "rpc" for p in self.pairs)


@pytest.fixture(scope="module")
def recordings(kolla_lab, tmp_path_factory):
    env = dict(kolla_lab)
    osflow = Path(sys.executable).with_name("osflow")
    if osflow.exists():
        env["OSFLOW"] = str(osflow)
    base = tmp_path_factory.mktemp("multihost-lab")
    server = f"e2e-mh-{uuid.uuid4().hex[:8]}"
    folders: dict[str, Path] = {}
    facts: dict[str, str] = {}

    def record(name, command, *opts):
        folder = base / name
        proc = subprocess.run(["bash", str(LAB / "record-hosts.sh"), *opts, str(folder), "--", "timeout", "300",
                               *command], env=env, capture_output=True, text=True, timeout=600)
        outs = "".join(f"\n--- {p.name}\n{p.read_text()}" for p in sorted(folder.glob("*.out")))
        assert proc.returncode == 0, f"{name}: record-hosts.sh exited {proc.returncode}\n{proc.stderr}{outs}"
        folders[name] = folder

    try:
        record("vip-seed", RESOURCE_CLASS_LIST, "--controller-only")
        record("server-create", [*COMPUTE, "server", "create", "--flavor", "m1.nano", "--image", "tiny", "--nic",
                                 "none", "--wait", server])
        shown = _os(env, "server", "show", server, "-f", "json").stdout
        facts.update({k: str(v) for k, v in json.loads(shown).items()
                      if k in ("id", "status", "OS-EXT-SRV-ATTR:host")})
        record("server-stop", [OPENSTACK, "server", "stop", server], "--linger", "4")
        for _ in range(30):
            facts["stopped"] = _os(env, "server", "show", server, "-f", "value", "-c", "status").stdout.strip()
            if facts["stopped"] == "SHUTOFF":
                break
            time.sleep(1)
        record("server-delete", [OPENSTACK, "server", "delete", "--wait", server])
        facts["after_delete"] = str(_os(env, "server", "show", server).returncode)
    finally:
        if _os(env, "server", "show", server).returncode == 0:
            _os(env, "server", "delete", "--wait", server, timeout=180)
    stories = {(n, h): Story(n, f / h) for n, f in folders.items() for h in HOSTS if (f / h).is_dir()}
    return {"folders": folders, "stories": stories, "facts": facts, "base": base}


# ---------------------------------------------------------------- each host's folder alone


def test_each_host_names_itself_and_covers_its_sockets(recordings):
    for (name, host), story in recordings["stories"].items():
        assert story.meta.get("host") == host, (name, host, story.meta.get("host"))
        assert story.meta.get("interface") == "any", (name, host)
        # its own addresses (the VIP is the controller's), not the other host's
        own, other = {CONTROLLER_IP, VIP}, {COMPUTE1_IP}
        if host != "controller":
            own, other = other, own
        addresses = set(story.meta.get("addresses") or ())
        assert own <= addresses and not other & addresses, (name, host, addresses)
        cov = story.rec.coverage
        assert cov is not None, f"{name}/{host}: no coverage line"
        # the busy lab's socket log may miss a few short-lived ends (as in test_compute_lab.py)
        assert cov[0] >= 90.0, f"{name}/{host}: coverage {cov}"
    assert set(recordings["stories"]) == {("vip-seed", "controller")} | {
        (n, h) for n in ("server-create", "server-stop", "server-delete") for h in HOSTS}


def _established(ss_text: str):
    """(local, peer, owner comm) of each connection line of an ss.txt."""
    for line in ss_text.splitlines():
        f = line.split()
        if len(f) >= 6 and f[0] in ("ESTAB", "SYN-SENT"):
            m = re.search(r'users:\(\("([^"]+)"', line)
            yield f[3], f[4], m.group(1) if m else None


def test_only_haproxy_reaches_the_services_behind_the_vip(recordings):
    """The shape itself: every client end towards 127.0.0.1's API and MySQL ports is HAProxy's; the
    services reach each other and MariaDB through the VIP."""
    story = recordings["stories"][("server-create", "controller")]
    behind = {f"127.0.0.1:{p}" for p in (3306, 5000, 8774, 8778, 9292, 9696)}
    owners = {}
    vip_clients = set()
    for _local, peer, owner in _established((story.dir / "ss.txt").read_text()):
        if peer in behind and owner:
            owners.setdefault(owner, set()).add(peer)
        if peer.startswith(f"{VIP}:") and owner:
            vip_clients.add(owner)
    assert set(owners) == {"haproxy"}, owners
    assert {"nova-conductor", "nova-scheduler"} <= vip_clients, vip_clients


def test_seed_through_the_vip_on_the_controller(recordings):
    s = recordings["stories"][("vip-seed", "controller")]
    login = s.calls(client="OpenStackClient", server="keystone", request="POST /v3/auth/tokens", background=False)
    assert login and all(p["response"].startswith("201") for p in login), login
    listing = s.calls(client="OpenStackClient", server="placement", request="GET /resource_classes",
                      background=False)
    assert listing and all(p["response"] == "200 OK" for p in listing), listing
    # one pair through HAProxy, not two legs: reached at the VIP, served at the service's own address
    assert all(p.get("via") == "haproxy" and p["via_address"].startswith(f"{VIP}:")
               and p["server_address"].startswith("127.0.0.1:") for p in login + listing), "the client's legs"
    # keystone's work reaches its database through the VIP (HAProxy's TCP mode), stitched the same way
    assert any(p.get("via") == "haproxy" and p["via_address"] == f"{VIP}:3306"
               for p in s.calls(client="keystone", protocol="mysql"))


def test_server_create_lands_on_compute1(recordings):
    facts = recordings["facts"]
    assert facts.get("status") == "ACTIVE", facts
    assert facts.get("OS-EXT-SRV-ATTR:host") == "compute1", facts
    c = recordings["stories"][("server-create", "controller")]
    post = c.calls(client="OpenStackClient", server="nova-api", request="POST /v2.1/servers", background=False)
    assert post and post[0]["response"].startswith("202"), post
    if not c.has_rpc():
        pytest.skip("this osflow-post writes no rpc pair (no AMQP decoder)")
    assert c.calls(client="nova-api", server="nova-conductor", request="cast schedule_and_build_instances")
    select = c.calls(client="nova-conductor", server="nova-scheduler", request="call select_destinations")
    assert select and (select[0]["response"] or "").startswith("result"), select
    build = c.calls(client="nova-conductor", protocol="rpc", request="cast build_and_run_instance")
    assert build and build[0]["routing_key"] == "compute.compute1", build


def test_compute1_alone_reaches_the_controller(recordings):
    """compute1's folder: nova-compute (named from compute1's own tables) calls the conductor through
    RabbitMQ on the controller's address, and placement through the VIP."""
    s = recordings["stories"][("server-create", "compute1")]
    http = s.calls(client="nova-compute", server="placement", protocol="http")
    assert http and all(p["server_address"] == f"{VIP}:8778" for p in http), http
    assert all(p["client_address"].startswith(f"{COMPUTE1_IP}:") for p in http)
    assert any(p["request"].startswith("GET /allocations/" + recordings["facts"]["id"]) for p in http), \
        [p["request"] for p in http]
    if s.has_rpc():
        rpc = s.calls(client="nova-compute", protocol="rpc")
        assert rpc and all(p["via_address"] == BROKER for p in rpc), rpc
        assert any(p["request"].startswith("call object_action (Instance.save)") for p in rpc)
    for (name, host), story in recordings["stories"].items():
        if host == "compute1":
            ends = [e for p in story.pairs for e in (p["client"], p["server"])]
            unnamed = [e for e in ends if UNNAMED.match(e)]
            assert ends and len(unnamed) <= 0.05 * len(ends), (name, unnamed)


def test_server_stop_and_delete_reach_compute1(recordings):
    facts = recordings["facts"]
    assert facts.get("stopped") == "SHUTOFF", facts
    assert facts.get("after_delete") == "1", facts
    stop = recordings["stories"][("server-stop", "controller")]
    action = stop.calls(client="OpenStackClient", server="nova-api",
                        request=f"POST /v2.1/servers/{facts['id']}/action", background=False)
    assert action and action[0]["response"].startswith("202"), action
    delete = recordings["stories"][("server-delete", "controller")]
    gone = delete.calls(client="OpenStackClient", server="nova-api",
                        request=f"DELETE /v2.1/servers/{facts['id']}", background=False)
    assert gone and gone[0]["response"].startswith("204"), gone
    c1 = recordings["stories"][("server-delete", "compute1")]
    released = c1.calls(client="nova-compute", server="placement", request=f"DELETE /allocations/{facts['id']}")
    assert released and released[0]["response"].startswith("204"), released
    assert c1.calls(client="nova-compute", server="neutron-server", protocol="http")
    if not stop.has_rpc():
        pytest.skip("this osflow-post writes no rpc pair (no AMQP decoder)")
    for story, method in ((stop, "stop_instance"), (delete, "terminate_instance")):
        cast = story.calls(protocol="rpc", request=f"cast {method}")
        assert cast and cast[0]["routing_key"] == "compute.compute1", cast
    assert recordings["stories"][("server-stop", "compute1")].calls(
        client="nova-compute", protocol="rpc", request="call object_action (Instance.save)")


# ---------------------------------------------------------------- the merged story (when osflow-post merges)


def _shifted(src: Path, dst: Path, seconds: Decimal) -> None:
    """An osflow record folder as if its host's clock had been ``seconds`` ahead: the capture's
    timestamps (editcap -t), the tables' header times and meta.json's start and end."""
    dst.mkdir(parents=True)
    subprocess.run(["editcap", "-t", str(seconds), str(src / "capture.pcapng"), str(dst / "capture.pcapng")],
                   check=True, capture_output=True)
    for name, marker in (("ss.txt", "###"), ("ps.txt", "#####")):
        out = []
        for line in (src / name).read_text().splitlines(keepends=True):
            m = re.match(r"^(" + marker + r" )(\d+)\.(\d+)(.*)$", line, re.S)
            if m:
                t = Decimal(f"{m.group(2)}.{m.group(3)}") + seconds
                line = f"{m.group(1)}{t:.{len(m.group(3))}f}{m.group(4)}"
            out.append(line)
        (dst / name).write_text("".join(out))
    meta = json.loads((src / "meta.json").read_text())
    for k in ("start", "end"):
        meta[k] = float(Decimal(repr(meta[k])) + seconds)
    (dst / "meta.json").write_text(json.dumps(meta, indent=2))


def _merged(*folders: Path, extra=()) -> tuple[list[dict], str]:
    args = [a for f in folders for a in ("-r", str(f))]
    r = subprocess.run([sys.executable, "-m", "osflow", "post", *args, "-f", "json", *extra], env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()], r.stderr


OFFSET = re.compile(r"clock offset compute1: ([+-]\d+\.\d+) s ± (\d+\.\d+) s \(\d+ segments", re.M)


def _check_merged_create(pairs, stderr, expect_offset: float) -> None:
    m = OFFSET.search(stderr)
    assert m, f"no clock offset line for compute1: {stderr}"
    assert abs(float(m.group(1)) - expect_offset) <= max(0.01, float(m.group(2)) + 0.005), m.group(0)
    for p in pairs:
        for side in ("client", "server"):
            if not UNNAMED.match(p[side]) and p[side] not in ("RabbitMQ",):
                assert "@" in p[side], (side, p[side])
            assert p.get(f"{side}_host") in HOSTS, (side, p)
    build = [p for p in pairs
             if p["protocol"] == "rpc" and (p["request"] or "").startswith("cast build_and_run_instance")]
    assert len(build) == 1, build
    assert build[0]["client"] == "nova-conductor@controller" and build[0]["server"] == "nova-compute@compute1", build
    under = below(pairs, build[0])
    assert any(p["client"] == "nova-compute@compute1" and p["server"] == "placement@controller" for p in under), \
        "nova-compute@compute1's placement calls nest under the build"
    calls = [p for p in under if p["protocol"] == "rpc" and p.get("kind") == "call"
             and p["client"] == "nova-compute@compute1"]
    assert calls and all(p["server"] == "nova-conductor@controller" and p["response"] for p in calls), calls
    assert any((p["request"] or "").startswith("call select_destinations") and p["response"] for p in pairs
               if p["client"] == "nova-conductor@controller" and p["server"] == "nova-scheduler@controller")
    # one message per segment: nothing drawn twice though both hosts captured compute1's traffic
    seen = [(p["client"], p["server"], p["request"], p.get("msg_id")) for p in calls]
    assert len(seen) == len(set(seen)), "a call of nova-compute@compute1 is drawn twice"


def test_merged_server_create(recordings):
    _need_merge()
    f = recordings["folders"]["server-create"]
    pairs, stderr = _merged(f / "controller", f / "compute1")
    _check_merged_create(pairs, stderr, 0.0)  # one machine: one clock


def test_merged_server_create_shifted(recordings):
    _need_merge()
    f = recordings["folders"]["server-create"]
    shifted = recordings["base"] / "server-create-shifted"
    _shifted(f / "compute1", shifted / "compute1", SHIFT)
    pairs, stderr = _merged(f / "controller", shifted / "compute1")
    _check_merged_create(pairs, stderr, float(SHIFT))


def test_merged_from_captures_and_meta_alone(recordings):
    """No ss, no ps: ≥ 95% of the pairs' ends named, the build still on compute1."""
    _need_merge()
    for name in ("server-create", "server-stop", "server-delete"):
        bare = recordings["base"] / f"{name}-bare"
        for host in HOSTS:
            (bare / host).mkdir(parents=True)
            for file in ("capture.pcapng", "meta.json"):
                shutil.copy(recordings["folders"][name] / host / file, bare / host / file)
        pairs, _ = _merged(bare / "controller", bare / "compute1")
        ends = [e for p in pairs for e in (p["client"], p["server"])]
        unnamed = [e for e in ends if UNNAMED.match(e)]
        assert ends and len(unnamed) <= 0.05 * len(ends), (name, len(unnamed), len(ends), unnamed[:10])
        method = {"server-create": "build_and_run_instance", "server-stop": "stop_instance",
                  "server-delete": "terminate_instance"}[name]
        cast = [p for p in pairs if (p["request"] or "").startswith(f"cast {method}")]
        assert cast and cast[0]["server"] == "nova-compute@compute1", (name, cast)
        # the same story: the command's requests (OpenStackClient's, through novaclient too) and the cast they made
        assert not cast[0]["background"], (name, cast[0])


def test_seed_through_haproxy_is_one_pair_per_request(recordings):
    _need_proxies()
    s = recordings["stories"][("vip-seed", "controller")]
    for request in ("POST /v3/auth/tokens", "GET /resource_classes"):
        found = [p for p in s.pairs if (p["request"] or "").startswith(request) and not p["background"]]
        assert len(found) == 1, (request, found)
        assert found[0]["client"] == "OpenStackClient" and "haproxy" in str(found[0].get("via")), found[0]
    # keystone's work nests under the client's login as if there were no proxy
    login = next(p for p in s.pairs if (p["request"] or "").startswith("POST /v3/auth/tokens")
                 and not p["background"])
    assert any(p["client"] == "keystone" and p["protocol"] == "mysql" for p in below(s.pairs, login))
    # HAProxy's health checks are background pairs with client haproxy
    checks = [p for p in s.pairs if p["client"] == "haproxy"]
    assert checks and all(p["background"] for p in checks), checks[:3]

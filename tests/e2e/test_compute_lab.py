"""End to end on the lab's compute control plane (tests/lab/: glance, neutron-server, nova-api,
nova-conductor, nova-scheduler, nova-compute with the fake driver, RabbitMQ): ``osflow record --render``
around real ``openstack`` commands, then the story ``osflow-post --format json`` tells.

Runs only with ``OSFLOW_LAB=1`` and the lab up: ``tests/lab/run-e2e.sh`` does both.  The recordings,
in this order: ``image create`` (a 1 MiB upload), ``network create`` (flat), ``server create --nic none
--wait``, ``server delete --wait`` of that server, and a ``server create`` that fails with NoValidHost
(flavor m1.toobig: more RAM than the fake host has; up.sh lifts the quotas).  What they create is
deleted again afterwards (outside the recordings).

The RPC checks read the JSON the AMQP decoder writes, one object per RPC message pair:
``{"protocol": "rpc", "client": "nova-api", "server": "nova-conductor", "request": "cast
schedule_and_build_instances" | "call select_destinations" | "fanout update_instance_info" | "call
object_action (Instance.save)", "response": "result …" | "failure NoValidHost" | "" (a cast), "via":
"RabbitMQ", "via_address": "127.0.0.1:5672", "exchange": "nova", "routing_key": "conductor",
"delivered": 1, "tokens": [...], ...}`` (a publish nobody consumed: server "RabbitMQ", delivered 0).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

import pytest
from lab_support import COVERAGE, OPENSTACK, STATE, Recording, _env, _osflow_record

pytestmark = pytest.mark.lab

COMPUTE = [OPENSTACK, "--os-compute-api-version", "2.37"]  # --nic none needs 2.37
UNNAMED = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+$")  # an end osflow could not name
BROKER = "127.0.0.1:5672"
NAMES = ("image-create", "network-create", "server-create", "server-delete", "server-create-novalidhost")


def _os(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", str(timeout), OPENSTACK, *args], env=env, capture_output=True, text=True,
                          timeout=timeout + 30)


@pytest.fixture(scope="module")
def compute_lab():
    if os.environ.get("OSFLOW_LAB") != "1":
        pytest.skip("end-to-end lab tests: run tests/lab/run-e2e.sh "
                    "(needs root; sets up the OpenStack lab, OSFLOW_LAB=1)")
    if not (STATE / "openrc").exists():
        pytest.fail(f"OSFLOW_LAB=1 but the lab is not up ({STATE / 'openrc'} missing): run tests/lab/up.sh")
    for url in ("http://controller:5000/v3", "http://controller:8778/", "http://controller:9292/versions",
                "http://controller:9696/", "http://controller:8774/"):
        r = subprocess.run(["timeout", "20", "curl", "-sS", "-o", "/dev/null", url], capture_output=True, text=True)
        assert r.returncode == 0, f"the lab does not answer on {url}: {r.stderr}"
    env = _env()
    # run-e2e.sh starts nova-compute again right before these tests: wait for its first report
    for _ in range(30):
        state = _os(env, "compute", "service", "list", "--service", "nova-compute", "-f", "value", "-c", "State")
        if state.stdout.split() == ["up"]:
            break
        time.sleep(3)
    assert state.stdout.split() == ["up"], f"nova-compute is not up: {state.stdout} {state.stderr}"
    return env


class Story:
    """A recording's pairs, with lookups by who called whom."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.pairs = rec.pairs
        self.by_id = {p["id"]: p for p in rec.pairs}

    def calls(self, client=None, server=None, protocol=None, request=None, parent="any"):
        """The pairs matching (``request``: a prefix of the request text), in request order."""
        return [
            p for p in self.pairs
            if (client is None or p["client"] == client) and (server is None or p["server"] == server)
            and (protocol is None or p["protocol"] == protocol)
            and (request is None or p["request"].startswith(request))
            and (parent == "any" or p["parent"] == parent)
        ]

    def one(self, **kw):
        found = self.calls(**kw)
        assert len(found) == 1, (kw, [(p["id"], p["client"], p["server"], p["request"]) for p in found])
        return found[0]

    def below(self, root) -> list[dict]:
        """``root`` and every pair made while serving it (its descendants)."""
        ids = {root["id"]}
        out = [root]
        for p in self.pairs:  # request order: a parent always comes before its children
            if p["parent"] in ids:
                ids.add(p["id"])
                out.append(p)
        return out

    def has_rpc(self) -> bool:
        return any(p["protocol"] == "rpc" for p in self.pairs)


@pytest.fixture(scope="module")
def recordings(compute_lab, tmp_path_factory):
    env = compute_lab
    base = tmp_path_factory.mktemp("compute-lab")
    record = _osflow_record()
    tag = uuid.uuid4().hex[:8]
    names = {"image": f"e2e-image-{tag}", "network": f"e2e-net-{tag}", "physnet": f"e2e{tag}",
             "server": f"e2e-vm-{tag}", "big": f"e2e-toobig-{tag}"}
    out: dict[str, Story] = {}
    facts: dict[str, str] = {}

    def run(name, command):
        folder = base / name
        proc = subprocess.run(
            [*record, "--render", "--linger", "2", "-o", str(folder), "--", "timeout", "300", *command],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, f"{name}: record exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        out[name] = Story(Recording(name, folder, proc))

    image_file = base / "e2e.img"
    image_file.write_bytes(os.urandom(1 << 20))
    try:
        run("image-create", [OPENSTACK, "image", "create", "--disk-format", "raw", "--container-format", "bare",
                             "--file", str(image_file), names["image"]])
        facts["image_id"] = _os(env, "image", "show", names["image"], "-f", "value", "-c", "id").stdout.strip()
        run("network-create", [OPENSTACK, "network", "create", "--provider-network-type", "flat",
                               "--provider-physical-network", names["physnet"], names["network"]])
        facts["network_id"] = _os(env, "network", "show", names["network"], "-f", "value", "-c", "id").stdout.strip()
        run("server-create", [*COMPUTE, "server", "create", "--flavor", "m1.nano", "--image", "tiny", "--nic", "none",
                              "--wait", names["server"]])
        shown = _os(env, "server", "show", names["server"], "-f", "value", "-c", "id", "-c", "status").stdout.split()
        facts["server_id"], facts["server_status"] = shown[0], shown[1]
        run("server-delete", [OPENSTACK, "server", "delete", "--wait", names["server"]])
        facts["server_after_delete"] = str(_os(env, "server", "show", facts["server_id"]).returncode)
        # openstackclient 6.0.0 prints "Error creating server" but exits 0: the status is checked below
        run("server-create-novalidhost", [*COMPUTE, "server", "create", "--flavor", "m1.toobig", "--image", "tiny",
                                          "--nic", "none", "--wait", names["big"]])
        shown = _os(env, "server", "show", names["big"], "-f", "value", "-c", "id", "-c", "status").stdout.split()
        facts["big_id"], facts["big_status"] = shown[0], shown[1]
        facts["big_fault"] = _os(env, "server", "show", names["big"], "-f", "value", "-c", "fault").stdout
        yield out, facts
    finally:  # leave the lab as it was (not recorded)
        for what, name in (("server", names["big"]), ("server", names["server"]), ("network", names["network"]),
                           ("image", names["image"])):
            _os(env, what, "delete", *(["--wait"] if what == "server" else []), name, timeout=180)


def _assert_rpc(recordings):
    """Every recording holds RPC (nova-compute's periodic calls at least): none at all is a failure."""
    stories, _ = recordings
    assert any(s.has_rpc() for s in stories.values()), "osflow-post wrote no rpc pair for any recording"


def _via(p) -> str | None:
    """The broker's address of an rpc pair (``via_address``; ``via`` is the broker's participant)."""
    assert p.get("via") == "RabbitMQ", p
    return p.get("via_address")


def _assert_named(story: Story, pairs):
    unnamed = [(p["id"], p["client"], p["server"], p["request"]) for p in pairs
               if UNNAMED.match(p["client"]) or UNNAMED.match(p["server"])]
    assert not unnamed, f"{story.rec.name}: ends osflow could not name: {unnamed}"


# ---------------------------------------------------------------- every recording

@pytest.mark.parametrize("name", NAMES)
def test_files_and_coverage(recordings, name):
    r = recordings[0][name].rec
    assert oct(r.dir.stat().st_mode & 0o777) == "0o700"
    for f in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json", "flow.md"):
        assert oct((r.dir / f).stat().st_mode & 0o777) == "0o600", f
    assert r.meta["exit_code"] == 0 and r.meta["start"] <= r.meta["end"]
    assert 5672 in r.meta["ports"], "record captures RabbitMQ's port"
    flow = (r.dir / "flow.md").read_text()
    assert "```mermaid" in flow and "OpenStackClient" in flow
    assert COVERAGE.search(r.proc.stderr), r.proc.stderr
    percent, owned, total = r.coverage
    assert total > 0 and r.meta["coverage"]["owned"] == owned and r.meta["coverage"]["total"] == total
    # the compute lab is busy (nova-compute's reports, the services' polling): the socket log misses some
    # short connections behind Apache and uwsgi; their listening socket's process group owns them
    without = r.meta["coverage"]["without_owner"]
    assert (owned, percent) == (total, 100.0), f"{name}: {r.coverage}, without owner: {without}"
    # an end stays unnamed only when the socket log missed its owner (and no protocol named it)
    unowned = {u.split(" -> ")[0] for u in r.meta["coverage"]["without_owner"]}
    for p in r.pairs:
        for end, address in (("client", "client_address"), ("server", "server_address")):
            if UNNAMED.match(p[end]):
                assert p[address] in unowned, (name, p["id"], end, p[address], p["request"])
    # the client is named from the socket table (where the log saw its socket), not guessed
    for p in [p for p in r.pairs if p["client"] == "OpenStackClient" and p["client_address"] not in unowned]:
        assert "ss " in p["client_evidence"], p


# ---------------------------------------------------------------- image create (upload)

def test_image_create(recordings):
    stories, facts = recordings
    s = stories["image-create"]
    post = s.one(client="OpenStackClient", server="glance", protocol="http", request="POST /v2/images")
    assert post["request"].split(" ")[1] == "/v2/images" and post["response"].startswith("201"), post
    put = s.one(client="OpenStackClient", server="glance", protocol="http", request="PUT /v2/images/")
    assert put["request"].split(" ")[1] == f"/v2/images/{facts['image_id']}/file", put
    assert put["response"].startswith("204"), put
    assert post["end"] <= put["start"]
    assert post["tokens"] and put["tokens"][0] == post["tokens"][0], "the same user token for both"
    # glance writes the image record, then its size, checksum and status after the upload
    assert s.calls(client="glance", server="glance DB", protocol="mysql", parent=post["id"])
    assert s.calls(client="glance", server="glance DB", protocol="mysql", parent=put["id"])
    _assert_named(s, s.below(post) + s.below(put))


# ---------------------------------------------------------------- network create

def test_network_create(recordings):
    stories, facts = recordings
    s = stories["network-create"]
    post = s.one(client="OpenStackClient", server="neutron-server", protocol="http", request="POST /v2.0/networks")
    assert post["response"].startswith("201"), post
    assert facts["network_id"]
    assert s.calls(client="neutron-server", server="neutron DB", protocol="mysql", parent=post["id"])
    _assert_named(s, s.below(post))


def test_network_create_rpc(recordings):
    _assert_rpc(recordings)
    s = recordings[0]["network-create"]
    post = s.one(client="OpenStackClient", server="neutron-server", protocol="http", request="POST /v2.0/networks")
    # neutron-server pushes the new network to its agents' fanout exchanges (in the user's context):
    # nobody consumes them, the lab has no agents.  The push may leave after the 201 (a neutron-server
    # that just started connects to RabbitMQ first): then it is no child of the POST.
    pushes = [p for p in s.calls(client="neutron-server", protocol="rpc", request="fanout push")
              if post["tokens"][0] in p["tokens"]]
    assert pushes, [(p["id"], p["parent"], p["client"], p["server"], p["request"]) for p in s.calls(protocol="rpc")]
    for p in pushes:
        assert p["parent"] in (post["id"], None) and p["start"] >= post["start"], p
        assert p["server"] == "RabbitMQ" and p["delivered"] == 0, p
        assert p["response"] == "" and _via(p) == BROKER, p
        assert p["exchange"].startswith("neutron-vo-") and p["exchange"].endswith("_fanout"), p
    # the network's own (a project's first network also pushes its default security group)
    assert [p for p in pushes if p["exchange"].startswith("neutron-vo-Network-")], pushes


# ---------------------------------------------------------------- server create

def _server_post(s: Story):
    post = s.one(client="OpenStackClient", server="nova-api", protocol="http", request="POST /v2.1/servers")
    assert post["request"].split(" ")[1] == "/v2.1/servers" and post["response"].startswith("202"), post
    return post


def test_server_create(recordings):
    stories, facts = recordings
    s = stories["server-create"]
    assert facts["server_status"] == "ACTIVE"
    post = _server_post(s)
    # nova-api checks the image with glance and writes the build request while serving the POST
    image_get = s.calls(client="nova-api", server="glance", protocol="http", request="GET /v2/images/",
                        parent=post["id"])
    assert image_get and image_get[0]["response"].startswith("200"), s.below(post)
    assert s.calls(client="nova-api", server="nova_api DB", protocol="mysql", parent=post["id"])
    # the scheduler asks placement for candidates and claims the allocation for the new server
    candidates = s.one(client="nova-scheduler", server="placement", protocol="http",
                       request="GET /allocation_candidates")
    assert candidates["response"].startswith("200") and post["start"] < candidates["start"], candidates
    claim = s.one(client="nova-scheduler", server="placement", protocol="http",
                  request=f"PUT /allocations/{facts['server_id']}")
    assert claim["response"].startswith("204") and candidates["end"] <= claim["start"], claim
    # the client polls the server until it is ACTIVE
    polls = s.calls(client="OpenStackClient", server="nova-api", protocol="http",
                    request=f"GET /v2.1/servers/{facts['server_id']}")
    assert polls and all(p["response"].startswith("200") for p in polls) and post["end"] <= polls[0]["start"], polls
    _assert_named(s, s.below(post))


def test_server_create_rpc(recordings):
    _assert_rpc(recordings)
    stories, facts = recordings
    s = stories["server-create"]
    post = _server_post(s)
    user_token = post["tokens"][0]
    # nova-api casts the build to the conductor while serving the POST
    cast = s.one(client="nova-api", server="nova-conductor", protocol="rpc",
                 request="cast schedule_and_build_instances")
    assert cast["parent"] == post["id"] and cast["response"] == "", cast
    assert (cast["exchange"], cast["routing_key"], cast["delivered"], _via(cast)) == (
        "nova", "conductor", 1, BROKER), cast
    assert user_token in cast["tokens"], "the user's token travels in the RPC context"
    # the conductor calls the scheduler, which asks placement
    call = s.one(client="nova-conductor", server="nova-scheduler", protocol="rpc", request="call select_destinations")
    assert call["parent"] == cast["id"] and call["response"].startswith("result"), call
    assert (call["exchange"], call["routing_key"], call["delivered"], _via(call)) == (
        "nova", "scheduler", 1, BROKER), call
    candidates = s.one(client="nova-scheduler", server="placement", protocol="http",
                       request="GET /allocation_candidates")
    assert candidates["parent"] == call["id"], (candidates, call)
    claim = s.one(client="nova-scheduler", server="placement", protocol="http",
                  request=f"PUT /allocations/{facts['server_id']}")
    assert claim["parent"] == call["id"]
    assert cast["start"] <= call["start"] <= candidates["start"] and candidates["end"] <= call["end"]
    # then casts the build to the compute host, which reports back to the conductor and the schedulers
    build = s.one(client="nova-conductor", server="nova-compute", protocol="rpc", request="cast build_and_run_instance")
    assert build["parent"] == cast["id"] and build["response"] == "" and call["end"] <= build["start"], build
    assert (build["routing_key"], build["delivered"]) == ("compute.controller", 1), build
    saves = s.calls(client="nova-compute", server="nova-conductor", protocol="rpc",
                    request="call object_action (Instance.save)", parent=build["id"])
    assert saves and all(p["response"].startswith("result") for p in saves), saves
    fanout = s.one(client="nova-compute", protocol="rpc", request="fanout update_instance_info")
    assert fanout["server"] == "nova-scheduler" and fanout["parent"] == build["id"] and fanout["delivered"] >= 1, fanout
    assert fanout["exchange"] == "scheduler_fanout" and fanout["response"] == "", fanout
    for p in (cast, call, build, *saves, fanout):
        assert user_token in p["tokens"], p
    _assert_named(s, s.below(post))


# ---------------------------------------------------------------- server delete

def test_server_delete(recordings):
    stories, facts = recordings
    s = stories["server-delete"]
    assert facts["server_after_delete"] != "0", "the server is gone"
    delete = s.one(client="OpenStackClient", server="nova-api", protocol="http",
                   request=f"DELETE /v2.1/servers/{facts['server_id']}")
    assert delete["response"].startswith("204"), delete
    polls = s.calls(client="OpenStackClient", server="nova-api", protocol="http",
                    request=f"GET /v2.1/servers/{facts['server_id']}")
    assert polls and polls[-1]["response"].startswith("404") and delete["end"] <= polls[-1]["start"], polls
    # nova-compute gives the server's allocation back to placement
    release = s.one(client="nova-compute", server="placement", protocol="http",
                    request=f"DELETE /allocations/{facts['server_id']}")
    assert release["response"].startswith("204"), release
    _assert_named(s, s.below(delete))


def test_server_delete_rpc(recordings):
    _assert_rpc(recordings)
    stories, facts = recordings
    s = stories["server-delete"]
    delete = s.one(client="OpenStackClient", server="nova-api", protocol="http",
                   request=f"DELETE /v2.1/servers/{facts['server_id']}")
    cast = s.one(client="nova-api", server="nova-compute", protocol="rpc", request="cast terminate_instance")
    assert cast["parent"] == delete["id"] and cast["response"] == "", cast
    assert (cast["exchange"], cast["routing_key"], cast["delivered"], _via(cast)) == (
        "nova", "compute.controller", 1, BROKER)
    assert delete["tokens"][0] in cast["tokens"]
    release = s.one(client="nova-compute", server="placement", protocol="http",
                    request=f"DELETE /allocations/{facts['server_id']}")
    assert release["parent"] == cast["id"], release
    destroy = s.one(client="nova-compute", server="nova-conductor", protocol="rpc",
                    request="call object_action (Instance.destroy)")
    assert destroy["parent"] == cast["id"] and destroy["response"].startswith("result"), destroy
    fanout = s.one(client="nova-compute", protocol="rpc", request="fanout delete_instance_info")
    assert fanout["server"] == "nova-scheduler" and fanout["parent"] == cast["id"], fanout
    _assert_named(s, s.below(delete))


# ---------------------------------------------------------------- server create that fails: NoValidHost

def test_server_create_novalidhost(recordings):
    stories, facts = recordings
    s = stories["server-create-novalidhost"]
    assert facts["big_status"] == "ERROR" and "No valid host" in facts["big_fault"], facts
    post = _server_post(s)
    # the scheduler asks placement, gets no candidate, claims nothing
    candidates = s.one(client="nova-scheduler", server="placement", protocol="http",
                       request="GET /allocation_candidates")
    assert candidates["response"].startswith("200") and post["start"] < candidates["start"], candidates
    assert "MEMORY_MB%3A2097152" in candidates["request"], candidates
    assert not s.calls(client="nova-scheduler", server="placement", request=f"PUT /allocations/{facts['big_id']}")
    polls = s.calls(client="OpenStackClient", server="nova-api", protocol="http",
                    request=f"GET /v2.1/servers/{facts['big_id']}")
    assert polls and all(p["response"].startswith("200") for p in polls), polls
    _assert_named(s, s.below(post))


def test_server_create_novalidhost_rpc(recordings):
    _assert_rpc(recordings)
    s = recordings[0]["server-create-novalidhost"]
    post = _server_post(s)
    cast = s.one(client="nova-api", server="nova-conductor", protocol="rpc",
                 request="cast schedule_and_build_instances")
    assert cast["parent"] == post["id"] and cast["delivered"] == 1 and _via(cast) == BROKER, cast
    call = s.one(client="nova-conductor", server="nova-scheduler", protocol="rpc", request="call select_destinations")
    assert call["parent"] == cast["id"] and call["response"] == "failure NoValidHost", call
    candidates = s.one(client="nova-scheduler", server="placement", protocol="http",
                       request="GET /allocation_candidates")
    assert candidates["parent"] == call["id"]
    assert not s.calls(protocol="rpc", request="cast build_and_run_instance"), "no host: nothing to build"
    assert post["tokens"][0] in cast["tokens"] and post["tokens"][0] in call["tokens"]
    _assert_named(s, s.below(post))

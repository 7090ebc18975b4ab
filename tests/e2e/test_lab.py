"""End to end on the real OpenStack lab (tests/lab/): ``osflow record --render`` around real
``openstack`` commands, then the story ``osflow-post --format json`` tells, and the socket-owner
coverage record prints.

Runs only with ``OSFLOW_LAB=1`` and the lab up: ``tests/lab/run-e2e.sh`` does both (and takes the
lab down again).  The recordings run in this order, each depending on the state the previous one
left: cold (placement restarted, memcached flushed), warm, a memcached hit (the token of an earlier
request sent again within the cache's 300 s), ``openstack token issue``.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from lab_support import LAB, OPENSTACK, PASSWORD_VARS, RESOURCE_CLASS_LIST, STATE, Recording, _env, _osflow_record

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    if os.environ.get("OSFLOW_LAB") != "1":
        pytest.skip("end-to-end lab tests: run tests/lab/run-e2e.sh "
                    "(needs root; sets up the OpenStack lab, OSFLOW_LAB=1)")
    if not (STATE / "openrc").exists():
        pytest.fail(f"OSFLOW_LAB=1 but the lab is not up ({STATE / 'openrc'} missing): run tests/lab/up.sh")
    for url in ("http://controller:5000/v3", "http://controller:8778/"):
        r = subprocess.run(["timeout", "20", "curl", "-fsS", "-o", "/dev/null", url], capture_output=True, text=True)
        assert r.returncode == 0, f"the lab does not answer on {url}: {r.stderr}"
    return _env()


@pytest.fixture(scope="module")
def recordings(lab, tmp_path_factory):
    """The four recordings, in order (each depends on what the one before left in memcached)."""
    base = tmp_path_factory.mktemp("lab")
    record = _osflow_record()
    out: dict[str, Recording] = {}

    def run(name, command, env=lab):
        folder = base / name
        proc = subprocess.run([*record, "--render", "-o", str(folder), "--", *command], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name}: record exited {proc.returncode}\n{proc.stderr}"
        out[name] = Recording(name, folder, proc)

    cold = subprocess.run(["bash", str(LAB / "cold.sh")], capture_output=True, text=True, timeout=120)
    assert cold.returncode == 0, cold.stderr
    run("cold", ["timeout", "300", *RESOURCE_CLASS_LIST])
    run("warm", ["timeout", "300", *RESOURCE_CLASS_LIST])
    # a memcached hit: a token placement has validated and cached, sent again with admin_token
    token = subprocess.run(["timeout", "60", OPENSTACK, "token", "issue", "-f", "value", "-c", "id"], env=lab,
                           capture_output=True, text=True, timeout=120)
    assert token.returncode == 0, token.stderr
    hit_env = {k: v for k, v in lab.items() if k not in PASSWORD_VARS}
    admin_token = ["timeout", "300", OPENSTACK, "--os-auth-type", "admin_token", "--os-endpoint",
                   "http://controller:8778", "--os-token", token.stdout.strip(), *RESOURCE_CLASS_LIST[1:]]
    prime = subprocess.run(admin_token, env=hit_env, capture_output=True, text=True, timeout=320)
    assert prime.returncode == 0, prime.stderr
    run("hit", admin_token, env=hit_env)
    run("token-issue", ["timeout", "300", OPENSTACK, "token", "issue"])
    return out


NAMES = ("cold", "warm", "hit", "token-issue")


@pytest.mark.parametrize("name", NAMES)
def test_files_and_coverage(recordings, name):
    r = recordings[name]
    assert oct(r.dir.stat().st_mode & 0o777) == "0o700"
    for f in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json", "flow.md"):
        assert oct((r.dir / f).stat().st_mode & 0o777) == "0o600", f
    assert r.meta["exit_code"] == 0 and r.meta["start"] <= r.meta["end"]
    flow = (r.dir / "flow.md").read_text()
    assert "```mermaid" in flow and "OpenStackClient" in flow
    assert r.coverage is not None, r.proc.stderr
    percent, owned, total = r.coverage
    assert total > 0 and r.meta["coverage"]["owned"] == owned and r.meta["coverage"]["total"] == total
    # every end of every call in the story has its owner (the socket log caught it) ...
    story_ends = {a for p in r.pairs for a in (p["client_address"], p["server_address"])}
    unowned = r.meta["coverage"]["without_owner"]
    assert not [u for u in unowned if u.split(" -> ")[0] in story_ends], unowned
    # ... and so has every other end on the wire: the goal is 100%
    assert (owned, percent) == (total, 100.0), f"{name}: {r.coverage}, without owner: {unowned}"
    # ends are named from the socket table, not guessed
    for p in r.calls(client="OpenStackClient"):
        assert "ss " in p["client_evidence"], p


def _token_post(r: Recording, client: str):
    return [p for p in r.calls(client=client, server="keystone", protocol="http")
            if p["request"].startswith("POST /v3/auth/tokens")]


def _the_get(r: Recording):
    gets = [p for p in r.calls(client="OpenStackClient", server="placement", protocol="http")
            if p["request"].startswith("GET /resource_classes")]
    assert len(gets) == 1, r.pairs
    assert gets[0]["response"] == "200 OK"
    return gets[0]


def _op(call) -> tuple[str, str, str]:
    """(client, server, what): ``get``/``set`` for memcached, ``METHOD /path`` for HTTP."""
    client, server, request, _ = call
    words = request.split(" ")
    return client, server, (words[0] if server == "memcached" else " ".join(words[:2]))


def test_cold(recordings):
    r = recordings["cold"]
    (post,) = _token_post(r, "OpenStackClient")
    get = _the_get(r)
    assert post["response"].startswith("201") and post["end"] <= get["start"]
    assert r.calls(client="keystone", server="keystone DB", protocol="mysql", parent=post["id"])
    user_token = get["tokens"][0]
    story = r.story(get["id"])
    ops = [_op(x) for x in story]
    # placement misses the user's token in memcached, logs in itself, validates the token, stores it
    assert ops[0] == ("placement", "memcached", "get") and story[0][3] == "miss", story
    i_post = ops.index(("placement", "keystone", "POST /v3/auth/tokens"))
    i_validate = ops.index(("placement", "keystone", "GET /v3/auth/tokens"))
    i_set = ops.index(("placement", "memcached", "set"))
    assert 0 < i_post < i_validate < i_set, story
    assert story[i_post][3].startswith("201") and story[i_validate][3].startswith("200") and story[i_set][3] == "STORED"
    validate = [p for p in r.calls(client="placement", server="keystone", parent=get["id"])
                if p["request"].startswith("GET /v3/auth/tokens")][0]
    assert user_token in validate["tokens"]
    own_login = [p for p in _token_post(r, "placement")][0]
    assert own_login["tokens"] and own_login["tokens"][0] != user_token
    # right after the restart placement opens its DB connection: the login is in the capture
    logins = [p for p in r.calls(client="placement", server="placement DB", protocol="mysql", parent=get["id"])
              if p["request"].startswith("login placement@placement")]
    assert logins and logins[0]["response"] == "OK"


def test_warm(recordings):
    r = recordings["warm"]
    (post,) = _token_post(r, "OpenStackClient")  # a new token for the client ...
    assert post["response"].startswith("201")
    get = _the_get(r)
    story = r.story(get["id"])
    ops = [_op(x) for x in story]
    # ... which placement has not cached: miss, validation with its own (cached) token, store
    assert ops == [
        ("placement", "memcached", "get"),
        ("placement", "keystone", "GET /v3/auth/tokens"),
        ("placement", "memcached", "set"),
    ], story
    assert [x[3] for x in story][0] == "miss" and story[1][3].startswith("200") and story[2][3] == "STORED"
    assert get["tokens"][0] in r.calls(client="placement", server="keystone")[0]["tokens"]
    assert not _token_post(r, "placement"), "a warm placement does not log in again"
    assert not [p for p in r.calls(client="placement", server="placement DB") if p["request"].startswith("login")]


def test_memcached_hit(recordings):
    r = recordings["hit"]
    get = _the_get(r)
    assert r.story(get["id"]) == [("placement", "memcached", r.story(get["id"])[0][2], "hit")], r.story(get["id"])
    assert r.story(get["id"])[0][2].startswith("get ")
    assert not r.calls(server="keystone"), "a cache hit never calls keystone"
    assert not r.calls(client="OpenStackClient", server="keystone")
    assert get["end"] - get["start"] < 1.0  # ~8 ms on the analysts' controller


def test_token_issue(recordings):
    r = recordings["token-issue"]
    (post,) = _token_post(r, "OpenStackClient")
    assert post["response"].startswith("201") and post["tokens"]
    assert r.calls(client="keystone", server="keystone DB", protocol="mysql", parent=post["id"])
    assert not r.calls(client="OpenStackClient", server="placement")

"""The seed's command on the lab's devstack and TLS shapes tells the install guide's story (real captures).

tests/fixtures/devstack/ and tests/fixtures/tls/ (see their READMEs): ``openstack
--os-placement-api-version 1.2 resource class list --sort-column name`` recorded cold with ``osflow
record`` in the lab's devstack shape (keystone and placement each under a uwsgi of its own behind one
Apache on port 80, by path prefix over unix sockets) and its TLS shape (HAProxy terminating TLS on
127.0.0.2:13000 and :13778 in front of them, the client's TLS keys in ``tls-keys.log``).  Each must
tell the story of the same command on the install guide's lab
(tests/fixtures/captures/resource-class-list-cold), as :mod:`shapes` normalises it: the same
participants, the same nesting, the same operations; the web server and the proxy only hops
(``via``) — with the socket tables, and from the capture and ``meta.json`` alone with ≥ 95% of the
ends named.  Without its key log the TLS capture gives one opaque exchange per TLS connection and
one line each on stderr, exit status 0.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess

import pytest

from osflow_wireshark import needs_tshark
from shapes import difference, story
from support import CAPTURES, FIXTURES, check_golden, run_post, tshark

pytestmark = pytest.mark.tshark

PLAIN = CAPTURES / "resource-class-list-cold"
DEVSTACK = FIXTURES / "devstack" / "resource-class-list-cold"
TLS = FIXTURES / "tls" / "resource-class-list-cold"
SHAPES = {"devstack": (DEVSTACK, "apache2"), "tls": (TLS, "haproxy")}
UNNAMED = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d+")  # an end osflow could not name
OPAQUE = re.compile(r"^osflow-post: warning: connection 127\.0\.0\.1:\d+ → 127\.0\.0\.2:(13000|13778) is TLS; "
                    r"no key for it in the key log: drawn as an opaque TLS exchange$")


def _json(argv: list[str]) -> tuple[list[dict], str]:
    status, out, err = run_post([*argv, "--format", "json"])
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()], err


@functools.cache
def _plain() -> frozenset:
    pairs, _ = _json(["-r", str(PLAIN / "capture.pcapng"), "--ss", str(PLAIN / "ss.txt"),
                      "--ps", str(PLAIN / "ps.txt")])
    return frozenset(story(pairs))


def _argv(shape: str, tables: bool) -> list[str]:
    d, _ = SHAPES[shape]
    if tables:
        return ["-r", str(d)]  # the folder: capture, ss.txt, ps.txt, meta.json (and the key log)
    keylog = ["--tls-keylog", str(d / "tls-keys.log")] if (d / "tls-keys.log").exists() else []
    return ["-r", str(d / "capture.pcapng"), "--meta", str(d / "meta.json"), *keylog]


def test_the_install_guide_s_story_is_the_one_to_tell():
    """What the comparison compares: the client's three calls, keystone's queries under its token
    request, and under the listing placement's cache look-up, its own login to keystone (keystone's
    queries under it), the token's validation, the cache store and its query."""
    plain = _plain()
    root = ("OpenStackClient", "placement", "GET /resource_classes")
    assert {c[0] for c in plain} == {("OpenStackClient", "keystone", "GET /v3"),
                                     ("OpenStackClient", "keystone", "POST /v3/auth/tokens"), root}
    assert {c[1] for c in plain if c[0] == root and len(c) == 2} == {
        ("placement", "memcached", "get"), ("placement", "memcached", "set"),
        ("placement", "keystone", "GET /v3"), ("placement", "keystone", "POST /v3/auth/tokens"),
        ("placement", "keystone", "GET /v3/auth/tokens"), ("placement", "placement DB", "mysql")}
    assert (root, ("placement", "keystone", "GET /v3/auth/tokens"), ("keystone", "keystone DB", "mysql")) in plain


@pytest.mark.parametrize("tables", [True, False], ids=["tables", "capture-and-meta"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_seed_tells_the_install_guide_s_story(shape, tables):
    pairs, err = _json(_argv(shape, tables))
    got = story(pairs)
    assert got == _plain(), difference(got, set(_plain()))
    assert "TLS" not in err, err
    # the web server (devstack's Apache) or the proxy (HAProxy) is a hop of every HTTP request of the
    # story, never one of its participants
    _, hop = SHAPES[shape]
    http = [p for p in pairs if p["protocol"] == "http" and not p["background"]]
    front = [p for p in http if p["client"] == "OpenStackClient"]
    assert front and all(p.get("via") == hop for p in front), front
    if shape == "devstack":  # placement's token checks go through Apache too
        assert all(p.get("via") == hop and p["via_address"].endswith(":80") for p in http), http
    assert not [p for p in pairs if hop in (p["client"], p["server"]) and not p["background"]]
    ends = [e for p in pairs for e in (p["client"], p["server"])]
    unnamed = [e for e in ends if UNNAMED.match(e)]
    assert len(unnamed) <= 0.05 * len(ends), unnamed


def test_devstack_s_services_are_their_uwsgi_processes():
    """With the process table, the service behind each prefix is its uwsgi: devstack's ``uwsgi
    --procname-prefix NAME --ini …``, which names its processes ``NAMEuWSGI master``, ``NAMEuWSGI
    worker 1`` (``ss -p`` says ``uwsgi``).  Placement's own calls are its worker's, and the requests
    Apache sent over the unix socket no capture shows are served by the service's uwsgi."""
    pairs, _ = _json(["-r", str(DEVSTACK)])
    served = {p["server"]: p["server_evidence"] for p in pairs if p["client"] == "OpenStackClient"}
    assert "served by ps ps.txt:" in served["keystone"] and "'keystoneuWSGI master'" in served["keystone"]
    assert "served by ps ps.txt:" in served["placement"] and "'placementuWSGI master'" in served["placement"]
    own = [p for p in pairs if p["client"] == "placement"]
    assert own and all(re.match(r"ss ss\.txt:\d+ pid \d+ -> ps ps\.txt:\d+ 'placementuWSGI worker 1'",
                                p["client_evidence"]) for p in own), [p["client_evidence"] for p in own]
    keystone = [p for p in pairs if p["client"] == "keystone"]
    assert keystone and all("keystoneuWSGI worker" in p["client_evidence"] for p in keystone)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("fmt", ["timeline", "json"])
def test_golden(shape, fmt):
    status, out, err = run_post([*_argv(shape, True), "--format", fmt])
    assert status == 0, err
    check_golden(f"shapes/{shape}-seed.{ {'timeline': 'txt', 'json': 'jsonl'}[fmt] }", out)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_golden_show_proxies(shape):
    status, out, err = run_post([*_argv(shape, True), "--format", "timeline", "--show-proxies"])
    assert status == 0, err
    check_golden(f"shapes/{shape}-seed-show-proxies.txt", out)


def _client_hellos(capture) -> set[str]:
    done = subprocess.run([tshark(), "-r", str(capture), "-Y", "tls.handshake.type == 1", "-T", "fields", "-e",
                           "tcp.stream"], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_tls_without_its_key_log_is_opaque_and_said_once_per_connection(tmp_path):
    folder = tmp_path / "rec"
    shutil.copytree(TLS, folder)
    (folder / "tls-keys.log").unlink()
    status, out, err = run_post(["-r", str(folder), "--format", "json"])
    assert status == 0, err
    pairs = [json.loads(line) for line in out.splitlines()]
    tls = [p for p in pairs if p["protocol"] == "tls"]
    connections = _client_hellos(TLS / "capture.pcapng")
    assert len(connections) >= 2 and len(tls) == len(connections), (connections, tls)
    assert all(p["client"] == "OpenStackClient" and p["request"] == "TLS session, not decrypted"
               and p["response"].startswith("opaque: no key in the key log") for p in tls), tls
    lines = err.splitlines()
    assert len(lines) == len(connections) and all(OPAQUE.match(line) for line in lines), err
    # one line per connection: each names a connection of its own
    assert len({line.split(" is TLS")[0] for line in lines}) == len(lines)
    check_golden("shapes/tls-seed-no-keys.txt", run_post(["-r", str(folder)])[1])


@needs_tshark
def test_the_plugin_names_devstack_s_services_by_prefix(tmp_path):
    from test_lua_plugin import golden_rows

    rows = golden_rows(DEVSTACK / "capture.pcapng", tmp_path)
    check_golden("lua/devstack-resource-class-list-cold.tsv", rows)
    # every request to Apache on port 80 named by its path's prefix, the client's and placement's
    requests = [(r[2], r[1], r[6]) for r in (line.split("\t") for line in rows.splitlines()[1:])
                if r[5] == "request" and r[1] in ("keystone", "placement")]
    assert requests == [
        ("openstackclient", "keystone", "keystone: GET /identity/v3"),
        ("openstackclient", "keystone", "keystone: POST /identity/v3/auth/tokens"),
        ("openstackclient", "placement", "placement: GET /placement/resource_classes (microversion 1.2)"),
        ("placement", "keystone", "keystone: GET /identity/v3"),
        ("placement", "keystone", "keystone: POST /identity/v3/auth/tokens"),
        ("placement", "keystone", "keystone: GET /identity/v3/auth/tokens"),
    ]

"""End to end on the lab's TLS shape (``OSFLOW_LAB_SHAPE=tls tests/lab/up.sh``): HAProxy terminating TLS
on 127.0.0.2:13000 (keystone) and :13778 (placement) with a certificate of the lab's own CA, plain HTTP
behind it; the catalog's public endpoints https, internal and admin plain (placement's token checks
stay plain); the client trusts the CA through ``OS_CACERT``.

The seed's command is recorded cold (``tests/lab/cold.sh``) with ``osflow record`` on the lab's ports
and HAProxy's (``--ports``: 13000 and 13778 are none of the port map's): the client writes its TLS
keys to the recording's ``tls-keys.log`` (``SSLKEYLOGFILE``), and ``osflow-post -r DIR`` decrypts
with it and tells the install-guide lab's story (tests/fixtures/captures/resource-class-list-cold,
:mod:`shapes`), HAProxy only a hop; without the key log, each of the client's TLS connections is one
opaque exchange and one line on stderr, exit status 0.

Runs only with ``OSFLOW_LAB=1`` and ``OSFLOW_LAB_SHAPE=tls``: ``tests/lab/run-e2e.sh`` does both.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from lab_support import COVERAGE
from shape_support import UNNAMED, json_pairs, plain_story, record_seed_cold, shape_env

from shapes import difference, story

pytestmark = pytest.mark.lab

PUBLIC = "127.0.0.2"
KEYSTONE = f"https://{PUBLIC}:13000/v3"
PORTS = "3306,5000,8778,11211,13000,13778"
OPAQUE = re.compile(r"^osflow[- ]post: warning: connection 127\.0\.0\.1:\d+ → 127\.0\.0\.2:(13000|13778) is TLS; "
                    r"no key for it in the key log: drawn as an opaque TLS exchange$")


@pytest.fixture(scope="module")
def tls_lab():
    env = shape_env("tls", KEYSTONE)
    assert env.get("OS_CACERT"), "the lab's openrc gives the client no CA (OS_CACERT)"
    r = subprocess.run(["timeout", "20", "curl", "-fsS", "--cacert", env["OS_CACERT"], "-o", "/dev/null", KEYSTONE],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"HAProxy does not answer on {KEYSTONE}: {r.stderr}"
    return env


@pytest.fixture(scope="module")
def seed(tls_lab, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls") / "seed"
    return folder, record_seed_cold(tls_lab, folder, "--ports", PORTS)


def _client_hellos(capture) -> int:
    r = subprocess.run(["tshark", "-r", str(capture), "-Y", "tls.handshake.type == 1", "-T", "fields", "-e",
                        "tcp.stream"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return len(set(r.stdout.split()))


def test_recorded_with_the_client_s_tls_keys(seed):
    folder, proc = seed
    for f in ("capture.pcapng", "ss.txt", "ps.txt", "meta.json", "tls-keys.log", "flow.md"):
        assert (folder / f).exists(), f
    assert oct((folder / "tls-keys.log").stat().st_mode & 0o777) == "0o600"
    assert (folder / "tls-keys.log").read_text().strip(), "the client wrote no TLS key"
    m = COVERAGE.search(proc.stderr)
    assert m and float(m.group(1)) >= 90.0, proc.stderr


def test_decrypted_the_seed_tells_the_install_guide_s_story(seed):
    folder, _ = seed
    pairs, err = json_pairs(["-r", str(folder)])
    assert "TLS" not in err, err
    got, want = story(pairs), plain_story()
    assert got == want, difference(got, want)
    # the client's requests reached HAProxy on the public address: a hop, not a participant
    front = [p for p in pairs if p["client"] == "OpenStackClient"]
    assert front and all(p.get("via") == "haproxy" and p["via_address"].startswith(f"{PUBLIC}:") for p in front)
    assert not [p for p in pairs if "haproxy" in (p["client"], p["server"]) and not p["background"]]


def test_named_from_the_capture_meta_and_key_log_alone(seed):
    folder, _ = seed
    pairs, _ = json_pairs(["-r", str(folder / "capture.pcapng"), "--meta", str(folder / "meta.json"),
                           "--tls-keylog", str(folder / "tls-keys.log")])
    ends = [e for p in pairs for e in (p["client"], p["server"])]
    unnamed = [e for e in ends if UNNAMED.match(e)]
    assert ends and len(unnamed) <= 0.05 * len(ends), unnamed
    got, want = story(pairs), plain_story()
    assert got == want, difference(got, want)


def test_without_the_key_log_one_opaque_exchange_and_one_line_per_connection(seed, tmp_path):
    folder, _ = seed
    bare = tmp_path / "no-keys"
    shutil.copytree(folder, bare)
    (bare / "tls-keys.log").unlink()
    pairs, err = json_pairs(["-r", str(bare)])
    tls = [p for p in pairs if p["protocol"] == "tls"]
    connections = _client_hellos(folder / "capture.pcapng")
    assert connections >= 2 and len(tls) == connections, (connections, tls)
    assert all(p["client"] == "OpenStackClient" and p["request"] == "TLS session, not decrypted" for p in tls), tls
    lines = err.splitlines()
    assert len(lines) == connections and all(OPAQUE.match(line) for line in lines), err

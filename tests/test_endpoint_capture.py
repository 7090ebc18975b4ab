"""The OpenStack client through a web server with path prefixes, over HTTP and TLS (real captures).

tests/fixtures/endpoints/ (see its README): a real ``openstack resource class list`` recorded with
``osflow record`` against a stand-in server that answers as devstack's Apache does, under
``/identity`` and ``/placement``, with a keystone catalog; once over HTTP, once over TLS with the
key log the client wrote because ``osflow record`` set ``SSLKEYLOGFILE``.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from osflow_wireshark import fields, needs_tshark
from support import FIXTURES, check_golden, pdml_bytes, run_post

pytestmark = pytest.mark.tshark

HTTP = FIXTURES / "endpoints" / "openstack-http-prefixes"
HTTPS = FIXTURES / "endpoints" / "openstack-https"
STORY = [("OpenStackClient", "keystone", "GET /identity/v3"),
         ("OpenStackClient", "keystone", "POST /identity/v3/auth/tokens"),
         ("OpenStackClient", "placement", "GET /placement/resource_classes")]
OPAQUE = re.compile(r"^osflow-post: warning: connection 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+ is TLS; no key for it "
                    r"in the key log: drawn as an opaque TLS exchange$")


def _json(argv: list[str]) -> tuple[list[dict], str]:
    status, out, err = run_post([*argv, "--format", "json"])
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def _story(pairs: list[dict]) -> list[tuple[str, str, str]]:
    return [(p["client"], p["server"], p["request"]) for p in pairs]


@pytest.mark.parametrize("argv", [["-r", str(HTTP)], ["-r", str(HTTP / "capture.pcapng")]],
                         ids=["folder", "capture-only"])
def test_each_request_is_drawn_to_the_service_its_path_names(argv):
    """With the tables (the folder) and without (the capture alone): the same story."""
    pairs, err = _json(argv)
    assert _story(pairs) == STORY
    assert all(p["via"] == "basehttp" for p in pairs)  # the stand-in's Server: BaseHTTP/0.6 Python/3.11.7
    assert len({p["server_stream"] for p in pairs if p["server"] == "keystone"}) == 1
    assert all(p["server_stream"] < 0 and p["stream"] == pairs[0]["stream"] for p in pairs)  # one connection
    # before the token response, devstack's prefix names keystone; placement, after it, the catalog
    assert "devstack's path prefix" in pairs[0]["server_evidence"]
    assert "the keystone catalog" in pairs[2]["server_evidence"]
    assert "TLS" not in err


def test_show_proxies_draws_the_hop_the_wire_does_not_show():
    pairs, _ = _json(["-r", str(HTTP), "--show-proxies"])
    fronts = [p for p in pairs if p["parent"] is None]
    hops = [p for p in pairs if p["parent"] is not None]
    assert [(p["client"], p["server"]) for p in fronts] == [("OpenStackClient", "basehttp")] * 3
    assert [(p["client"], p["server"]) for p in hops] == [("basehttp", "keystone"), ("basehttp", "keystone"),
                                                          ("basehttp", "placement")]
    assert [p["parent"] for p in hops] == [p["id"] for p in fronts]
    assert all(p["frames"] == f["frames"] for p, f in zip(hops, fronts, strict=True))


def test_endpoint_option_names_what_no_prefix_does():
    port = json.loads((HTTP / "meta.json").read_text())["ports"][0]
    pairs, _ = _json(["-r", str(HTTP), "--endpoint", f"http://127.0.0.1:{port}/identity=my-identity"])
    assert [p["server"] for p in pairs] == ["my-identity", "my-identity", "placement"]
    assert "--endpoint" in pairs[0]["server_evidence"]


@pytest.mark.parametrize("fmt", ["timeline", "json"])
def test_golden(fmt):
    status, out, err = run_post(["-r", str(HTTP), "--format", fmt])
    assert status == 0, err
    check_golden(f"endpoints/http-prefixes.{fmt}", out)


# --------------------------------------------------------------------------- TLS


def test_tls_with_the_recording_s_key_log_tells_the_same_story():
    pairs, err = _json(["-r", str(HTTPS)])
    assert _story(pairs) == STORY
    assert "TLS" not in err


def test_tls_key_log_given_explicitly(tmp_path):
    keylog = tmp_path / "keys.txt"
    shutil.copy(HTTPS / "tls-keys.log", keylog)
    pairs, _ = _json(["-r", str(HTTPS / "capture.pcapng"), "--tls-keylog", str(keylog)])
    assert _story(pairs) == STORY


@pytest.mark.parametrize("fmt", ["timeline", "json", "mermaid", "md", "html", "otlp", "stats"])
def test_the_key_log_s_contents_are_never_in_the_output(fmt):
    lines = [line.split() for line in (HTTPS / "tls-keys.log").read_text().splitlines() if line[:1] not in "#"]
    secrets = {secret for _label, _client_random, secret in lines}
    assert len(secrets) == 5 and all(len(s) >= 64 for s in secrets)  # TLS 1.3's traffic secrets, hex
    status, out, err = run_post(["-r", str(HTTPS), "--format", fmt, "--explain", "--show-secrets"])
    assert status == 0, err
    assert not [s for s in secrets if s in out or s in err]


def test_tls_without_its_keys_is_one_opaque_exchange_and_one_line(tmp_path):
    folder = tmp_path / "rec"
    shutil.copytree(HTTPS, folder)
    (folder / "tls-keys.log").unlink()
    status, out, err = run_post(["-r", str(folder), "--format", "json"])
    assert status == 0, err
    pairs = [json.loads(line) for line in out.splitlines()]
    assert [(p["client"], p["protocol"], p["request"], p["response"]) for p in pairs] == [
        ("OpenStackClient", "tls", "TLS session, not decrypted",
         "opaque: no key in the key log (6 + 8 frames of TLS records)")]
    assert pairs[0]["server"].startswith("127.0.0.1:") and "python3" in pairs[0]["server"]
    assert pairs[0]["end"] > pairs[0]["start"]  # from the client's first record to the server's last
    lines = err.splitlines()
    assert len(lines) == 1 and OPAQUE.match(lines[0]), err


def test_tls_without_keys_from_pdml_too():
    status, out, err = run_post(["--format", "timeline", "--ss", str(HTTPS / "ss.txt"), "--ps", str(HTTPS / "ps.txt")],
                                stdin=pdml_bytes("endpoints/openstack-https"))
    assert status == 0, err
    assert "TLS session, not decrypted" in out and "opaque: no key in the key log" in out
    assert len(err.splitlines()) == 1 and OPAQUE.match(err.splitlines()[0]), err


def test_golden_tls():
    tables = ["--ss", str(HTTPS / "ss.txt"), "--ps", str(HTTPS / "ps.txt"), "--meta", str(HTTPS / "meta.json")]
    capture = str(HTTPS / "capture.pcapng")
    for name, argv in (("https", ["-r", str(HTTPS)]), ("https-no-keys", ["-r", capture, *tables])):
        status, out, err = run_post([*argv, "--format", "timeline"])
        assert status == 0, err
        check_golden(f"endpoints/{name}.timeline", out)


def test_tls_keylog_needs_a_capture_and_a_file(tmp_path):
    status, _, err = run_post(["--tls-keylog", str(HTTPS / "tls-keys.log")], stdin=b"")
    assert status != 0 and "--tls-keylog is for -r" in err
    status, _, err = run_post(["-r", str(HTTPS), "--tls-keylog", str(tmp_path / "none.log")])
    assert status != 0 and "expected a TLS key log file" in err and "Traceback" not in err


# --------------------------------------------------------------------------- the Wireshark plugin


@needs_tshark
def test_the_plugin_names_requests_and_responses_by_their_path(tmp_path):
    rows = fields(HTTP / "capture.pcapng", ["frame.number", "http.request.uri", "http.response.code",
                                            "osflow.service", "osflow.direction"], tmp_path, display_filter="http")
    assert [(uri, code, service, d) for _, uri, code, service, d in rows] == [
        ("/identity/v3", "", "keystone", "request"), ("", "200", "keystone", "response"),
        ("/identity/v3/auth/tokens", "", "keystone", "request"), ("", "201", "keystone", "response"),
        ("/placement/resource_classes", "", "placement", "request"), ("", "200", "placement", "response")]


@needs_tshark
def test_the_plugin_names_decrypted_requests_with_the_key_log(tmp_path):
    """As README says: Wireshark given the recording's key log (tls.keylog_file) shows the HTTP inside
    and the plugin names it by path; without it, no HTTP and nothing named."""
    names = ["frame.number", "http.request.uri", "osflow.service"]
    keylog = ["-o", f"tls.keylog_file:{HTTPS / 'tls-keys.log'}"]
    rows = fields(HTTPS / "capture.pcapng", names, tmp_path, display_filter="http.request", extra=keylog)
    assert [(uri, service) for _, uri, service in rows] == [
        ("/identity/v3", "keystone"), ("/identity/v3/auth/tokens", "keystone"),
        ("/placement/resource_classes", "placement")]
    assert fields(HTTPS / "capture.pcapng", names, tmp_path, display_filter="http || osflow") == []


def test_a_tls_session_a_protocol_began_is_that_protocol_s():
    """MySQL's SSL request starts TLS on its own connection: MySQL's module draws that session (once),
    and nothing is said about a key (tests/fixtures/captures-zeek/mysql-tls)."""
    pairs, err = _json(["-r", str(FIXTURES / "captures-zeek" / "mysql-tls" / "capture.pcapng"), "--all"])
    assert [(p["protocol"], p["request"]) for p in pairs] == [("mysql", "TLS session (login and queries encrypted)")]
    assert "TLS" not in err

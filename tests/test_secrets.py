"""Secrets in the process table and meta.json (command lines) never reach the output unless --show-secrets.

The tables are the real ones of the lab-compressed recording, with secrets put into the command lines of
the processes that own its sockets, as ``ps`` shows them when a service is started with them.
"""

from __future__ import annotations

import json
import shutil

import pytest

from osflow.errors import ExitStatus
from osflow.redact import command_line
from support import case_dir, run_post

CASE = "captures-compute/lab-compressed"
#: what each socket owner's command line gets, right after its program
INJECTED = {
    "/usr/bin/nova-conductor ": "--transport-url rabbit://nova:S3cretRabbit@ctl:5672/ ",
    "/usr/bin/nova-scheduler ": "--os-password S3cretScheduler ",
    "/usr/bin/uwsgi_python311 ": "--connection=mysql+pymysql://nova:S3cretMysql@db/nova --password=S3cretPw ",
    "/osflow-lab/nova-compute ": "--os-token gAAAAABS3cretTokenS3cretTokenS3cretToken ",
}
SECRETS = ("S3cret",)
FORMATS = ("timeline", "md", "mermaid", "json", "otlp", "html", "stats")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    d = tmp_path_factory.mktemp("secrets")
    src = case_dir(CASE)
    shutil.copy(src / "capture.pcapng", d / "capture.pcapng")
    shutil.copy(src / "ss.txt", d / "ss.txt")
    ps = (src / "ps.txt").read_text()
    for program, secret in INJECTED.items():
        assert program in ps, program
        ps = ps.replace(program, program + secret)
    (d / "ps.txt").write_text(ps)
    meta = json.loads((src / "meta.json").read_text())
    meta["command"] = meta["command"][:1] + ["--os-password", "S3cretCommand"] + meta["command"][1:]
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def _run(d, *extra):
    return run_post(["-r", str(d / "capture.pcapng"), "--ss", str(d / "ss.txt"), "--ps", str(d / "ps.txt"), *extra])


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("explain", [False, True])
def test_no_secret_of_a_command_line_in_any_format(recording, fmt, explain):
    status, out, err = _run(recording, "--format", fmt, *(["--explain"] if explain else []))
    assert status == ExitStatus.OK, err
    assert "S3cret" not in out + err, [x for x in (out + err).splitlines() if "S3cret" in x][:3]


@pytest.mark.tshark
def test_the_evidence_still_names_the_owner_and_shows_where_a_secret_was(recording):
    status, out, err = _run(recording, "--format", "json")
    evidence = {json.loads(x)[k] for x in out.splitlines() for k in ("client_evidence", "server_evidence")}
    assert any("mysql+pymysql://nova:…" in e for e in evidence), evidence
    assert any("--os-password … --c" in e for e in evidence), evidence
    # redacted before the 60-character cut: a URL cut before its "@" would show its password
    assert any(e.endswith("nova-conductor --transport-url rab'") for e in evidence), evidence
    status, out, err = _run(recording, "--format", "timeline", "--explain")
    assert "--os-password …" in out, out[-3000:]


@pytest.mark.tshark
def test_show_secrets_shows_them(recording):
    status, out, err = _run(recording, "--format", "json", "--show-secrets")
    assert "--os-password S3cr" in out  # (cut at 60 characters)
    status, out, err = _run(recording, "--format", "timeline", "--explain", "--show-secrets")
    assert "S3cretCommand" in out


@pytest.mark.parametrize("text, hidden", [
    ("openstack --os-password S3cret token issue", "S3cret"),
    ("openstack --os-token gAAAAABl0ngT0kenValue0123456789 server list", "gAAAAABl0ngT0ken"),
    ("openstack --os-auth-url http://admin:PW0rd@ctl:5000/v3 server list", "PW0rd"),
    ("/usr/sbin/mariadbd --password=Pw0rd --user=mysql", "Pw0rd"),
    ("nova-conductor --transport_url rabbit://user:pw0rd@ctl:5672//", "pw0rd"),
    ("glance-api connection=mysql+pymysql://glance:Gl4nce@127.0.0.1/glance", "Gl4nce"),
    ("some-tool 'Server=db;Uid=sa;Password=Pa55;'", "Pa55"),
    ("env OS_PASSWORD=Pa55 openstack server list", "Pa55"),
    ("mysql -uroot -pPa55 nova", "Pa55"),
    ("neutron-server --api-key=K3y --secret K3y2", "K3y"),
    ("keystone-manage bootstrap --bootstrap-password B00t", "B00t"),
    ("curl -H X-Auth-Token:gAAAAABl0ngT0kenValue0123456789 http://x", "gAAAAABl0ngT0ken"),
])
def test_command_line_redaction(text, hidden):
    shown = command_line(text)
    assert hidden not in shown, shown
    assert command_line(text, show_secrets=True) == text
    assert shown.split()[0] == text.split()[0]


def test_ordinary_command_lines_are_unchanged():
    for text in ("/usr/bin/python3 /usr/bin/nova-conductor --config-file=/etc/nova/nova.conf",
                 "(wsgi:placement-a -k start", "/usr/bin/memcached -u memcache -l 127.0.0.1 -p 11211 -m 64",
                 "openstack --os-auth-type admin_token --os-endpoint http://controller:8778 token issue",
                 "env -u OS_USERNAME -u OS_PASSWORD openstack server list"):
        assert command_line(text) == text

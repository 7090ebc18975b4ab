"""PDML from tshark 3.x and 4.x: osflow-post must tell the same story from both.

The 3.4 PDML is real output of Debian bullseye's tshark 3.4.10
(tests/fixtures/pdml/tshark-3.4/README.md says how it was made); the 4.x PDML is
made here by the installed tshark with the very same arguments.

What differs between the two versions in the fields osflow reads (found by
comparing them field by field):

* ``mysql.response_code`` and ``mysql.server_status``: 3.4 prints them at 32-bit
  width (``0x000000fe``, ``0x00000001``), 4.0 at the field's width (``0xfe``,
  ``0x0001``).  decode.py compares the response code as a number.
* 4.0 adds ``mysql.payload`` / ``mysql.dissector_incomplete`` to some replies;
  decode.py does not read them.
* The ``<pdml creator=...>`` attribute.  HTTP, memcache, TCP, IP and frame
  fields are identical.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import re
import subprocess

import pytest

from support import CASES, FIXTURES, GOLDEN, case_dir, run_post, tables_args, tshark

V34 = FIXTURES / "pdml" / "tshark-3.4"
#: fixture name -> the capture it was made from
PDML_34 = {
    "resource-class-list-cache-hit": case_dir("resource-class-list-cache-hit") / "capture.pcapng",
    "resource-class-list-cold-frames-1-60": V34 / "resource-class-list-cold-frames-1-60.pcapng",
}
#: the command the fixtures were made with (tshark 3.4.10), minus the binary and the file
TSHARK_ARGS = ("-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http", "-T", "pdml")



def pdml_34(name: str) -> bytes:
    return gzip.decompress((V34 / f"{name}.pdml.gz").read_bytes())


_installed: dict[str, bytes] = {}


def pdml_installed(name: str) -> bytes:
    """The installed tshark's PDML of the same capture, with the same arguments."""
    if name not in _installed:
        cmd = [tshark(), "-r", str(PDML_34[name]), *TSHARK_ARGS]
        _installed[name] = subprocess.run(cmd, check=True, capture_output=True, timeout=300).stdout
    return _installed[name]


def creator(pdml: bytes) -> str:
    m = re.search(rb'<pdml [^>]*creator="([^"]+)"', pdml[:2000])
    assert m is not None
    return m.group(1).decode()


def post(pdml: bytes, *argv: str) -> str:
    status, out, err = run_post(list(argv), stdin=pdml)
    assert status == 0, err
    assert out
    return out


@pytest.mark.parametrize("name", PDML_34)
def test_fixture_is_tshark_34(name):
    assert creator(pdml_34(name)) == "wireshark/3.4.10"


@pytest.mark.tshark
@pytest.mark.parametrize("fmt", ["json", "timeline", "mermaid"])
@pytest.mark.parametrize("name", PDML_34)
def test_same_output_from_34_and_installed_tshark(name, fmt):
    installed = pdml_installed(name)
    assert creator(installed) != creator(pdml_34(name))  # two versions are compared indeed
    args = ("--format", fmt, "--no-group") if fmt == "json" else ("--format", fmt, "--explain")
    assert post(pdml_34(name), *args) == post(installed, *args)


@pytest.mark.tshark
def test_same_output_with_tables():
    name = "resource-class-list-cache-hit"
    args = (*tables_args(name), "--format", "json")
    assert post(pdml_34(name), *args) == post(pdml_installed(name), *args)


def test_34_pdml_matches_the_golden_output():
    """The golden JSON of the cache-hit capture was made with tshark 4.0 (-r): 3.4's PDML gives it too."""
    name = "resource-class-list-cache-hit"
    out = post(pdml_34(name), *tables_args(name), "--format", "json")
    assert out == (GOLDEN / "post" / f"{name}.jsonl").read_text(encoding="utf-8")


def test_cold_frames_tell_the_start_of_the_story():
    """Frames 1-60 of the cold capture: the token request (cut before keystone answers) and keystone's DB."""
    out = post(pdml_34("resource-class-list-cold-frames-1-60"), "--format", "json")
    pairs = [json.loads(line) for line in out.splitlines()]
    assert [(p["client"], p["server"], p["request"], p["response"]) for p in pairs[:3]] == [
        ("OpenStackClient", "keystone", "GET /v3", "200 OK"),
        ("OpenStackClient", "keystone", "POST /v3/auth/tokens", None),
        ("keystone", "keystone DB", "SELECT 1", "1 row"),
    ]
    assert {p["protocol"] for p in pairs} == {"http", "mysql"}
    assert len(pairs) == 26


def test_mysql_response_code_width_of_34():
    """3.4 writes 0x000000fe where 4.x writes 0xfe: EOF packets are still found without ``mysql.eof``.

    SYNTHETIC variant: the real 3.4 packets with their ``mysql.eof`` fields taken out
    (dataclasses.replace), so that only the response code can say "EOF"."""
    from osflow.decode import Decoder
    from osflow.model import Layer
    from osflow.source import PdmlReader

    name = "resource-class-list-cache-hit"
    packets = list(PdmlReader(io.BytesIO(pdml_34(name)), name))
    codes = {v for p in packets for layer in p.layers for k, v in layer.fields if k == "mysql.response_code"}
    assert "0x000000fe" in codes and "0xfe" not in codes  # real 3.4 spelling

    def strip(layer: Layer) -> Layer:
        if layer.name != "mysql":
            return layer
        return Layer(layer.name, tuple((k, v) for k, v in layer.fields if k != "mysql.eof"))

    stripped = [dataclasses.replace(p, layers=tuple(strip(layer) for layer in p.layers)) for p in packets]
    assert stripped != packets  # there were mysql.eof fields to take out
    assert list(Decoder().decode(iter(stripped))) == list(Decoder().decode(iter(packets)))


#: a tshark 3.x to run osflow-post -r with (e.g. /tmp/tshark3/tshark34.sh of the fixtures' README); unset: skipped
TSHARK3 = os.environ.get("OSFLOW_TSHARK3")


@pytest.mark.skipif(not TSHARK3, reason="OSFLOW_TSHARK3 is not set (a tshark 3.x: see tests/fixtures/pdml/tshark-3.4)")
@pytest.mark.parametrize("case", CASES)
def test_r_with_tshark3_gives_the_golden_output(case, monkeypatch):
    """osflow-post -r (which asks tshark for fields, not PDML) run by tshark 3.x: the golden JSON of 4.0."""
    version = subprocess.run([TSHARK3, "--version"], capture_output=True, text=True, timeout=60).stdout
    assert version.startswith("TShark (Wireshark) 3."), version[:80]
    monkeypatch.setenv("TSHARK", TSHARK3)
    status, out, err = run_post(["-r", str(case_dir(case) / "capture.pcapng"), *tables_args(case), "--format", "json"])
    assert status == 0, err
    assert out == (GOLDEN / "post" / f"{case}.jsonl").read_text(encoding="utf-8")

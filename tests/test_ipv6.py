"""osflow-post on a real capture with IPv6 connections and UDP datagrams.

The capture is tests/fixtures/captures-other/ipv6-and-udp (its README says how it was made)."""

from __future__ import annotations

import json
import re

import pytest

from support import FIXTURES, post_cached

pytestmark = pytest.mark.tshark

CAPTURE = str(FIXTURES / "captures-other" / "ipv6-and-udp" / "capture.pcapng")
UDP_FRAMES = {13, 14, 15, 16}


def post(*argv: str) -> str:
    status, out, err = post_cached(("-r", CAPTURE, *argv))
    assert status == 0, err
    return out


def test_json_names_placement_and_keeps_ipv6_addresses():
    pairs = [json.loads(line) for line in post("--format", "json").splitlines()]
    assert [(p["request"], p["response"], p["server"], p["server_address"]) for p in pairs] == [
        ("GET /", "200 OK", "placement", "[::1]:8778"),
        ("GET /no-such-file", "404 File not found", "placement", "[::1]:8778"),
        ("GET /", "200 OK", "placement", "127.0.0.1:8778"),
    ]
    assert [p["server_evidence"] for p in pairs] == ["port 8778 (port map: placement)"] * 3
    assert [p["client_address"] for p in pairs] == ["[::1]:45718", "[::1]:45726", "127.0.0.1:55596"]
    assert [p["client"] for p in pairs] == [p["client_address"] for p in pairs]  # nothing else names them
    assert [p["stream"] for p in pairs] == [0, 1, 2]


def test_udp_is_ignored():
    pairs = [json.loads(line) for line in post("--format", "json", "--no-group").splitlines()]
    assert {p["protocol"] for p in pairs} == {"http"}
    assert not UDP_FRAMES & {f for p in pairs for f in p["frames"]}
    assert "5353" not in post("--explain")
    status, out, err = post_cached(("-r", CAPTURE, "--format", "json"))
    assert "5353" not in err and "udp" not in err.lower()


def test_explain_shows_ipv6_four_tuples():
    out = post("--explain")
    assert "[::1]:45718 → [::1]:8778" in out
    assert "[::1]:45726 → [::1]:8778" in out
    assert "127.0.0.1:55596 → 127.0.0.1:8778" in out
    assert not re.search(r"(?<!\[)::1:\d", out)  # never the ambiguous ::1:8778


@pytest.mark.parametrize("fmt", ["timeline", "mermaid"])
def test_other_formats(fmt):
    out = post("--format", fmt)
    assert "placement" in out
    if fmt == "mermaid":
        assert out.splitlines()[0] == "sequenceDiagram"
        assert "as [::1]:45718" in out

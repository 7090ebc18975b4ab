"""One port map: dissectors/osflow.lua must agree with osflow.portmap.SERVICES.

Two independent reads of the Lua side:
  * the table between ``-- BEGIN PORTMAP`` and ``-- END PORTMAP`` (key, label, ports,
    protocol, database), read with a strict regular expression (``osflow_wireshark.lua_entries``,
    as tests/test_shared_truth.py reads the plugin's other shared tables);
  * the default of the ``osflow.services`` preference as Wireshark itself reports it
    (``tshark -G defaultprefs`` with the plugin installed under a temporary HOME).
"""

from __future__ import annotations

import re

import pytest

from osflow import portmap
from osflow_wireshark import install_plugin_only, lua_entries, needs_tshark, tshark

ENTRY = (
    r'\s*\{\s*key\s*=\s*"(?P<key>[^"]+)",\s*label\s*=\s*"(?P<label>[^"]+)",\s*'
    r'ports\s*=\s*\{(?P<ports>[\d,\s]*)\},\s*protocol\s*=\s*"(?P<protocol>[^"]+)"'
    r'(?:,\s*database\s*=\s*"(?P<database>[^"]+)")?\s*\},\s*'
)


def lua_services() -> list[tuple]:
    out = []
    for e in lua_entries("PORTMAP", "SERVICES", ENTRY):
        ports = tuple(int(p) for p in re.findall(r"\d+", e["ports"]))
        out.append((e["key"], e["label"], ports, e["protocol"], e["database"]))
    return out


def python_services() -> list[tuple]:
    return [(s.key, s.label, tuple(s.ports), s.protocol, s.database) for s in portmap.SERVICES]


def test_lua_table_equals_python_services():
    lua, py = lua_services(), python_services()
    missing_in_lua = [s for s in py if s not in lua]
    missing_in_python = [s for s in lua if s not in py]
    assert missing_in_lua == [] and missing_in_python == []
    assert [s[0] for s in lua] == [s[0] for s in py], "same order, for readable diffs"


def test_no_port_claimed_twice():
    ports = [p for s in lua_services() for p in s[2]]
    assert len(ports) == len(set(ports))


@needs_tshark
def test_preference_default_as_wireshark_reads_it(tmp_path):
    install_plugin_only(tmp_path)
    prefs = tshark(["-G", "defaultprefs"], tmp_path, plugin=False).stdout
    m = re.search(r"^#osflow\.services: (.*)$", prefs, re.M)
    assert m, "osflow.services preference not registered (plugin not loaded?)"
    entries = dict(e.split("=", 1) for e in m.group(1).split(";"))
    from_lua = {k: tuple(int(p) for p in v.split(",")) for k, v in entries.items()}
    from_python = {s.key: tuple(s.ports) for s in portmap.SERVICES if s.ports}
    assert from_lua == from_python


@needs_tshark
def test_http_ports_registered_for_http(tmp_path):
    """Every HTTP port of the map is decoded as HTTP by the plugin (no -d needed)."""
    install_plugin_only(tmp_path)
    table = tshark(["-G", "decodes"], tmp_path, plugin=False).stdout
    registered = {int(m.group(1)) for m in re.finditer(r"^tcp\.port\t(\d+)\thttp", table, re.M)}
    missing = set(portmap.HTTP_PORTS) - registered
    assert not missing, sorted(missing)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])

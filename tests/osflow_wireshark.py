"""Helpers shared by the Wireshark-side tests (plugin, profile, port map, shared truth)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from support import tshark as tshark_for_tests

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "dissectors" / "osflow.lua"
PROFILE = REPO / "profiles" / "OpenStack"
CAPTURES_DIR = REPO / "tests" / "fixtures" / "captures"
LAB_ERRORS = REPO / "tests" / "fixtures" / "lab-errors" / "capture.pcapng"
GOLDEN_DIR = REPO / "tests" / "golden" / "lua"

#: name -> capture file (the real OpenStack captures, then the lab error capture)
CAPTURES = {p.parent.name: p for p in sorted(CAPTURES_DIR.glob("*/capture.pcapng"))}
ALL_CAPTURES = dict(CAPTURES, **{"lab-errors": LAB_ERRORS})

TSHARK = tshark_for_tests()
needs_tshark = pytest.mark.tshark  # skipped by conftest.py's one rule when tshark is missing

#: tshark's own notice when run as root; not the plugin's output
ROOT_NOTICE = 'Running as user "root" and group "root". This could be dangerous.'


def clean_env(home: Path) -> dict[str, str]:
    """Environment with an empty Wireshark configuration under ``home``."""
    env = dict(os.environ)
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env.pop("WIRESHARK_CONFIG_DIR", None)
    env.pop("WIRESHARK_PLUGIN_DIR", None)
    env["LC_ALL"] = "C.UTF-8"
    return env


def tshark(args: list[str], home: Path, *, plugin: bool = True, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run tshark with an empty personal configuration (and -X lua_script:osflow.lua)."""
    assert TSHARK
    cmd = [TSHARK]
    if plugin:
        cmd += ["-X", f"lua_script:{PLUGIN}"]
    cmd += args
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=clean_env(home),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr}")
    return proc


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr without tshark's root notice."""
    return [line for line in proc.stderr.splitlines() if line.strip() and line.strip() != ROOT_NOTICE]


def install_plugin_only(home: Path) -> Path:
    """Copy the plugin where tshark under ``home`` looks for personal Lua plugins."""
    dest = home / ".local" / "lib" / "wireshark" / "plugins"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PLUGIN, dest / "osflow.lua")
    return dest / "osflow.lua"


def fields(capture: Path, names: list[str], home: Path, *, display_filter: Optional[str] = None,
           extra: Optional[list[str]] = None, plugin: bool = True) -> list[list[str]]:
    """tshark -T fields rows (all occurrences joined with ',')."""
    args = ["-r", str(capture), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
            "-E", "separator=/t"]
    for n in names:
        args += ["-e", n]
    if display_filter:
        args += ["-Y", display_filter]
    args += extra or []
    out = tshark(args, home, plugin=plugin).stdout
    return [line.split("\t") for line in out.splitlines()]


# --------------------------------------------------------------------------- the plugin's data blocks

_TABLE_START = re.compile(r"local ([A-Z][A-Z0-9_]*) = \{")


def lua_block(name: str) -> list[str]:
    """The lines between ``-- BEGIN <name>`` and ``-- END <name>`` in the plugin (exactly one such block)."""
    text = PLUGIN.read_text(encoding="utf-8")
    blocks = re.findall(rf"^-- BEGIN {name}\n(.*?)^-- END {name}$", text, re.S | re.M)
    assert len(blocks) == 1, f"{name}: {len(blocks)} BEGIN/END blocks in {PLUGIN.name}, want 1"
    assert len(re.findall(rf"^-- (?:BEGIN|END) {name}$", text, re.M)) == 2, f"{name}: stray marker"
    return blocks[0].splitlines()


def lua_tables(name: str) -> dict[str, list[str]]:
    """The tables of block ``name``: table name -> its entry lines, in order.

    A block holds only ``local NAME = {`` ... ``}`` tables (unindented), blank lines and
    ``--`` comments; a table's entry lines are returned as they are, comments left out.
    """
    tables: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    for line in lua_block(name):
        bare = line.strip()
        if current is None:
            if not bare or bare.startswith("--"):
                continue
            m = _TABLE_START.fullmatch(line)
            assert m, f"{name}: a line outside a table: {line!r}"
            assert m[1] not in tables, f"{name}: {m[1]} twice"
            current = tables[m[1]] = []
        elif line == "}":
            current = None
        elif bare and not bare.startswith("--"):
            current.append(line)
    assert current is None, f"{name}: a table is not closed"
    return tables


def lua_entries(block: str, table: str, entry: str) -> list[re.Match]:
    """Every entry line of ``table`` in ``block``, each matched in full by the regular expression ``entry``."""
    tables = lua_tables(block)
    assert table in tables, f"{block}: no table {table} (has {sorted(tables)})"
    out = []
    for line in tables[table]:
        m = re.fullmatch(entry, line)
        assert m, f"{block}/{table}: unreadable line {line!r}"
        out.append(m)
    return out


# --------------------------------------------------------------------------- synthetic captures


def write_tcp_capture(path: Path, segments: list[tuple[int, bytes]], *, first_client_port: int = 40000) -> Path:
    """A pcap of one TCP segment (PSH, ACK) per (server port, payload), 10.0.0.1 -> 10.0.0.2.

    Each segment is a connection of its own (client ports from ``first_client_port`` up),
    so nothing one segment says carries over to another.
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # pcap, Ethernet
    for i, (server_port, payload) in enumerate(segments):
        tcp = struct.pack("!HHIIBBHHH", first_client_port + i, server_port, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), i, 0x4000, 64, 6, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        frame = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00" + ip + tcp + payload
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path

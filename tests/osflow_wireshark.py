"""Helpers shared by the Wireshark-side tests (plugin, profile, port map, shared truth)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from support import tshark as tshark_for_tests

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "dissectors" / "osflow.lua"
#: the modules the plugin loads from the folder beside it
PLUGIN_MODULES = REPO / "dissectors" / "osflow"
PROFILE = REPO / "profiles" / "OpenStack"
CAPTURES_DIR = REPO / "tests" / "fixtures" / "captures"
LAB_ERRORS = REPO / "tests" / "fixtures" / "lab-errors" / "capture.pcapng"
GOLDEN_DIR = REPO / "tests" / "golden" / "lua"

#: name -> capture file (the real OpenStack captures, then the lab error capture)
CAPTURES = {p.parent.name: p for p in sorted(CAPTURES_DIR.glob("*/capture.pcapng"))}
ALL_CAPTURES = dict(CAPTURES, **{"lab-errors": LAB_ERRORS})
#: name -> capture file: the real compute captures (nova, glance, neutron, RPC over RabbitMQ)
COMPUTE_CAPTURES = {n: REPO / "tests" / "fixtures" / "captures-compute" / n / "capture.pcapng"
                    for n in ("server-create", "image-create", "network-create")}

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
    """Copy the plugin (osflow.lua and its modules, osflow/*.lua) where tshark under ``home``
    looks for personal Lua plugins."""
    dest = home / ".local" / "lib" / "wireshark" / "plugins"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PLUGIN, dest / "osflow.lua")
    shutil.copytree(PLUGIN_MODULES, dest / "osflow", dirs_exist_ok=True)
    return dest / "osflow.lua"


def fields(capture: Path, names: list[str], home: Path, *, display_filter: str | None = None,
           extra: list[str] | None = None, plugin: bool = True) -> list[list[str]]:
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
    current: list[str] | None = None
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


def write_tcp_conversations(path: Path, segments: list[tuple[int, bool, bytes]], *, server_port: int,
                            first_client_port: int = 41000) -> Path:
    """A pcap of TCP segments (PSH, ACK) in the order given: (connection, to the server?, payload).

    Connection ``n`` is 10.0.0.1:(first_client_port + n) <-> 10.0.0.2:server_port; sequence
    numbers run on per connection and direction, so tshark reassembles what spans segments.
    """
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # pcap, Ethernet
    seq: dict[tuple[int, bool], int] = {}
    client, server = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    for i, (conn, to_server, payload) in enumerate(segments):
        mine, theirs = seq.get((conn, to_server), 1), seq.get((conn, not to_server), 1)
        sport, dport = (first_client_port + conn, server_port) if to_server else (server_port, first_client_port + conn)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, mine, theirs, 5 << 4, 0x18, 65535, 0, 0)
        src, dst = (client, server) if to_server else (server, client)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), i & 0xFFFF, 0x4000, 64, 6, 0,
                         src, dst)
        mac_c, mac_s = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"
        frame = (mac_s + mac_c if to_server else mac_c + mac_s) + b"\x08\x00" + ip + tcp + payload
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
        seq[(conn, to_server)] = mine + len(payload)
    path.write_bytes(b"".join(out))
    return path


# --------------------------------------------------------------------------- AMQP 0-9-1 frames

def amqp_shortstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def amqp_longstr(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


def amqp_table(items: dict[str, str]) -> bytes:
    """A field table of long strings (type S)."""
    return amqp_longstr(b"".join(amqp_shortstr(k) + b"S" + amqp_longstr(v.encode()) for k, v in items.items()))


def amqp_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack("!BHI", frame_type, channel, len(payload)) + payload + b"\xce"


def amqp_method(class_id: int, method_id: int, arguments: bytes = b"", channel: int = 1) -> bytes:
    return amqp_frame(1, channel, struct.pack("!HH", class_id, method_id) + arguments)


def amqp_publish(exchange: str, routing_key: str, channel: int = 1) -> bytes:
    return amqp_method(60, 40, b"\0\0" + amqp_shortstr(exchange) + amqp_shortstr(routing_key) + b"\0", channel)


def amqp_deliver(exchange: str, routing_key: str, channel: int = 1, tag: int = 1) -> bytes:
    args = amqp_shortstr("ctag") + struct.pack("!Q", tag) + b"\0" + amqp_shortstr(exchange) + amqp_shortstr(routing_key)
    return amqp_method(60, 60, args, channel)


def amqp_header(body_size: int, headers: dict[str, str] | None = None, channel: int = 1) -> bytes:
    """Content header: content-type, content-encoding (and headers when given)."""
    flags = 0xC000 | (0x2000 if headers is not None else 0)
    props = amqp_shortstr("application/json") + amqp_shortstr("utf-8")
    if headers is not None:
        props += amqp_table(headers)
    return amqp_frame(2, channel, struct.pack("!HHQH", 60, 0, body_size, flags) + props)


def amqp_message(method_frame: bytes, body: bytes, *, frame_max: int = 0, headers=None, channel: int = 1) -> bytes:
    """Method, content header and body frames (several when frame_max is given) of one message."""
    parts = [body[i:i + frame_max] for i in range(0, len(body), frame_max)] if frame_max else [body]
    return method_frame + amqp_header(len(body), headers, channel) + b"".join(amqp_frame(3, channel, p) for p in parts)


def oslo_body(message: dict) -> bytes:
    """The oslo.messaging 2.0 envelope: the message as a JSON string in JSON."""
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()

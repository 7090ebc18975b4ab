"""Helpers shared by the Wireshark-side tests (plugin, profile, port map)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "dissectors" / "osflow.lua"
PROFILE = REPO / "profiles" / "OpenStack"
CAPTURES_DIR = REPO / "tests" / "fixtures" / "captures"
LAB_ERRORS = REPO / "tests" / "fixtures" / "lab-errors" / "capture.pcapng"
GOLDEN_DIR = REPO / "tests" / "golden" / "lua"

#: name -> capture file (the real OpenStack captures, then the lab error capture)
CAPTURES = {p.parent.name: p for p in sorted(CAPTURES_DIR.glob("*/capture.pcapng"))}
ALL_CAPTURES = dict(CAPTURES, **{"lab-errors": LAB_ERRORS})

TSHARK = os.environ.get("OSFLOW_TSHARK") or shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")

#: tshark's own notice when run as root; not the plugin's output
ROOT_NOTICE = 'Running as user "root" and group "root". This could be dangerous.'

UPDATE_GOLDEN = os.environ.get("OSFLOW_UPDATE_GOLDEN") == "1"


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

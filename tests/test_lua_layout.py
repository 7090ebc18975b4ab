"""The plugin's layout: dissectors/osflow.lua registers, dissectors/osflow/*.lua are its modules.

Wireshark runs every ``.lua`` under its personal plugins folder, subfolders included, each on
its own (epan/wslua/init_wslua.c, ``lua_load_plugins``): the modules must do nothing when run
that way; osflow.lua loads them from the folder beside it, wherever it was loaded from.
"""

from __future__ import annotations

import re
import shutil

from osflow_wireshark import CAPTURES, PLUGIN, PLUGIN_MODULES, fields, needs_tshark, stderr_lines, tshark

pytestmark = needs_tshark

CACHE_HIT = CAPTURES["resource-class-list-cache-hit"]


def _plugins_dir(home):
    d = home / ".local" / "lib" / "wireshark" / "plugins"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_modules_alone_register_and_print_nothing(tmp_path):
    """The modules without osflow.lua, where Wireshark finds plugins: each is loaded and does nothing."""
    shutil.copytree(PLUGIN_MODULES, _plugins_dir(tmp_path) / "osflow")
    listed = tshark(["-G", "plugins"], tmp_path, plugin=False).stdout
    modules = sorted(p.name for p in PLUGIN_MODULES.glob("*.lua"))
    assert {"amqp.lua", "json.lua", "sha256.lua", "resp.lua"} <= set(modules)
    assert all(re.search(rf"^{re.escape(m)}\t.*lua script", listed, re.M) for m in modules), listed
    proc = tshark(["-r", str(CACHE_HIT), "-q"], tmp_path, plugin=False)
    assert proc.stdout == "" and stderr_lines(proc) == []
    protocols = tshark(["-G", "protocols"], tmp_path, plugin=False).stdout
    assert not re.search(r"\tosflow$", protocols, re.M)


def test_installed_plugin_with_its_modules_works_as_with_lua_script(tmp_path):
    plugins = _plugins_dir(tmp_path / "installed")
    shutil.copyfile(PLUGIN, plugins / "osflow.lua")
    shutil.copytree(PLUGIN_MODULES, plugins / "osflow")
    names = ["frame.number", "osflow.op", "osflow.token", "osflow.cache", "osflow.request_in"]
    installed = fields(CACHE_HIT, names, tmp_path / "installed", plugin=False)
    assert installed == fields(CACHE_HIT, names, tmp_path / "script")
    assert any(r[3] == "hit" for r in installed)


def test_plugin_loaded_by_a_relative_path_finds_its_modules(tmp_path):
    """-X lua_script:osflow.lua from its own folder (Wireshark gives it no folder then)."""
    import subprocess

    from osflow_wireshark import TSHARK, clean_env

    proc = subprocess.run([TSHARK, "-X", "lua_script:osflow.lua", "-r", str(CACHE_HIT), "-T", "fields",
                           "-e", "osflow.cache", "-Y", "osflow.cache"], cwd=PLUGIN.parent, capture_output=True,
                          text=True, env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["hit"]


def test_plugin_without_its_modules_says_which_is_missing(tmp_path):
    plugins = _plugins_dir(tmp_path)
    shutil.copyfile(PLUGIN, plugins / "osflow.lua")
    proc = tshark(["-r", str(CACHE_HIT), "-q"], tmp_path, plugin=False, check=False)
    assert "osflow.lua: its module osflow/util.lua is missing" in proc.stderr
    assert "osflow profile install" in proc.stderr
    for module in ("util.lua", "resp.lua"):   # the first one read, the last one
        shutil.rmtree(plugins / "osflow", ignore_errors=True)
        shutil.copytree(PLUGIN_MODULES, plugins / "osflow")
        (plugins / "osflow" / module).unlink()
        proc = tshark(["-G", "protocols"], tmp_path, plugin=False, check=False)
        assert f"its module osflow/{module} is missing" in proc.stderr
        assert not re.search(r"\tosflow$", proc.stdout, re.M), "nothing half-registered"

"""The "OpenStack" Wireshark profile and ``osflow profile install|uninstall|zip``.

Every colour rule, saved filter and filter button compiles with tshark and matches
the frames it is meant for on the real captures (and, for errors, on the lab
error capture); the profile works with ``tshark -C OpenStack`` after install.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from osflow import portmap, profile
from osflow_wireshark import (
    ALL_CAPTURES,
    CAPTURES,
    COMPUTE_CAPTURES,
    LAB_ERRORS,
    PROFILE,
    amqp_message,
    amqp_publish,
    fields,
    needs_tshark,
    oslo_body,
    stderr_lines,
    tshark,
    write_tcp_capture,
)

COLD = CAPTURES["resource-class-list-cold"]


# --------------------------------------------------------------------------- file readers


def color_rules() -> list[tuple[str, str]]:
    """(name, filter) of every rule in colorfilters (format: @name@filter@[bg][fg])."""
    out = []
    for line in (PROFILE / "colorfilters").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^!?@([^@]+)@(.+)@\[(\d+),(\d+),(\d+)\]\[(\d+),(\d+),(\d+)\]$", line)
        assert m, f"bad colorfilters line: {line!r}"
        assert all(0 <= int(v) <= 65535 for v in m.groups()[2:])
        out.append((m.group(1), m.group(2)))
    return out


def dfilters() -> dict[str, str]:
    out = {}
    for line in (PROFILE / "dfilters").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r'^"([^"]+)"\s+(.+)$', line)
        assert m, f"bad dfilters line: {line!r}"
        out[m.group(1)] = m.group(2)
    return out


def _uat_fields(line: str) -> list[str]:
    """A UAT line: comma-separated quoted strings with \\xNN escapes."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
    assert ",".join(f'"{p}"' for p in parts) == line.strip(), f"bad UAT line: {line!r}"
    return [re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), p) for p in parts]


def buttons() -> dict[str, str]:
    out = {}
    for line in (PROFILE / "dfilter_buttons").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        enabled, label, expr, _comment = _uat_fields(line)
        assert enabled == "TRUE"
        out[label] = expr
    return out


def header_fields() -> list[str]:
    out = []
    for line in (PROFILE / "custom_http_header_fields").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _desc = _uat_fields(line)
            out.append(name)
    return out


# --------------------------------------------------------------------------- static checks


def test_profile_files_present():
    assert profile.profile_files() == sorted([
        "colorfilters", "custom_http_header_fields", "decode_as_entries", "dfilter_buttons", "dfilters",
        "preferences", "recent"])


def column_formats() -> list[str]:
    """Column formats of ``gui.column.format`` in the preferences (title, format pairs)."""
    text = (PROFILE / "preferences").read_text(encoding="utf-8")
    m = re.search(r"^gui\.column\.format:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    assert m
    return re.findall(r'"[^"]*",\s*"([^"]*)"', m.group(1))


def column_widths() -> list[tuple[str, int]]:
    """(format, pixel width) of ``column.width`` in the shipped recent file, as Wireshark 4.0 reads it."""
    text = (PROFILE / "recent").read_text(encoding="utf-8")
    m = re.search(r"^column\.width:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    assert m, "no column.width in recent"
    items = [i.strip().strip('"') for i in m.group(1).replace("\n", " ").split(",")]
    assert len(items) % 2 == 0
    return [(items[i], int(items[i + 1])) for i in range(0, len(items), 2)]


def test_recent_gives_every_column_a_width():
    """Wireshark 4.0 matches a width to a column by format, a custom column by its field
    alone (``%Cus:osflow.op``, not the ``%Cus:osflow.op:0:R`` of the preferences): a
    width whose format matches no column is silently ignored."""
    recent_formats = [f for f, _ in column_widths()]
    assert recent_formats == [re.sub(r"^(%Cus:[^:]+):.*$", r"\1", f) for f in column_formats()]
    widths = dict(column_widths())
    assert widths["%Cus:osflow.op"] >= 500 and widths["%Cus:osflow.flow"] >= 200
    assert widths["%Cus:osflow.service"] >= 80
    # nothing but column widths: the rest (panes, toolbars) stays Wireshark's default
    keys = re.findall(r"^([\w.]+):", (PROFILE / "recent").read_text(encoding="utf-8"), re.M)
    assert keys == ["column.width"]


def test_colour_rules_use_only_wireshark_fields():
    rules = color_rules()
    assert len(rules) >= 10
    for name, expr in rules:
        assert "osflow" not in expr, name


def test_buttons_and_dfilters_carry_the_same_filters():
    assert list(buttons()) == ["Keystone", "Placement", "Memcached", "MySQL", "RPC", "Tokens", "Errors"]
    assert sorted(buttons().values()) == sorted(dfilters().values())


def test_custom_header_fields():
    assert header_fields() == ["X-Auth-Token", "X-Subject-Token", "OpenStack-API-Version", "x-openstack-request-id"]


def test_decode_as_covers_the_http_ports_of_the_port_map():
    ports = [int(m) for m in re.findall(r"^decode_as_entry: tcp\.port,(\d+),\(none\),HTTP$",
                                        (PROFILE / "decode_as_entries").read_text(), re.M)]
    assert sorted(ports) == sorted(portmap.HTTP_PORTS)


def test_data_root_finds_the_shipped_files():
    root = profile.data_root()
    assert (root / "profiles" / "OpenStack" / "colorfilters").is_file()
    assert profile.plugin_source().read_text().startswith("--")


def test_package_data_carries_every_plugin_file():
    """A wheel holds what setup.cfg's package_data globs match under postproc/osflow (data/ links to
    the repository's folders): every file ``osflow profile install`` puts in place must match."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(Path(profile.__file__).resolve().parents[2] / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["osflow"].split(",")]
    package = Path(profile.__file__).parent
    shipped = {f.relative_to(package).as_posix() for pattern in patterns for f in package.glob(pattern)}
    wanted = {f"data/dissectors/{rel}" for rel in profile.plugin_files()}
    wanted |= {f"data/profiles/OpenStack/{rel}" for rel in profile.profile_files()}
    assert len(profile.plugin_files()) > 5
    assert wanted - shipped == set()


# --------------------------------------------------------------------------- with tshark


@needs_tshark
def test_every_expression_compiles_without_the_plugin(tmp_path):
    exprs = {f"colour rule {n}": e for n, e in color_rules()}
    exprs.update({f"dfilter {n}": e for n, e in dfilters().items()})
    exprs.update({f"button {n}": e for n, e in buttons().items()})
    capture = str(CAPTURES["resource-class-list-cache-hit"])
    combined = " || ".join(f"({e})" for e in exprs.values())
    proc = tshark(["-r", capture, "-Y", combined], tmp_path, plugin=False, check=False)
    if proc.returncode != 0:   # find the culprit(s)
        bad = [n for n, e in exprs.items()
               if tshark(["-r", capture, "-Y", e], tmp_path, plugin=False, check=False).returncode != 0]
        pytest.fail(f"do not compile: {bad}")
    assert proc.stdout.count("\n") == 23


def test_compile_check_can_fail(tmp_path):
    """The compile check above does catch a filter tshark rejects."""
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    proc = tshark(["-r", str(CAPTURES["resource-class-list-cache-hit"]), "-Y", "tcp.port == "],
                  tmp_path, plugin=False, check=False)
    assert proc.returncode != 0


def _install(home: Path, *extra: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    args = parser.parse_args(["install", "--config-dir", str(home / ".config" / "wireshark"),
                              "--plugin-dir", str(home / ".local" / "lib" / "wireshark" / "plugins"), *extra])
    out = io.StringIO()
    return profile.run(args, out=out), out.getvalue()


def _run(home: Path, *argv: str) -> tuple[int, str]:
    """``osflow profile ...`` with folders found by ``tshark -G folders`` under ``home``."""
    import os
    from unittest import mock

    from osflow_wireshark import clean_env

    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    out = io.StringIO()
    with mock.patch.dict(os.environ, clean_env(home), clear=True):
        rc = profile.run(parser.parse_args(list(argv)), out=out)
    return rc, out.getvalue()


#: colour rule -> capture -> frames it must colour (and no other frame)
HUNTS = {
    "OpenStack: keystone token issue": {
        "resource-class-list-cold": {9, 241, 315, 551}, "token-issue": {9, 241},
        "resource-provider-create": {9, 239}, "resource-class-list-cache-hit": set(), "lab-errors": {6}},
    "OpenStack: keystone token validation": {
        "resource-class-list-cold": {552, 981}, "resource-provider-create": {261, 736}, "token-issue": set(),
        "resource-class-list-cache-hit": set(), "lab-errors": {12}},
    "OpenStack: memcached miss": {
        "resource-class-list-cold": {305}, "resource-provider-create": {254}, "resource-class-list-cache-hit": set(),
        "lab-errors": {37}},
    "OpenStack: memcached hit": {
        "resource-class-list-cache-hit": {7}, "resource-provider-create": {755}, "resource-class-list-cold": set()},
    "OpenStack: HTTP 4xx": {"lab-errors": {10, 15}, "resource-class-list-cold": set()},
    "OpenStack: HTTP 5xx": {"lab-errors": {27}, "resource-class-list-cold": set()},
    "OpenStack: MySQL error": {"lab-errors": {52, 68}, "resource-class-list-cold": set()},
}
SERVICE_RULES = {5000: "OpenStack: keystone", 8778: "OpenStack: placement", 11211: "OpenStack: memcached",
                 3306: "OpenStack: MySQL"}
#: generic rules with no frame in the captures: compile-only (above)
GENERIC = {"OpenStack: bad TCP", "OpenStack: RabbitMQ", "OpenStack: other OpenStack APIs", "TCP RST",
           "TCP SYN/FIN", "ARP", "ICMP errors"}


@pytest.fixture(scope="module")
def installed_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    rc, out = _run(home, "install")
    assert rc == 0, out
    return home


@needs_tshark
def test_install_finds_folders_from_tshark(installed_home):
    assert (installed_home / ".config" / "wireshark" / "profiles" / "OpenStack" / "colorfilters").is_file()
    assert (installed_home / ".local" / "lib" / "wireshark" / "plugins" / "osflow.lua").is_file()


@needs_tshark
def test_colour_rules_colour_the_frames_they_are_meant_for(installed_home):
    all_rules = {name for name, _ in color_rules()}
    assert set(HUNTS) | set(SERVICE_RULES.values()) | GENERIC | set(RPC_RULES) == all_rules
    seen = set()
    for name, capture in ALL_CAPTURES.items():
        rows = fields(capture, ["frame.number", "frame.coloring_rule.name", "tcp.srcport", "tcp.dstport"],
                      installed_home, plugin=False, extra=["-C", "OpenStack", "--color"])
        coloured = {int(r[0]): r[1] for r in rows}
        assert len(coloured) == len(rows) and rows
        for rule, per_capture in HUNTS.items():
            if name in per_capture:
                got = {f for f, r in coloured.items() if r == rule}
                assert got == per_capture[name], (rule, name)
        for frame, sport, dport in ((int(r[0]), int(r[2]), int(r[3])) for r in rows):
            rule = coloured[frame]
            seen.add(rule)
            service_rule = SERVICE_RULES[min(p for p in (sport, dport) if p in SERVICE_RULES)]
            assert rule == service_rule or rule in HUNTS, (name, frame, rule)
    assert set(SERVICE_RULES.values()) <= seen and set(HUNTS) <= seen


def _frames(capture: Path, expr: str, home: Path, extra=None) -> set[int]:
    return {int(r[0]) for r in fields(capture, ["frame.number"], home, display_filter=expr, plugin=False,
                                      extra=extra)}


@needs_tshark
def test_filters_match_the_frames_they_are_meant_for(tmp_path):
    """Checked against tshark's view of ports, token headers and errors."""
    facts = {name: fields(capture, ["frame.number", "tcp.port", "http.request.line", "http.response.line",
                                    "memcache.key", "http.response.code", "mysql.error_code"], tmp_path,
                          plugin=False, extra=["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"])
             for name, capture in ALL_CAPTURES.items()}
    for label, expr in buttons().items():
        for name, capture in ALL_CAPTURES.items():
            rows = facts[name]
            expected = set()
            for frame, ports, reqlines, reslines, key, code, myerr in rows:
                ports_ = {int(p) for p in ports.split(",") if p}
                token = bool(re.search(r"(^|,)x-(auth|subject|service|storage)-token:", reqlines, re.I)
                             or re.search(r"(^|,)x-(subject|storage)-token:", reslines, re.I)
                             or key.startswith("tokens/"))
                error = bool((code and int(code.split(",")[0]) >= 400) or myerr)
                if (label == "Keystone" and ports_ & {5000, 35357} or label == "Placement" and 8778 in ports_
                        or label == "Memcached" and 11211 in ports_ or label == "MySQL" and 3306 in ports_
                        or label == "Tokens" and token or label == "Errors" and error):
                    expected.add(int(frame))
            got = _frames(capture, expr, tmp_path, ["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"])
            assert got == expected, (label, name)
            if label in ("Tokens", "Keystone", "MySQL") and name != "resource-class-list-cache-hit":
                assert expected, (label, name)
    assert _frames(LAB_ERRORS, buttons()["Errors"], tmp_path,
                   ["-d", "tcp.port==5000,http", "-d", "tcp.port==8778,http"]) == {10, 15, 27, 52, 68}


@needs_tshark
def test_tshark_with_the_installed_profile(installed_home):
    proc = tshark(["-C", "OpenStack", "-r", str(COLD)], installed_home, plugin=False)
    assert stderr_lines(proc) == []
    lines = proc.stdout.splitlines()
    assert len(lines) == 1005
    frame9 = next(ln for ln in lines if ln.split()[0] == "9")
    # columns: No. Time Service Client → Server Protocol Length Operation Info
    assert re.match(r"^\s*9\s+\S+\s+keystone\s+OpenStackClient → keystone\s+HTTP/JSON\s+\d+\s+"
                    r"keystone: issue token \(password, user admin, project admin\)\s+\[keystone\] POST", frame9)


@needs_tshark
def test_custom_header_fields_work(installed_home):
    profile_ = ["-C", "OpenStack"]
    assert _frames(COLD, "http.header.X-Auth-Token", installed_home, profile_) == {248, 552}
    assert _frames(COLD, "http.header.X-Subject-Token", installed_home, profile_) == {241, 551, 552, 981}
    # response headers are lower-case in placement's answers: the field still matches
    assert _frames(COLD, "http.header.OpenStack-API-Version", installed_home, profile_) == {248, 994}
    assert _frames(COLD, "http.header.x-openstack-request-id", installed_home, profile_) == {
        6, 241, 312, 551, 981, 994}


@needs_tshark
def test_decode_as_entries_without_the_plugin(tmp_path):
    """The profile alone (no plugin) decodes the OpenStack ports as HTTP, heuristics or not."""
    dest = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    shutil.copytree(PROFILE, dest)
    no_heuristic = ["--disable-heuristic", "http_tcp"]
    without = _frames(COLD, "http.request", tmp_path, no_heuristic)
    with_profile = _frames(COLD, "http.request", tmp_path, no_heuristic + ["-C", "OpenStack"])
    assert without == set()
    assert with_profile == {4, 9, 248, 310, 315, 552}
    proc = tshark(["-C", "OpenStack", "-r", str(COLD), "-q"], tmp_path, plugin=False)
    assert stderr_lines(proc) == []


# --------------------------------------------------------------------------- install behaviour


@needs_tshark
def test_install_is_idempotent(tmp_path):
    rc, _ = _run(tmp_path, "install")
    assert rc == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    before = {p: p.stat().st_mtime_ns for p in prof.rglob("*")}
    rc, out = _run(tmp_path, "install")
    assert rc == 0
    verbs = [ln.split()[0] for ln in out.splitlines() if ln.startswith(("create", "update", "unchanged", "conflict"))]
    assert verbs and set(verbs) == {"unchanged"}
    assert {p: p.stat().st_mtime_ns for p in prof.rglob("*")} == before


def test_dry_run_writes_nothing(tmp_path):
    rc, out = _install(tmp_path, "--dry-run")
    assert rc == 0 and "create" in out
    assert not (tmp_path / ".config").exists() and not (tmp_path / ".local").exists()


def test_user_changes_are_kept_unless_force(tmp_path):
    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    mine = prof / "dfilters"
    mine.write_text(mine.read_text() + '"mine" ip.addr == 10.0.0.1\n')
    (prof / "recent").write_text("# Wireshark's own state file\n")
    rc, out = _install(tmp_path)
    assert rc == 1 and "conflict" in out and "dfilters" in out
    assert "mine" in mine.read_text()
    rc, out = _install(tmp_path, "--force")
    assert rc == 0
    assert "mine" not in mine.read_text()
    assert mine.read_text() == (PROFILE / "dfilters").read_text()
    backups = list(prof.parent.glob("OpenStack.osflow-backup-*"))
    assert len(backups) == 1 and "mine" in (backups[0] / "dfilters").read_text()
    assert (prof / "recent").exists()


def test_plugin_changed_by_user_is_backed_up_with_force(tmp_path):
    assert _install(tmp_path)[0] == 0
    plugin = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / "osflow.lua"
    plugin.write_text("-- my own osflow\n")
    assert _install(tmp_path)[0] == 1
    assert _install(tmp_path, "--force")[0] == 0
    assert plugin.read_text() == profile.plugin_source().read_text()
    backups = list(plugin.parent.glob("osflow.lua.osflow-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == "-- my own osflow\n"
    assert not backups[0].name.endswith(".lua"), "a backup must not be loaded as a second plugin"


def _plugins(home: Path) -> Path:
    return home / ".local" / "lib" / "wireshark" / "plugins"


def test_install_puts_the_plugin_and_every_module_in_place(tmp_path):
    rc, out = _install(tmp_path)
    assert rc == 0, out
    src = profile.plugin_source().parent
    files = profile.plugin_files()
    assert files[0] == "osflow.lua" and {"osflow/amqp.lua", "osflow/json.lua", "osflow/sha256.lua"} <= set(files)
    installed = sorted(p.relative_to(_plugins(tmp_path)).as_posix() for p in _plugins(tmp_path).rglob("*.lua"))
    assert installed == sorted(files)
    for rel in files:
        assert (_plugins(tmp_path) / rel).read_bytes() == (src / rel).read_bytes(), rel
        assert re.search(rf"^create\s+\S+/{re.escape(rel)}$", out, re.M), rel
    manifest = json.loads((tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack" / profile.MANIFEST_NAME)
                          .read_text())
    assert sorted(manifest["plugin_files"]) == sorted(files)
    assert manifest["plugin"] == manifest["plugin_files"]["osflow.lua"]


def test_a_module_changed_by_user_is_backed_up_beside_it_with_force(tmp_path):
    assert _install(tmp_path)[0] == 0
    module = _plugins(tmp_path) / "osflow" / "amqp.lua"
    module.write_text("-- my own amqp\n")
    rc, out = _install(tmp_path)
    assert rc == 1 and re.search(r"^conflict\s+\S+/osflow/amqp.lua", out, re.M)
    assert module.read_text() == "-- my own amqp\n"
    assert _install(tmp_path, "--force")[0] == 0
    assert module.read_bytes() == (profile.plugin_source().parent / "osflow" / "amqp.lua").read_bytes()
    backups = [p for p in _plugins(tmp_path).rglob("*osflow-backup*")]
    assert [b.name for b in backups] == [b.name for b in module.parent.glob("amqp.lua.osflow-backup-*")]
    assert len(backups) == 1 and backups[0].is_file() and backups[0].read_text() == "-- my own amqp\n"
    assert not backups[0].name.endswith(".lua"), "a backup must not be loaded as a plugin"
    assert not list(tmp_path.glob(".config/wireshark/profiles/OpenStack.osflow-backup-*")), "the profile is as it was"


def test_an_install_from_before_the_modules_is_updated_silently(tmp_path):
    """An osflow whose plugin was one file recorded only its hash ("plugin"): updated, modules added."""
    import hashlib

    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    old = b"-- osflow.lua as an older osflow installed it\n"
    (_plugins(tmp_path) / "osflow.lua").write_bytes(old)
    shutil.rmtree(_plugins(tmp_path) / "osflow")
    manifest = json.loads((prof / profile.MANIFEST_NAME).read_text())
    del manifest["plugin_files"]
    manifest["plugin"] = hashlib.sha256(old).hexdigest()
    (prof / profile.MANIFEST_NAME).write_text(json.dumps(manifest))
    rc, out = _install(tmp_path)
    assert rc == 0, out
    assert re.search(r"^update\s+\S+/osflow.lua$", out, re.M)
    assert re.search(r"^create\s+\S+/osflow/json.lua$", out, re.M)
    assert (_plugins(tmp_path) / "osflow.lua").read_bytes() == profile.plugin_source().read_bytes()


def test_a_module_no_longer_shipped_is_removed_unless_changed(tmp_path):
    import hashlib

    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    manifest = json.loads((prof / profile.MANIFEST_NAME).read_text())
    for name, text in (("gone.lua", b"-- a module of an older osflow\n"), ("mine.lua", b"-- another\n")):
        (_plugins(tmp_path) / "osflow" / name).write_bytes(text)
        manifest["plugin_files"][f"osflow/{name}"] = hashlib.sha256(text).hexdigest()
    (_plugins(tmp_path) / "osflow" / "mine.lua").write_bytes(b"-- another, changed by its user\n")
    (prof / profile.MANIFEST_NAME).write_text(json.dumps(manifest))
    rc, out = _install(tmp_path)
    assert rc == 0, out
    assert not (_plugins(tmp_path) / "osflow" / "gone.lua").exists()
    assert re.search(r"^keep\s+\S+/osflow/mine.lua", out, re.M)
    assert (_plugins(tmp_path) / "osflow" / "mine.lua").exists()


def test_uninstall_removes_the_modules_and_their_folder(tmp_path):
    assert _install(tmp_path)[0] == 0
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    args = parser.parse_args(["uninstall", "--config-dir", str(tmp_path / ".config" / "wireshark"),
                              "--plugin-dir", str(_plugins(tmp_path))])
    out = io.StringIO()
    assert profile.run(args, out=out) == 0, out.getvalue()
    assert list(_plugins(tmp_path).iterdir()) == []


def test_an_older_osflow_install_is_updated_silently(tmp_path):
    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    # pretend osflow 0.0 installed a different colorfilters file
    old = b"@old@tcp@[0,0,0][0,0,0]\n"
    (prof / "colorfilters").write_bytes(old)
    import hashlib
    import json

    manifest = json.loads((prof / profile.MANIFEST_NAME).read_text())
    manifest["files"]["colorfilters"] = hashlib.sha256(old).hexdigest()
    (prof / profile.MANIFEST_NAME).write_text(json.dumps(manifest))
    rc, out = _install(tmp_path)
    assert rc == 0 and re.search(r"^update\s+\S+colorfilters", out, re.M)
    assert (prof / "colorfilters").read_text() == (PROFILE / "colorfilters").read_text()


def test_recent_is_a_seed_not_a_user_change(tmp_path):
    """Wireshark rewrites the profile's ``recent`` on exit: install writes it only when
    missing, never calls it a conflict (not even with --force overwrites it), and
    uninstall removes it only while it is still what osflow wrote."""
    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    recent = prof / "recent"
    assert recent.read_bytes() == (PROFILE / "recent").read_bytes()
    # what Wireshark does on exit: the whole file rewritten, the user's widths in it
    rewritten = "# Recent settings file for Wireshark 4.0.17.\ncolumn.width:\n\t%m, 42\n"
    recent.write_text(rewritten)
    rc, out = _install(tmp_path)
    assert rc == 0, out
    assert re.search(r"^keep\s+\S+/recent\s", out, re.M) and "conflict" not in out
    assert recent.read_text() == rewritten
    assert not list(prof.parent.glob("OpenStack.osflow-backup-*"))
    rc, out = _install(tmp_path, "--force")
    assert rc == 0 and recent.read_text() == rewritten
    assert not list(prof.parent.glob("OpenStack.osflow-backup-*")), "nothing changed by the user: no backup"
    # removed: written again by the next install
    recent.unlink()
    rc, out = _install(tmp_path)
    assert rc == 0 and re.search(r"^create\s+\S+/recent\s", out, re.M)
    assert recent.read_bytes() == (PROFILE / "recent").read_bytes()
    # uninstall: osflow's own copy goes, with the profile folder
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    args = parser.parse_args(["uninstall", "--config-dir", str(tmp_path / ".config" / "wireshark"),
                              "--plugin-dir", str(tmp_path / ".local" / "lib" / "wireshark" / "plugins")])
    out_ = io.StringIO()
    assert profile.run(args, out=out_) == 0, out_.getvalue()
    assert not prof.exists()
    # a recent Wireshark wrote stays after uninstall (and is no reason to refuse it)
    assert _install(tmp_path)[0] == 0
    recent.write_text(rewritten)
    out_ = io.StringIO()
    assert profile.run(args, out=out_) == 0, out_.getvalue()
    assert sorted(p.name for p in prof.iterdir()) == ["recent"] and recent.read_text() == rewritten
    # and without a manifest, Wireshark's recent alone is not "files osflow did not install"
    out_ = io.StringIO()
    assert profile.run(args, out=out_) == 0 and "nothing installed" in out_.getvalue()


def test_uninstall(tmp_path):
    assert _install(tmp_path)[0] == 0
    prof = tmp_path / ".config" / "wireshark" / "profiles" / "OpenStack"
    (prof / "recent").write_text("# Wireshark's own state file\n")
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    args = parser.parse_args(["uninstall", "--config-dir", str(tmp_path / ".config" / "wireshark"),
                              "--plugin-dir", str(tmp_path / ".local" / "lib" / "wireshark" / "plugins")])
    assert profile.run(args, out=io.StringIO()) == 0
    assert sorted(p.name for p in prof.iterdir()) == ["recent"]
    assert not (tmp_path / ".local" / "lib" / "wireshark" / "plugins" / "osflow.lua").exists()
    assert profile.run(args, out=io.StringIO()) == 0  # nothing left: still fine


@needs_tshark
def test_zip_has_the_layout_wireshark_imports(tmp_path):
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    out = tmp_path / "osflow-profile.zip"
    assert profile.run(parser.parse_args(["zip", str(out)]), out=io.StringIO()) == 0
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert names[0] == "OpenStack/"
        assert sorted(names[1:]) == ["OpenStack/" + f for f in profile.profile_files()]
        assert zf.testzip() is None
        # what Wireshark's import does: unpack the profile folders into profiles/
        zf.extractall(tmp_path / "home" / ".config" / "wireshark" / "profiles")
    proc = tshark(["-C", "OpenStack", "-r", str(CAPTURES["resource-class-list-cache-hit"]), "--color",
                   "-T", "fields", "-e", "frame.coloring_rule.name"], tmp_path / "home", plugin=False)
    assert "OpenStack: memcached hit" in proc.stdout.splitlines()
    assert stderr_lines(proc) == []


def test_missing_tshark_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OSFLOW_TSHARK", raising=False)
    parser = argparse.ArgumentParser()
    profile.add_arguments(parser)
    assert profile.run(parser.parse_args(["install"]), out=io.StringIO()) == 2
    assert "tshark not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- RPC over RabbitMQ

#: colour rules of RPC, first match first (checked on the compute captures)
RPC_RULES = ["OpenStack: RPC failure", "OpenStack: RPC reply", "OpenStack: RPC call", "OpenStack: RPC cast"]


def _oslo_messages(capture: Path, home: Path) -> dict[int, list[dict]]:
    """frame -> its oslo messages (with the routing key), read with Wireshark only."""
    out: dict[int, list[dict]] = {}
    for frame, payloads, keys in fields(capture, ["frame.number", "amqp.payload",
                                                  "amqp.method.arguments.routing_key"], home,
                                        display_filter="amqp.payload", plugin=False):
        for hexed in payloads.split(","):
            doc = json.loads(bytes.fromhex(hexed.replace(":", "")))
            message = json.loads(doc["oslo.message"]) if "oslo.message" in doc else doc
            message["routing key"] = keys
            out.setdefault(int(frame), []).append(message)
    return out


def _rpc_rule(messages: list[dict]) -> str:
    m = messages[0]
    if m.get("failure"):
        return "OpenStack: RPC failure"
    if m["routing key"].startswith("reply_"):
        return "OpenStack: RPC reply"
    if "_reply_q" in m:
        return "OpenStack: RPC call"
    return "OpenStack: RPC cast"


def _failure_capture(path: Path) -> Path:
    failure = {"failure": json.dumps({"class": "NoValidHost", "module": "nova.exception", "message": "x", "tb": []}),
               "result": None, "ending": True, "_msg_id": "m1"}
    ok = {"result": [1], "failure": None, "ending": True, "_msg_id": "m2"}
    return write_tcp_capture(path, [(5672, amqp_message(amqp_publish("", "reply_ab"), oslo_body(failure))),
                                    (5672, amqp_message(amqp_publish("", "reply_ab"), oslo_body(ok)))])


@needs_tshark
def test_rpc_colour_rules(installed_home, tmp_path):
    """Each RPC message has the colour of its kind (failures their own); other AMQP frames
    (heartbeats, acks, declares) keep the RabbitMQ colour."""
    seen = set()
    for name, capture in COMPUTE_CAPTURES.items():
        messages = _oslo_messages(capture, tmp_path)
        rows = fields(capture, ["frame.number", "frame.coloring_rule.name"], installed_home, plugin=False,
                      extra=["-C", "OpenStack", "--color"], display_filter="tcp.port == 5672")
        assert rows
        for frame, rule in rows:
            expected = _rpc_rule(messages[int(frame)]) if int(frame) in messages else None
            assert rule == expected or (expected is None and rule in ("OpenStack: RabbitMQ", "TCP SYN/FIN")), \
                (name, frame, rule, expected)
            seen.add(rule)
    assert set(RPC_RULES) - seen == {"OpenStack: RPC failure"}   # the real captures hold no failure
    synthetic = _failure_capture(tmp_path / "failure.pcap")
    rules = [r[0] for r in fields(synthetic, ["frame.coloring_rule.name"], installed_home, plugin=False,
                                  extra=["-C", "OpenStack", "--color"])]
    assert rules == ["OpenStack: RPC failure", "OpenStack: RPC reply"]


@needs_tshark
@pytest.mark.parametrize("name", sorted(COMPUTE_CAPTURES))
def test_rpc_button_and_tokens_on_the_broker(name, tmp_path):
    """RPC: every published or delivered message (each in one frame in these captures), no
    heartbeat or ack; Tokens: every RPC message with a context token; Errors: none there."""
    capture = COMPUTE_CAPTURES[name]
    messages = _oslo_messages(capture, tmp_path)
    broker = "tcp.port == 5672 && "
    assert _frames(capture, broker + f"({buttons()['RPC']})", tmp_path) == set(messages)
    with_token = {f for f, ms in messages.items() if any(m.get("_context_auth_token") for m in ms)}
    assert _frames(capture, broker + f"({buttons()['Tokens']})", tmp_path) == with_token
    assert _frames(capture, broker + f"({buttons()['Errors']})", tmp_path) == set()
    assert _frames(capture, broker + "amqp.type == 8", tmp_path) and \
        not _frames(capture, f"amqp.type == 8 && ({buttons()['RPC']})", tmp_path)


@needs_tshark
def test_errors_button_finds_a_failed_rpc_call_and_tokens_a_storage_token(tmp_path):
    assert _frames(_failure_capture(tmp_path / "failure.pcap"), buttons()["Errors"], tmp_path) == {1}
    request = b"GET /v1/AUTH_x HTTP/1.1\r\nHost: swift\r\nX-Storage-Token: AUTH_tk0123\r\n\r\n"
    swift = write_tcp_capture(tmp_path / "swift.pcap", [(8080, request), (8080, request.replace(b"Storage", b"Other"))])
    assert _frames(swift, buttons()["Tokens"], tmp_path) == {1}

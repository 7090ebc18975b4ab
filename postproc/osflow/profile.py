"""``osflow profile install|uninstall|zip``: put the Wireshark side of osflow in place.

Two things are installed where Wireshark looks for them, as ``tshark -G folders``
reports (so Linux, macOS and Windows layouts all work):

* the configuration profile ``OpenStack`` (``profiles/OpenStack`` of the repository)
  into ``<Personal configuration>/profiles/OpenStack``;
* the Lua post-dissector ``dissectors/osflow.lua`` and the folder of modules it
  loads from beside it, ``dissectors/osflow/*.lua``, into ``<Personal Lua Plugins>``.

Installing is idempotent.  A manifest (``.osflow-manifest.json`` in the installed
profile) records the SHA-256 of every file as osflow wrote it, so a later install
can tell an old osflow file (updated silently) from a file the user changed
(left alone unless ``--force``; then the whole profile, or each plugin file the
user changed, is first copied to a ``*.osflow-backup-<time>`` sibling).  A plugin
file's backup is a file beside it, never a folder: Wireshark loads every ``.lua``
under its plugins folder, and ``osflow.lua.osflow-backup-<time>`` is not one.
Module files an older osflow installed and this one no longer ships are removed
(left alone when the user changed them).

The profile also ships ``recent`` (the packet list column widths, so the osflow
columns are readable on a fresh install).  That file is Wireshark's own state:
Wireshark rewrites it on every exit.  It is therefore only a seed: written when
the profile has none, otherwise left as Wireshark wrote it (never a conflict,
not even overwritten by ``--force``), and removed by ``uninstall`` only while it
is still exactly what osflow wrote.

The lead wires this module into ``osflow profile ...``::

    sub = parser.add_subparsers(...).add_parser("profile")
    profile.add_arguments(sub); sub.set_defaults(func=profile.run)

>>> p = argparse.ArgumentParser(prog="osflow profile")
>>> add_arguments(p)
>>> p.parse_args(["zip", "out.zip"]).file
'out.zip'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

PROFILE_NAME = "OpenStack"
PLUGIN_NAME = "osflow.lua"
#: the folder beside the plugin holding the modules it loads (osflow/*.lua)
PLUGIN_MODULES = "osflow"
MANIFEST_NAME = ".osflow-manifest.json"

#: Files Wireshark itself writes into a profile while it is used.  When the
#: profile ships one (``recent``: column widths) it is a seed, see above.
WIRESHARK_STATE_FILES = frozenset({"recent", "recent_common"})


def is_state_file(rel: str) -> bool:
    """Is ``rel`` (relative to the profile) a file Wireshark rewrites itself?

    >>> is_state_file("recent"), is_state_file("colorfilters")
    (True, False)
    """
    return rel in WIRESHARK_STATE_FILES


# --------------------------------------------------------------------------- sources


def data_root() -> Path:
    """The folder holding ``profiles/OpenStack`` and ``dissectors/osflow.lua`` (with ``dissectors/osflow/``).

    In an installed package that is ``osflow/data/``; in a repository checkout it
    is the repository root (two levels above ``postproc/osflow``).

    >>> (data_root() / "dissectors" / PLUGIN_NAME).is_file()
    True
    """
    here = Path(__file__).resolve().parent
    candidates = [here / "data", here.parents[1]]
    for root in candidates:
        dissectors = root / "dissectors"
        if ((root / "profiles" / PROFILE_NAME).is_dir() and (dissectors / PLUGIN_NAME).is_file()
                and (dissectors / PLUGIN_MODULES).is_dir()):
            return root
    raise FileNotFoundError(
        f"osflow's Wireshark files are missing: looked for profiles/{PROFILE_NAME}, dissectors/{PLUGIN_NAME} "
        f"and dissectors/{PLUGIN_MODULES}/ under {', '.join(str(c) for c in candidates)}"
    )


def profile_source() -> Path:
    return data_root() / "profiles" / PROFILE_NAME


def plugin_source() -> Path:
    return data_root() / "dissectors" / PLUGIN_NAME


def plugin_files(src: Path | None = None) -> list[str]:
    """The plugin's files, relative to the plugins folder: ``osflow.lua``, then its modules.

    >>> files = plugin_files()
    >>> files[0], "osflow/amqp.lua" in files, all(f.endswith(".lua") for f in files)
    ('osflow.lua', True, True)
    """
    src = src or data_root() / "dissectors"
    modules = sorted(p.relative_to(src).as_posix() for p in (src / PLUGIN_MODULES).glob("*.lua") if p.is_file())
    return [PLUGIN_NAME, *modules]


def profile_files(src: Path | None = None) -> list[str]:
    """Relative names of the profile's files (sorted, no hidden files)."""
    src = src or profile_source()
    return sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- destinations


@dataclass(frozen=True)
class Folders:
    """Wireshark's personal configuration and Lua plugin folders."""

    config: Path  # Personal configuration
    lua_plugins: Path  # Personal Lua Plugins

    @property
    def profile(self) -> Path:
        return self.config / "profiles" / PROFILE_NAME

    @property
    def plugin(self) -> Path:
        return self.lua_plugins / PLUGIN_NAME

    @property
    def modules(self) -> Path:
        return self.lua_plugins / PLUGIN_MODULES

    def is_plugin_file(self, path: Path) -> bool:
        """Is ``path`` the plugin or one of its modules (not a profile file)?"""
        return path == self.plugin or path.parent == self.modules


def parse_folders(text: str) -> dict[str, str]:
    """``tshark -G folders`` output -> {label: path}.

    >>> parse_folders("Personal configuration:\\t/home/a/.config/wireshark\\nTemp: \\t/tmp\\n")
    {'Personal configuration': '/home/a/.config/wireshark', 'Temp': '/tmp'}
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and value.strip() and label.strip() not in out:
            out[label.strip()] = value.strip()
    return out


def tshark_path(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("OSFLOW_TSHARK") or shutil.which("tshark")


def find_folders(args: argparse.Namespace) -> Folders:
    """Personal configuration and Lua plugin folders (options win over tshark)."""
    config = getattr(args, "config_dir", None)
    plugins = getattr(args, "plugin_dir", None)
    if config and plugins:
        return Folders(Path(config), Path(plugins))
    tshark = tshark_path(getattr(args, "tshark", None))
    if not tshark:
        raise RuntimeError("tshark not found: install Wireshark's tshark, or pass --config-dir and --plugin-dir")
    proc = subprocess.run([tshark, "-G", "folders"], capture_output=True, text=True, check=False)
    folders = parse_folders(proc.stdout)
    try:
        config = config or folders["Personal configuration"]
        plugins = plugins or folders["Personal Lua Plugins"]
    except KeyError as e:
        raise RuntimeError(f"`{tshark} -G folders` did not report {e}: {proc.stderr.strip()}") from None
    return Folders(Path(config), Path(plugins))


# --------------------------------------------------------------------------- plan


@dataclass
class Action:
    """One file operation of an install or uninstall plan."""

    verb: str  # create | update | unchanged | conflict | remove | keep | backup
    path: Path
    source: Path | None = None
    note: str = ""

    def line(self) -> str:
        return f"{self.verb:<9} {self.path}" + (f"  ({self.note})" if self.note else "")


@dataclass
class Plan:
    """What an install or uninstall would do, file by file, and the manifest it writes."""

    actions: list[Action] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def conflicts(self) -> list[Action]:
        return [a for a in self.actions if a.verb == "conflict"]


def read_manifest(folders: Folders) -> dict:
    try:
        data = json.loads((folders.profile / MANIFEST_NAME).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _state(dest: Path, src_hash: str, recorded: str | None) -> str:
    if not dest.exists():
        return "create"
    have = sha256_file(dest)
    if have == src_hash:
        return "unchanged"
    if recorded and have == recorded:
        return "update"  # written by an earlier osflow, not touched since
    return "conflict"


def plan_install(folders: Folders) -> Plan:
    manifest = read_manifest(folders)
    recorded = manifest.get("files", {})
    plan = Plan()
    src_dir = profile_source()
    new_files: dict[str, str] = {}
    seeded: dict[str, str] = {}
    for rel in profile_files(src_dir):
        src = src_dir / rel
        h = sha256_file(src)
        dest = folders.profile / rel
        if is_state_file(rel):
            # Wireshark's own state file: written once, then Wireshark's.
            seeded[rel] = h
            if not dest.exists():
                plan.actions.append(Action("create", dest, src, "Wireshark's own state file; "
                                           "written when missing, then left to Wireshark"))
            elif sha256_file(dest) == h:
                plan.actions.append(Action("unchanged", dest, src))
            else:
                plan.actions.append(Action("keep", dest, None, "Wireshark's own state file "
                                           "(column widths, panes): left as Wireshark wrote it"))
            continue
        new_files[rel] = h
        verb = _state(dest, h, recorded.get(rel))
        plan.actions.append(Action(verb, dest, src, "changed since osflow installed it" if verb == "conflict" else ""))
    # profile files an older osflow installed that this one no longer ships
    for rel, h in sorted(recorded.items()):
        if rel not in new_files and not is_state_file(rel):
            dest = folders.profile / rel
            if dest.exists():
                same = sha256_file(dest) == h
                plan.actions.append(Action("remove" if same else "keep", dest, None,
                                           "" if same else "no longer shipped; changed by you, kept"))
    plugin_dir = plugin_source().parent
    recorded_plugin = _recorded_plugin_files(manifest)
    new_plugin: dict[str, str] = {}
    for rel in plugin_files(plugin_dir):
        src = plugin_dir / rel
        h = sha256_file(src)
        new_plugin[rel] = h
        dest = folders.lua_plugins / rel
        verb = _state(dest, h, recorded_plugin.get(rel))
        plan.actions.append(Action(verb, dest, src, "changed since osflow installed it" if verb == "conflict" else ""))
    # modules an older osflow installed that this one no longer ships
    for rel, h in sorted(recorded_plugin.items()):
        dest = folders.lua_plugins / rel
        if rel not in new_plugin and dest.exists():
            same = sha256_file(dest) == h
            plan.actions.append(Action("remove" if same else "keep", dest, None,
                                       "" if same else "no longer shipped; changed by you, kept"))
    # "plugin": osflow.lua's hash, as every osflow wrote it; "plugin_files": each file's
    plan.manifest = {"osflow": _version(), "files": new_files, "plugin": new_plugin[PLUGIN_NAME],
                     "plugin_files": new_plugin}
    if seeded:
        plan.manifest["seeded"] = seeded
    return plan


def _recorded_plugin_files(manifest: dict) -> dict[str, str]:
    """Plugin file (relative to the plugins folder) -> SHA-256 as osflow installed it.

    An osflow from before the modules recorded only ``plugin`` (osflow.lua's hash).

    >>> _recorded_plugin_files({"plugin": "ab"})
    {'osflow.lua': 'ab'}
    >>> _recorded_plugin_files({"plugin": "ab", "plugin_files": {"osflow.lua": "ab", "osflow/json.lua": "cd"}})
    {'osflow.lua': 'ab', 'osflow/json.lua': 'cd'}
    """
    files = manifest.get("plugin_files")
    if isinstance(files, dict):
        return {str(k): str(v) for k, v in files.items()}
    plugin = manifest.get("plugin")
    return {PLUGIN_NAME: plugin} if isinstance(plugin, str) else {}


def _version() -> str:
    try:
        from osflow import __version__

        return __version__
    except Exception:  # pragma: no cover - only when imported oddly
        return "unknown"


def _backup(path: Path, stamp: str) -> Path:
    dest = path.with_name(f"{path.name}.osflow-backup-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.osflow-backup-{stamp}-{n}")
    if path.is_dir():
        shutil.copytree(path, dest)
    else:
        shutil.copy2(path, dest)
    return dest


def _write(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".osflow-tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------- commands


def install(folders: Folders, *, force: bool = False, dry_run: bool = False, out: TextIO = sys.stdout) -> int:
    plan = plan_install(folders)
    conflicts = plan.conflicts
    if conflicts and not force:
        for a in plan.actions:
            print(a.line(), file=out)
        print(
            f"osflow profile install: {len(conflicts)} file(s) changed since osflow installed them; "
            "nothing written. Use --force to overwrite them (a backup is kept).",
            file=out,
        )
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if conflicts:
        if any(not folders.is_plugin_file(a.path) for a in conflicts):
            note = "copy of the profile before --force"
            target = folders.profile
            if dry_run:
                print(Action("backup", target, None, note).line(), file=out)
            else:
                print(Action("backup", _backup(target, stamp), None, note).line(), file=out)
        for a in conflicts:
            if folders.is_plugin_file(a.path):
                note = "copy of the plugin file before --force"
                if dry_run:
                    print(Action("backup", a.path, None, note).line(), file=out)
                else:
                    print(Action("backup", _backup(a.path, stamp), None, note).line(), file=out)
    for a in plan.actions:
        verb = "update" if a.verb == "conflict" else a.verb
        print(Action(verb, a.path, a.source, a.note).line() if not dry_run else a.line(), file=out)
        if dry_run:
            continue
        if verb in ("create", "update"):
            assert a.source is not None
            _write(a.source, a.path)
        elif verb == "remove":
            a.path.unlink()
    manifest_path = folders.profile / MANIFEST_NAME
    if dry_run:
        print("dry run: nothing written", file=out)
        return 0
    new_manifest = json.dumps(plan.manifest, indent=2, sort_keys=True) + "\n"
    if not manifest_path.exists() or manifest_path.read_text(encoding="utf-8") != new_manifest:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(new_manifest, encoding="utf-8")
    print(f"Wireshark profile {PROFILE_NAME!r} and plugin {PLUGIN_NAME} installed. "
          f"Use them with: wireshark -C {PROFILE_NAME}   (or tshark -C {PROFILE_NAME})", file=out)
    return 0


def uninstall(folders: Folders, *, force: bool = False, dry_run: bool = False, out: TextIO = sys.stdout) -> int:
    manifest = read_manifest(folders)
    if not manifest:
        ours = ([folders.profile / rel for rel in profile_files() if not is_state_file(rel)]
                + [folders.lua_plugins / rel for rel in plugin_files()])
        if any(p.exists() for p in ours):
            print(f"osflow profile uninstall: no osflow manifest in {folders.profile}; "
                  "not removing files osflow did not install", file=out)
            return 1
        print("osflow profile uninstall: nothing installed", file=out)
        return 0
    actions: list[Action] = []
    for rel, h in sorted(manifest.get("files", {}).items()):
        p = folders.profile / rel
        if p.exists():
            changed = sha256_file(p) != h
            actions.append(Action("conflict" if changed else "remove", p, None,
                                  "changed since osflow installed it" if changed else ""))
    # Seeds (``recent``): removed while still as osflow wrote them; once
    # Wireshark has rewritten them they are Wireshark's, and stay.
    for rel, h in sorted(manifest.get("seeded", {}).items()):
        p = folders.profile / rel
        if p.exists():
            same = sha256_file(p) == h
            actions.append(Action("remove" if same else "keep", p, None,
                                  "" if same else "Wireshark's own state file, rewritten by Wireshark"))
    for rel, h in sorted(_recorded_plugin_files(manifest).items()):
        p = folders.lua_plugins / rel
        if p.exists():
            changed = sha256_file(p) != h
            actions.append(Action("conflict" if changed else "remove", p, None,
                                  "changed since osflow installed it" if changed else ""))
    conflicts = [a for a in actions if a.verb == "conflict"]
    if conflicts and not force:
        for a in actions:
            print(a.line(), file=out)
        print(f"osflow profile uninstall: {len(conflicts)} file(s) changed since osflow installed them; "
              "nothing removed. Use --force to remove them (a backup is kept).", file=out)
        return 1
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if conflicts and not dry_run:
        if any(not folders.is_plugin_file(a.path) for a in conflicts):
            print(Action("backup", _backup(folders.profile, stamp)).line(), file=out)
        for a in conflicts:
            if folders.is_plugin_file(a.path):
                print(Action("backup", _backup(a.path, stamp)).line(), file=out)
    for a in actions:
        if a.verb == "keep":
            print(a.line(), file=out)
            continue
        print(Action("remove", a.path, None, a.note).line(), file=out)
        if not dry_run:
            a.path.unlink()
    if dry_run:
        print("dry run: nothing removed", file=out)
        return 0
    (folders.profile / MANIFEST_NAME).unlink(missing_ok=True)
    # the modules' folder, when nothing else (a backup, the user's own file) is in it
    try:
        if folders.modules.is_dir() and not any(folders.modules.iterdir()):
            folders.modules.rmdir()
    except OSError:
        pass
    # Leave the folder when Wireshark (or the user) put other files there.
    try:
        for d in sorted((p for p in folders.profile.rglob("*") if p.is_dir()), reverse=True):
            if not any(d.iterdir()):
                d.rmdir()
        if not any(folders.profile.iterdir()):
            folders.profile.rmdir()
    except OSError:
        pass
    return 0


def make_zip(path: Path, *, out: TextIO = sys.stdout) -> int:
    """A zip Wireshark's "Import profile from zip" accepts: one top folder per profile.

    The Lua plugin cannot travel in a profile; it is not in the zip.
    """
    src = profile_source()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(PROFILE_NAME + "/"), b"")
        for rel in profile_files(src):
            info = zipfile.ZipInfo(f"{PROFILE_NAME}/{rel}", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, (src / rel).read_bytes())
    print(f"wrote {path}: Wireshark profile {PROFILE_NAME!r} "
          "(Edit > Configuration Profiles > Import > from zip file). "
          f"The osflow plugin is not part of a profile: copy {plugin_source().name} and the folder "
          f"{PLUGIN_MODULES}/ beside it into your Personal Lua Plugins folder (Help > About Wireshark > "
          "Folders), or run osflow profile install.", file=out)
    return 0


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``install``, ``uninstall`` and ``zip`` sub-commands to ``parser``."""
    sub = parser.add_subparsers(dest="profile_command", metavar="{install,uninstall,zip}")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    common.add_argument("--force", action="store_true",
                        help="overwrite (or remove) files you changed; a backup copy is kept")
    common.add_argument("--tshark", metavar="PATH",
                        help="tshark to ask for the folders (default: $OSFLOW_TSHARK, PATH)")
    common.add_argument("--config-dir", metavar="DIR", help="Wireshark personal configuration folder")
    common.add_argument("--plugin-dir", metavar="DIR", help="Wireshark personal Lua plugins folder")
    sub.add_parser("install", parents=[common],
                   help="install the OpenStack profile and the osflow Lua plugin for this user")
    sub.add_parser("uninstall", parents=[common], help="remove what install put in place")
    z = sub.add_parser("zip", help='write a zip for Wireshark\'s "Import profile from zip"')
    z.add_argument("file", metavar="FILE", help="zip file to write")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``osflow profile <command>``; returns the exit status."""
    cmd = getattr(args, "profile_command", None)
    try:
        if cmd == "zip":
            return make_zip(Path(args.file), out=out)
        folders = find_folders(args)
        if cmd == "install":
            return install(folders, force=args.force, dry_run=args.dry_run, out=out)
        if cmd == "uninstall":
            return uninstall(folders, force=args.force, dry_run=args.dry_run, out=out)
    except (RuntimeError, OSError) as e:
        print(f"osflow profile {cmd}: {e}", file=sys.stderr)
        return 2
    print("osflow profile: choose install, uninstall or zip", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="osflow profile", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

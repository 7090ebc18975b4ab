"""The processes: one process from /proc (:func:`proc_info`, for the socket log and ``meta.json``),
the container each runs in (:class:`Containers`), and the ``ps`` snapshots of ``ps.txt``
(:func:`ps_sections`)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from dataclasses import dataclass

from ..tables.ps import container_of_cgroup, short_id
from .kernel import PROC, read_file


@dataclass
class ProcInfo:
    """One running process, from /proc/PID (stat, owner, cmdline)."""

    pid: int
    ppid: int
    user: str
    args: str
    comm: str


_users: dict[int, str] = {}


def user_name(uid: int) -> str:
    """The login name of a uid (the number when it has none); cached."""
    name = _users.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        _users[uid] = name
    return name


def proc_info(pid: int, proc: str = PROC) -> ProcInfo | None:
    """pid, ppid, user, command line and comm of a running process (None when it is gone)."""
    stat = read_file(f"{proc}/{pid}/stat")
    if stat is None:
        return None
    text = stat.decode("utf-8", "replace")
    close = text.rfind(")")
    comm = text[text.find("(") + 1 : close]
    fields = text[close + 2 :].split()
    try:
        ppid = int(fields[1])
        uid = os.stat(f"{proc}/{pid}").st_uid
    except (IndexError, ValueError, OSError):
        return None
    raw = read_file(f"{proc}/{pid}/cmdline") or b""
    args = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace").strip() or f"[{comm}]"
    return ProcInfo(pid, ppid, user_name(uid), args, comm)


def comm_of(pid: int, proc: str = PROC) -> str:
    """A process's name as ``ss -p`` shows it (/proc/PID/comm; ``?`` when it is gone)."""
    raw = read_file(f"{proc}/{pid}/comm")
    return raw.decode("utf-8", "replace").rstrip("\n") if raw else "?"


def all_pids(proc: str = PROC) -> list[int]:
    """The pids of every running process."""
    try:
        return [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []


# --------------------------------------------------------------------------- containers

#: where docker keeps each container's configuration (``containers/<id>/config.v2.json``)
DOCKER_ROOT = "/var/lib/docker"
#: where podman (containers/storage) lists its containers (``overlay-containers/containers.json``):
#: root's, then a system's whose storage is on tmpfs
PODMAN_STORAGE = ("/var/lib/containers/storage", "/run/containers/storage")


class Containers:
    """The container a process runs in, by name where its runtime's files say it (kolla's
    ``nova_conductor``), else by short id: from ``/proc/PID/cgroup``
    (:func:`osflow.tables.ps.container_of_cgroup`), docker's ``config.v2.json`` ``"Name"``, podman's
    ``containers.json`` ``"names"``.  Each id is looked up once."""

    def __init__(self, proc: str = PROC, docker: str = DOCKER_ROOT, podman: tuple[str, ...] = PODMAN_STORAGE) -> None:
        self.proc = proc
        self.docker = docker
        self.podman = podman
        self._names: dict[str, str] = {}  # full id -> name (or short id)
        self._podman: dict[str, str] | None = None  # podman's ids -> names, read once

    def of(self, pid: int) -> str | None:
        """The container process ``pid`` runs in (its name, else its short id); None when none (or gone)."""
        raw = read_file(f"{self.proc}/{pid}/cgroup")
        found = container_of_cgroup(raw.decode("utf-8", "replace")) if raw else None
        if found is None:
            return None
        runtime, cid = found
        name = self._names.get(cid)
        if name is None:
            name = self._names[cid] = self._name(runtime, cid) or short_id(cid)
        return name

    def _name(self, runtime: str, cid: str) -> str | None:
        if runtime in ("docker", "container"):
            try:
                with open(os.path.join(self.docker, "containers", cid, "config.v2.json"), encoding="utf-8") as f:
                    name = json.load(f).get("Name")
                if isinstance(name, str) and name.strip("/"):
                    return name.strip("/")
            except (OSError, ValueError, AttributeError):
                pass
        if runtime in ("podman", "container"):
            if self._podman is None:
                self._podman = {}
                for root in self.podman:
                    try:
                        with open(os.path.join(root, "overlay-containers", "containers.json"), encoding="utf-8") as f:
                            listed = json.load(f)
                    except (OSError, ValueError):
                        continue
                    for c in listed if isinstance(listed, list) else ():
                        names = c.get("names") if isinstance(c, dict) else None
                        if isinstance(c.get("id"), str) and isinstance(names, list) and names:
                            self._podman.setdefault(c["id"], str(names[0]))
            return self._podman.get(cid)
        return None  # containerd, CRI-O: their names are in no file of theirs to read: the short id


def containers_section(label: str, proc: str = PROC, containers: Containers | None = None) -> str:
    """The processes that run in a container, as ``ps -eo pid,ppid,user,container,args`` would print
    them had ps a CONTAINER column, under ``##### <epoch> LABEL: …``; "" when none does."""
    containers = containers or Containers(proc)
    when = time.time()
    lines = []
    for pid in sorted(all_pids(proc)):
        name = containers.of(pid)
        if name is None:
            continue
        info = proc_info(pid, proc)
        if info is not None:
            lines.append(f"{pid:>7} {info.ppid:>7} {info.user:<10} {name:<20} {info.args}\n")
    if not lines:
        return ""
    head = f"##### {when:.9f} {label}: osflow record: processes in containers (/proc/PID/cgroup)\n"
    return head + f"{'PID':>7} {'PPID':>7} {'USER':<10} {'CONTAINER':<20} COMMAND\n" + "".join(lines)


# --------------------------------------------------------------------------- ps


def ps_sections(label: str, containers: Containers | None = None) -> str:
    """``ps -eo pid,ppid,user,args`` and ``ps aux`` under ``##### <epoch> LABEL: <cmd>`` lines, then
    the processes in containers (:func:`containers_section`), when any."""
    out = []
    for cmd in (["ps", "-ww", "-eo", "pid,ppid,user,args"], ["ps", "auxww"]):
        when = time.time()
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"# {' '.join(cmd)} failed: {e}\n"
        shown = " ".join(c for c in cmd if c != "-ww").replace("auxww", "aux")
        out.append(f"##### {when:.9f} {label}: {shown}\n{text}")
    out.append(containers_section(label, containers=containers))
    return "".join(out)


def pids_in_ps(ps_text: str) -> set[int]:
    """The pids of a ``ps.txt`` (none when osflow's table reader cannot read it)."""
    from .. import tables

    try:
        return {p.pid for p in tables.parse_ps(ps_text).processes}
    except tables.TableError:
        return set()

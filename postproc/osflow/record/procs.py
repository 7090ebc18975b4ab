"""The processes: one process from /proc (:func:`proc_info`, for the socket log and ``meta.json``)
and the ``ps`` snapshots of ``ps.txt`` (:func:`ps_sections`)."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- ps


def ps_sections(label: str) -> str:
    """``ps -eo pid,ppid,user,args`` and ``ps aux`` under ``##### <epoch> LABEL: <cmd>`` lines."""
    out = []
    for cmd in (["ps", "-ww", "-eo", "pid,ppid,user,args"], ["ps", "auxww"]):
        when = time.time()
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"# {' '.join(cmd)} failed: {e}\n"
        shown = " ".join(c for c in cmd if c != "-ww").replace("auxww", "aux")
        out.append(f"##### {when:.9f} {label}: {shown}\n{text}")
    return "".join(out)


def pids_in_ps(ps_text: str) -> set[int]:
    """The pids of a ``ps.txt`` (none when osflow's table reader cannot read it)."""
    from .. import tables

    try:
        return {p.pid for p in tables.parse_ps(ps_text).processes}
    except tables.TableError:
        return set()

"""``ps`` output, the process tables ``--ps`` reads: :func:`parse_ps`.

``ps aux``, ``ps -ef`` and ``ps -eo pid,ppid,user,args`` (any ``ps -o`` list whose last
column is the command, when the header line is there), with or without the header, in
``##### <epoch> BEFORE|AFTER: <cmd>`` sections or a single paste.

A process's container: a ``CONTAINER`` column (``osflow record`` writes one, with the container's
name from its runtime: ``nova_conductor``; ``-`` for none), or ps's own ``CGROUP`` column
(``ps -eo pid,ppid,user,cgroup,args``), read by :func:`container_of_cgroup` (the short id):

>>> r = parse_ps("  PID  PPID USER     CGROUP                                                          COMMAND\\n"
...              " 4242     1 nova     0::/system.slice/docker-" + "3f2a1b9c0d4e" * 5 + "3f2a.scope  python3 x\\n")
>>> r.processes[0].container, r.processes[0].args
('3f2a1b9c0d4e', 'python3 x')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import Process
from .lines import MARKER, TableError, quoted, where

#: a container's cgroup, as docker, podman, containerd (Kubernetes, nerdctl) and CRI-O name it,
#: cgroup v1 or v2, systemd's driver (``docker-<id>.scope``) or cgroupfs's (``/docker/<id>``):
#: (pattern, runtime), the first that matches wins
_CONTAINER_CGROUPS = tuple(
    (re.compile(rf"(?:/|^){where}(?P<id>[0-9a-f]{{64}}){end}(?:[/,\s]|$)"), runtime)
    for where, end, runtime in (
        (r"docker-", r"\.scope", "docker"),
        (r"libpod-", r"\.scope", "podman"),
        (r"cri-containerd-", r"\.scope", "containerd"),
        (r"crio-", r"\.scope", "cri-o"),
        (r"nerdctl-", r"\.scope", "containerd"),
        (r"docker/", "", "docker"),
        (r"libpod_parent/libpod-", "", "podman"),
        (r"kubepods(?:/[\w.-]+)*?/", "", "containerd"),
        (r"[\w.-]+/", "", "container"),  # another runtime's cgroupfs folder: the id alone
    )
)


def container_of_cgroup(text: str) -> tuple[str, str] | None:
    """(runtime, full id) of the container a process's cgroups (``/proc/PID/cgroup``, or ps's
    ``CGROUP`` column: the lines joined by commas) put it in; None when none does.

    >>> cid = "3f2a1b9c0d4e" * 5 + "3f2a"
    >>> container_of_cgroup("0::/system.slice/docker-" + cid + ".scope")[0]              # v2, systemd
    'docker'
    >>> container_of_cgroup("12:pids:/docker/" + cid + ",0::/")[0]                       # v1, cgroupfs
    'docker'
    >>> container_of_cgroup("0::/machine.slice/libpod-" + cid + ".scope/container")[0]   # podman
    'podman'
    >>> container_of_cgroup("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podx.slice/"
    ...                     "cri-containerd-" + cid + ".scope")[0]                        # Kubernetes
    'containerd'
    >>> container_of_cgroup("0::/user.slice/user-1000.slice/session-2.scope") is None
    True
    """
    for pattern, runtime in _CONTAINER_CGROUPS:
        m = pattern.search(text)
        if m is not None:
            return runtime, m.group("id")
    return None


def short_id(container_id: str) -> str:
    """A container's id as ``docker ps`` shows it (its first 12 hex digits)."""
    return container_id[:12]


@dataclass(frozen=True)
class PsResult:
    """What ``parse_ps`` found in one file."""

    processes: tuple[Process, ...]
    warnings: tuple[str, ...] = ()




_NUM = r"\d+(?:[.,]\d+)?"
#: ps aux: USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND
_PS_AUX = re.compile(
    rf"(?P<user>\S+)\s+(?P<pid>\d+)\s+{_NUM}\s+{_NUM}\s+\d+\s+\d+\s+\S+\s+\S+\s+\S+\s+\d[\d:.-]*\s+(?P<args>\S.*)$",
    re.ASCII,
)
#: ps -ef: UID PID PPID C STIME TTY TIME CMD
_PS_EF = re.compile(
    r"(?P<user>\S+)\s+(?P<pid>\d+)\s+(?P<ppid>\d+)\s+\d+\s+\S+\s+\S+\s+\d[\d:-]*\s+(?P<args>\S.*)$", re.ASCII
)
#: ps -eo pid,ppid,user,args: PID PPID USER COMMAND
_PS_EO = re.compile(r"(?P<pid>\d+)\s+(?P<ppid>\d+)\s+(?P<user>\S+)\s+(?P<args>\S.*)$", re.ASCII)

#: headerless lines: tried in this order (a numeric ps -ef UID would also fit -eo)
_PS_SHAPES = (_PS_AUX, _PS_EF, _PS_EO)
_PS_KNOWN_HEADERS = {
    ("USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"): _PS_AUX,
    ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"): _PS_EF,
    ("PID", "PPID", "USER", "COMMAND"): _PS_EO,
}
#: the shapes to try, the section header's own first
_PS_ORDER: dict[re.Pattern[str] | None, tuple[re.Pattern[str], ...]] = {
    None: _PS_SHAPES,
    **{r: (r,) + tuple(s for s in _PS_SHAPES if s is not r) for r in _PS_SHAPES},
}
_PS_HEADER = re.compile(r"[A-Z%][A-Z0-9%_+-]*(?:\s+[A-Z%][A-Z0-9%_+-]*)*$")
_PS_COMMAND_COLUMNS = frozenset(("COMMAND", "CMD", "ARGS"))
_PS_USER_COLUMNS = ("USER", "UID", "EUSER", "RUSER")
_PS_EXPECTED = "expected a ps process line (ps aux, ps -ef or ps -eo pid,ppid,user,args)"


def _is_number(text: str) -> bool:
    return text.isdigit() and text.isascii()


@dataclass(frozen=True)
class _Columns:
    """A ``ps -o`` header this module has no regex for: split on blanks, the command last."""

    count: int
    pid: int
    ppid: int | None
    user: int | None
    container: int | None = None  #: a CONTAINER column (its name or id; ``-`` for none)
    cgroup: int | None = None  #: ps's CGROUP column (:func:`container_of_cgroup`)

    def match(self, line: str) -> _Fields | None:
        parts = line.split(None, self.count - 1)
        if len(parts) != self.count or not _is_number(parts[self.pid]):
            return None
        ppid = None
        if self.ppid is not None:
            if not _is_number(parts[self.ppid]):
                return None
            ppid = int(parts[self.ppid])
        user = parts[self.user] if self.user is not None else None
        container = None
        if self.container is not None and parts[self.container] not in ("-", ""):
            container = parts[self.container]
        elif self.cgroup is not None:
            found = container_of_cgroup(parts[self.cgroup])
            container = short_id(found[1]) if found is not None else None
        return int(parts[self.pid]), ppid, user, parts[-1], container


def _ps_header(line: str) -> tuple[re.Pattern[str] | None, _Columns | None] | None:
    """A ps header line -> (its regex) or (its columns); None when the line is no header."""
    if not _PS_HEADER.match(line):
        return None
    names = tuple(line.split())
    if "PID" not in names or names[-1] not in _PS_COMMAND_COLUMNS:
        return None
    known = _PS_KNOWN_HEADERS.get(names)
    if known is not None:
        return known, None
    user = next((names.index(n) for n in _PS_USER_COLUMNS if n in names), None)

    def column(name: str) -> int | None:
        return names.index(name) if name in names else None

    return None, _Columns(len(names), names.index("PID"), column("PPID"), user, column("CONTAINER"), column("CGROUP"))


#: a user column a shape earlier in the order may read as a number (ps aux of a uid without a name)
_PS_NUMERIC = re.compile(_NUM + "$")


#: what a process line says: pid, parent pid, user, command line, container
_Fields = tuple[int, int | None, str | None, str, str | None]


def _ps_fields(m: re.Match[str]) -> _Fields:
    ppid = m.group("ppid") if "ppid" in m.re.groupindex else None
    return int(m.group("pid")), (int(ppid) if ppid is not None else None), m.group("user"), m.group("args"), None


def _ps_match(
    line: str, regex: re.Pattern[str] | None, columns: _Columns | None, last: re.Pattern[str] | None = None
) -> tuple[_Fields, re.Pattern[str] | None] | None:
    """A process line -> ((pid, ppid, user, args, container), the shape that read it); None when no shape does.

    The shapes are tried in the order of the section's header (``regex``; its ``columns`` first),
    but ``last``, the shape its previous line matched, first of all: a section keeps its shape.  A
    line ``last`` reads with a numeric user, which a shape earlier in the order may read otherwise,
    goes through the order as if there were no ``last`` (the result is the same either way):

    >>> eo = "4242 1 root sleep 60"
    >>> aux = "1000 4242 0.0 0.1 1234 567 ? S 10:00 0:00 sleep 60"  # uid 1000 has no name
    >>> _ps_match(eo, None, None, _PS_EO) == (_ps_match(eo, None, None)[0], _PS_EO)
    True
    >>> _ps_match(aux, None, None, _PS_EO) == ((4242, None, "1000", "sleep 60", None), _PS_AUX)
    True
    """
    if columns is not None:
        found = columns.match(line)
        if found is not None:
            return found, None
    order = _PS_ORDER[regex]
    if last is not None:
        m = last.match(line)
        if m is None:
            order = tuple(s for s in order if s is not last)
        elif last is order[0] or not _PS_NUMERIC.match(m.group("user")):
            return _ps_fields(m), last
    for shape in order:
        m = shape.match(line)
        if m is not None:
            return _ps_fields(m), shape
    return None


def parse_ps(text: str, source: str = "") -> PsResult:
    """Parse ps output (one or many sections) into processes.

    Raises TableError when the text has lines but none is a process line or a
    header (section lines ``##### <epoch> ...`` and comments alone are no error);
    the message names the first line that is not understood.

    >>> r = parse_ps('##### 1795628314.015327057 BEFORE: ps -eo pid,ppid,user,args\\n'
    ...              '  PID  PPID USER     COMMAND\\n'
    ...              '26408 26089 placeme+ (wsgi:placement-a -k start\\n')
    >>> p = r.processes[0]
    >>> p.pid, p.ppid, p.user, p.args, p.time, p.line
    (26408, 26089, 'placeme+', '(wsgi:placement-a -k start', 1795628314.015327, 3)
    """
    processes: list[Process] = []
    warnings: list[str] = []
    time: float | None = None
    regex: re.Pattern[str] | None = None
    columns: _Columns | None = None
    last: re.Pattern[str] | None = None  # the shape the section's previous process line matched
    recognised = False
    first: tuple[int, str] | None = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            mark = MARKER.match(line)
            if mark is not None:  # a new section: its own header follows
                time = float(mark.group(1))
                regex, columns, last = None, None, None
            continue
        found = _ps_match(line, regex, columns, last)
        if found is None:
            header = _ps_header(line)
            if header is not None:
                regex, columns = header
                last = None
                recognised = True
            else:
                warnings.append(f"{where(source, lineno)}: {_PS_EXPECTED}, found {quoted(line)}")
                if first is None:
                    first = (lineno, line)
            continue
        (pid, ppid, user, args, container), shape = found
        last = shape or last
        processes.append(Process(pid=pid, args=args, ppid=ppid, user=user, time=time, line=lineno, source=source,
                                 container=container))
        recognised = True

    if first is not None and not recognised:
        lineno, line = first
        raise TableError(f"{where(source, lineno)}: not a ps process table: {_PS_EXPECTED}, found {quoted(line)}")
    return PsResult(tuple(processes), tuple(warnings))

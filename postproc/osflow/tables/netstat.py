"""``netstat -tnp`` / ``-tlnp`` / ``-tanp`` (net-tools) lines: where ``ss`` is missing.

:func:`parse_line` says what one line is; :func:`osflow.tables.parse_ss` reads a whole file
(it tries ``ss``'s parser first, then this one, then ``lsof``'s).
"""

from __future__ import annotations

import re

from ..model import SocketUser
from .lines import STATE_NAMES, Found, Reader, Seen

#: netstat -tnp: Proto Recv-Q Send-Q Local-Address Foreign-Address State [User Inode] PID/Program [Timer]
_NETSTAT_LINE = re.compile(
    r"(?P<proto>tcp6?|udp6?|udpl6?|raw6?)\s+\d+\s+\d+\s+"
    r"(?P<local>\S+)\s+(?P<peer>\S+)"
    r"(?:\s+(?P<rest>.*))?$",
    re.ASCII,
)
#: the process column (``1234/apache2``, ``-``) once a -o timer column is taken off the end
_NETSTAT_PROCESS = re.compile(r"(?:^|\s)(?:(?P<pid>\d+)/(?P<comm>\S.*?)|-)\s*$", re.ASCII)
_NETSTAT_TIMER = re.compile(r"\s+(?:off|on|keepalive|timewait|probe|unkn-\d+)\s+\([^)]*\)\s*$", re.ASCII)
_NETSTAT_HEADER = re.compile(
    r"Active (?:Internet connections|UNIX domain sockets|Bluetooth connections)\b"
    r"|Proto\s+(?:Recv-Q\s+Send-Q\s+Local\s+Address|RefCnt\s+Flags)"
)
#: netstat -a lists unix sockets after the TCP ones: ``unix  2  [ ACC ]  STREAM  LISTENING ...``
_NETSTAT_UNIX = re.compile(r"unix\s+\d+\s+\[", re.ASCII)
#: what netstat -p says when not run by root (on stderr, but ``2>&1`` brings it in)
_NETSTAT_NOTE = re.compile(
    r"\((?:Not all processes could be identified|No info could be read)|will not be shown, you would have to be root"
)
EXPECTED = (
    "expected a netstat socket line (Proto Recv-Q Send-Q Local-Address Foreign-Address State PID/Program)"
)


def parse_line(line: str, lineno: int, time: float | None, reader: Reader) -> Found:
    """A line of ``netstat -tnp``, ``-tlnp`` or ``-tanp`` (net-tools), ``-e``/``-o``/``-W`` columns or not.

    A ``tcp`` / ``tcp6`` line gives its entry: ss's state name, the owner from
    ``PID/Program`` without fd (``-``: none known), its name cut to netstat's
    column (~15 characters).  udp, raw and unix sockets are SOCKET, the two
    header lines HEADER, what netstat says when not run by root NOTE.  Lines
    verbatim from tests/fixtures/tables/netstat-tnp.txt:

    >>> reader = Reader("netstat-tnp.txt")
    >>> parse_line('Active Internet connections (w/o servers)', 1, None, reader)
    <Seen.HEADER: 'header'>
    >>> e = parse_line('tcp6     231      0 ::1:54238               ::1:8778                '
    ...                   'CLOSE_WAIT  1993/python3        ', 35, None, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('CLOSE-WAIT', '[::1]:54238', '[::1]:8778', (SocketUser(comm='python3', pid=1993, fd=None),))
    >>> e = parse_line('tcp6       0      0 ::1:8778                ::1:54238               '
    ...                   'FIN_WAIT2   -                   ', 37, None, reader)
    >>> e.state, e.users
    ('FIN-WAIT-2', ())
    >>> parse_line('(Not all processes could be identified, non-owned process info', 1, None, reader)
    <Seen.NOTE: 'note'>
    """
    n = _NETSTAT_LINE.match(line)
    if n is not None and n.group("proto")[:3] == "tcp":
        state_text, _, after = (n.group("rest") or "").partition(" ")
        state = STATE_NAMES.get(state_text)
        if state is not None:
            p = _NETSTAT_PROCESS.search(_NETSTAT_TIMER.sub("", after))
            users: tuple[SocketUser, ...] = ()
            if p is not None and p.group("pid") is not None:
                users = (SocketUser(p.group("comm"), int(p.group("pid")), None),)
            return reader.entry(state, n.group("local"), n.group("peer"), users, time, lineno, line)
    elif n is not None or _NETSTAT_UNIX.match(line):
        return Seen.SOCKET  # netstat's udp, raw and unix sockets: not ours
    if _NETSTAT_HEADER.match(line):
        return Seen.HEADER
    return Seen.NOTE if _NETSTAT_NOTE.match(line) else None

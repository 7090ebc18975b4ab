"""``lsof -nP -iTCP`` lines (any ``-sTCP:`` filter): where neither ``ss`` nor ``netstat`` is there.

:class:`Lines` reads a run of lsof's lines (the lines of one socket are one entry);
:func:`osflow.tables.parse_ss` reads a whole file.
"""

from __future__ import annotations

import dataclasses
import re

from ..model import SocketEntry, SocketUser
from .lines import STATE_NAMES, Found, Reader, Seen

#: lsof -nP -iTCP: COMMAND PID [TID [TASKCMD]] USER FD TYPE DEVICE SIZE/OFF NODE NAME [(STATE)]
_LSOF_LINE = re.compile(
    r"(?P<comm>\S+)\s+(?P<pid>\d+)\s+(?:\d+\s+(?:\S+\s+)?)?"  # TID, TASKCMD (lsof -K)
    r"\S+\s+(?P<fd>\S+)\s+IPv[46]\s+(?P<device>\S+)\s+\S+\s+(?P<node>\S+)\s+"  # USER FD TYPE DEVICE SIZE/OFF NODE
    r"(?P<name>\S+)(?:\s+\((?P<state>[A-Z][A-Z0-9_]*)\))?\s*$",
    re.ASCII,
)
_LSOF_HEADER = re.compile(
    r"COMMAND\s+PID\s+(?:TID\s+(?:TASKCMD\s+)?)?USER\s+FD\s+TYPE\s+DEVICE\s+SIZE/OFF\s+NODE\s+NAME\b"
)
_LSOF_FD = re.compile(r"\d+", re.ASCII)
EXPECTED = "expected an lsof socket line (COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME)"


class Lines:
    """Lines of ``lsof -nP -iTCP`` (any ``-sTCP:`` filter; ``-K``'s TID and TASKCMD columns too).

    lsof prints a line per process holding a socket: within one run of lsof the
    lines of one socket (same DEVICE, NAME and state) are one entry whose users
    are those processes, as ss has it.  The first line gives the entry; the
    others are SOCKET, and ``gathered`` adds their processes to it.  A run ends
    at the next header line or ``### <epoch>`` line (``new_run``).  UDP sockets
    and TCP sockets not even bound are SOCKET.  From tests/fixtures/tables/lsof-nP-iTCP.txt:

    >>> lsof, reader = Lines(), Reader("lsof.txt")
    >>> _ = lsof('COMMAND     PID      USER   FD   TYPE DEVICE SIZE/OFF NODE NAME', 1, None, reader)
    >>> e = lsof('memcached 29685  memcache   24u  IPv4 282314      0t0  TCP '
    ...          '127.0.0.1:11211->127.0.0.1:50284 (ESTABLISHED)', 23, None, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('ESTAB', '127.0.0.1:11211', '127.0.0.1:50284', (SocketUser(comm='memcached', pid=29685, fd=24),))
    >>> first = lsof('apache2   29988      root    3u  IPv4 268315      0t0  TCP 127.0.0.1:5000 (LISTEN)',
    ...              24, None, reader)
    >>> lsof('apache2   29996  www-data    3u  IPv4 268315      0t0  TCP 127.0.0.1:5000 (LISTEN)', 37, None, reader)
    <Seen.SOCKET: 'socket'>
    >>> [u.pid for u in first.users], [u.pid for e in lsof.gathered([first]) for u in e.users]
    ([29988], [29988, 29996])
    """

    def __init__(self) -> None:
        self._run: dict[tuple[str, str, str], SocketEntry] = {}  # (DEVICE, NAME, state) -> its first line's entry
        self._users: dict[int, tuple[SocketUser, ...]] = {}  # line of such an entry -> its users with the later ones'

    def new_run(self) -> None:
        """A new run of lsof: its lines are sockets of their own, whatever the lines above said."""
        self._run = {}

    def __call__(self, line: str, lineno: int, time: float | None, reader: Reader) -> Found:
        o = _LSOF_LINE.match(line)
        if o is None:
            if not _LSOF_HEADER.match(line):
                return None
            self.new_run()
            return Seen.HEADER
        name = o.group("name")
        local_text, arrow, peer_text = name.partition("->")
        if o.group("node") != "TCP" or local_text in ("*:*", "*"):
            return Seen.SOCKET  # UDP and others; a TCP socket not even bound
        state = STATE_NAMES.get(o.group("state") or "UNKNOWN", "UNKNOWN")
        fd = _LSOF_FD.match(o.group("fd"))
        user = SocketUser(o.group("comm"), int(o.group("pid")), int(fd.group()) if fd else None)
        key = (o.group("device"), name, state)
        first = self._run.get(key)
        if first is not None:  # the same socket in another process (a forked listener)
            users = self._users.get(first.line, first.users)
            if user not in users:
                self._users[first.line] = users + (user,)
            return Seen.SOCKET
        found = reader.entry(state, local_text, peer_text if arrow else "*:*", (user,), time, lineno, line)
        if type(found) is SocketEntry:
            self._run[key] = found
        return found

    def gathered(self, entries: list[SocketEntry]) -> list[SocketEntry]:
        """``entries`` (all of one file: one a line), each lsof socket with the processes of all its lines."""
        more = self._users
        if not more:
            return entries
        return [e if e.line not in more else dataclasses.replace(e, users=more[e.line]) for e in entries]

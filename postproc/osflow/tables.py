"""Socket tables (``ss``) and process tables (``ps``): text -> SocketEntry, Process.

``parse_ss`` reads what ``ss -tp``, ``ss -tnp``, ``ss -tnpH``, ``ss -lnp`` and
``ss -tlnp`` print: with or without the header line, with service names
(``:mysql``) or port numbers, IPv4 or IPv6, with or without the leading
``Netid`` column (only ``tcp`` lines are kept; unix, udp and other sockets are
skipped without a word).  It also reads ``netstat -tnp`` / ``-tlnp`` / ``-tanp``
(net-tools) and ``lsof -nP -iTCP`` (any ``-sTCP:`` filter), with or without
their header lines, into the same entries: ss's state names, the owner from
``PID/Program`` or ``COMMAND PID FD``.  A file may hold many snapshots, each introduced by a
line ``### <epoch seconds> ...``; every entry gets the epoch of its snapshot as
``time`` (``None`` when the file has no such line, as in a single paste).

``parse_ps`` reads ``ps aux``, ``ps -ef`` and ``ps -eo pid,ppid,user,args``
(any ``ps -o`` list whose last column is the command, when the header line is
there), with or without the header: headerless lines (a ``ps aux | grep ...``
paste) are recognised by their shape.  Sections introduced by
``##### <epoch> BEFORE|AFTER: <cmd>`` lines give their processes that ``time``
and may each use another format.

Odd lines never raise: they are skipped and named in ``warnings``
(``file:line: expected ..., found '...'``).  Only a file of which no line at all
is recognisable raises ``TableError`` (a ps file given as an ss file, say).

``SocketTable`` and ``ProcessTable`` gather the entries of many files for the
join: which process owned the local end of a connection at a given time.

Tricky lines, verbatim from a controller (service name as port, wildcard
listener with a ``Netid`` column, an IPv4-mapped IPv6 address):

>>> e = parse_ss('ESTAB      0      0               10.0.20.11:43428          '
...              '10.0.20.11:mysql users:(("apache2",pid=6458,fd=12))  ').entries[0]
>>> e.state, str(e.sockname), str(e.peername), e.users
('ESTAB', '10.0.20.11:43428', '10.0.20.11:3306', (SocketUser(comm='apache2', pid=6458, fd=12),))
>>> e = parse_ss('tcp   LISTEN 0      511         *:5000        *:*    '
...              'users:(("apache2",pid=6460,fd=6),("apache2",pid=6459,fd=6),("apache2",pid=869,fd=6))').entries[0]
>>> e.sockname, e.peername, [u.pid for u in e.users]
(Address(host='*', port=5000), None, [6460, 6459, 869])
>>> parse_address('[::ffff:127.0.0.1]:5000'), parse_address('127.0.0.53%lo:53')
(Address(host='127.0.0.1', port=5000), Address(host='127.0.0.53', port=53))

A ``ps aux`` line without its header keeps the spaces inside the command:

>>> p = parse_ps('keystone    6451  0.0  0.1 108884 11456 ?        Sl   00:00   '
...              '0:00 (wsgi:keystone-pu -k start').processes[0]
>>> p.pid, p.user, p.args
(6451, 'keystone', '(wsgi:keystone-pu -k start')
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from .addresses import BAD_PORT, address_entry, canonical_address, parse_address
from .model import Address, Process, SocketEntry, SocketUser

__all__ = [
    "TableError",
    "SsResult",
    "PsResult",
    "parse_ss",
    "parse_ps",
    "parse_address",
    "canonical_address",
    "SocketTable",
    "ProcessTable",
]


class TableError(ValueError):
    """A socket or process table file of which no line is recognisable."""


@dataclass(frozen=True)
class SsResult:
    """What ``parse_ss`` found in one file."""

    entries: tuple[SocketEntry, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PsResult:
    """What ``parse_ps`` found in one file."""

    processes: tuple[Process, ...]
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- shared

#: ``### 1795628314.019138113 1 ss -tnpH`` / ``##### 1795628314.015327057 BEFORE: ps aux``
_MARKER = re.compile(r"#+\s*(\d+(?:\.\d+)?)(?:\s|$)")

_FOUND_MAX = 80


def _found(line: str) -> str:
    line = line.strip()
    if len(line) > _FOUND_MAX:
        line = line[: _FOUND_MAX - 3] + "..."
    return repr(line)


def _where(source: str, lineno: int) -> str:
    return f"{source or '<text>'}:{lineno}"


# --------------------------------------------------------------------------- socket lines: shared
#
# One line parser per format, as the ``jc`` project has one parser per command: ``_ss_line``,
# ``_netstat_line`` and ``_LsofLines`` each say what one line of their format is (``_Found``),
# and ``parse_ss`` (the driver, at the end) tries them in that order, keeps the snapshot time
# and says which format a line that none of them knows should have been.


class _Seen(enum.Enum):
    """What a line parser makes of a line of its format that gives no entry of its own."""

    SOCKET = "socket"  # a socket line, not a new TCP socket: udp, unix, not bound, an lsof socket again
    HEADER = "header"  # a header line of the format's table
    NOTE = "note"  # a line the tool prints beside its table (netstat's 'you would have to be root')


#: What a line parser returns: the line's entry; what else the line is; a warning (a socket line
#: of the format whose address is not understood); None (not a line of this format).
_Found = Union[SocketEntry, _Seen, str, None]


class _Reader:
    """One file being read: its name, and what each address and users text in it came to (parsed once)."""

    __slots__ = ("source", "users", "_addresses")

    def __init__(self, source: str) -> None:
        self.source = source
        self.users: dict[str, tuple[SocketUser, ...]] = {}  # for _users()
        self._addresses: dict[str, tuple[str, int, Address | None]] = {}  # text -> host, port, Address

    def entry(
        self,
        state: str,
        local_text: str,
        peer_text: str,
        users: tuple[SocketUser, ...],
        time: float | None,
        lineno: int,
        line: str,
    ) -> SocketEntry | str:
        """The entry of a socket line (a listener has no peer), or the warning when an address is not understood.

        >>> _Reader("x").entry("ESTAB", "10.0.20.11:43424", "10.0.20.11:no-such-service", (), None, 7, "...")
        "x:7: cannot read the address '10.0.20.11:no-such-service' (unknown service name?), found '...'"
        """
        addresses = self._addresses
        local = addresses.get(local_text)
        if local is None:
            local = addresses[local_text] = address_entry(local_text)
        peer = addresses.get(peer_text)
        if peer is None:
            peer = addresses[peer_text] = address_entry(peer_text)
        if local[2] is None or peer[1] == BAD_PORT or not peer[0]:
            bad = local_text if local[2] is None else peer_text
            return (
                f"{_where(self.source, lineno)}: cannot read the address {bad!r} (unknown service name?), "
                f"found {_found(line)}"
            )
        return SocketEntry(
            state=state,
            sockname=local[2],
            peername=None if state == "LISTEN" else peer[2],
            users=users,
            time=time,
            line=lineno,
            source=self.source,
        )


# --------------------------------------------------------------------------- ss

_SS_STATES = (
    "ESTAB|SYN-SENT|SYN-RECV|FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT|CLOSE-WAIT|LAST-ACK|LISTEN|CLOSING|UNCONN|CLOSED|UNKNOWN"
)
_SS_LINE = re.compile(
    r"(?:(?P<netid>[a-z][a-z0-9_]*)\s+)?"
    rf"(?P<state>{_SS_STATES})\s+"
    r"\d+\s+\d+\s+"  # Recv-Q Send-Q
    r"(?P<local>\S+)\s+(?P<peer>\S+)"
    r"(?:\s+(?P<rest>.*))?$",
    re.ASCII,
)
_SS_HEADER = re.compile(r"(?:Netid\s+)?State\s+Recv-Q\s+Send-Q\b")
_SS_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",(?:pid=)?(\d+)(?:,(?:fd=)?(\d+))?\)', re.ASCII)  # pid and fd in ASCII digits only; no fd: osflow record's SYN sender
_SS_EXPECTED = "expected an ss socket line (State Recv-Q Send-Q Local Peer)"


def _users(rest: str | None, cache: dict[str, tuple[SocketUser, ...]]) -> tuple[SocketUser, ...]:
    """The ``users:((...),...)`` of the text after the addresses (``-e``/``-o`` may add more)."""
    if not rest:
        return ()
    start = rest.find("users:(")
    if start < 0:
        return ()
    end = rest.find("))", start)
    text = rest[start:] if end < 0 else rest[start : end + 2]
    users = cache.get(text)
    if users is None:
        users = cache[text] = tuple(
            SocketUser(m.group(1), int(m.group(2)), int(m.group(3)) if m.group(3) else None)
            for m in _SS_USER.finditer(text)
        )
    return users


def _ss_line(line: str, lineno: int, time: float | None, reader: _Reader) -> _Found:
    """A line of ``ss -tp``, ``-tnp``, ``-tnpH``, ``-lnp`` or ``-tlnp`` (``Netid`` column or not).

    A TCP socket gives its entry: a port may be a service name, the users are
    those of ``users:((...))``.  Other sockets (udp, u_str, a unix socket's path
    without the Netid column) are SOCKET, the header line is HEADER.  Lines
    verbatim from tests/fixtures (field-samples/ss-lnp.txt, captures/*/ss-tp.txt):

    >>> reader = _Reader("ss-tp.txt")
    >>> _ss_line('State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process', 2, None, reader)
    <_Seen.HEADER: 'header'>
    >>> e = _ss_line('ESTAB 0      0          127.0.0.1:49514    127.0.0.1:mysql '
    ...              'users:(("apache2",pid=26094,fd=21))  ', 3, 1795628314.019138, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('ESTAB', '127.0.0.1:49514', '127.0.0.1:3306', (SocketUser(comm='apache2', pid=26094, fd=21),))
    >>> e.time, e.line, e.source
    (1795628314.019138, 3, 'ss-tp.txt')
    >>> e = _ss_line('tcp   LISTEN 0      1024       10.0.20.11:11211            0.0.0.0:*    '
    ...              'users:(("memcached",pid=811,fd=22))', 5, None, reader)
    >>> e.state, str(e.sockname), e.peername, e.users
    ('LISTEN', '10.0.20.11:11211', None, (SocketUser(comm='memcached', pid=811, fd=22),))
    >>> _ss_line('u_str LISTEN 0      869    /run/mysqld/mysqld.sock 34903    * 0    '
    ...          'users:(("mariadbd",pid=966,fd=97))', 1, None, reader)
    <_Seen.SOCKET: 'socket'>
    >>> _ss_line('tcp        0      0 127.0.0.1:3306          127.0.0.1:56394         ESTABLISHED', 3, None, reader)
    """
    m = _SS_LINE.match(line)
    if m is None:
        return _Seen.HEADER if _SS_HEADER.match(line) else None
    netid = m.group("netid")
    if netid is not None and netid != "tcp":
        return _Seen.SOCKET  # udp, unix, raw ... sockets: not ours
    local_text, peer_text, rest = m.group("local", "peer", "rest")
    glued = peer_text.find("users:(")
    if glued > 0:  # a full-width peer column leaves no blank before the process column
        peer_text, rest = peer_text[:glued], peer_text[glued:]
    if local_text[0] in "/@" or (local_text == "*" and peer_text.isdigit()):
        return _Seen.SOCKET  # a unix socket line without the Netid column (path, inode)
    return reader.entry(m.group("state"), local_text, peer_text, _users(rest, reader.users), time, lineno, line)


# --------------------------------------------------------------------------- netstat

#: TCP state names of netstat and lsof -> ss's (ss names are kept as they are)
_STATE_NAMES = {
    "ESTABLISHED": "ESTAB",
    "SYN_SENT": "SYN-SENT",
    "SYN_RECV": "SYN-RECV",
    "FIN_WAIT1": "FIN-WAIT-1",
    "FIN_WAIT2": "FIN-WAIT-2",
    "TIME_WAIT": "TIME-WAIT",
    "CLOSE": "UNCONN",  # TCP_CLOSE: ss says UNCONN
    "CLOSED": "UNCONN",
    "CLOSE_WAIT": "CLOSE-WAIT",
    "LAST_ACK": "LAST-ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
    "UNKNOWN": "UNKNOWN",
    **{name: name for name in _SS_STATES.split("|")},
}

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
_NETSTAT_EXPECTED = (
    "expected a netstat socket line (Proto Recv-Q Send-Q Local-Address Foreign-Address State PID/Program)"
)


def _netstat_line(line: str, lineno: int, time: float | None, reader: _Reader) -> _Found:
    """A line of ``netstat -tnp``, ``-tlnp`` or ``-tanp`` (net-tools), ``-e``/``-o``/``-W`` columns or not.

    A ``tcp`` / ``tcp6`` line gives its entry: ss's state name, the owner from
    ``PID/Program`` without fd (``-``: none known), its name cut to netstat's
    column (~15 characters).  udp, raw and unix sockets are SOCKET, the two
    header lines HEADER, what netstat says when not run by root NOTE.  Lines
    verbatim from tests/fixtures/tables/netstat-tnp.txt:

    >>> reader = _Reader("netstat-tnp.txt")
    >>> _netstat_line('Active Internet connections (w/o servers)', 1, None, reader)
    <_Seen.HEADER: 'header'>
    >>> e = _netstat_line('tcp6     231      0 ::1:54238               ::1:8778                '
    ...                   'CLOSE_WAIT  1993/python3        ', 35, None, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('CLOSE-WAIT', '[::1]:54238', '[::1]:8778', (SocketUser(comm='python3', pid=1993, fd=None),))
    >>> e = _netstat_line('tcp6       0      0 ::1:8778                ::1:54238               '
    ...                   'FIN_WAIT2   -                   ', 37, None, reader)
    >>> e.state, e.users
    ('FIN-WAIT-2', ())
    >>> _netstat_line('(Not all processes could be identified, non-owned process info', 1, None, reader)
    <_Seen.NOTE: 'note'>
    """
    n = _NETSTAT_LINE.match(line)
    if n is not None and n.group("proto")[:3] == "tcp":
        state_text, _, after = (n.group("rest") or "").partition(" ")
        state = _STATE_NAMES.get(state_text)
        if state is not None:
            p = _NETSTAT_PROCESS.search(_NETSTAT_TIMER.sub("", after))
            users: tuple[SocketUser, ...] = ()
            if p is not None and p.group("pid") is not None:
                users = (SocketUser(p.group("comm"), int(p.group("pid")), None),)
            return reader.entry(state, n.group("local"), n.group("peer"), users, time, lineno, line)
    elif n is not None or _NETSTAT_UNIX.match(line):
        return _Seen.SOCKET  # netstat's udp, raw and unix sockets: not ours
    if _NETSTAT_HEADER.match(line):
        return _Seen.HEADER
    return _Seen.NOTE if _NETSTAT_NOTE.match(line) else None


# --------------------------------------------------------------------------- lsof

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
_LSOF_EXPECTED = "expected an lsof socket line (COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME)"


class _LsofLines:
    """Lines of ``lsof -nP -iTCP`` (any ``-sTCP:`` filter; ``-K``'s TID and TASKCMD columns too).

    lsof prints a line per process holding a socket: within one run of lsof the
    lines of one socket (same DEVICE, NAME and state) are one entry whose users
    are those processes, as ss has it.  The first line gives the entry; the
    others are SOCKET, and ``gathered`` adds their processes to it.  A run ends
    at the next header line or ``### <epoch>`` line (``new_run``).  UDP sockets
    and TCP sockets not even bound are SOCKET.  From tests/fixtures/tables/lsof-nP-iTCP.txt:

    >>> lsof, reader = _LsofLines(), _Reader("lsof.txt")
    >>> _ = lsof('COMMAND     PID      USER   FD   TYPE DEVICE SIZE/OFF NODE NAME', 1, None, reader)
    >>> e = lsof('memcached 29685  memcache   24u  IPv4 282314      0t0  TCP '
    ...          '127.0.0.1:11211->127.0.0.1:50284 (ESTABLISHED)', 23, None, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('ESTAB', '127.0.0.1:11211', '127.0.0.1:50284', (SocketUser(comm='memcached', pid=29685, fd=24),))
    >>> first = lsof('apache2   29988      root    3u  IPv4 268315      0t0  TCP 127.0.0.1:5000 (LISTEN)',
    ...              24, None, reader)
    >>> lsof('apache2   29996  www-data    3u  IPv4 268315      0t0  TCP 127.0.0.1:5000 (LISTEN)', 37, None, reader)
    <_Seen.SOCKET: 'socket'>
    >>> [u.pid for u in first.users], [u.pid for e in lsof.gathered([first]) for u in e.users]
    ([29988], [29988, 29996])
    """

    def __init__(self) -> None:
        self._run: dict[tuple[str, str, str], SocketEntry] = {}  # (DEVICE, NAME, state) -> its first line's entry
        self._users: dict[int, tuple[SocketUser, ...]] = {}  # line of such an entry -> its users with the later ones'

    def new_run(self) -> None:
        """A new run of lsof: its lines are sockets of their own, whatever the lines above said."""
        self._run = {}

    def __call__(self, line: str, lineno: int, time: float | None, reader: _Reader) -> _Found:
        o = _LSOF_LINE.match(line)
        if o is None:
            if not _LSOF_HEADER.match(line):
                return None
            self.new_run()
            return _Seen.HEADER
        name = o.group("name")
        local_text, arrow, peer_text = name.partition("->")
        if o.group("node") != "TCP" or local_text in ("*:*", "*"):
            return _Seen.SOCKET  # UDP and others; a TCP socket not even bound
        state = _STATE_NAMES.get(o.group("state") or "UNKNOWN", "UNKNOWN")
        fd = _LSOF_FD.match(o.group("fd"))
        user = SocketUser(o.group("comm"), int(o.group("pid")), int(fd.group()) if fd else None)
        key = (o.group("device"), name, state)
        first = self._run.get(key)
        if first is not None:  # the same socket in another process (a forked listener)
            users = self._users.get(first.line, first.users)
            if user not in users:
                self._users[first.line] = users + (user,)
            return _Seen.SOCKET
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


# --------------------------------------------------------------------------- the driver

_EXPECTED = {"ss": _SS_EXPECTED, "netstat": _NETSTAT_EXPECTED, "lsof": _LSOF_EXPECTED}
_ANY_EXPECTED = f"{_SS_EXPECTED}, a netstat -tnp line or an lsof -iTCP line"


def parse_ss(text: str, source: str = "") -> SsResult:
    """Parse ss, netstat or lsof output (one or many snapshots) into TCP socket entries.

    Each line goes to the line parsers in turn, ``_ss_line``, ``_netstat_line``
    and ``_LsofLines`` (which lines each reads, and how, is said there): state
    names become ss's, the lines of one lsof socket in one snapshot one entry.
    ``source`` names the file in entries and warnings.  A line no parser knows
    is a warning that names the format of the first line one knew; when no line
    at all is known (snapshot lines ``### <epoch>`` and comments alone are no
    error, nor is an empty text), TableError names the first line not understood.

    >>> r = parse_ss('### 1795628314.019138113 1 ss -tnpH\\n'
    ...              'ESTAB 0      0      127.0.0.1:49514 127.0.0.1:3306  users:(("apache2",pid=26094,fd=21))  \\n'
    ...              'xyz\\n', "ss.txt")
    >>> r.entries[0].time, r.entries[0].line, r.warnings
    (1795628314.019138, 2, ("ss.txt:3: expected an ss socket line (State Recv-Q Send-Q Local Peer), found 'xyz'",))
    """
    reader, lsof = _Reader(source), _LsofLines()
    entries: list[SocketEntry] = []
    warnings: list[str] = []
    time: float | None = None  # that of the last ### line
    kind: str | None = None  # the format of the first line recognised: names what a bad line should have been
    first: tuple[int, str] | None = None  # the first line not understood
    details = False  # the line above was a socket line: ss -i's lines of details (a tab first) may follow
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            mark = _MARKER.match(line)
            if mark is not None:  # a new snapshot
                time = float(mark.group(1))
                lsof.new_run()
            details = False
            continue
        name, found = "ss", _ss_line(line, lineno, time, reader)
        if found is None:
            if details and raw[0] == "\t":
                continue  # details of the socket above: ss -i prints them on a line of their own
            name, found = "netstat", _netstat_line(line, lineno, time, reader)
            if found is None:
                name, found = "lsof", lsof(line, lineno, time, reader)
        if type(found) is SocketEntry:
            entries.append(found)
            details = True
        elif found is None:
            warnings.append(f"{_where(source, lineno)}: {_EXPECTED[kind or 'ss']}, found {_found(line)}")
            first = first or (lineno, line)
            details = False
            continue
        else:
            if type(found) is str:  # a socket line whose address is not understood
                warnings.append(found)
            details = found is _Seen.SOCKET
        if kind is None and found is not _Seen.NOTE:
            kind = name
    if first is not None and kind is None:
        lineno, line = first
        raise TableError(
            f"{_where(source, lineno)}: not a socket table (ss, netstat or lsof): {_ANY_EXPECTED}, found {_found(line)}"
        )
    return SsResult(tuple(lsof.gathered(entries)), tuple(warnings))


# --------------------------------------------------------------------------- ps

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

    def match(self, line: str) -> tuple[int, int | None, str | None, str] | None:
        parts = line.split(None, self.count - 1)
        if len(parts) != self.count or not _is_number(parts[self.pid]):
            return None
        ppid = None
        if self.ppid is not None:
            if not _is_number(parts[self.ppid]):
                return None
            ppid = int(parts[self.ppid])
        user = parts[self.user] if self.user is not None else None
        return int(parts[self.pid]), ppid, user, parts[-1]


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
    ppid = names.index("PPID") if "PPID" in names else None
    return None, _Columns(len(names), names.index("PID"), ppid, user)


#: a user column a shape earlier in the order may read as a number (ps aux of a uid without a name)
_PS_NUMERIC = re.compile(_NUM + "$")


def _ps_fields(m: re.Match[str]) -> tuple[int, int | None, str | None, str]:
    ppid = m.group("ppid") if "ppid" in m.re.groupindex else None
    return int(m.group("pid")), (int(ppid) if ppid is not None else None), m.group("user"), m.group("args")


def _ps_match(
    line: str, regex: re.Pattern[str] | None, columns: _Columns | None, last: re.Pattern[str] | None = None
) -> tuple[tuple[int, int | None, str | None, str], re.Pattern[str] | None] | None:
    """A process line -> ((pid, ppid, user, args), the shape that read it); None when no shape does.

    The shapes are tried in the order of the section's header (``regex``; its ``columns`` first),
    but ``last``, the shape its previous line matched, first of all: a section keeps its shape.  A
    line ``last`` reads with a numeric user, which a shape earlier in the order may read otherwise,
    goes through the order as if there were no ``last`` (the result is the same either way):

    >>> eo = "4242 1 root sleep 60"
    >>> aux = "1000 4242 0.0 0.1 1234 567 ? S 10:00 0:00 sleep 60"  # uid 1000 has no name
    >>> _ps_match(eo, None, None, _PS_EO) == (_ps_match(eo, None, None)[0], _PS_EO)
    True
    >>> _ps_match(aux, None, None, _PS_EO) == ((4242, None, "1000", "sleep 60"), _PS_AUX)
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
            mark = _MARKER.match(line)
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
                warnings.append(f"{_where(source, lineno)}: {_PS_EXPECTED}, found {_found(line)}")
                if first is None:
                    first = (lineno, line)
            continue
        (pid, ppid, user, args), shape = found
        last = shape or last
        processes.append(Process(pid=pid, args=args, ppid=ppid, user=user, time=time, line=lineno, source=source))
        recognised = True

    if first is not None and not recognised:
        lineno, line = first
        raise TableError(f"{_where(source, lineno)}: not a ps process table: {_PS_EXPECTED}, found {_found(line)}")
    return PsResult(tuple(processes), tuple(warnings))


# --------------------------------------------------------------------------- tables


_WILDCARDS = frozenset(("*", "::", "[::]"))
_WILDCARDS_V4 = frozenset(("0.0.0.0",))


class SocketTable:
    """The socket entries of many ss files, looked up by 4-tuple or by listening port."""

    def __init__(self, entries: Iterable[SocketEntry]) -> None:
        self._entries: tuple[SocketEntry, ...] = tuple(entries)
        self._by_pair: dict[tuple[Address, Address], list[SocketEntry]] = {}
        self._listeners: dict[int, list[SocketEntry]] = {}
        seen: set[tuple[Address, tuple[SocketUser, ...]]] = set()
        for e in self._entries:
            local = canonical_address(e.sockname)
            if e.peername is not None:
                self._by_pair.setdefault((local, canonical_address(e.peername)), []).append(e)
            elif e.state == "LISTEN":
                key = (local, e.users)
                if key not in seen:  # the same listener in every snapshot: keep the first
                    seen.add(key)
                    self._listeners.setdefault(local.port, []).append(e)

    def __len__(self) -> int:
        return len(self._entries)

    def owner(self, local: Address, remote: Address, time: float | None = None) -> SocketEntry | None:
        """The entry of the socket ``local`` -> ``remote`` (or None).

        When the 4-tuple is in several snapshots, an entry naming its users
        beats one without (TIME-WAIT, orphaned FIN-WAIT-2, not yet accepted),
        then the snapshot nearest to ``time`` wins (an entry without time, or a
        query without time, is as near as can be); ties go to the earliest entry.
        """
        candidates = self._by_pair.get((canonical_address(local), canonical_address(remote)))
        if not candidates:
            return None
        best: SocketEntry | None = None
        best_key: tuple[int, float] = (2, 0.0)
        for e in candidates:
            distance = 0.0 if (time is None or e.time is None) else abs(e.time - time)
            key = (0 if e.users else 1, distance)
            if key < best_key:
                best, best_key = e, key
        return best

    def listeners(self, port: int) -> tuple[SocketEntry, ...]:
        """The LISTEN entries on ``port``, any host (``*`` included), each listener once."""
        return tuple(self._listeners.get(port, ()))

    def listening_owner(self, local: Address, processes: ProcessTable | None = None
                        ) -> tuple[SocketEntry, SocketUser, int] | None:
        """Who accepted a connection to ``local`` when its own socket is in no snapshot (a short
        connection behind Apache or uwsgi, accepted and closed between two looks):
        ``(listener, owner, processes)`` when the listening socket on ``local`` (its host or a
        wildcard) has one owner, or owners that are one process group — a parent and the
        workers it forked, as the process table's parent pids say, or, without a process
        table, processes of one program.  ``owner`` is the group's parent; None when the
        listener is unknown, has no owner, or several unrelated processes hold it.
        """
        local = canonical_address(local)
        found: list[tuple[SocketEntry, SocketUser]] = []
        for e in self._listeners.get(local.port, ()):
            host = e.sockname.host
            if host == local.host or host in _WILDCARDS or (host in _WILDCARDS_V4 and ":" not in local.host):
                found += [(e, u) for u in e.users]
        if not found:
            return None
        pids = {u.pid: (e, u) for e, u in found}
        roots = set()
        for pid in pids:
            p, seen = pid, 0
            # climb while the parent also holds the socket: a worker's parent is its master
            while processes is not None and seen < 64:
                proc = processes.get(p)
                if proc is None or proc.ppid not in pids:
                    break
                p, seen = proc.ppid, seen + 1
            roots.add(p)
        # no parent pids to tell (ps aux, or no ps): one program's processes are taken for one group
        if len(roots) > 1 and len({pids[r][1].comm for r in roots}) > 1:
            return None
        e, u = pids[min(roots)]
        return e, u, len(pids)


class ProcessTable:
    """The processes of many ps files, by pid; ``len`` counts distinct pids."""

    def __init__(self, processes: Iterable[Process]) -> None:
        self._by_pid: dict[int, Process] = {}
        for p in processes:
            known = self._by_pid.get(p.pid)
            if known is None or (len(p.args), p.ppid is not None) > (len(known.args), known.ppid is not None):
                self._by_pid[p.pid] = p

    def __len__(self) -> int:
        return len(self._by_pid)

    def parents(self) -> dict[int, int | None]:
        """pid -> parent pid (None where the table does not say, as in ``ps aux``)."""
        return {pid: p.ppid for pid, p in self._by_pid.items()}

    def get(self, pid: int) -> Process | None:
        """The process ``pid``, or None.

        Of several snapshots of it, the one with the longest command line wins,
        then one that knows the parent pid, then the first.
        """
        return self._by_pid.get(pid)

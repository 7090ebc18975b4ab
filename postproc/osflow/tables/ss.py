"""``ss`` output, and the socket table files ``--ss`` reads: :func:`parse_ss`.

``ss -tp``, ``-tnp``, ``-tnpH``, ``-lnp`` and ``-tlnp`` lines (:func:`parse_line`): with or
without the header line, service names or port numbers, IPv4 or IPv6, the ``Netid`` column or
not.  :func:`parse_ss` reads a file of them, or of ``netstat`` (:mod:`.netstat`) or ``lsof``
(:mod:`.lsof`) lines, in ``### <epoch>`` snapshots or a single paste.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import SocketEntry, SocketUser
from . import lsof, netstat
from .lines import MARKER, SS_STATES, Found, Reader, Seen, TableError, quoted, where


@dataclass(frozen=True)
class SsResult:
    """What ``parse_ss`` found in one file."""

    entries: tuple[SocketEntry, ...]
    warnings: tuple[str, ...] = ()



_SS_LINE = re.compile(
    r"(?:(?P<netid>[a-z][a-z0-9_]*)\s+)?"
    rf"(?P<state>{SS_STATES})\s+"
    r"\d+\s+\d+\s+"  # Recv-Q Send-Q
    r"(?P<local>\S+)\s+(?P<peer>\S+)"
    r"(?:\s+(?P<rest>.*))?$",
    re.ASCII,
)
_SS_HEADER = re.compile(r"(?:Netid\s+)?State\s+Recv-Q\s+Send-Q\b")
#: pid and fd in ASCII digits only; no fd: osflow record's SYN sender
_SS_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",(?:pid=)?(\d+)(?:,(?:fd=)?(\d+))?\)', re.ASCII)
EXPECTED = "expected an ss socket line (State Recv-Q Send-Q Local Peer)"


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


def parse_line(line: str, lineno: int, time: float | None, reader: Reader) -> Found:
    """A line of ``ss -tp``, ``-tnp``, ``-tnpH``, ``-lnp`` or ``-tlnp`` (``Netid`` column or not).

    A TCP socket gives its entry: a port may be a service name, the users are
    those of ``users:((...))``.  Other sockets (udp, u_str, a unix socket's path
    without the Netid column) are SOCKET, the header line is HEADER.  Lines
    verbatim from tests/fixtures (field-samples/ss-lnp.txt, captures/*/ss-tp.txt):

    >>> reader = Reader("ss-tp.txt")
    >>> parse_line('State Recv-Q Send-Q Local Address:Port  Peer Address:Port Process', 2, None, reader)
    <Seen.HEADER: 'header'>
    >>> e = parse_line('ESTAB 0      0          127.0.0.1:49514    127.0.0.1:mysql '
    ...              'users:(("apache2",pid=26094,fd=21))  ', 3, 1795628314.019138, reader)
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('ESTAB', '127.0.0.1:49514', '127.0.0.1:3306', (SocketUser(comm='apache2', pid=26094, fd=21),))
    >>> e.time, e.line, e.source
    (1795628314.019138, 3, 'ss-tp.txt')
    >>> e = parse_line('tcp   LISTEN 0      1024       10.0.20.11:11211            0.0.0.0:*    '
    ...              'users:(("memcached",pid=811,fd=22))', 5, None, reader)
    >>> e.state, str(e.sockname), e.peername, e.users
    ('LISTEN', '10.0.20.11:11211', None, (SocketUser(comm='memcached', pid=811, fd=22),))
    >>> parse_line('u_str LISTEN 0      869    /run/mysqld/mysqld.sock 34903    * 0    '
    ...          'users:(("mariadbd",pid=966,fd=97))', 1, None, reader)
    <Seen.SOCKET: 'socket'>
    >>> parse_line('tcp        0      0 127.0.0.1:3306          127.0.0.1:56394         ESTABLISHED', 3, None, reader)
    """
    m = _SS_LINE.match(line)
    if m is None:
        return Seen.HEADER if _SS_HEADER.match(line) else None
    netid = m.group("netid")
    if netid is not None and netid != "tcp":
        return Seen.SOCKET  # udp, unix, raw ... sockets: not ours
    local_text, peer_text, rest = m.group("local", "peer", "rest")
    glued = peer_text.find("users:(")
    if glued > 0:  # a full-width peer column leaves no blank before the process column
        peer_text, rest = peer_text[:glued], peer_text[glued:]
    if local_text[0] in "/@" or (local_text == "*" and peer_text.isdigit()):
        return Seen.SOCKET  # a unix socket line without the Netid column (path, inode)
    return reader.entry(m.group("state"), local_text, peer_text, _users(rest, reader.users), time, lineno, line)


# --------------------------------------------------------------------------- the driver

_EXPECTED = {"ss": EXPECTED, "netstat": netstat.EXPECTED, "lsof": lsof.EXPECTED}
_ANY_EXPECTED = f"{EXPECTED}, a netstat -tnp line or an lsof -iTCP line"


def parse_ss(text: str, source: str = "") -> SsResult:
    """Parse ss, netstat or lsof output (one or many snapshots) into TCP socket entries.

    Each line goes to the line parsers in turn, ``parse_line``, ``netstat.parse_line``
    and ``lsof.Lines`` (which lines each reads, and how, is said there): state
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
    reader, runs = Reader(source), lsof.Lines()
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
            mark = MARKER.match(line)
            if mark is not None:  # a new snapshot
                time = float(mark.group(1))
                runs.new_run()
            details = False
            continue
        name, found = "ss", parse_line(line, lineno, time, reader)
        if found is None:
            if details and raw[0] == "\t":
                continue  # details of the socket above: ss -i prints them on a line of their own
            name, found = "netstat", netstat.parse_line(line, lineno, time, reader)
            if found is None:
                name, found = "lsof", runs(line, lineno, time, reader)
        if type(found) is SocketEntry:
            entries.append(found)
            details = True
        elif found is None:
            warnings.append(f"{where(source, lineno)}: {_EXPECTED[kind or 'ss']}, found {quoted(line)}")
            first = first or (lineno, line)
            details = False
            continue
        else:
            if type(found) is str:  # a socket line whose address is not understood
                warnings.append(found)
            details = found is Seen.SOCKET
        if kind is None and found is not Seen.NOTE:
            kind = name
    if first is not None and kind is None:
        lineno, line = first
        raise TableError(
            f"{where(source, lineno)}: not a socket table (ss, netstat or lsof): {_ANY_EXPECTED}, "
            f"found {quoted(line)}"
        )
    return SsResult(tuple(runs.gathered(entries)), tuple(warnings))

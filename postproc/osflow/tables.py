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
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Iterable, Optional

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


# --------------------------------------------------------------------------- addresses

#: Service names ``ss`` prints without ``-n``, for when this machine's services
#: database lacks them (the machine that ran ``ss`` had them in /etc/services).
_SERVICE_FALLBACK: dict[str, int] = {
    "mysql": 3306,
    "epmd": 4369,
    "amqp": 5672,
    "memcache": 11211,
    "http": 80,
    "https": 443,
    "http-alt": 8080,
    "commplex-main": 5000,  # IANA's name for 5000 (keystone), in some distributions' /etc/services
    "openstack-id": 35357,  # IANA's name for keystone's admin port
}

_service_cache: dict[str, Optional[int]] = {}


def _service_port(name: str) -> Optional[int]:
    """Port of a TCP service name (services database first, then the fallback)."""
    try:
        return _service_cache[name]
    except KeyError:
        pass
    try:
        port: Optional[int] = socket.getservbyname(name, "tcp")
    except (OSError, ValueError):  # unknown; or not even a name (NUL, surrogates)
        port = _SERVICE_FALLBACK.get(name.lower())
    _service_cache[name] = port
    return port


_host_cache: dict[str, str] = {}


def _canonical_host(text: str) -> str:
    """Brackets, ``%iface`` and ``::ffff:`` dropped; wildcards made ``*``."""
    try:
        return _host_cache[text]
    except KeyError:
        pass
    host = text.split("%", 1)[0].strip("[]")
    if host in ("*", "0.0.0.0", "::", ""):
        host = "*"
    elif ":" in host:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:  # not an address: keep the text (rare, then cached)
            host = host.lower()
        else:
            mapped = ip.ipv4_mapped
            host = str(mapped) if mapped is not None else ("*" if ip.is_unspecified else str(ip))
    _host_cache[text] = host
    return host


#: port value for ``*`` (a listener's peer)
_ANY_PORT = -1
#: port value for a service name not in the services database
_BAD_PORT = -2


def _split_address(text: str) -> tuple[str, int]:
    """``host:port`` as ss prints it -> (canonical host, port | _ANY_PORT | _BAD_PORT)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return "", _BAD_PORT
    if port.isdigit() and port.isascii():
        number = int(port)
    elif port == "*":
        number = _ANY_PORT
    else:
        found = _service_port(port)
        number = _BAD_PORT if found is None else found
    return _canonical_host(host), number


def _address_entry(text: str) -> tuple[str, int, Optional[Address]]:
    """What parse_ss keeps per address text: host, port, and the Address when there is one."""
    host, port = _split_address(text)
    return host, port, (Address(host, port) if host and port >= 0 else None)


def parse_address(text: str) -> Address:
    """One ``host:port`` of ss (``[::1]:5000``, ``10.0.20.11:mysql``, ``*:80``) as an Address.

    Raises ValueError when it is not one (or its port is ``*``).

    >>> parse_address("10.0.20.11:mysql")
    Address(host='10.0.20.11', port=3306)
    >>> parse_address("[::]:5000"), parse_address("0.0.0.0:9292")
    (Address(host='*', port=5000), Address(host='*', port=9292))
    """
    host, port = _split_address(text.strip())
    if port < 0 or not host:
        raise ValueError(f"not a host:port with a known port: {text!r}")
    return Address(host, port)


def canonical_address(address: Address) -> Address:
    """The same endpoint as ``parse_ss`` spells it (``::ffff:127.0.0.1`` -> ``127.0.0.1``).

    >>> canonical_address(Address("::ffff:127.0.0.1", 5000))
    Address(host='127.0.0.1', port=5000)
    """
    host = _canonical_host(address.host)
    return address if host == address.host else Address(host, address.port)


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
_SS_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",(?:pid=)?(\d+),(?:fd=)?(\d+)\)')
_SS_EXPECTED = "expected an ss socket line (State Recv-Q Send-Q Local Peer)"

# --------------------------------------------------------------------------- netstat and lsof

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

_EXPECTED = {"ss": _SS_EXPECTED, "netstat": _NETSTAT_EXPECTED, "lsof": _LSOF_EXPECTED}
_ANY_EXPECTED = f"{_SS_EXPECTED}, a netstat -tnp line or an lsof -iTCP line"


def _users(rest: Optional[str], cache: dict[str, tuple[SocketUser, ...]]) -> tuple[SocketUser, ...]:
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
            SocketUser(m.group(1), int(m.group(2)), int(m.group(3))) for m in _SS_USER.finditer(text)
        )
    return users


def parse_ss(text: str, source: str = "") -> SsResult:
    """Parse ss, netstat or lsof output (one or many snapshots) into TCP socket entries.

    Besides ss, it reads ``netstat -tnp`` / ``-tlnp`` / ``-tanp`` (``tcp`` and
    ``tcp6`` lines; ``PID/Program`` or ``-``) and ``lsof -nP -iTCP`` (any
    ``-sTCP:`` filter), with or without their header lines; state names become
    ss's (``ESTABLISHED`` -> ``ESTAB``, ``CLOSE_WAIT`` -> ``CLOSE-WAIT``, ``CLOSE``
    -> ``UNCONN``).  lsof prints one line per process holding a socket: the
    lines of one socket (same DEVICE and NAME) in one snapshot become one entry
    whose users are those processes, as ss has it.  netstat knows no file
    descriptor (``fd`` None) and cuts the program name to ~15 characters.

    ``source`` names the file in entries and warnings.  Raises TableError when
    the text has lines but none is a socket line or a header (snapshot lines
    ``### <epoch>`` and comments alone are no error, nor is an empty text); the
    message names the first line that is not understood.

    >>> r = parse_ss('### 1795628314.019138113 1 ss -tnpH\\n'
    ...              'ESTAB 0      0      127.0.0.1:49514 127.0.0.1:3306  users:(("apache2",pid=26094,fd=21))  \\n'
    ...              'xyz\\n', "ss.txt")
    >>> r.entries[0].time, r.entries[0].line, r.warnings
    (1795628314.019138, 2, ("ss.txt:3: expected an ss socket line (State Recv-Q Send-Q Local Peer), found 'xyz'",))

    netstat and lsof lines (real, from tests/fixtures/tables):

    >>> e = parse_ss('tcp6     231      0 ::1:54238               ::1:8778                '
    ...              'CLOSE_WAIT  1993/python3        ').entries[0]
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('CLOSE-WAIT', '[::1]:54238', '[::1]:8778', (SocketUser(comm='python3', pid=1993, fd=None),))
    >>> e = parse_ss('memcached 29685  memcache   24u  IPv4 282314      0t0  TCP '
    ...              '127.0.0.1:11211->127.0.0.1:50284 (ESTABLISHED)').entries[0]
    >>> e.state, str(e.sockname), str(e.peername), e.users
    ('ESTAB', '127.0.0.1:11211', '127.0.0.1:50284', (SocketUser(comm='memcached', pid=29685, fd=24),))
    """
    entries: list[SocketEntry] = []
    warnings: list[str] = []
    time: Optional[float] = None
    recognised = False
    kind = "ss"  # the format of the first line recognised: names what a bad line should have been
    kind_known = False
    first: Optional[tuple[int, str]] = None
    previous_ok = False
    addresses: dict[str, tuple[str, int, Optional[Address]]] = {}  # text -> host, port, Address
    users_seen: dict[str, tuple[SocketUser, ...]] = {}
    lsof_sockets: dict[tuple[str, str, str], int] = {}  # (DEVICE, NAME, state) -> index in entries, per snapshot

    def address(text: str) -> tuple[str, int, Optional[Address]]:
        found = addresses.get(text)
        if found is None:
            found = addresses[text] = _address_entry(text)
        return found

    def bad_address(lineno: int, bad: str, line: str) -> None:
        warnings.append(
            f"{_where(source, lineno)}: cannot read the address {bad!r} (unknown service name?), found {_found(line)}"
        )

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _SS_LINE.match(line)
        if m is None:
            if line[0] == "#":
                mark = _MARKER.match(line)
                if mark is not None:
                    time = float(mark.group(1))
                    lsof_sockets = {}
                previous_ok = False
                continue
            if _SS_HEADER.match(line):
                recognised = True
                previous_ok = False
                if not kind_known:
                    kind, kind_known = "ss", True
                continue
            if previous_ok and raw[0] == "\t":
                continue  # details of the socket above: ss -i prints them on a line of their own

            n = _NETSTAT_LINE.match(line)
            if n is not None and n.group("proto")[:3] == "tcp":
                rest = n.group("rest") or ""
                state_text, _, after = rest.partition(" ")
                state = _STATE_NAMES.get(state_text)
                if state is not None:
                    recognised = True
                    if not kind_known:
                        kind, kind_known = "netstat", True
                    local, peer = address(n.group("local")), address(n.group("peer"))
                    if local[2] is None or peer[1] == _BAD_PORT or not peer[0]:
                        bad_address(lineno, n.group("local") if local[2] is None else n.group("peer"), line)
                        previous_ok = False
                        continue
                    after = _NETSTAT_TIMER.sub("", after)
                    p = _NETSTAT_PROCESS.search(after)
                    users: tuple[SocketUser, ...] = ()
                    if p is not None and p.group("pid") is not None:
                        users = (SocketUser(p.group("comm"), int(p.group("pid")), None),)
                    entries.append(
                        SocketEntry(
                            state=state,
                            sockname=local[2],
                            peername=None if state == "LISTEN" else peer[2],
                            users=users,
                            time=time,
                            line=lineno,
                            source=source,
                        )
                    )
                    previous_ok = True
                    continue
            elif n is not None or _NETSTAT_UNIX.match(line):
                recognised = True  # netstat's udp, raw and unix sockets: not ours
                previous_ok = True
                if not kind_known:
                    kind, kind_known = "netstat", True
                continue
            if _NETSTAT_HEADER.match(line):
                recognised = True
                previous_ok = False
                if not kind_known:
                    kind, kind_known = "netstat", True
                continue
            if _NETSTAT_NOTE.match(line):
                previous_ok = False
                continue

            o = _LSOF_LINE.match(line)
            if o is not None:
                recognised = True
                previous_ok = True
                if not kind_known:
                    kind, kind_known = "lsof", True
                if o.group("node") != "TCP":
                    continue  # UDP and others: not ours
                name = o.group("name")
                local_text, arrow, peer_text = name.partition("->")
                if local_text in ("*:*", "*"):
                    continue  # a TCP socket not even bound
                state = _STATE_NAMES.get(o.group("state") or "UNKNOWN", "UNKNOWN")
                local = address(local_text)
                peer = address(peer_text) if arrow else ("*", _ANY_PORT, None)
                if local[2] is None or peer[1] == _BAD_PORT or not peer[0]:
                    bad_address(lineno, local_text if local[2] is None else peer_text, line)
                    previous_ok = False
                    continue
                fd = _LSOF_FD.match(o.group("fd"))
                user = SocketUser(o.group("comm"), int(o.group("pid")), int(fd.group()) if fd else None)
                key = (o.group("device"), name, state)
                index = lsof_sockets.get(key)
                if index is not None:  # the same socket in another process (a forked listener)
                    known = entries[index]
                    if user not in known.users:
                        entries[index] = dataclasses.replace(known, users=known.users + (user,))
                    continue
                lsof_sockets[key] = len(entries)
                entries.append(
                    SocketEntry(
                        state=state,
                        sockname=local[2],
                        peername=None if state == "LISTEN" else peer[2],
                        users=(user,),
                        time=time,
                        line=lineno,
                        source=source,
                    )
                )
                continue
            if _LSOF_HEADER.match(line):
                recognised = True
                previous_ok = False
                lsof_sockets = {}  # a new lsof run
                if not kind_known:
                    kind, kind_known = "lsof", True
                continue

            warnings.append(f"{_where(source, lineno)}: {_EXPECTED[kind]}, found {_found(line)}")
            if first is None:
                first = (lineno, line)
            previous_ok = False
            continue

        if not kind_known:
            kind_known = True  # kind is "ss" already
        netid = m.group("netid")
        if netid is not None and netid != "tcp":
            recognised = True  # udp, unix, raw ... sockets: not ours
            previous_ok = True
            continue
        local_text = m.group("local")
        peer_text = m.group("peer")
        rest = m.group("rest")
        glued = peer_text.find("users:(")
        if glued > 0:  # a full-width peer column leaves no blank before the process column
            peer_text, rest = peer_text[:glued], peer_text[glued:]
        if local_text[0] in "/@" or (local_text == "*" and peer_text.isdigit()):
            recognised = True  # a unix socket line without the Netid column (path, inode)
            previous_ok = True
            continue

        local = addresses.get(local_text)  # inline, not address(): the ss path is the hot one
        if local is None:
            local = addresses[local_text] = _address_entry(local_text)
        peer = addresses.get(peer_text)
        if peer is None:
            peer = addresses[peer_text] = _address_entry(peer_text)
        if local[2] is None or peer[1] == _BAD_PORT or not peer[0]:
            recognised = True  # it is an ss line, only an address is not understood
            previous_ok = False
            bad_address(lineno, local_text if local[2] is None else peer_text, line)
            continue

        state = m.group("state")
        entries.append(
            SocketEntry(
                state=state,
                sockname=local[2],
                peername=None if state == "LISTEN" else peer[2],
                users=_users(rest, users_seen),
                time=time,
                line=lineno,
                source=source,
            )
        )
        recognised = True
        previous_ok = True

    if first is not None and not recognised:
        lineno, line = first
        raise TableError(
            f"{_where(source, lineno)}: not a socket table (ss, netstat or lsof): {_ANY_EXPECTED}, found {_found(line)}"
        )
    return SsResult(tuple(entries), tuple(warnings))


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
_PS_ORDER: dict[Optional[re.Pattern[str]], tuple[re.Pattern[str], ...]] = {
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
    ppid: Optional[int]
    user: Optional[int]

    def match(self, line: str) -> Optional[tuple[int, Optional[int], Optional[str], str]]:
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


def _ps_header(line: str) -> Optional[tuple[Optional[re.Pattern[str]], Optional[_Columns]]]:
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


def _ps_match(
    line: str, regex: Optional[re.Pattern[str]], columns: Optional[_Columns]
) -> Optional[tuple[int, Optional[int], Optional[str], str]]:
    if columns is not None:
        found = columns.match(line)
        if found is not None:
            return found
    for shape in _PS_ORDER[regex]:
        m = shape.match(line)
        if m is not None:
            groups = m.groupdict()
            ppid = groups.get("ppid")
            return int(groups["pid"]), (int(ppid) if ppid is not None else None), groups["user"], groups["args"]
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
    time: Optional[float] = None
    regex: Optional[re.Pattern[str]] = None
    columns: Optional[_Columns] = None
    recognised = False
    first: Optional[tuple[int, str]] = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            mark = _MARKER.match(line)
            if mark is not None:  # a new section: its own header follows
                time = float(mark.group(1))
                regex, columns = None, None
            continue
        found = _ps_match(line, regex, columns)
        if found is None:
            header = _ps_header(line)
            if header is not None:
                regex, columns = header
                recognised = True
            else:
                warnings.append(f"{_where(source, lineno)}: {_PS_EXPECTED}, found {_found(line)}")
                if first is None:
                    first = (lineno, line)
            continue
        pid, ppid, user, args = found
        processes.append(Process(pid=pid, args=args, ppid=ppid, user=user, time=time, line=lineno, source=source))
        recognised = True

    if first is not None and not recognised:
        lineno, line = first
        raise TableError(f"{_where(source, lineno)}: not a ps process table: {_PS_EXPECTED}, found {_found(line)}")
    return PsResult(tuple(processes), tuple(warnings))


# --------------------------------------------------------------------------- tables


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

    def owner(self, local: Address, remote: Address, time: Optional[float] = None) -> Optional[SocketEntry]:
        """The entry of the socket ``local`` -> ``remote`` (or None).

        When the 4-tuple is in several snapshots, an entry naming its users
        beats one without (TIME-WAIT, orphaned FIN-WAIT-2, not yet accepted),
        then the snapshot nearest to ``time`` wins (an entry without time, or a
        query without time, is as near as can be); ties go to the earliest entry.
        """
        candidates = self._by_pair.get((canonical_address(local), canonical_address(remote)))
        if not candidates:
            return None
        best: Optional[SocketEntry] = None
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

    def get(self, pid: int) -> Optional[Process]:
        """The process ``pid``, or None.

        Of several snapshots of it, the one with the longest command line wins,
        then one that knows the parent pid, then the first.
        """
        return self._by_pid.get(pid)

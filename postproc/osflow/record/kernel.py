"""What the kernel says about TCP sockets: netlink sock_diag (as ``ss`` asks), /proc/net/tcp{,6} as
the fallback, both as :class:`TcpRow`; and the address helpers for their encodings."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable

PROC = "/proc"

#: /proc/net/tcp state numbers -> the names ss prints
TCP_STATES = {
    1: "ESTAB",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "UNCONN",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECV",
}


def read_file(path: str) -> bytes | None:
    """The bytes of a (/proc, /sys) file; None when it cannot be read (e.g. the process is gone)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# --------------------------------------------------------------------------- /proc/net/tcp


def hex_address(text: str) -> tuple[str, int]:
    """An address of /proc/net/tcp{,6} (``0100007F:1388``) -> (host, port).

    >>> hex_address("0100007F:1388")
    ('127.0.0.1', 5000)
    >>> hex_address("00000000000000000000000001000000:2242")
    ('::1', 8770)
    >>> hex_address("0000000000000000FFFF00000100007F:22B2")
    ('::ffff:127.0.0.1', 8882)
    """
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four 32-bit words, each in host (little-endian) order
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return ip, int(port, 16)


def format_address(host: str, port: int, any_port: bool = False) -> str:
    """``host:port`` as ss prints it (``[::1]:5000``; ``0.0.0.0:*`` for a listener's peer).

    >>> format_address("::1", 5000), format_address("0.0.0.0", 0, any_port=True)
    ('[::1]:5000', '0.0.0.0:*')
    """
    p = "*" if any_port else str(port)
    return f"[{host}]:{p}" if ":" in host else f"{host}:{p}"


class TcpRow:
    """One TCP socket as the kernel lists it; addresses are decoded only when asked for."""

    __slots__ = ("key", "inode", "state", "lport", "rport", "recv_q", "send_q", "uid", "_decode", "_raw")

    def __init__(self, key, inode, state, lport, rport, recv_q, send_q, uid, decode, raw) -> None:
        self.key = key  # hashable: the 4-tuple in the kernel's encoding
        self.inode = inode
        self.state = state  # number, see TCP_STATES
        self.lport = lport
        self.rport = rport
        self.recv_q = recv_q
        self.send_q = send_q
        self.uid = uid
        self._decode = decode
        self._raw = raw

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """(local, remote) as (host, port) pairs."""
        return self._decode(self._raw)


def _decode_hex(parts) -> tuple[tuple[str, int], tuple[str, int]]:
    return hex_address(parts[1]), hex_address(parts[2])


def proc_net_tcp_rows(proc: str = PROC) -> Iterable[TcpRow]:
    """The sockets of /proc/net/tcp{,6} (slow on big hash tables: the fallback for netlink)."""
    for path in (f"{proc}/net/tcp", f"{proc}/net/tcp6"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for line in data.decode("ascii", "replace").splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10:
                continue
            tx, _, rx = parts[4].partition(":")
            local, remote = parts[1], parts[2]
            yield TcpRow(
                (local, remote),
                int(parts[9]),
                int(parts[3], 16),
                int(local[local.rindex(":") + 1 :], 16),
                int(remote[remote.rindex(":") + 1 :], 16),
                int(rx, 16),
                int(tx, 16),
                int(parts[7]),
                _decode_hex,
                parts,
            )


# --------------------------------------------------------------------------- netlink sock_diag


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NL_HEADER = struct.Struct("=IHHII")
PORT_PAIR = struct.Struct(">HH")  #: source and destination port, as in a TCP header and inet_diag_sockid
_QUEUES = struct.Struct("=IIII")  # rqueue, wqueue, uid, inode


def sock_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """A connection as inet_diag_sockid begins (ports, then each address in 16 bytes): what netlink
    rows hold as :attr:`TcpRow.key` and what an exact lookup asks for."""
    return PORT_PAIR.pack(sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0")


def _decode_diag(raw: tuple[int, bytes]) -> tuple[tuple[str, int], tuple[str, int]]:
    family, sockid = raw
    sport, dport = PORT_PAIR.unpack_from(sockid, 0)
    if family == socket.AF_INET:
        src = socket.inet_ntop(socket.AF_INET, sockid[4:8])
        dst = socket.inet_ntop(socket.AF_INET, sockid[20:24])
    else:
        src = socket.inet_ntop(socket.AF_INET6, sockid[4:20])
        dst = socket.inet_ntop(socket.AF_INET6, sockid[20:36])
    return (src, sport), (dst, dport)


#: every TCP state (a dump's mask: bit N for state N)
ALL_STATES = 0xFFFFFFFF
#: the states of sockets a process may hold: not TIME-WAIT (6) nor a connection request not yet a
#: socket (NEW_SYN_RECV, 12), which have no inode, and of which a busy port has thousands
HELD_STATES = ALL_STATES & ~(1 << 6) & ~(1 << 12)

_BC_JMP, _BC_S_EQ, _BC_D_EQ = 1, 11, 12
_REQ_BYTECODE = 1


def port_filter(ports: Iterable[int]) -> bytes:
    """inet_diag bytecode, as ``ss 'sport = :P or dport = :P or …'`` compiles it: a socket whose local
    or remote port is one of ``ports`` passes.  Each test (8 bytes: the op, then the port) goes on to
    the next op when it holds, skips it when not; each but the last is followed by a jump to the end
    (pass); past the last test is 4 bytes past the end (fail).  The kernel audits the chain of "yes"
    steps: it must reach the end exactly, through every op.

    >>> len(port_filter([5000, 8774])), port_filter([5000])[:8].hex()
    (44, '0b080c0000008813')
    """
    tests = [(code, port) for port in sorted(set(ports)) for code in (_BC_S_EQ, _BC_D_EQ)]
    total = 12 * len(tests) - 4
    out = b""
    for code, port in tests:
        out += struct.pack("=BBHHH", code, 8, 12, 0, port)
        if len(out) < total:
            out += struct.pack("=BBH", _BC_JMP, 4, total - len(out))
    return out


class SockDiag:
    """TCP sockets from the kernel over NETLINK_SOCK_DIAG, as ``ss`` gets them (much faster than
    /proc/net/tcp, whose read walks the whole connection hash table); with ``ports``, a dump lists
    only the sockets on them (the kernel filters: a machine's thousands of others cost nothing)."""

    def __init__(self, ports: Iterable[int] | None = None) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        self.sock.settimeout(5)
        self.seq = 0
        self.filter = b""
        if ports:
            code = port_filter(ports)
            self.filter = struct.pack("=HH", 4 + len(code), _REQ_BYTECODE) + code

    def close(self) -> None:
        self.sock.close()

    def rows(self, states: int = ALL_STATES) -> Iterable[TcpRow]:
        """The sockets (on the ports, when given) in ``states`` (a mask: bit N for state N)."""
        for family in (socket.AF_INET, socket.AF_INET6):
            yield from self._dump(family, states=states)

    def lookup(self, family: int, src: bytes, sport: int, dst: bytes, dport: int) -> TcpRow | None:
        """The one socket with this 4-tuple (an exact lookup, no walk over the hash table)."""
        # any interface, no cookie
        sockid = sock_key(src, sport, dst, dport) + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
        try:
            rows = self._dump(family, sockid, flags=0x1)
        except OSError:
            return None
        return rows[0] if rows else None

    def _dump(self, family: int, sockid: bytes = bytes(48), flags: int = 0x301, states: int = ALL_STATES
              ) -> list[TcpRow]:
        self.seq += 1
        # inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid; a dump's port filter
        req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, states) + sockid
        if flags & 0x300:
            req += self.filter
        self.sock.send(_NL_HEADER.pack(16 + len(req), SOCK_DIAG_BY_FAMILY, flags, self.seq, 0) + req)
        single = not flags & 0x300
        rows: list[TcpRow] = []
        while True:
            data = self.sock.recv(1 << 17)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = _NL_HEADER.unpack_from(data, off)
                if kind == _NLMSG_DONE:
                    return rows
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    if single and code == errno.ENOENT:
                        return rows
                    raise OSError(code, f"sock_diag: {os.strerror(code)}")
                if seq == self.seq and length >= 16 + 72:
                    base = off + 16
                    fam = data[base]
                    state = data[base + 1]
                    sockid = data[base + 4 : base + 40]  # sport, dport, src[16], dst[16]
                    sport, dport = PORT_PAIR.unpack_from(sockid, 0)
                    rq, wq, uid, inode = _QUEUES.unpack_from(data, base + 56)
                    rows.append(TcpRow(sockid, inode, state, sport, dport, rq, wq, uid, _decode_diag, (fam, sockid)))
                    if single:
                        return rows
                if length <= 0:
                    break
                off += (length + 3) & ~3
            if not data:
                return rows


def tcp_rows_source(proc: str = PROC, ports: Iterable[int] | None = None):
    """A function returning the current TCP sockets (with ``ports``: at least those on them): netlink
    when the kernel allows (filtered by the kernel), else /proc/net/tcp (every socket)."""
    if proc == PROC:
        try:
            diag = SockDiag(ports)
            list(diag.rows())
            return diag.rows
        except OSError:
            pass
    return lambda: proc_net_tcp_rows(proc)


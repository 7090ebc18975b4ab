"""What the socket table formats share: the file being read, what a line parser returns, the
snapshot marker, the state names, the way a warning names a line."""

from __future__ import annotations

import enum
import re

from ..addresses import BAD_PORT, address_entry
from ..model import Address, SocketEntry, SocketUser


class TableError(ValueError):
    """A socket or process table file of which no line is recognisable."""



# --------------------------------------------------------------------------- shared

#: ``### 1795628314.019138113 1 ss -tnpH`` / ``##### 1795628314.015327057 BEFORE: ps aux``
MARKER = re.compile(r"#+\s*(\d+(?:\.\d+)?)(?:\s|$)")

_FOUND_MAX = 80


def quoted(line: str) -> str:
    line = line.strip()
    if len(line) > _FOUND_MAX:
        line = line[: _FOUND_MAX - 3] + "..."
    return repr(line)


def where(source: str, lineno: int) -> str:
    return f"{source or '<text>'}:{lineno}"


# --------------------------------------------------------------------------- socket lines: shared
#
# One line parser per format, as the ``jc`` project has one parser per command: ``parse_line``,
# ``netstat.parse_line`` and ``lsof.Lines`` each say what one line of their format is (``Found``),
# and ``parse_ss`` (the driver, at the end) tries them in that order, keeps the snapshot time
# and says which format a line that none of them knows should have been.


class Seen(enum.Enum):
    """What a line parser makes of a line of its format that gives no entry of its own."""

    SOCKET = "socket"  # a socket line, not a new TCP socket: udp, unix, not bound, an lsof socket again
    HEADER = "header"  # a header line of the format's table
    NOTE = "note"  # a line the tool prints beside its table (netstat's 'you would have to be root')


#: What a line parser returns: the line's entry; what else the line is; a warning (a socket line
#: of the format whose address is not understood); None (not a line of this format).
Found = SocketEntry | Seen | str | None


class Reader:
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

        >>> Reader("x").entry("ESTAB", "10.0.20.11:43424", "10.0.20.11:no-such-service", (), None, 7, "...")
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
                f"{where(self.source, lineno)}: cannot read the address {bad!r} (unknown service name?), "
                f"found {quoted(line)}"
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




SS_STATES = (
    "ESTAB|SYN-SENT|SYN-RECV|FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT|CLOSE-WAIT|LAST-ACK|LISTEN|CLOSING|UNCONN|CLOSED|UNKNOWN"
)

#: TCP state names of netstat and lsof -> ss's (ss names are kept as they are)
STATE_NAMES = {
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
    **{name: name for name in SS_STATES.split("|")},
}

"""Source stage, ``osflow-post -r`` on a long capture: the capture cut into pieces for tshark.

tshark keeps, for the whole capture, what it learnt of every frame and connection: its memory grows
with the capture, whatever osflow keeps.  :class:`Cutter` reads a pcap or pcapng file (without tshark:
its own reading of the link, IP and TCP headers, streamed, block by block) and writes it again as
pieces of about ``frames`` frames, which tshark reads one after the other
(:class:`osflow.tshark.Tshark`).  Each piece is a capture of its own: the file's header blocks, then,
for each connection still open at the cut, the frames tshark needs to read its next frames as it
would have in the whole capture, then the piece's own frames:

* the connection's first frames (its handshake, a MySQL greeting and login, an AMQP Connection.Start
  and Tune): up to its :data:`SETUP`-th payload frame, ending where an exchange ends;
* its frames since the start of its current exchange (the last run of client payload after server
  payload, the request a response still to come answers; for AMQP the last frame boundary in both
  directions with no message content pending), so that a message spanning the cut is read whole.

tshark's lines for the frames before the piece's own are dropped (the piece before gave them out):
every frame's line comes from exactly one piece.  The frames are numbered again from 1 in each
piece and the connections from 0: each :class:`Piece` maps its frames back to the capture's frame
numbers and to the connection numbers tshark gives in one run (``tcp.stream``: in order of first
appearance, a SYN with another initial sequence number on a closed 4-tuple starting a new one).

Where the reading meets what it cannot follow (a link type, an encapsulation or an IP fragment
whose TCP it cannot place, TLS keys in the file, a second section, a damaged or cut block), the rest
of the file goes unchanged into the piece being written: tshark then reads it as it would have, in
one piece.
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["SETUP", "Cutter", "Piece", "cuttable"]

#: Payload frames of a connection's beginning kept for every piece it reaches (handshake, login).
SETUP = 8
#: Seconds of silence after which a connection is carried into the pieces no longer.
IDLE = 600.0
#: Connections whose numbers are remembered (a frame of one forgotten gets a new number).
REMEMBERED = 20000

_PCAPNG = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGIC = {
    b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9), b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
}
_SHB, _IDB, _PB, _SPB, _EPB, _DSB = 0x0A0D0D0A, 1, 2, 3, 6, 0x0A
_IPV4 = struct.Struct(">BxHxxHxB")  # version and header length, total length, fragment, protocol
_TCP = struct.Struct(">4xI4xBB")  # sequence number, data offset, flags
#: AMQP 0-9-1 methods a content header and body follow (Basic.Publish, Return, Deliver, Get-Ok)
_CONTENT_METHODS = {(60, 40), (60, 50), (60, 60), (60, 71)}


def cuttable(path: str) -> bool:
    """Is ``path`` a regular, uncompressed pcap or pcapng file (what :class:`Cutter` reads)?"""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == _PCAPNG or head in _PCAP_MAGIC


@dataclass
class Piece:
    """A piece written: tshark's frame ``i`` (from 1) is the capture's frame ``frames[i - 1]`` and
    belongs to connection ``streams[i - 1]`` (-1: not a TCP frame the cutter placed); tshark's lines
    for frames before ``first`` (the capture's number of the piece's first own frame) are the piece
    before's."""

    path: str
    first: int
    header: list[bytes] = field(default_factory=list)
    frames: array = field(default_factory=lambda: array("q"))
    streams: array = field(default_factory=lambda: array("q"))
    last: bool = False  #: the last piece
    #: (frames, connections) before the rest of the file, put in this piece as it was: tshark's frames
    #: after the mapped ones are the capture's from ``frames + 1`` on, its new connections numbered from
    #: ``connections`` on
    tail: tuple[int, int] | None = None
    _known: list[int] | None = field(default=None, repr=False)  # the placed connections, in order

    def frame(self, local: int) -> int:
        """The capture's frame number of tshark's frame ``local`` in this piece."""
        if 0 < local <= len(self.frames):
            return self.frames[local - 1]
        return self.tail[0] + local - len(self.frames) if self.tail is not None else local

    def stream(self, local_frame: int, local_stream: int) -> int:
        """The capture's connection number of tshark's ``local_stream`` seen in frame ``local_frame``."""
        if 0 < local_frame <= len(self.streams) and self.streams[local_frame - 1] >= 0:
            return self.streams[local_frame - 1]
        # a frame the cutter did not place: tshark numbers the piece's connections in order of appearance
        if self._known is None:
            self._known = list(dict.fromkeys(s for s in self.streams if s >= 0))
        known = self._known
        if local_stream < len(known):
            return known[local_stream]
        return (self.tail[1] if self.tail is not None else len(known)) + local_stream - len(known)

    def save(self) -> None:
        """Keep the frame and connection numbers on disk, beside the piece (:meth:`load` reads them)."""
        with open(self.path + ".map", "wb") as f:
            f.write(struct.pack("<q", len(self.frames)))
            self.frames.tofile(f)
            self.streams.tofile(f)
        self.frames, self.streams, self._known = array("q"), array("q"), None

    def load(self) -> None:
        self.frames, self.streams, self._known = array("q"), array("q"), None
        with open(self.path + ".map", "rb") as f:
            n = struct.unpack("<q", f.read(8))[0]
            self.frames.fromfile(f, n)
            self.streams.fromfile(f, n)

    def drop(self) -> None:
        """Forget the numbers (on disk, :meth:`load` reads them again)."""
        self.frames, self.streams, self._known = array("q"), array("q"), None

    def remove(self) -> None:
        for path in (self.path, self.path + ".map"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def own(self, local: int) -> bool:
        """Is tshark's frame ``local`` one of the piece's own (not carried from before the cut)?"""
        return self.frame(local) >= self.first


class _Direction:
    """One direction of an AMQP connection, followed frame by frame: where its frames end and which
    channels still wait for message content."""

    __slots__ = ("buf", "content", "skip")

    def __init__(self) -> None:
        self.skip = 0  # bytes left of the current frame (after its first bytes, read into buf)
        self.buf = b""  # the current frame's first bytes, while fewer than needed
        self.content: dict[int, int] = {}  # channel -> body bytes still to come (-1: its header)

    def at_rest(self) -> bool:
        return not self.skip and not self.buf and not self.content

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self.skip:
                n = min(self.skip, len(data) - i)
                self.skip -= n
                i += n
                continue
            need = 7 + 12  # a frame's header and the first 12 bytes of its payload
            take = data[i:i + need - len(self.buf)]
            self.buf += take
            i += len(take)
            if len(self.buf) < 7:
                return
            kind, channel, size = struct.unpack(">BHI", self.buf[:7])
            if len(self.buf) < min(need, 7 + size):
                return
            body = self.buf[7:7 + size]
            if kind == 1 and len(body) >= 4 and struct.unpack(">HH", body[:4]) in _CONTENT_METHODS:
                self.content[channel] = -1
            elif kind == 2 and len(body) >= 12:
                left = struct.unpack(">Q", body[4:12])[0]
                if left:
                    self.content[channel] = left
                else:
                    self.content.pop(channel, None)
            elif kind == 3 and channel in self.content:
                left = self.content[channel] - size
                if left > 0:
                    self.content[channel] = left
                else:
                    del self.content[channel]
            self.skip = 7 + size + 1 - len(self.buf)  # the rest of the payload and the frame-end octet
            self.buf = b""
            if self.skip < 0:  # (a frame shorter than what was read: not AMQP framing)
                self.skip = 0


class _Conn:
    """What the cutter keeps of one TCP connection."""

    __slots__ = ("amqp", "base", "client", "closed", "exchange", "fins", "frames", "id", "interim", "key", "last",
                 "last_dir", "nxt", "payloads", "setup", "setup_end")

    def __init__(self, number: int, client: int | None, key: bytes = b"") -> None:
        self.key = key
        # a direction (0, 1) is the sender: the first or the second endpoint of the connection's key
        self.id = number
        self.last = 0.0  # the time of its last frame
        self.client = client  # the direction of the SYN (None: not seen)
        self.base: list[int | None] = [None, None]  # each direction's first sequence number (tshark's base_seq)
        self.nxt: list[int | None] = [None, None]  # the next sequence number expected in each direction
        self.fins = 0  # bit d: a FIN went in direction d
        self.closed = False
        self.payloads = 0
        self.setup = array("q")  # its first frames: frame number, offset and length of each, one after the other
        self.setup_end = 0  # how many of them (times 3) end where an exchange ends
        self.frames = array("q")  # its frames since its current exchange began, as ``setup``
        self.exchange = True  # the frames since the current exchange began are all kept (False: gone)
        self.last_dir: int | None = None  # the direction of its last payload
        self.interim = False  # the server's last run began with an HTTP interim (1xx) answer
        self.amqp: tuple[_Direction, _Direction] | None = None


    def slim(self) -> tuple:
        """What is kept of a connection closed or silent too long: its number, its initial sequence
        numbers (a new SYN on its 4-tuple tells a new connection), whether it was closed, its last
        frame's time, its client (:meth:`revived` makes it a connection again)."""
        return (self.id, self.base[0], self.base[1], self.closed, self.last, self.client)

    @classmethod
    def revived(cls, slim: tuple, key: bytes) -> _Conn:
        """A connection seen again after :meth:`slim`: its beginning is no longer carried."""
        conn = cls(slim[0], slim[5], key)
        conn.base[0], conn.base[1], conn.closed, conn.last = slim[1], slim[2], slim[3], slim[4]
        conn.payloads = SETUP + 1
        return conn


class _Unreadable(Exception):
    """A block or frame the cutter cannot follow: the rest of the file goes into one piece."""


class Cutter:
    """Write ``capture`` as pieces of about ``frames`` frames into ``folder`` (see the module)."""

    def __init__(self, capture: str, folder: str, frames: int) -> None:
        self.capture = capture
        self.folder = folder
        self.size = max(1, frames)
        self.pieces = 0  #: pieces written so far
        self._conns: dict[bytes, _Conn | tuple] = {}  # (a tuple: :meth:`_Conn.slim`)
        self._open: dict[int, _Conn] = {}  # id -> connection not closed yet
        self._next_id = 0
        self._order = "<"
        self._resolution: list[float] = []  # per interface: seconds per timestamp unit
        self._header: list[bytes] = []  # blocks every piece begins with
        self._linktypes: list[int] = []

    # ------------------------------------------------------------------ pieces

    def __iter__(self) -> Iterator[Piece]:
        with open(self.capture, "rb", buffering=1 << 20) as f, open(self.capture, "rb") as self._src:
            self._ng = f.read(4) == _PCAPNG
            f.seek(0)
            blocks = self._pcapng(f) if self._ng else self._pcap(f)
            count = 0  # frames read
            piece = self._start(1, 0)
            try:
                for offset, length, frame, time in blocks:
                    count += 1
                    if self._mine >= self.size and self._wrote_line:
                        yield self._finish(piece, offset)
                        piece = self._start(count, offset)
                    if count % 4096 == 0:
                        self._housekeeping(time)
                    conn = self._place(count, (count, offset, length), frame, time)
                    self._frames.append(count)
                    self._streams.append(conn.id if conn is not None else -1)
                    self._mine += 1
            except _Unreadable:
                # the rest as it is: tshark reads it in this piece, numbering on from its own frames
                piece.tail = (count, self._next_id)
            piece.last = True
            yield self._finish(piece, None)

    def _start(self, first: int, offset: int) -> Piece:
        """Begin a piece whose own frames begin with the capture's frame ``first``, at ``offset`` in the file."""
        self.pieces += 1
        path = os.path.join(self.folder, f"piece{self.pieces}.{'pcapng' if self._ng else 'pcap'}")
        self._own_from = offset
        self._frames, self._streams, self._mine = array("q"), array("q"), 0
        # what each connection open at the cut needs carried into the piece (if it shows up in it)
        self._carried = {conn.id: (conn.setup[:conn.setup_end] if conn.payloads > SETUP else conn.setup[:])
                         + conn.frames for conn in self._open.values()}
        return Piece(path, first, header=list(self._header))

    def _finish(self, piece: Piece, end: int | None) -> Piece:
        """Write the piece: the header blocks, the frames carried for its connections, its own frames
        (the file's bytes up to ``end``; None: to its end)."""
        seen = set(self._streams)
        carried: dict[int, tuple[int, int, int]] = {}
        for cid, frames in self._carried.items():
            if cid in seen:
                for k in range(0, len(frames), 3):
                    carried[frames[k]] = (frames[k + 1], frames[k + 2], cid)
        self._carried = {}
        with open(piece.path, "wb") as out:
            for block in piece.header:
                out.write(block)
            for number in sorted(carried):
                offset, length, cid = carried[number]
                self._src.seek(offset)
                out.write(self._src.read(length))
                piece.frames.append(number)
                piece.streams.append(cid)
            self._src.seek(self._own_from)
            left = -1 if end is None else end - self._own_from
            while left:
                chunk = self._src.read(1 << 20 if left < 0 else min(left, 1 << 20))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk) if left > 0 else 0
        piece.frames.extend(self._frames)
        piece.streams.extend(self._streams)
        piece.header = []
        return piece

    def _housekeeping(self, now: float) -> None:
        """Forget what no piece will need: connections silent for :data:`IDLE` seconds are carried no
        longer; the numbers of at most :data:`REMEMBERED` connections are kept."""
        for conn in [c for c in self._open.values() if now - c.last > IDLE]:
            del self._open[conn.id]
            self._conns[conn.key] = conn.slim()
        if len(self._conns) > REMEMBERED:
            by_age = sorted(self._conns.items(), key=lambda kv: kv[1][4] if isinstance(kv[1], tuple) else kv[1].last)
            for key, kept in by_age[:len(self._conns) - REMEMBERED * 9 // 10]:
                if isinstance(kept, tuple):
                    del self._conns[key]

    # ------------------------------------------------------------------ connections

    def _place(self, number: int, block: tuple[int, int, int], frame: tuple | None, time: float) -> _Conn | None:
        """Follow the connection of frame ``number``; the connection (None: not TCP)."""
        if frame is None:
            return None
        src, dst, seq, flags, length, payload = frame
        d = 0 if src <= dst else 1
        key = src + dst if d == 0 else dst + src
        found = self._conns.get(key)
        conn: _Conn | None
        if isinstance(found, tuple):
            conn = self._conns[key] = _Conn.revived(found, key)
        else:
            conn = found
        syn, ack, fin, rst = flags & 0x02, flags & 0x10, flags & 0x01, flags & 0x04
        if conn is not None and syn and not ack and conn.base[d] is not None and conn.base[d] != seq:
            conn = None  # the 4-tuple used again: a new connection, as tshark counts them
        if conn is None:
            conn = self._conns[key] = _Conn(self._next_id, d if syn and not ack else None, key)
            self._next_id += 1
        if not conn.closed:
            self._open[conn.id] = conn  # (again, when it was silent too long: from its next exchange on)
        conn.last = time
        if conn.base[d] is None:
            conn.base[d] = seq
        if length or syn or fin:
            expected = conn.nxt[d]
            if expected is not None and seq != expected:
                conn.exchange = False  # a gap or a retransmission: keep everything until the next exchange
            end = (seq + length + (1 if syn else 0) + (1 if fin else 0)) & 0xFFFFFFFF
            if expected is None or ((end - expected) & 0xFFFFFFFF) < 0x80000000:
                conn.nxt[d] = end
        if length:
            self._wrote_line = True
            if len(payload) < length:  # the frame was cut by the snap length: its bytes cannot be followed
                conn.exchange = False
            if conn.client is None:  # no SYN seen: the client is the end on the higher port
                conn.client = d if src[-2:] > dst[-2:] else 1 - d
            self._payload(conn, block, d, payload)
        else:
            if fin or rst:
                self._wrote_line = True
            self._keep(conn, block)
        if rst:
            conn.closed = True
        if fin:
            conn.fins |= 1 << d
            if conn.fins == 3:
                conn.closed = True
        if conn.closed:
            self._open.pop(conn.id, None)
            self._conns[key] = conn.slim()
        return conn

    def _keep(self, conn: _Conn, block: tuple[int, int, int]) -> None:
        if conn.payloads <= SETUP:
            conn.setup.extend(block)
        conn.frames.extend(block)

    def _payload(self, conn: _Conn, block: tuple[int, int, int], d: int, payload: bytes | memoryview) -> None:
        if conn.payloads == 0 and bytes(payload[:4]) == b"AMQP":
            conn.amqp = (_Direction(), _Direction())
            conn.client = d
        begins = False  # does an exchange begin with this frame?
        if conn.amqp is not None:
            begins = conn.amqp[0].at_rest() and conn.amqp[1].at_rest()
            conn.amqp[d].feed(bytes(payload[8:] if bytes(payload[:4]) == b"AMQP" else payload))
        else:
            if conn.last_dir is not None and conn.last_dir != d:
                if d == conn.client:
                    begins = not conn.interim
                else:  # the server answers: an HTTP interim answer does not end the exchange
                    conn.interim = bytes(payload[:10]).startswith((b"HTTP/1.1 1", b"HTTP/1.0 1"))
            conn.last_dir = d
        conn.payloads += 1
        if begins and conn.payloads <= SETUP + 1:
            conn.setup_end = len(conn.setup)  # the setup may end before this frame
        if conn.payloads <= SETUP:
            conn.setup.extend(block)
        if begins and conn.exchange:
            conn.frames = array("q")
        elif begins:
            conn.exchange = True  # kept since the gap; from the next exchange on, forgotten again
        conn.frames.extend(block)

    # ------------------------------------------------------------------ reading the file

    _ng = True
    _rest = 0
    _wrote_line = False

    def _pcap(self, f: BinaryIO) -> Iterator[tuple[int, int, tuple | None, float]]:
        """(offset, length, TCP frame, time) of each record of a pcap file."""
        head = f.read(24)
        if len(head) < 24 or head[:4] not in _PCAP_MAGIC:
            raise _Unreadable
        order, unit = _PCAP_MAGIC[head[:4]]
        self._header.append(head)
        linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
        record = struct.Struct(order + "IIII")
        offset = 24
        while True:
            rec = f.read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise _Unreadable
            sec, frac, incl, _ = record.unpack(rec)
            if incl > 1 << 28:
                raise _Unreadable
            data = f.read(incl)
            if len(data) < incl:
                raise _Unreadable
            yield offset, 16 + incl, self._frame(linktype, data), sec + frac * unit
            offset += 16 + incl

    def _pcapng(self, f: BinaryIO) -> Iterator[tuple[int, int, tuple | None, float]]:
        """(offset, length, TCP frame, time) of each packet block of a pcapng file."""
        first = True
        time = 0.0
        offset = 0
        head_s = epb = pb = None
        while True:
            head = f.read(8)
            if not head:
                return
            if len(head) < 8:
                raise _Unreadable
            if head[:4] == _PCAPNG:
                if not first:
                    raise _Unreadable  # a second section: its own interfaces
                bom = f.read(4)
                self._order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                head_s = struct.Struct(self._order + "II")
                epb, pb = struct.Struct(self._order + "IIII"), struct.Struct(self._order + "HHIII")
                length = struct.unpack(self._order + "I", head[4:8])[0]
                body = bom + f.read(max(0, length - 12))
                kind = _SHB
            else:
                assert head_s is not None and epb is not None and pb is not None
                kind, length = head_s.unpack(head)
                body = f.read(max(0, length - 8))
            if length < 12 or length % 4 or length > 1 << 28 or 8 + len(body) != length:
                raise _Unreadable
            first = False
            at, offset = offset, offset + length
            if kind in (_EPB, _PB):  # body: the block after its type and length
                if kind == _EPB:
                    iface, high, low, incl = epb.unpack_from(body, 0)
                else:
                    iface, _, high, low, incl = pb.unpack_from(body, 0)
                if iface >= len(self._linktypes):
                    raise _Unreadable
                time = ((high << 32) | low) * self._resolution[iface]
                yield at, length, self._frame(self._linktypes[iface], memoryview(body)[20:20 + incl]), time
            elif kind in (_SHB, _IDB):
                if kind == _IDB:
                    self._interface(head + body)
                self._header.append(head + body)
            elif kind == _DSB:
                raise _Unreadable  # TLS keys: tshark decrypts from a session's start
            elif kind == _SPB:
                if not self._linktypes:
                    raise _Unreadable
                yield at, length, self._frame(self._linktypes[0], memoryview(body)[4:length - 12]), time

    def _interface(self, block: bytes) -> None:
        linktype = struct.unpack(self._order + "H", block[8:10])[0]
        self._linktypes.append(linktype)
        resolution = 1e-6
        i = 16
        while i + 4 <= len(block) - 4:  # the options: if_tsresol (9) says the timestamps' unit
            code, size = struct.unpack(self._order + "HH", block[i:i + 4])
            if code == 0:
                break
            if code == 9 and size >= 1:
                v = block[i + 4]
                resolution = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
            i += 4 + (size + 3) // 4 * 4
        self._resolution.append(resolution)

    # ------------------------------------------------------------------ link, IP, TCP

    def _frame(self, linktype: int, data: bytes | memoryview) -> tuple | None:
        """(source, destination, seq, flags, TCP payload length, payload bytes) of a TCP frame, None
        for a frame that holds no TCP; raises :class:`_Unreadable` for one tshark may find TCP in
        where this reading cannot."""
        try:
            if linktype == 1:  # Ethernet
                ethertype, i = struct.unpack(">H", data[12:14])[0], 14
                while ethertype in (0x8100, 0x88A8, 0x9100):
                    ethertype, i = struct.unpack(">H", data[i + 2:i + 4])[0], i + 4
            elif linktype == 113:  # Linux cooked
                ethertype, i = struct.unpack(">H", data[14:16])[0], 16
            elif linktype == 276:  # Linux cooked v2
                ethertype, i = struct.unpack(">H", data[0:2])[0], 20
            elif linktype in (0, 108):  # BSD loopback: the address family in host order
                family = struct.unpack("<I", data[:4])[0]
                if family > 0xFFFF:
                    family = struct.unpack(">I", data[:4])[0]
                ethertype, i = (0x0800 if family == 2 else 0x86DD if family in (10, 24, 28, 30) else 0), 4
            elif linktype in (101, 12, 14):  # raw IP
                ethertype, i = (0x0800 if data[0] >> 4 == 4 else 0x86DD if data[0] >> 4 == 6 else 0), 0
            elif linktype == 228:
                ethertype, i = 0x0800, 0
            elif linktype == 229:
                ethertype, i = 0x86DD, 0
            else:
                raise _Unreadable
        except (struct.error, IndexError):
            return None
        if ethertype == 0x0800:
            return self._ipv4(data, i)
        if ethertype == 0x86DD:
            return self._ipv6(data, i)
        if ethertype in (0x0806, 0x88CC, 0x8035) or ethertype < 0x0600:
            return None  # ARP, LLDP, RARP, 802.3 lengths: no TCP
        raise _Unreadable  # MPLS, PPPoE, …: tshark may find TCP inside

    def _ipv4(self, data: bytes | memoryview, i: int) -> tuple | None:
        if len(data) < i + 20:
            return None
        first, total, frag, proto = _IPV4.unpack_from(data, i)
        ihl = (first & 0x0F) * 4
        if frag & 0x3FFF:
            raise _Unreadable  # a fragment: tshark reassembles it
        src, dst = bytes(data[i + 12:i + 16]), bytes(data[i + 16:i + 20])
        return self._transport(proto, data, i + ihl, (total or len(data) - i) - ihl, src, dst)

    def _ipv6(self, data: bytes | memoryview, i: int) -> tuple | None:
        if len(data) < i + 40:
            return None
        length = struct.unpack(">H", data[i + 4:i + 6])[0]
        nh = data[i + 6]
        src, dst = bytes(data[i + 8:i + 24]), bytes(data[i + 24:i + 40])
        j = i + 40
        while nh in (0, 43, 60):
            if len(data) < j + 2:
                return None
            ext = (data[j + 1] + 1) * 8
            nh, j, length = data[j], j + ext, length - ext
        if nh == 44:
            raise _Unreadable
        return self._transport(nh, data, j, length, src, dst)

    def _transport(self, proto: int, data: bytes | memoryview, i: int, length: int, src: bytes, dst: bytes
                   ) -> tuple | None:
        if proto == 6:
            if len(data) < i + 20:
                raise _Unreadable  # a TCP header cut short: tshark still numbers its connection
            seq, off, flags = _TCP.unpack_from(data, i)
            off, flags = (off >> 4) * 4, flags | ((off & 0x01) << 8)
            payload_len = max(0, length - off)
            payload = data[i + off:i + off + payload_len]
            # each end as its address and port, as bytes (the port last)
            return src + bytes(data[i:i + 2]), dst + bytes(data[i + 2:i + 4]), seq, flags, payload_len, payload
        if proto in (1, 58):  # ICMP: an error quotes the IP header of what caused it, maybe TCP
            if len(data) <= i or data[i] not in ((3, 4, 5, 11, 12) if proto == 1 else (1, 2, 3, 4)):
                return None
            quoted = data[i + 8:i + 48]
            inner = quoted[9] if proto == 1 and len(quoted) > 9 else quoted[6] if len(quoted) > 6 else None
            if inner == 6:
                raise _Unreadable
            return None
        if proto in (4, 41, 47, 50, 51, 132):  # tunnels, IPsec, SCTP
            raise _Unreadable
        if proto == 17 and len(data) >= i + 4:
            sport, dport = struct.unpack(">HH", data[i:i + 4])
            if {sport, dport} & {4789, 6081, 8472, 2152, 4790}:  # VXLAN, Geneve, GTP: TCP inside
                raise _Unreadable
        return None


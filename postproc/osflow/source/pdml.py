"""Source stage: PDML (a stream or a capture run through tshark) -> Packet.

PDML is streamed with ``lxml.etree.iterparse``; each ``<packet>`` is turned into
a small :class:`~osflow.model.Packet` holding only the fields osflow decodes,
then cleared, so memory does not grow with the capture.

Each application ``<proto>`` goes to the module of its protocol (:mod:`osflow.protocols`),
which keeps the fields it decodes as a :class:`~osflow.model.Layer`.  ``osflow-post -r`` runs
tshark itself and reads its ``-T fields`` output instead: :mod:`osflow.source.fields`.

The XML parser never loads a DTD, never resolves entities and never touches
the network: a PDML file from someone else cannot read local files or expand
an entity bomb.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from lxml import etree

from .. import portmap, protocols
from ..errors import InputError, PartialInput
from ..model import Layer, Packet
from ..wireshark import find_tool
from .common import Addresses, Reader, stream_id, tcp_packet, to_float, to_int

#: Application protocols osflow decodes (PDML ``<proto name=...>``), each read by its protocol's module.
APP_PROTOCOLS = tuple(p for m in protocols.PROTOCOLS for p in m.pdml_protos)


class PdmlReader(Reader):
    """Iterate over the packets of a PDML stream.

    Errors before the first packet (empty input, not XML, not PDML) raise
    :class:`InputError`.  An input that ends early stops the iteration; the
    reason is then in :attr:`partial` (a :class:`PartialInput`), so whatever
    was read is still used.
    """

    def __init__(self, stream: IO[bytes], name: str = "<stdin>") -> None:
        super().__init__(stream, name)
        self.creator: str | None = None

    def __iter__(self) -> Iterator[Packet]:
        stream = _Watch(self.stream)
        context = etree.iterparse(
            stream,
            events=("start", "end"),
            tag=("pdml", "packet"),
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=True,  # a reassembled body can be large; entities are off anyway
            remove_blank_text=True,  # the indentation between fields: fewer nodes to build
            remove_comments=True,
            remove_pis=True,
        )
        root = None
        find = _Finder()
        try:
            for event, elem in context:
                if root is None:
                    if elem.tag != "pdml" or event != "start" or elem.getparent() is not None:
                        self._not_pdml(context)
                    root = elem
                    self.creator = elem.get("creator")
                    continue
                if event != "end" or elem.tag != "packet":
                    continue
                if self.first_time is None:
                    self.first_time = _first_time(elem)
                packet = _packet(elem, self._streams, find, self._addresses)
                elem.clear()
                # drop the references the root keeps to packets already read
                while elem.getprevious() is not None:
                    del root[0]
                if packet is not None:
                    self.count += 1
                    self.last_frame = packet.number
                    yield packet
        except etree.XMLSyntaxError as e:
            if root is None:
                what = "empty input" if not stream.content else f"not XML ({_short(e)})"
                raise InputError(f"{self.name}: expected PDML (tshark -T pdml), found {what}") from None
            where = f"after frame {self.last_frame}" if self.last_frame else "before the first packet"
            what = "ends early" if _is_cut(e) or stream.cut_at(e.lineno) else "is invalid"
            self.partial = PartialInput(
                f"{self.name}: PDML {what} {where} (line {e.lineno}: {_short(e)}); "
                f"output holds the {self.count} packets read"
            )
            return
        if root is None:
            self._not_pdml(context)

    def _not_pdml(self, context) -> None:
        top = getattr(context, "root", None)
        found = f"an XML document whose root is <{top.tag}>" if top is not None else "no <pdml> element"
        raise InputError(f"{self.name}: expected PDML (tshark -T pdml) with a <pdml> root, found {found}")


class _Watch:
    """A file wrapper that notes whether anything but white space was read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.content = False
        self.lines = 1  # the line the last byte read is on
        self.ended = False  # the stream's end was read
        self.last = b""  # the last bytes read

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if not self.content and data.strip():
            self.content = True
        if data:
            self.lines += data.count(b"\n")
            self.last = data[-64:]
        else:
            self.ended = True
        return data

    def cut_at(self, lineno: int | None) -> bool:
        """Did an error on ``lineno`` come from the input just stopping: the stream ended on that
        line, inside an element (whatever libxml2 calls it: a cut inside an attribute is "a value
        is missing")?"""
        return self.ended and lineno is not None and lineno >= self.lines and not self.last.rstrip().endswith(b">")


def _is_cut(e: etree.XMLSyntaxError) -> bool:
    """Did the document just stop (as opposed to holding something that is not XML)?"""
    msg = str(e).lower()
    return any(w in msg for w in ("premature end", "not finished", "endtag", "end of data", "no element found",
                                  "unclosed", "expected '>'", "couldn't find end"))


def _short(e: etree.XMLSyntaxError) -> str:
    msg = " ".join(str(e).split(", line ")[0].split())  # libxml2 messages may hold newlines
    return msg[:120]


def _first_time(elem: etree._Element) -> float | None:
    for f in elem.iterchildren("proto"):
        if f.get("name") == "geninfo":
            for g in f.iterchildren("field"):
                if g.get("name") == "timestamp":
                    return to_float(g.get("value"), 0.0)
    return None


class _Finder:
    """Find a field among a proto's children by name, in one lookup most of the time.

    tshark writes a protocol's fields in a fixed order, so the position where a
    field was found last time is tried first; the children are scanned only when
    it is not there (another tshark version, an optional field, a missing one),
    and the new position is remembered.  Walking every child of every ``ip`` and
    ``tcp`` tree in Python costs more than everything else osflow does per packet.
    """

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[str, int] = {}

    def values(self, proto: etree._Element, wanted: tuple[tuple[str, str], ...]) -> list[str | None]:
        """The ``attr`` of each ``(name, attr)`` in ``wanted`` (None for a field that is not there)."""
        at = self._at
        out: list[str | None] = []
        for name, attr in wanted:
            try:
                f = proto[at.get(name, 0)]
            except IndexError:
                f = None
            if f is None or f.get("name") != name:
                f = self._scan(proto, name)
            out.append(None if f is None else f.get(attr))
        return out

    def _scan(self, proto: etree._Element, name: str) -> etree._Element | None:
        for i, f in enumerate(proto):
            if f.get("name") == name:
                self._at[name] = i
                return f
        return None


_GENINFO = (("num", "show"), ("timestamp", "value"))
_IP = (("ip.src", "show"), ("ip.dst", "show"))
_IPV6 = (("ipv6.src", "show"), ("ipv6.dst", "show"))
_TCP = (("tcp.srcport", "show"), ("tcp.dstport", "show"), ("tcp.stream", "show"), ("tcp.flags", "value"),
        ("tcp.len", "show"), ("tcp.seq_raw", "show"))


class _Frame:
    """What a protocol's layer may need of the rest of its frame (:class:`~osflow.protocols.base.FrameView`)."""

    __slots__ = ("_ports", "elem", "tcp")

    def __init__(self, elem: etree._Element, tcp: etree._Element | None, sport: str | None, dport: str | None) -> None:
        self.elem = elem
        self.tcp = tcp
        self._ports = (sport, dport)

    @property
    def ports(self) -> tuple[int, int]:
        return to_int(self._ports[0], 0), to_int(self._ports[1], 0)

    def payload(self) -> str | None:
        for proto in self.elem:  # the reassembled bytes, when this frame ends a PDU of several segments
            if proto.get("name") == "fake-field-wrapper":
                for f in proto.iter("field"):
                    if f.get("name") == "tcp.reassembled.data":
                        return f.get("value")
        if self.tcp is not None:
            for f in reversed(self.tcp):  # tcp.payload is last in the tcp tree
                if f.get("name") == "tcp.payload":
                    return f.get("value")
        return None


def _packet(elem: etree._Element, streams: dict, find: _Finder, addresses: Addresses) -> Packet | None:
    """Turn one ``<packet>`` into a Packet, or None for non-TCP frames (``find``, ``addresses``: the reader's)."""
    number = 0
    time = 0.0
    src_host = dst_host = None
    sport = dport = None
    stream = -1
    flags = 0
    tcp_len = 0
    seq_raw: str | None = None
    frame = tcp = None  # the view of the frame: made for the first layer that asks
    once: set[str] | None = None  # layers that are the frame's bytes, made already
    layers: list[Layer] = []
    segments: list[int] = []
    for proto in elem:  # a packet's children are <proto> elements
        pname = proto.get("name")
        if pname == "geninfo":
            num, stamp = find.values(proto, _GENINFO)
            number, time = to_int(num, 0), to_float(stamp, 0.0)
        elif pname == "ip":
            src_host, dst_host = find.values(proto, _IP)
        elif pname == "ipv6":
            src_host, dst_host = find.values(proto, _IPV6)
        elif pname == "tcp":
            tcp = proto
            sport, dport, tcp_stream, tcp_flags, length, seq_raw = find.values(proto, _TCP)
            stream = to_int(tcp_stream, -1)
            if not tcp_flags:  # no raw bytes: the shown 0x... form
                tcp_flags = find.values(proto, (("tcp.flags", "show"),))[0]
            flags = to_int(tcp_flags, 0, 16)
            tcp_len = to_int(length, 0)
            # tshark puts the list of reassembled segments at the top of the tree (the fake-field-wrapper
            # below); were it inside tcp, it would come last, after the header and payload
            if len(proto):
                f = proto[-1]
                if f.get("name") == "tcp.segments":
                    segments += [to_int(s.get("show"), 0) for s in f if s.get("name") == "tcp.segment"]
        elif pname == "fake-field-wrapper":
            for f in proto.iter("field"):
                if f.get("name") == "tcp.segment":
                    segments.append(to_int(f.get("show"), 0))
            for f in proto:  # bytes no dissector took (a port decoded as "data", -d tcp.port==N,data)
                if f.get("name") == "data" and "data" in _READERS:
                    frame = frame or _Frame(elem, tcp, sport, dport)
                    layer = _READERS["data"].pdml_layer(f, frame)
                    if layer is not None:
                        layers.append(layer)
        else:
            module = _READERS.get(pname or "")
            if module is not None and (once is None or module.name not in once):
                frame = frame or _Frame(elem, tcp, sport, dport)
                layer = module.pdml_layer(proto, frame)
                if layer is not None:
                    layers.append(layer)
                    if module.one_layer_per_frame:
                        once = (once or set()) | {module.name}
    if src_host is None or sport is None or dport is None or dst_host is None:
        return None
    try:
        src, dst = addresses[src_host, sport], addresses[dst_host, dport]
    except ValueError:
        return None  # a port that is not a number: not a packet osflow can place
    if stream < 0:
        stream = stream_id(streams, src, dst)
    return tcp_packet(number, time, src, dst, stream, flags, tcp_len, tuple(layers), tuple(segments),
                      int(seq_raw) if seq_raw and seq_raw.isdigit() else None)


#: The module that reads each application ``<proto>``.
_READERS = {p: m for m in protocols.PROTOCOLS for p in m.pdml_protos}


# --------------------------------------------------------------------------- tshark


def tshark_pdml_command(capture: str, tshark: str | None = None, extra: tuple[str, ...] = (),
                        overrides: dict[int, str] | None = None) -> list[str]:
    """The tshark command that turns a capture into the PDML osflow reads."""
    return [
        tshark or find_tool("tshark", "TSHARK"),
        "-r",
        capture,
        *portmap.tshark_decode_as(overrides),
        *protocols.decode_as(overrides, pdml=True),
        *extra,
        "-T",
        "pdml",
    ]

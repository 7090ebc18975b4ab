"""Source stage: PDML (a stream or a capture run through tshark) -> Packet.

PDML is streamed with ``lxml.etree.iterparse``; each ``<packet>`` is turned into
a small :class:`~osflow.model.Packet` holding only the fields osflow decodes,
then cleared, so memory does not grow with the capture.

``osflow-post -r`` runs tshark itself and reads its ``-T fields`` output instead:
:mod:`osflow.tshark`.

The XML parser never loads a DTD, never resolves entities and never touches
the network: a PDML file from someone else cannot read local files or expand
an entity bomb.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from lxml import etree

from . import portmap
from .errors import InputError, PartialInput
from .model import MYSQL_ROW_FIELDS, Address, Layer, Packet
from .wireshark import find_tool

#: Application protocols osflow decodes (PDML ``<proto name=...>``).
APP_PROTOCOLS = ("http", "mysql", "memcache", "amqp")

# Fields kept per protocol.  HTTP: an explicit list (the JSON tree is skipped,
# http.file_data carries the body).  MySQL: every mysql.* field but the bit
# fields below.  memcache: every memcache.* field but the value itself.
HTTP_FIELDS = (
    "http.request.method", "http.request.uri", "http.request.version", "http.user_agent", "http.request.line",
    "http.response.code", "http.response.phrase", "http.response.line", "http.request_in", "http.file_data",
    "http.content_type",
)
_HTTP_FIELDS = frozenset(HTTP_FIELDS)
#: The memcached fields the tshark-fields path asks for (the PDML path keeps every memcache.* but the value).
MEMCACHE_FIELDS = ("memcache.command", "memcache.key", "memcache.response", "memcache.value.length")
#: The AMQP 0-9-1 fields osflow reads, one ``<proto name="amqp">`` per AMQP frame (method, content
#: header, body, heartbeat); the body (``amqp.payload``) is kept as hex, the rest as shown.
AMQP_FIELDS = (
    "amqp.type", "amqp.channel", "amqp.method.class", "amqp.method.method", "amqp.method.arguments.exchange",
    "amqp.method.arguments.routing_key", "amqp.header.body-size", "amqp.payload",
)
_AMQP_FIELDS = frozenset(AMQP_FIELDS)
#: The AMQP subtrees that hold fields osflow reads (the rest, e.g. the JSON tree of a body, is skipped).
#: The Connection.Start-Ok client properties osflow reads (shown as ``<name> (string): <value>``).
_CLIENT_PROPERTIES = ("connection_name (string): ", "product (string): ")
_AMQP_TREES = frozenset({"amqp.method.arguments"})
_MYSQL_SKIP = ("mysql.caps", "mysql.extcaps", "mysql.stat", "mysql.field.flags", "mysql.connattrs", "mysql.salt",
               "mysql.passwd", "mysql.unused")
_MEMCACHE_SKIP = frozenset({"memcache.value"})


def _address(host: str, port: str) -> Address:
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return Address(host, int(port))


class _Addresses(dict):
    """The Address of each (host, port) text, made once: all frames of a connection share two.

    Emptied when it holds :attr:`LIMIT` endpoints (a long capture of many short
    connections), so that it does not grow with the capture.
    """

    LIMIT = 4096

    def __missing__(self, key: tuple[str, str]) -> Address:
        if len(self) >= self.LIMIT:
            self.clear()
        address = self[key] = _address(*key)
        return address


class _Reader:
    """What every reader tells the pipeline besides its packets."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.partial: PartialInput | None = None  # set when the input ended early
        self.count = 0  # TCP packets read
        self.last_frame = 0
        self.first_time: float | None = None  # epoch of the capture's first frame, TCP or not
        self._streams: dict = {}  # connection -> stream id, for input without tcp.stream
        self._addresses = _Addresses()


class PdmlReader(_Reader):
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
                    return _float(g.get("value"), 0.0)
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
        ("tcp.len", "show"))


def _packet(elem: etree._Element, streams: dict, find: _Finder, addresses: _Addresses) -> Packet | None:
    """Turn one ``<packet>`` into a Packet, or None for non-TCP frames (``find``, ``addresses``: the reader's)."""
    number = 0
    time = 0.0
    src_host = dst_host = None
    sport = dport = None
    stream = -1
    flags = 0
    tcp_len = 0
    layers: list[Layer] = []
    segments: list[int] = []
    for proto in elem:  # a packet's children are <proto> elements
        pname = proto.get("name")
        if pname == "geninfo":
            num, stamp = find.values(proto, _GENINFO)
            number, time = _int(num, 0), _float(stamp, 0.0)
        elif pname == "ip":
            src_host, dst_host = find.values(proto, _IP)
        elif pname == "ipv6":
            src_host, dst_host = find.values(proto, _IPV6)
        elif pname == "tcp":
            sport, dport, tcp_stream, tcp_flags, length = find.values(proto, _TCP)
            stream = _int(tcp_stream, -1)
            if not tcp_flags:  # no raw bytes: the shown 0x... form
                tcp_flags = find.values(proto, (("tcp.flags", "show"),))[0]
            flags = _int(tcp_flags, 0, 16)
            tcp_len = _int(length, 0)
            # tshark puts the list of reassembled segments at the top of the tree (the fake-field-wrapper
            # below); were it inside tcp, it would come last, after the header and payload
            if len(proto):
                f = proto[-1]
                if f.get("name") == "tcp.segments":
                    segments += [_int(s.get("show"), 0) for s in f if s.get("name") == "tcp.segment"]
        elif pname == "fake-field-wrapper":
            for f in proto.iter("field"):
                if f.get("name") == "tcp.segment":
                    segments.append(_int(f.get("show"), 0))
        elif pname == "http":
            layers.append(Layer("http", _fields(proto, _HTTP_FIELDS.__contains__)))
        elif pname == "mysql":
            layers.append(Layer("mysql", _mysql_fields(proto)))
        elif pname == "memcache":
            layers.append(Layer("memcache", _fields(proto, lambda n: n.startswith("memcache.") and n not in _MEMCACHE_SKIP)))
        elif pname == "amqp":
            layers.append(Layer("amqp", _amqp_fields(proto)))
    if src_host is None or sport is None or dport is None or dst_host is None:
        return None
    try:
        src, dst = addresses[src_host, sport], addresses[dst_host, dport]
    except ValueError:
        return None  # a port that is not a number: not a packet osflow can place
    if stream < 0:
        stream = _stream_id(streams, src, dst)
    return _tcp_packet(number, time, src, dst, stream, flags, tcp_len, tuple(layers), tuple(segments))


def _tcp_packet(number: int, time: float, src: Address, dst: Address, stream: int, flags: int, payload: int,
                layers: tuple[Layer, ...], segments: tuple[int, ...]) -> Packet:
    """A Packet, its TCP flag bits (tcp.flags) decoded."""
    return Packet(number=number, time=time, src=src, dst=dst, stream=stream, syn=bool(flags & 0x02),
                  fin=bool(flags & 0x01), rst=bool(flags & 0x04), payload=payload, layers=layers, segments=segments)


def _stream_id(streams: dict, src: Address, dst: Address) -> int:
    """A connection id for input without tcp.stream: negative, one per connection."""
    key = (src, dst) if (src.host, src.port) <= (dst.host, dst.port) else (dst, src)
    return streams.setdefault(key, -1 - len(streams))


def _int(text: str | None, default: int, base: int = 10) -> int:
    try:
        return int(text, base) if text else default
    except ValueError:
        return default


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default


def _fields(proto: etree._Element, keep) -> tuple[tuple[str, str], ...]:
    out = []
    for f in proto.iter("field"):
        n = f.get("name")
        if n and keep(n):
            out.append((n, f.get("show") or ""))
    return tuple(out)


def _amqp_fields(proto: etree._Element) -> tuple[tuple[str, str], ...]:
    """The fields of one AMQP frame: :data:`AMQP_FIELDS` (the body as hex) and, in a
    Connection.Start-Ok, the client's ``connection_name`` (``amqp.connection_name``).

    Never the Start-Ok's ``response``: it holds the broker password.
    """
    out = []
    for f in proto:
        n = f.get("name")
        if n in _AMQP_FIELDS:
            out.append((n, (f.get("value") or "") if n == "amqp.payload" else (f.get("show") or "")))
        elif n in _AMQP_TREES:
            for g in f:
                m = g.get("name")
                if m in _AMQP_FIELDS:
                    out.append((m, g.get("show") or ""))
                elif m == "amqp.method.arguments.client_properties":
                    for h in g:  # each entry is shown as "connection_name (string): nova-conductor:7921:<uuid>"
                        label = h.get("showname") or ""
                        if h.get("name") == "amqp.field" and label.startswith(_CLIENT_PROPERTIES):
                            key, _, value = label.partition(" (string): ")
                            out.append((f"amqp.{key}", value))
    return tuple(out)


#: MySQL fields whose children osflow never reads (bit flags, capability sets, connection attributes).
_MYSQL_LEAVES = frozenset({"mysql.field.flags", "mysql.server_status", "mysql.caps.server", "mysql.caps.client",
                           "mysql.extcaps.server", "mysql.extcaps.client", "mariadb.extcaps.server", "mysql.connattrs"})


#: A column definition's first length-encoded strings, in protocol order: what osflow reads of it.
_COLUMN_TEXTS = ("mysql.field.catalog", "mysql.field.db", "mysql.field.table", "mysql.field.org_table")
_ROW_FIELDS = MYSQL_ROW_FIELDS


def _result_set_pdu(proto: etree._Element) -> tuple[tuple[str, str], ...] | None:
    """A column definition or a row PDU read by position, or None for any other PDU.

    Most MySQL PDUs are the column definitions and rows of result sets.  tshark lists
    their length-encoded strings as unnamed wrappers (prefix, length, value) right
    after the packet length and number, so the first wrapper's value tells which
    kind of PDU this is, and a column definition's texts are at fixed positions.
    Anything laid out otherwise is left to the walk of :func:`_mysql_fields`.
    """
    try:
        wrapper = proto[2]
        if wrapper.get("name"):
            return None
        value = wrapper[-1]
    except IndexError:
        return None
    name = value.get("name") or ""
    if name.startswith("mysql.row."):
        return _ROW_FIELDS
    if name != _COLUMN_TEXTS[0]:
        return None
    out = [(name, value.get("show") or "")]
    for i in range(1, len(_COLUMN_TEXTS)):
        try:
            value = proto[2 + i][-1]
        except IndexError:
            return None
        if value.get("name") != _COLUMN_TEXTS[i]:
            return None
        out.append((_COLUMN_TEXTS[i], value.get("show") or ""))
    return tuple(out)


def _mysql_fields(proto: etree._Element) -> tuple[tuple[str, str], ...]:
    """The mysql.* fields of one PDU: its own fields and those one level down (the
    unnamed wrappers of column definitions and rows, mysql.request, mysql.login_request,
    mysql.server_greeting); flag and capability subtrees are not walked.

    Column definitions and rows laid out as tshark usually does are read by position
    (:func:`_result_set_pdu`); otherwise the walk is still kept short: an unnamed
    wrapper is a length-encoded string whose value is its last child, a row PDU is
    marked ``mysql.row`` at its first value, and a column definition ends at its
    name (what follows, the column's type and flags, osflow does not read).
    """
    fast = _result_set_pdu(proto)
    if fast is not None:
        return fast
    out = []
    for f in proto:  # <field> elements (iterating without a tag filter is cheaper)
        n = f.get("name")
        if not n:  # a length-encoded string (a column definition's text, a row's value): the value is last
            if len(f) and _mysql_child(f[-1], out) in ("mysql.row", "mysql.field.name"):
                return tuple(out)
            continue
        if n in ("mysql.request", "mysql.login_request", "mysql.server_greeting"):
            out.append((n, ""))
            for g in f:
                if _mysql_child(g, out) == "mysql.row":
                    return tuple(out)
            continue
        if not n.startswith("mysql."):
            continue
        if n.startswith("mysql.row."):
            out.append(("mysql.row", ""))
            return tuple(out)
        if not n.startswith(_MYSQL_SKIP):
            value = f.get("show") or ""
            out.append((n, _unescape(value) if n in _MYSQL_TEXTS else value))
    return tuple(out)


def _unescape(text: str) -> str:
    r"""CR, LF and TAB for their backslash escapes, as ``tshark -T fields`` writes them.

    ``-T fields`` writes a CR, LF or TAB inside a value as ``\r``, ``\n``, ``\t`` but a
    backslash as itself, so a newline and a backslash followed by ``n`` (what a driver
    sends for a newline inside a quoted SQL literal: a traceback nova writes to the DB)
    look the same.  Both readers read both as the control character (the PDML reader
    calls this on SQL text too), so that ``-r`` and PDML give the same text byte for byte.

    >>> _unescape(r"a\nb\tc") == "a" + chr(10) + "b" + chr(9) + "c", _unescape("no escapes")
    (True, 'no escapes')
    """
    if "\\" not in text:
        return text
    return text.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t")


#: Text fields whose PDML value may hold what ``-T fields`` escapes (see :func:`_unescape`).
_MYSQL_TEXTS = frozenset({"mysql.query", "mysql.error.message"})


def _mysql_child(g: etree._Element, out: list) -> str | None:
    """Add one field of a wrapper to ``out``; its name (``mysql.row`` for any row value), or None."""
    m = g.get("name")
    if not m or not m.startswith("mysql."):
        return None
    if m.startswith("mysql.row."):
        out.append(("mysql.row", ""))
        return "mysql.row"
    if m in _MYSQL_LEAVES or m.startswith(_MYSQL_SKIP):
        return None
    value = g.get("show") or ""
    out.append((m, _unescape(value) if m in _MYSQL_TEXTS else value))
    return m


# --------------------------------------------------------------------------- tshark


def tshark_pdml_command(capture: str, tshark: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The tshark command that turns a capture into the PDML osflow reads."""
    return [
        tshark or find_tool("tshark", "TSHARK"),
        "-r",
        capture,
        *portmap.tshark_decode_as(),
        *extra,
        "-T",
        "pdml",
    ]

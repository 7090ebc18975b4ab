"""Source stage, ``osflow-post -r``: tshark run on a capture, and its ``-T fields`` output read.

``-T fields`` makes tshark build only the fields osflow decodes (:data:`FIELDS`, about
4x faster than ``-T pdml`` with its full protocol tree) and write one short line per
frame; :class:`FieldsReader` turns the lines back into the same
:class:`~osflow.model.Packet` objects the PDML reader (:mod:`osflow.source`) makes, and
:class:`Tshark` runs tshark, in that mode or for PDML.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from . import portmap
from .errors import InputError, OsflowError, PartialInput, ToolMissing
from .model import Layer, Packet
from .source import (
    _ROW_FIELDS,
    AMQP_FIELDS,
    HTTP_FIELDS,
    MEMCACHE_FIELDS,
    PdmlReader,
    _float,
    _int,
    _Reader,
    _stream_id,
    _tcp_packet,
    _unescape,
    tshark_pdml_command,
)
from .wireshark import find_tool

if TYPE_CHECKING:  # imported where it runs: --help stays quick
    import subprocess


#: What ``osflow-post -r`` asks tshark for.  ``-T fields`` makes tshark build only
#: these fields (about 4x faster than ``-T pdml`` with its full protocol tree) and
#: writes one short line per frame; :class:`FieldsReader` turns the lines back into
#: the same Packets the PDML reader makes.
FIELDS = (
    "frame.number", "frame.time_epoch", "frame.time_relative", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.stream", "tcp.flags", "tcp.len", "tcp.segment",
    *HTTP_FIELDS,
    "mysql.packet_number", "mysql.version", "mysql.max_packet", "mysql.user", "mysql.schema", "mysql.command",
    "mysql.query", "mysql.num_fields", "mysql.field.catalog", "mysql.field.db", "mysql.field.org_table",
    "mysql.eof", "mysql.affected_rows", "mysql.error_code", "mysql.error.message",
    *MEMCACHE_FIELDS,
    *AMQP_FIELDS,
)
_IDX = {name: i for i, name in enumerate(FIELDS)}
AGGREGATOR = "\x1f"
#: Frames osflow needs: payload, or the FIN/RST that closes a connection.
FRAME_FILTER = "tcp.len > 0 || tcp.flags.fin == 1 || tcp.flags.reset == 1"
_ROW = Layer("mysql", _ROW_FIELDS)  # a row PDU, as the PDML reader marks it


class FieldsReader(_Reader):
    """Iterate over the packets of ``tshark -T fields`` output made with :data:`FIELDS`.

    tshark lists every occurrence of a field in a frame but not which PDU it came
    from; HTTP and memcached carry one message per frame in practice, and a MySQL
    frame's PDUs are rebuilt in protocol order (column count, column definitions,
    EOF, rows, EOF/OK) from how many of each kind it holds.
    """

    def __init__(self, stream: IO[bytes], name: str = "<tshark>", capture: str | None = None,
                 tshark: str | None = None) -> None:
        super().__init__(stream, name)
        self.capture = capture  # the capture the fields came from: read its Start-Ok frames again
        self.tshark = tshark
        self._start_ok: list[int] = []  # frames holding an AMQP Connection.Start-Ok
        self.helper_problem: str | None = None  # why the second pass (Connection.Start-Ok frames) failed

    def __iter__(self) -> Iterator[Packet]:
        yield from self._lines()
        if self._start_ok and self.capture:
            yield from self._connection_names()

    def _connection_names(self) -> Iterator[Packet]:
        """The frames holding a Connection.Start-Ok, as PDML: its client properties (the
        ``connection_name`` that names the process) are a table ``-T fields`` cannot write.
        A second, short tshark run, made only when the capture holds such frames."""
        import subprocess

        # "frame.number == a || ..." reads the same in every tshark (set syntax changed in 4.0)
        wanted = " || ".join(f"frame.number == {n}" for n in self._start_ok[:500])
        assert self.capture is not None
        cmd = tshark_pdml_command(self.capture, self.tshark, extra=("-Y", wanted))
        try:
            done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
        except (OSError, subprocess.SubprocessError) as e:
            self._helper_failed(f"{type(e).__name__}: {e}")
            return
        if done.returncode != 0:
            self._helper_failed(_status_text(done.returncode, done.stderr.decode("utf-8", "replace")))
            return
        import io

        # its own reader: what it counts is not the main pass's frames; a raw byte in a client property
        # (a damaged capture) must not take the main pass's output with it
        helper = PdmlReader(io.BytesIO(done.stdout), self.name)
        try:
            yield from helper
        except OsflowError as e:
            self._helper_failed(str(e).removeprefix(f"{self.name}: "))
            return
        if helper.partial is not None:
            self._helper_failed(str(helper.partial).removeprefix(f"{self.name}: "))

    def _helper_failed(self, why: str) -> None:
        """The second pass failed: a warning (exit 4) saying what was kept, never an error."""
        self.helper_problem = (f"the AMQP connection names (second tshark pass over {len(self._start_ok)} "
                               f"Connection.Start-Ok frame(s)) could not be read: {why}; every other packet "
                               f"was read ({self.count})")
        if self.partial is None:
            self.partial = PartialInput(f"{self.name}: {self.helper_problem}")

    def _lines(self) -> Iterator[Packet]:
        width = len(FIELDS)
        for lineno, raw in enumerate(self.stream, 1):
            if not raw.endswith(b"\n"):  # tshark stopped in the middle of a line: it died, the input is not to blame
                where = f"after frame {self.last_frame}" if self.last_frame else "before the first packet"
                self.partial = PartialInput(f"{self.name}: tshark's output ends in the middle of a line {where}; "
                                            f"output holds the {self.count} packets read")
                return
            line = raw.decode("utf-8", "replace").rstrip("\n")
            cols = line.split("\t")
            if len(cols) != width:
                raise InputError(
                    f"{self.name}: line {lineno}: expected {width} tab-separated tshark fields, found {len(cols)}"
                )
            if self.first_time is None:
                self.first_time = _origin(cols[_IDX["frame.time_epoch"]], cols[_IDX["frame.time_relative"]])
            packet = self._packet(cols)
            if packet is not None:
                self.count += 1
                self.last_frame = packet.number
                yield packet

    def _packet(self, c: list[str]) -> Packet | None:
        src_host = c[_IDX["ip.src"]] or c[_IDX["ipv6.src"]]
        dst_host = c[_IDX["ip.dst"]] or c[_IDX["ipv6.dst"]]
        sport, dport = c[_IDX["tcp.srcport"]], c[_IDX["tcp.dstport"]]
        if not (src_host and dst_host and sport and dport):
            return None
        # tunnelled frames list the outer and inner header: the inner one is last
        src_host, dst_host = src_host.split(AGGREGATOR)[-1], dst_host.split(AGGREGATOR)[-1]
        try:
            src = self._addresses[src_host, sport.split(AGGREGATOR)[-1]]
            dst = self._addresses[dst_host, dport.split(AGGREGATOR)[-1]]
        except ValueError:
            return None
        stream = _int(c[_IDX["tcp.stream"]].split(AGGREGATOR)[-1], -1)
        if stream < 0:
            stream = _stream_id(self._streams, src, dst)
        flags = _int(c[_IDX["tcp.flags"]].split(AGGREGATOR)[-1], 0, 16)
        segments = tuple(_int(x, 0) for x in c[_IDX["tcp.segment"]].split(AGGREGATOR) if x)
        layers: list[Layer] = []
        if c[_IDX["http.request.method"]] or c[_IDX["http.response.code"]]:
            layers.append(self._http(c))
        if c[_IDX["mysql.packet_number"]]:
            layers += self._mysql(c)
        if c[_IDX["memcache.command"]] or c[_IDX["memcache.key"]] or c[_IDX["memcache.response"]]:
            layers.append(self._memcache(c))
        if c[_IDX["amqp.type"]]:
            amqp = _amqp_layers(c)
            layers += amqp
            if any(x.get("amqp.method.class") == "10" and x.get("amqp.method.method") == "11" for x in amqp):
                self._start_ok.append(_int(c[_IDX["frame.number"]], 0))
        return _tcp_packet(_int(c[_IDX["frame.number"]], 0), _float(c[_IDX["frame.time_epoch"]], 0.0), src, dst,
                           stream, flags, _int(c[_IDX["tcp.len"]].split(AGGREGATOR)[-1], 0), tuple(layers), segments)

    @staticmethod
    def _pairs(c: list[str], names) -> list[tuple[str, str]]:
        out = []
        for name in names:
            value = c[_IDX[name]]
            if value:
                out += [(name, _unescape(v)) for v in value.split(AGGREGATOR)]
        return out

    def _http(self, c: list[str]) -> Layer:
        return Layer("http", tuple(self._pairs(c, HTTP_FIELDS)))

    def _memcache(self, c: list[str]) -> Layer:
        return Layer("memcache", tuple(self._pairs(c, MEMCACHE_FIELDS)))

    def _mysql(self, c: list[str]) -> list[Layer]:
        def values(name: str) -> list[str]:
            v = c[_IDX[name]]
            return [_unescape(x) for x in v.split(AGGREGATOR)] if v else []

        pdus = len(values("mysql.packet_number"))
        layers: list[Layer] = []
        if c[_IDX["mysql.version"]]:  # server greeting
            return [Layer("mysql", (("mysql.server_greeting", ""), ("mysql.version", values("mysql.version")[0])))]
        if c[_IDX["mysql.max_packet"]]:  # login request
            fields = [("mysql.login_request", "")] + self._pairs(c, ("mysql.user", "mysql.schema"))
            return [Layer("mysql", tuple(fields))]
        commands = values("mysql.command")
        if commands:
            queries = values("mysql.query")
            schemas = values("mysql.schema")
            for i, code in enumerate(commands):
                fields = [("mysql.request", ""), ("mysql.command", code)]
                if i < len(queries):
                    fields.append(("mysql.query", queries[i]))
                if i < len(schemas):
                    fields.append(("mysql.schema", schemas[i]))
                layers.append(Layer("mysql", tuple(fields)))
            return layers
        # a reply: rebuild its PDUs in protocol order
        columns = values("mysql.num_fields")
        defs = len(values("mysql.field.catalog"))
        dbs, tables = values("mysql.field.db"), values("mysql.field.org_table")
        eofs = len(values("mysql.eof"))
        oks = values("mysql.affected_rows")
        errors = values("mysql.error_code")
        rows = max(0, pdus - len(columns) - defs - eofs - len(oks) - len(errors))
        for n in columns:
            layers.append(Layer("mysql", (("mysql.num_fields", n),)))
        if defs:  # all column definitions in one layer, each opened by its catalog (the decoder reads it so)
            fields = []
            for i in range(defs):
                fields.append(("mysql.field.catalog", "def"))
                if i < len(dbs) and dbs[i]:
                    fields.append(("mysql.field.db", dbs[i]))
                if i < len(tables) and tables[i]:
                    fields.append(("mysql.field.org_table", tables[i]))
            layers.append(Layer("mysql", tuple(fields)))
        eof = Layer("mysql", (("mysql.eof", "254"),))
        if eofs and (columns or defs):
            layers.append(eof)  # the EOF after the column definitions
            eofs -= 1
        layers += [_ROW] * rows
        layers += [eof] * eofs
        layers += [Layer("mysql", (("mysql.affected_rows", n),)) for n in oks]
        messages = values("mysql.error.message")
        for i, code in enumerate(errors):
            fields = [("mysql.error_code", code)]
            if i < len(messages):
                fields.append(("mysql.error.message", messages[i]))
            layers.append(Layer("mysql", tuple(fields)))
        return layers


#: How many exchange and routing-key values each AMQP method (class, method) carries, in the order
#: tshark lists them: what lets the fields of several AMQP frames in one TCP segment be told apart.
_AMQP_ARGUMENTS = {
    (40, 10): (1, 0), (40, 20): (1, 0),  # Exchange.Declare, Exchange.Delete
    (40, 30): (0, 1), (40, 40): (0, 1),  # Exchange.Bind, Exchange.Unbind (destination/source are other fields)
    (50, 20): (1, 1), (50, 50): (1, 1),  # Queue.Bind, Queue.Unbind
    (60, 40): (1, 1), (60, 50): (1, 1), (60, 60): (1, 1), (60, 71): (1, 1),  # Publish, Return, Deliver, Get-Ok
}


def _amqp_layers(c: list[str]) -> list[Layer]:
    """One Layer per AMQP frame of a TCP segment, as the PDML reader makes them.

    ``-T fields`` lists each field's values for the whole segment: the frame types say
    which frame each channel, method, body size and body belongs to, and the methods
    how many exchange and routing-key values are theirs.
    """
    def values(name: str) -> list[str]:
        v = c[_IDX[name]]
        return v.split(AGGREGATOR) if v else []

    types, channels = values("amqp.type"), values("amqp.channel")
    classes, methods = values("amqp.method.class"), values("amqp.method.method")
    exchanges, keys = values("amqp.method.arguments.exchange"), values("amqp.method.arguments.routing_key")
    sizes, payloads = values("amqp.header.body-size"), values("amqp.payload")
    # an empty field is an empty column: when the only exchange is "", tshark writes nothing at all
    if not exchanges and c[_IDX["amqp.method.arguments.routing_key"]]:
        exchanges = [""]
    layers = []
    m = h = b = e = k = 0
    for i, t in enumerate(types):
        fields = [("amqp.type", t)]
        if i < len(channels):
            fields.append(("amqp.channel", channels[i]))
        if t == "1" and m < len(methods):
            cls, meth = (classes[m] if m < len(classes) else ""), methods[m]
            m += 1
            fields += [("amqp.method.class", cls), ("amqp.method.method", meth)]
            n_ex, n_key = _AMQP_ARGUMENTS.get((_int(cls, 0), _int(meth, 0)), (0, 0))
            if n_ex:
                fields.append(("amqp.method.arguments.exchange", exchanges[e] if e < len(exchanges) else ""))
                e += n_ex
            if n_key:
                fields.append(("amqp.method.arguments.routing_key", keys[k] if k < len(keys) else ""))
                k += n_key
        elif t == "2" and h < len(sizes):
            fields.append(("amqp.header.body-size", sizes[h]))
            h += 1
        elif t == "3" and b < len(payloads):
            fields.append(("amqp.payload", payloads[b]))
            b += 1
        layers.append(Layer("amqp", tuple(fields)))
    return layers


def _origin(epoch: str, relative: str) -> float | None:
    """The first frame's epoch from a later frame's epoch and time since the first (exactly, in decimal)."""
    from decimal import Decimal, InvalidOperation

    try:
        return float(Decimal(epoch) - Decimal(relative))
    except (InvalidOperation, ValueError):
        return None


def tshark_fields_command(capture: str, tshark: str | None = None) -> list[str]:
    """The tshark command behind ``osflow-post -r``: only the fields and frames osflow decodes."""
    args = [tshark or find_tool("tshark", "TSHARK"), "-r", capture, *portmap.tshark_decode_as(), "-Y", FRAME_FILTER,
            "-T", "fields", "-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}", "-E", "header=n"]
    for f in FIELDS:
        args += ["-e", f]
    return args


# --------------------------------------------------------------------------- running tshark


class Tshark:
    """Run tshark on a capture file and stream what it writes (``osflow-post -r``).

    ``fields`` (the default) asks only for what osflow decodes; ``pdml`` for the
    full PDML, as an analyst's pipe would.
    """

    def __init__(self, capture: str, mode: str = "fields") -> None:
        if not os.path.exists(capture):
            raise InputError(f"{capture}: no such file")
        not_a_capture(capture)
        self.capture = capture
        self._reader: _Reader | None = None  # the reader of its output, once asked for
        self.mode = mode
        self.command = tshark_fields_command(capture) if mode == "fields" else tshark_pdml_command(capture)
        self.proc: subprocess.Popen | None = None
        self.problem: OsflowError | None = None  #: what tshark's exit says (None: it went well)

    def reader(self, stream: IO[bytes]):
        if self.mode == "fields":
            self._reader = FieldsReader(stream, self.capture, self.capture, self.command[0])
        else:
            self._reader = PdmlReader(stream, self.capture)
        return self._reader

    def no_frame(self) -> OsflowError | None:
        """After a run that went well but gave no packet: an :class:`InputError` when the capture holds
        no frame at all (one short tshark run says), else None (frames, just none osflow reads)."""
        return _no_frame(self.capture, self.command[0])

    def __enter__(self) -> IO[bytes]:
        import subprocess

        try:
            self.proc = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as e:
            raise ToolMissing(
                f"cannot run {self.command[0]}: {e.strerror} "
                "(install tshark: sudo apt-get install tshark, or set TSHARK=/path/to/tshark)"
            ) from None
        assert self.proc.stdout is not None
        _widen(self.proc.stdout)
        return self.proc.stdout

    def __exit__(self, *exc) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        if exc[0] is not None and self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()
        err = self.proc.stderr.read().decode("utf-8", "replace")
        self.proc.stderr.close()
        status = self.proc.wait()
        self.stderr = err
        if status < 0:  # ended by a signal: what was read is kept, and said to be partial
            frame = getattr(self._reader, "last_frame", 0)
            self.problem = PartialInput(f"{self.capture}: tshark was killed by {_signal_name(-status)} "
                                        + (f"after frame {frame}" if frame else "before the first packet"))
        if status > 0:
            lines = [ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln]
            msg = (lines[-1] if lines else f"tshark exited with status {status}").strip()
            if "cut short in the middle of a packet" in err or "appears to be damaged or corrupt" in err:
                self.problem = PartialInput(f"{self.capture}: {msg}")
            else:
                self.problem = InputError(f"{self.capture}: tshark could not read it: {msg}")


#: Linux's F_SETPIPE_SZ (fcntl.F_SETPIPE_SZ from Python 3.10, on Linux only)
_F_SETPIPE_SZ = 1031


def _widen(pipe: IO[bytes], size: int = 1 << 20) -> None:
    """Give tshark a pipe of ``size`` bytes (1 MB, Linux's default limit) instead of 64 KB: while
    osflow-post names, places and writes a horizon of pairs, tshark keeps writing instead of
    waiting (on the 50k-frame compute input: 3.0 s -> 2.4 s, tshark alone 2.2 s).  Best effort."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    try:
        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), size)
    except (OSError, ValueError):
        pass  # a smaller /proc/sys/fs/pipe-max-size, another platform: the default pipe


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9 (the number itself for one Python does not know)."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _status_text(status: int, stderr: str) -> str:
    """What a tshark run's exit says: killed by a signal, or its last line on stderr."""
    if status < 0:
        return f"tshark was killed by {_signal_name(-status)}"
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    return (lines[-1] if lines else f"tshark exited with status {status}").strip()


#: The first bytes of the capture files tshark reads most: pcapng's section header, pcap's (each byte
#: order, microsecond and nanosecond stamps).
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_PCAP = (b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
_EXPECTED = "expected a capture (pcap or pcapng)"


def not_a_capture(path: str) -> None:
    """Raise :class:`InputError` when ``path`` is plainly not a capture (tshark would read an empty
    file, a PDML file or a pcapng cut inside its header as a capture of no TCP packet, or of one
    XML "frame", and exit 0): an empty file, XML, a pcap or pcapng file that ends inside its header.
    Only a regular file is looked at: a pipe's first bytes (``-r <(...)``) are tshark's to read."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return
        with open(path, "rb") as f:
            head = f.read(4096)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise InputError(f"{path}: cannot read it: {e.strerror}") from None
    if not head:
        raise InputError(f"{path}: {_EXPECTED}, found an empty file")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        what = "PDML (give it without -r: osflow-post FILE)" if b"<pdml" in head else "an XML file"
        raise InputError(f"{path}: {_EXPECTED}, found {what}")
    if head.startswith(_PCAPNG):
        order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        import struct

        block = struct.unpack(order + "I", head[4:8])[0] if len(head) >= 8 else 0
        if size < 28 or size < block:
            raise InputError(f"{path}: {_EXPECTED}, found a pcapng file that ends early, inside its first block "
                             f"({size} bytes)")
    elif head[:4] in _PCAP and size < 24:
        raise InputError(f"{path}: {_EXPECTED}, found a pcap file that ends early, inside its header ({size} bytes)")


def _no_frame(capture: str, tshark: str) -> OsflowError | None:
    """After a run that gave no packet: an :class:`InputError` when the capture holds no frame at
    all (a header and nothing else), None when it holds frames, just none osflow reads."""
    import subprocess

    try:
        done = subprocess.run([tshark, "-r", capture, "-c", "1", "-T", "fields", "-e", "frame.number"],
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode == 0 and not done.stdout.strip():
        return InputError(f"{capture}: {_EXPECTED} with frames, found a capture that holds no frame")
    return None

"""Source stage, ``osflow-post -r``: ``tshark -T fields`` output -> Packet.

``-T fields`` makes tshark build only the fields osflow decodes (:data:`FIELDS`, about
4x faster than ``-T pdml`` with its full protocol tree) and write one short line per
frame; :class:`FieldsReader` turns the lines back into the same
:class:`~osflow.model.Packet` objects the PDML reader (:mod:`osflow.source.pdml`) makes, each
protocol's layers rebuilt by its module (:mod:`osflow.protocols`).  :mod:`osflow.tshark`
runs tshark.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from .. import portmap, protocols
from ..errors import InputError, OsflowError, PartialInput
from ..model import Layer, Packet
from ..wireshark import find_tool
from .common import Reader, status_text, stream_id, tcp_packet, to_float, to_int
from .pdml import PdmlReader, tshark_pdml_command

__all__ = ["AGGREGATOR", "FIELDS", "FRAME_FILTER", "FieldsReader", "tls_args", "tshark_fields_command"]


#: What ``osflow-post -r`` asks tshark for.  ``-T fields`` makes tshark build only
#: these fields (about 4x faster than ``-T pdml`` with its full protocol tree) and
#: writes one short line per frame; :class:`FieldsReader` turns the lines back into
#: the same Packets the PDML reader makes.
FIELDS = (
    "frame.number", "frame.time_epoch", "frame.time_relative", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.stream", "tcp.flags", "tcp.len", "tcp.segment", "tcp.seq_raw",
    *protocols.tshark_fields(),  # each protocol's, in registry order
)
_IDX = {name: i for i, name in enumerate(FIELDS)}
AGGREGATOR = "\x1f"
#: Frames osflow needs: payload, or the FIN/RST that closes a connection.
FRAME_FILTER = "tcp.len > 0 || tcp.flags.fin == 1 || tcp.flags.reset == 1"


class FieldsReader(Reader):
    """Iterate over the packets of ``tshark -T fields`` output made with :data:`FIELDS`.

    tshark lists every occurrence of a field in a frame but not which PDU it came
    from; HTTP and memcached carry one message per frame in practice, and a MySQL
    frame's PDUs are rebuilt in protocol order (column count, column definitions,
    EOF, rows, EOF/OK) from how many of each kind it holds.
    """

    def __init__(self, stream: IO[bytes], name: str = "<tshark>", capture: str | None = None,
                 tshark: str | None = None, overrides: dict[int, str] | None = None,
                 keylog: str | None = None) -> None:
        super().__init__(stream, name)
        self.keylog = keylog  # the TLS key log tshark decrypts with (``--tls-keylog``, a recording's)
        self.capture = capture  # the capture the fields came from: read its Start-Ok frames again
        self.tshark = tshark
        self.overrides = overrides  # --service PORT=NAME: decoded as the service's protocol
        self._start_ok: list[int] = []  # frames holding an AMQP Connection.Start-Ok
        self.helper_problem: str | None = None  # why the second pass (Connection.Start-Ok frames) failed
        #: frame -> TCP payload (hex) of the frames a protocol reads bytes of, by its payload filter: one
        #: more short tshark pass per filter, made at the first frame that needs it
        self._payloads: dict[str, dict[int, str]] = {}

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
        assert self.capture is not None  # (called only with a capture)
        cmd = tshark_pdml_command(self.capture, self.tshark, extra=(*tls_args(self.keylog), "-Y", wanted),
                                  overrides=self.overrides)
        try:
            done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
        except (OSError, subprocess.SubprocessError) as e:
            self._helper_failed(f"{type(e).__name__}: {e}")
            return
        if done.returncode != 0:
            self._helper_failed(status_text(done.returncode, done.stderr.decode("utf-8", "replace")))
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

    def _payloads_of(self, wanted: str) -> dict[int, str]:
        """frame -> TCP payload (hex, the reassembled PDU's when the frame ends one) of the frames matching
        the display filter ``wanted``: a second, short tshark run, made only when the capture holds one.
        Without the capture or when tshark fails, none: the layers stay as tshark's fields left them."""
        if wanted in self._payloads:
            return self._payloads[wanted]
        found = self._payloads[wanted] = {}
        if not self.capture:
            return found
        import subprocess

        cmd = [self.tshark or find_tool("tshark", "TSHARK"), "-r", self.capture,
               *portmap.tshark_decode_as(self.overrides), *protocols.decode_as(self.overrides),
               *tls_args(self.keylog), "-Y", wanted,
               "-T", "fields", "-E", "header=n", "-E", "occurrence=l",
               "-e", "frame.number", "-e", "tcp.reassembled.data", "-e", "tcp.payload"]
        try:
            done = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=900)
        except (OSError, subprocess.SubprocessError):
            return found
        if done.returncode == 0:
            for line in done.stdout.decode("ascii", "replace").splitlines():
                number, reassembled, payload = (line.split("\t") + ["", ""])[:3]
                if number.isdigit() and (reassembled or payload):
                    found[int(number)] = reassembled or payload
        return found

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
        stream = to_int(c[_IDX["tcp.stream"]].split(AGGREGATOR)[-1], -1)
        if stream < 0:
            stream = stream_id(self._streams, src, dst)
        flags = to_int(c[_IDX["tcp.flags"]].split(AGGREGATOR)[-1], 0, 16)
        segments = tuple(to_int(x, 0) for x in c[_IDX["tcp.segment"]].split(AGGREGATOR) if x)
        layers: list[Layer] = []
        row = _Row(c, self.overrides)
        for module in protocols.PROTOCOLS:
            mine = module.fields_layers(row)
            if mine and module.payload_filter and module.needs_payload(mine):
                payloads = self._payloads_of(module.payload_filter)
                mine = module.with_payload(mine, payloads.get(to_int(c[_IDX["frame.number"]], 0)))
            if mine:
                layers += mine
                if module.needs_pdml(mine):
                    self._start_ok.append(to_int(c[_IDX["frame.number"]], 0))
        return tcp_packet(to_int(c[_IDX["frame.number"]], 0), to_float(c[_IDX["frame.time_epoch"]], 0.0), src, dst,
                           stream, flags, to_int(c[_IDX["tcp.len"]].split(AGGREGATOR)[-1], 0), tuple(layers), segments,
                           _seq(c[_IDX["tcp.seq_raw"]]))



def _seq(text: str) -> int | None:
    """The last TCP header's raw sequence number (None when tshark wrote none)."""
    last = text.split(AGGREGATOR)[-1]
    return int(last) if last.isdigit() else None


def _origin(epoch: str, relative: str) -> float | None:
    """The first frame's epoch from a later frame's epoch and time since the first (exactly, in decimal)."""
    from decimal import Decimal, InvalidOperation

    try:
        return float(Decimal(epoch) - Decimal(relative))
    except (InvalidOperation, ValueError):
        return None


def tls_args(keylog: str | None) -> tuple[str, ...]:
    """tshark's arguments that decrypt TLS with the key log ``keylog`` (NSS key log format, what
    ``SSLKEYLOGFILE`` makes Python's ssl, curl and browsers write); none without one.

    >>> tls_args("/tmp/rec/tls-keys.log"), tls_args(None)
    (('-o', 'tls.keylog_file:/tmp/rec/tls-keys.log'), ())
    """
    return ("-o", f"tls.keylog_file:{keylog}") if keylog else ()


def tshark_fields_command(capture: str, tshark: str | None = None,
                          overrides: dict[int, str] | None = None, keylog: str | None = None) -> list[str]:
    """The tshark command behind ``osflow-post -r``: only the fields and frames osflow decodes (the
    ports ``--service PORT=NAME`` names decoded as their service's protocol; TLS decrypted with the
    key log ``keylog``)."""
    args = [tshark or find_tool("tshark", "TSHARK"), "-r", capture, *portmap.tshark_decode_as(overrides),
            *protocols.decode_as(overrides), *tls_args(keylog), "-Y", FRAME_FILTER,
            "-T", "fields", "-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}", "-E", "header=n"]
    for f in FIELDS:
        args += ["-e", f]
    return args


class _Row:
    """One ``-T fields`` line, by field name (:class:`~osflow.protocols.base.Row`)."""

    __slots__ = ("cols", "overrides")

    def __init__(self, cols: list[str], overrides: dict[int, str] | None) -> None:
        self.cols = cols
        self.overrides = overrides

    def get(self, name: str) -> str:
        """The column as tshark wrote it (every occurrence, joined by :data:`AGGREGATOR`)."""
        return self.cols[_IDX[name]]

    def values(self, name: str) -> list[str]:
        """Every occurrence of the field in the frame."""
        v = self.cols[_IDX[name]]
        return v.split(AGGREGATOR) if v else []

"""Source stage, ``osflow-post -r``: tshark run on a capture.

:class:`Tshark` runs tshark, for ``-T fields`` (the default: only the fields osflow decodes,
read by :class:`~osflow.source.fields.FieldsReader`) or for PDML (read by
:class:`~osflow.source.pdml.PdmlReader`).

tshark keeps what it learnt of every frame until the end of its run: on a long capture its memory
grows with the capture.  So ``-T fields`` reads a pcap or pcapng file in pieces of
:data:`PIECE_FRAMES` frames (``OSFLOW_PIECE_FRAMES`` in the environment; 0: in one run), one tshark
run after the other, each piece written by :class:`~osflow.source.pieces.Cutter` with what tshark
needs of the connections still open; :class:`PiecesReader` numbers its frames and connections as
one run over the whole capture would have: the same lines, in the same order.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Generator, Iterable, Iterator
from dataclasses import replace
from typing import IO, TYPE_CHECKING

from .errors import InputError, OsflowError, PartialInput, ToolMissing
from .model import Packet
from .source.common import Reader, signal_name, to_int
from .source.fields import AGGREGATOR, FIELDS, FRAME_FILTER, FieldsReader, tls_args, tshark_fields_command
from .source.pdml import PdmlReader, tshark_pdml_command

__all__ = ["AGGREGATOR", "FIELDS", "FRAME_FILTER", "PIECE_FRAMES", "FieldsReader", "PiecesReader", "Tshark",
           "piece_frames", "tshark_fields_command", "tshark_pdml_command"]

from .source.pieces import Cutter, Piece

if TYPE_CHECKING:  # imported where it runs: --help stays quick
    import subprocess

#: Frames of a capture one tshark run reads (``osflow-post -r``): tshark's memory is what this many
#: frames cost it, however long the capture.
PIECE_FRAMES = 10_000


def piece_frames() -> int:
    """Frames per piece: ``OSFLOW_PIECE_FRAMES`` from the environment, else :data:`PIECE_FRAMES`; 0 or
    less: the whole capture in one tshark run."""
    value = os.environ.get("OSFLOW_PIECE_FRAMES", "").strip()
    try:
        return int(value) if value else PIECE_FRAMES
    except ValueError:
        return PIECE_FRAMES


# --------------------------------------------------------------------------- running tshark


class Tshark:
    """Run tshark on a capture file and stream what it writes (``osflow-post -r``).

    ``fields`` (the default) asks only for what osflow decodes; ``pdml`` for the
    full PDML, as an analyst's pipe would.
    """

    def __init__(self, capture: str, mode: str = "fields", overrides: dict[int, str] | None = None,
                 keylog: str | None = None) -> None:
        if not os.path.exists(capture):
            raise InputError(f"{capture}: no such file")
        not_a_capture(capture)
        self.capture = capture
        self._reader: Reader | None = None  # the reader of its output, once asked for
        self.mode = mode
        self.overrides = overrides
        self.keylog = keylog  #: the TLS key log tshark decrypts with (``--tls-keylog``, a recording's)
        self.command = (tshark_fields_command(capture, overrides=overrides, keylog=keylog) if mode == "fields"
                        else tshark_pdml_command(capture, extra=tls_args(keylog), overrides=overrides))
        self.proc: subprocess.Popen | None = None
        self.problem: OsflowError | None = None  #: what tshark's exit says (None: it went well)
        self.stderr = ""
        from .source.pieces import cuttable

        #: frames per piece (0: one run over the whole capture)
        # (with a key log, one run: a piece's TLS sessions would need their handshakes carried too)
        self.piece_frames = piece_frames() if mode == "fields" and not keylog and cuttable(capture) else 0

    def reader(self, stream: IO[bytes]):
        if self.piece_frames > 0:
            self._reader = PiecesReader(self)
        elif self.mode == "fields":
            self._reader = FieldsReader(stream, self.capture, self.capture, self.command[0], self.overrides,
                                        self.keylog)
        else:
            self._reader = PdmlReader(stream, self.capture)
        return self._reader

    def no_frame(self) -> OsflowError | None:
        """After a run that went well but gave no packet: an :class:`InputError` when the capture holds
        no frame at all (one short tshark run says), else None (frames, just none osflow reads)."""
        return _no_frame(self.capture, self.command[0])

    def __enter__(self) -> IO[bytes]:
        if self.piece_frames > 0:  # the reader runs tshark on each piece
            return io.BytesIO()
        return self.start(self.command)

    def start(self, command: list[str]) -> IO[bytes]:
        """Run tshark (``command``); its standard output."""
        import subprocess

        try:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
            )
        except OSError as e:
            raise ToolMissing(
                f"cannot run {command[0]}: {e.strerror} "
                "(install tshark: sudo apt-get install tshark, or set TSHARK=/path/to/tshark)"
            ) from None
        assert self.proc.stdout is not None
        _widen(self.proc.stdout)
        return self.proc.stdout

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.end(kill=exc[0] is not None)

    def end(self, kill: bool = False, piece: str | None = None) -> None:
        """Wait for the tshark run (killed first if ``kill`` and still running) and note what its exit
        says in :attr:`problem` (``piece``: the file it read, called the capture in what it says)."""
        proc, self.proc = self.proc, None
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        if kill and proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        status = proc.wait()
        if piece is not None:
            err = err.replace(piece, self.capture)
        self.stderr = err
        if status < 0:  # ended by a signal: what was read is kept, and said to be partial
            frame = getattr(self._reader, "last_frame", 0)
            self.problem = PartialInput(f"{self.capture}: tshark was killed by {signal_name(-status)} "
                                        + (f"after frame {frame}" if frame else "before the first packet"))
        if status > 0:
            lines = [ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln]
            msg = (lines[-1] if lines else f"tshark exited with status {status}").strip()
            if "cut short in the middle of a packet" in err or "appears to be damaged or corrupt" in err:
                self.problem = PartialInput(f"{self.capture}: {msg}")
            else:
                self.problem = InputError(f"{self.capture}: tshark could not read it: {msg}")


def _ahead(pieces: Iterable[Piece]) -> Generator[Piece, None, None]:
    """The pieces, the next one written by a thread while tshark reads the one given out."""
    import queue
    import threading

    handed: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: Piece | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def write() -> None:
        try:
            for piece in pieces:
                if not offer(piece):
                    return
            offer(None)
        except BaseException as e:  # given to the reader, raised there
            offer(e)

    writer = threading.Thread(target=write, name="osflow-pieces", daemon=True)
    writer.start()
    try:
        while (item := handed.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        writer.join()


class PiecesReader(FieldsReader):
    """:class:`FieldsReader` over the pieces of a capture (see the module): tshark run on each piece
    in turn, its lines for frames carried from before the piece's cut dropped, frame and connection
    numbers mapped back to the whole capture's (``frame.number``, ``tcp.stream``, ``tcp.segment``,
    ``http.request_in``); the Connection.Start-Ok frames read again as PDML, piece by piece, at the end,
    as :class:`FieldsReader` does."""

    _NUMBER, _STREAM, _SEGMENT, _REQUEST_IN = (FIELDS.index(f) for f in (
        "frame.number", "tcp.stream", "tcp.segment", "http.request_in"))

    def __init__(self, runner: Tshark) -> None:
        super().__init__(io.BytesIO(), runner.capture, runner.capture, runner.command[0], runner.overrides)
        self.runner = runner
        self.piece: Piece | None = None
        self.pieces = 0  #: pieces read
        self._whole = runner.capture
        #: the pieces holding Connection.Start-Ok frames, with those frames' numbers in them
        self._start_ok_pieces: list[tuple[Piece, list[int]]] = []

    def __iter__(self) -> Iterator[Packet]:
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="osflow-pieces-")  # owner-only: the pieces hold the capture's bytes
        pieces = _ahead(Cutter(self._whole, folder, self.runner.piece_frames))
        try:
            for piece in pieces:
                self.piece, self.pieces = piece, self.pieces + 1
                self.capture, self._payloads = piece.path, {}
                self.stream = self.runner.start(tshark_fields_command(piece.path, self.tshark, self.overrides))
                try:
                    yield from self._lines()
                except BaseException:  # (GeneratorExit too: the reading stopped early)
                    self.runner.end(kill=True, piece=piece.path)
                    raise
                self.runner.end(piece=piece.path)
                if any(p is piece for p, _ in self._start_ok_pieces):
                    piece.save()  # read again at the end: its numbers on disk meanwhile
                else:
                    piece.remove()
                if self.runner.problem is not None or self.partial is not None:
                    break
            yield from self._connection_names()
        finally:
            pieces.close()  # (the writer stopped before the pieces go)
            self.capture = self._whole
            shutil.rmtree(folder, ignore_errors=True)

    def _packet(self, c: list[str]) -> Packet | None:
        piece = self.piece
        if piece is None:
            return super()._packet(c)
        local = to_int(c[self._NUMBER], 0)
        if not piece.own(local):
            return None  # carried from before the cut: the piece before gave it out
        c[self._NUMBER] = str(piece.frame(local))
        stream = c[self._STREAM]
        if stream and AGGREGATOR not in stream:
            c[self._STREAM] = str(piece.stream(local, to_int(stream, 0)))
        for i in (self._SEGMENT, self._REQUEST_IN):
            if c[i]:
                c[i] = AGGREGATOR.join(str(piece.frame(to_int(x, 0))) if x else x for x in c[i].split(AGGREGATOR))
        before = len(self._start_ok)
        packet = super()._packet(c)
        if len(self._start_ok) > before and before < 500:  # (the first 500 are read again)
            if not self._start_ok_pieces or self._start_ok_pieces[-1][0] is not piece:
                self._start_ok_pieces.append((piece, []))
            self._start_ok_pieces[-1][1].append(local)
        return packet

    def _payloads_of(self, wanted: str) -> dict[int, str]:
        if self.piece is None or wanted in self._payloads:
            return super()._payloads_of(wanted)
        local = super()._payloads_of(wanted)
        found = self._payloads[wanted] = {self.piece.frame(n): v for n, v in local.items()}
        return found

    def _connection_names(self) -> Iterator[Packet]:
        """The Connection.Start-Ok frames as PDML (:meth:`FieldsReader._connection_names`), read again
        from the pieces they are in: the first 500 of the capture, in frame order."""
        everything, left = self._start_ok, 500
        try:
            for piece, frames in self._start_ok_pieces:
                if left <= 0:
                    break
                self.capture, self._start_ok, left = piece.path, frames[:left], left - len(frames)
                piece.load()
                for p in FieldsReader._connection_names(self):
                    yield replace(p, number=piece.frame(p.number), stream=piece.stream(p.number, p.stream),
                                  segments=tuple(piece.frame(s) for s in p.segments))
                piece.drop()
        finally:
            self._start_ok, self.capture = everything, self._whole


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

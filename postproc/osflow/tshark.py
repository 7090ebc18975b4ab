"""Source stage, ``osflow-post -r``: tshark run on a capture.

:class:`Tshark` runs tshark, for ``-T fields`` (the default: only the fields osflow decodes,
read by :class:`~osflow.source.fields.FieldsReader`) or for PDML (read by
:class:`~osflow.source.pdml.PdmlReader`).
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

from .errors import InputError, OsflowError, PartialInput, ToolMissing
from .source.common import Reader, signal_name
from .source.fields import AGGREGATOR, FIELDS, FRAME_FILTER, FieldsReader, tshark_fields_command
from .source.pdml import PdmlReader, tshark_pdml_command

__all__ = ["AGGREGATOR", "FIELDS", "FRAME_FILTER", "FieldsReader", "Tshark", "tshark_fields_command",
           "tshark_pdml_command"]

if TYPE_CHECKING:  # imported where it runs: --help stays quick
    import subprocess


# --------------------------------------------------------------------------- running tshark


class Tshark:
    """Run tshark on a capture file and stream what it writes (``osflow-post -r``).

    ``fields`` (the default) asks only for what osflow decodes; ``pdml`` for the
    full PDML, as an analyst's pipe would.
    """

    def __init__(self, capture: str, mode: str = "fields", overrides: dict[int, str] | None = None) -> None:
        if not os.path.exists(capture):
            raise InputError(f"{capture}: no such file")
        not_a_capture(capture)
        self.capture = capture
        self._reader: Reader | None = None  # the reader of its output, once asked for
        self.mode = mode
        self.overrides = overrides
        self.command = (tshark_fields_command(capture, overrides=overrides) if mode == "fields"
                        else tshark_pdml_command(capture, overrides=overrides))
        self.proc: subprocess.Popen | None = None
        self.problem: OsflowError | None = None  #: what tshark's exit says (None: it went well)

    def reader(self, stream: IO[bytes]):
        if self.mode == "fields":
            self._reader = FieldsReader(stream, self.capture, self.capture, self.command[0], self.overrides)
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
            self.problem = PartialInput(f"{self.capture}: tshark was killed by {signal_name(-status)} "
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

"""The ring buffer of a long recording: dumpcap's own ``-b`` options (:func:`parse_ring`), the
capture files the ring keeps (:func:`capture_files`), and the socket log in one file per capture
file (:class:`RingSocketLog`): ``ss_00003.txt`` beside ``capture_00003_<date>.pcapng``, removed
when the capture files it covers are.

dumpcap writes ``-w DIR/capture.pcapng`` with ``-b`` as ``DIR/capture_<n>_<YYYYmmddHHMMSS>.pcapng``
(n = 00001, 00002, …) and, with ``files:N``, removes the oldest once it writes the N+1st.  The
socket log follows it: each poll's housekeeping (:meth:`RingSocketLog.check`) looks at DIR; when
dumpcap has started capture file n, the log goes on in ``ss_<n>.txt``, which begins with what the
last :attr:`RingSocketLog.RECENT` seconds logged and the owners of every socket still open (a
connection outlives the file that first logged it); a socket-log file goes once every capture
file it covers has gone.

>>> parse_ring(["filesize:1000", "files:5"])
Ring(files=5, filesize=1000, duration=None, interval=None, packets=None)
>>> parse_ring(["files:5", "duration:60"]).dumpcap_args()
['-b', 'files:5', '-b', 'duration:60']
>>> ring_file_number("capture_00012_20261202042702.pcapng"), ring_file_number("ss_00012.txt", SS_FILE)
(12, 12)
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..errors import UsageError

#: the base name given to dumpcap's ``-w``; the ring's files are ``capture_<n>_<date>.pcapng``
CAPTURE = "capture.pcapng"
CAPTURE_FILE = re.compile(r"^capture_(\d{5,})_(\d{14})\.pcapng$")
SS_FILE = re.compile(r"^ss_(\d{5,})\.txt$")
#: dumpcap's ``-b`` keys osflow record passes on (``printname`` is record's own business)
RING_KEYS = ("files", "filesize", "duration", "interval", "packets")


@dataclass(frozen=True)
class Ring:
    """dumpcap's ring-buffer options (``-b KEY:VALUE``), in dumpcap's units: ``filesize`` in kB,
    ``duration`` and ``interval`` in seconds."""

    files: int | None = None
    filesize: int | None = None
    duration: int | None = None
    interval: int | None = None
    packets: int | None = None

    def dumpcap_args(self) -> list[str]:
        """The options as dumpcap takes them, in the order of :data:`RING_KEYS`."""
        return [a for k, v in asdict(self).items() if v is not None for a in ("-b", f"{k}:{v}")]

    def settings(self) -> dict:
        """The options given, for ``meta.json``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_ring(values: Sequence[str]) -> Ring:
    """``-b KEY:VALUE`` options as dumpcap takes them; :class:`UsageError` when one is not, or when
    ``files:`` has nothing to switch files by.

    >>> parse_ring(["files:3"])
    Traceback (most recent call last):
    ...
    osflow.errors.UsageError: -b files:3: a ring also needs when to switch files: -b filesize:KB, -b duration:SECONDS, \
-b interval:SECONDS or -b packets:N
    >>> parse_ring(["size:10"])
    Traceback (most recent call last):
    ...
    osflow.errors.UsageError: -b size:10: expected KEY:VALUE with KEY one of files, filesize, duration, interval, \
packets (as dumpcap's -b)
    """
    found: dict[str, int] = {}
    for text in values:
        key, _, value = text.partition(":")
        if key not in RING_KEYS:
            raise UsageError(f"-b {text}: expected KEY:VALUE with KEY one of {', '.join(RING_KEYS)} (as dumpcap's -b)")
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"-b {text}: expected a whole number of at least 1 after {key}:")
        found[key] = int(value)
    ring = Ring(**found)
    if ring.files is not None and not (set(found) - {"files"}):
        raise UsageError(f"-b {' -b '.join(values)}: a ring also needs when to switch files: -b filesize:KB, "
                         "-b duration:SECONDS, -b interval:SECONDS or -b packets:N")
    return ring


def ring_file_number(name: str, pattern: re.Pattern = CAPTURE_FILE) -> int | None:
    """The ring number in a file name (``capture_00012_<date>.pcapng``, ``ss_00012.txt``); None when it has none."""
    m = pattern.match(name)
    return int(m.group(1)) if m else None


def _numbered(directory: str, pattern: re.Pattern) -> list[tuple[int, str]]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [(ring_file_number(n, pattern), n) for n in names]
    return sorted((n, os.path.join(directory, name)) for n, name in found if n is not None)


def capture_files(directory: str) -> list[tuple[int, str]]:
    """The capture files a ring recording has in ``directory``, as (number, path), oldest first."""
    return _numbered(directory, CAPTURE_FILE)


def socket_log_files(directory: str) -> list[tuple[int, str]]:
    """The socket-log files of a ring recording in ``directory`` (``ss_<n>.txt``), as (number, path), oldest first."""
    return _numbered(directory, SS_FILE)


def ss_name(number: int) -> str:
    """The socket-log file of capture file ``number``.

    >>> ss_name(3), ss_name(123456)
    ('ss_00003.txt', 'ss_123456.txt')
    """
    return f"ss_{number:05d}.txt"


class RingSocketLog:
    """The output of a ring recording's :class:`~osflow.record.socketlog.SocketLog`: ``write``
    and ``flush`` go to the current ``ss_<n>.txt``; :meth:`check` (the log's housekeeping hook)
    follows dumpcap to its next file and removes the socket-log files whose capture files have gone.

    It is used from the socket log's thread only (the log's lock held)."""

    #: a new file begins with what the last RECENT seconds logged: dumpcap may have switched that
    #: long before :meth:`check` saw it, and a connection that ended meanwhile is not carried over
    RECENT = 2.0

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.number = 1  # dumpcap's first file is number 1
        self.file = open(os.path.join(directory, ss_name(1)), "w", encoding="utf-8")  # noqa: SIM115 - open until finish()
        self.recent: deque[tuple[float, str]] = deque()
        self.switches = 0
        self.removed = 0

    def write(self, text: str) -> None:
        self.file.write(text)
        now = time.monotonic()
        recent = self.recent
        recent.append((now, text))
        while recent[0][0] < now - self.RECENT:
            recent.popleft()

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()

    def check(self, log=None) -> None:
        """Go on in ``ss_<n>.txt`` when dumpcap has started capture file n (``log``'s
        :meth:`~osflow.record.socketlog.SocketLog.carry_over` then writes the owners of the sockets
        still open); remove the socket-log files of capture files that have gone."""
        captures = capture_files(self.dir)
        if not captures:
            return
        newest = captures[-1][0]
        if newest > self.number:
            self._switch(newest, os.path.basename(captures[-1][1]), log)
        self.remove_old(captures[0][0])

    def _switch(self, number: int, capture: str, log) -> None:
        replay = list(self.recent)
        while replay and not replay[0][1].startswith("### "):  # from the start of a block
            replay.pop(0)
        self.file.close()
        self.number = number
        self.switches += 1
        self.file = open(os.path.join(self.dir, ss_name(number)), "w", encoding="utf-8")  # noqa: SIM115 - as above
        self.recent.clear()
        for _, text in replay:
            self.file.write(text)
        if log is not None:
            log.carry_over(f"carried over at the switch to {capture}: the sockets still open whose owner is known")
        self.recent.clear()  # the next file carries the open sockets over again: replay only what is logged next
        self.file.flush()

    def remove_old(self, oldest_capture: int) -> list[str]:
        """Remove each socket-log file whose capture files have all gone: ``ss_<k>.txt`` covers the
        capture files from k to the next socket-log file's number (the current one is kept)."""
        logs = socket_log_files(self.dir)
        removed = []
        for (number, path), (following, _) in zip(logs, logs[1:], strict=False):
            if following <= oldest_capture and number != self.number:
                try:
                    os.unlink(path)
                except OSError:
                    continue
                removed.append(path)
        self.removed += len(removed)
        return removed

    def finish(self) -> None:
        """After dumpcap and the socket log stopped: close, and remove what the last capture files no longer need."""
        self.close()
        captures = capture_files(self.dir)
        if captures:
            self.remove_old(captures[0][0])

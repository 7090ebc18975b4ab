"""osflow's exceptions and the exit status each one maps to.

The command line (:mod:`osflow.cli`) maps them to exit statuses in one place, as httpie's
``status.py`` does; nothing below the command line knows about exit statuses.

>>> ExitStatus.PARTIAL, int(InputError("x").exit_status)
(<ExitStatus.PARTIAL: 4>, 3)
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """What ``osflow-post``, ``osflow record`` and ``osflow profile`` exit with."""

    OK = 0
    INTERNAL = 1  #: a bug of osflow's (``--traceback`` shows it)
    USAGE = 2  #: bad usage: unknown option, missing argument, ...
    INPUT = 3  #: unreadable or invalid input: not PDML, not a capture, a bad table file, ...
    PARTIAL = 4  #: the input ended early, tshark was killed or a helper pass failed; what was read was output
    TOOL = 5  #: a tool osflow needs is missing (tshark, dumpcap)
    EXPORT = 6  #: the traces could not be sent to ``--otlp-endpoint`` (the output was written)
    OUTPUT = 7  #: the output could not be written: a full disk, a closed standard output, ``-o`` not writable
    INTERRUPTED = 130  #: Ctrl-C


class OsflowError(Exception):
    """Base of every error osflow reports as one line on stderr."""

    exit_status = ExitStatus.INPUT


class UsageError(OsflowError):
    """The command line is not one osflow takes."""

    exit_status = ExitStatus.USAGE


class InputError(OsflowError):
    """The input is not what osflow reads (not XML, not PDML, empty, bad table)."""

    exit_status = ExitStatus.INPUT


class PartialInput(OsflowError):
    """The input ended early: everything before the cut was used."""

    exit_status = ExitStatus.PARTIAL


class ToolMissing(OsflowError):
    """tshark or dumpcap is not installed (or not where ``$TSHARK``/``$DUMPCAP`` says)."""

    exit_status = ExitStatus.TOOL


class OutputError(OsflowError):
    """The output could not be written (a full disk, standard output closed).  A reader that went
    away (``| head``) is not one: that is a :class:`BrokenPipeError`, and quiet."""

    exit_status = ExitStatus.OUTPUT


class ExportError(OsflowError):
    """The traces could not be sent to the OTLP endpoint (everything was written all the same)."""

    exit_status = ExitStatus.EXPORT


#: How many warnings of one kind are shown before the rest are counted.
FIRST_OF_A_KIND = 3


def counted(warnings: list[str] | tuple[str, ...], first: int = FIRST_OF_A_KIND) -> list[str]:
    """``warnings`` with those of one kind (the same words but for numbers and quoted text: the
    lines of a table osflow cannot read) cut to the ``first`` few, then one line counting the rest.

    >>> ws = [f"ps.txt:{n}: expected a ps line, found 'x{n}'" for n in range(1, 5001)] + ["other"]
    >>> counted(ws)[2:]
    ["ps.txt:3: expected a ps line, found 'x3'", '… and 4,997 more lines like it', 'other']
    """
    kinds: dict[str, int] = {}
    for w in warnings:
        k = _kind(w)
        kinds[k] = kinds.get(k, 0) + 1
    out: list[str] = []
    seen: dict[str, int] = {}
    for w in warnings:
        k = _kind(w)
        n = seen[k] = seen.get(k, 0) + 1
        if n <= first:
            out.append(w)
            if n == first and kinds[k] > first:
                out.append(f"… and {kinds[k] - first:,} more lines like it")
    return out


def _kind(warning: str) -> str:
    """What a warning says but for where and what was found: its numbers and quoted text."""
    import re

    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "#", warning.split(", found ", 1)[0])

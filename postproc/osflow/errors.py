"""osflow's exceptions and the exit status each one maps to (the CLI maps them in one place).

Exit status:

====  ==========================================================
0     OK
2     bad usage (unknown option, missing file argument, ...)
3     unreadable or invalid input (not PDML, not a capture, ...)
4     partial: the input ended early; everything read was output
5     a tool osflow needs is missing (tshark)
====  ==========================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_PARTIAL = 4
EXIT_TOOL = 5


class OsflowError(Exception):
    """Base of every error osflow reports as one line on stderr."""

    exit_status = EXIT_INPUT


class UsageError(OsflowError):
    exit_status = EXIT_USAGE


class InputError(OsflowError):
    """The input is not what osflow reads (not XML, not PDML, empty, bad table)."""

    exit_status = EXIT_INPUT


class PartialInput(OsflowError):
    """The input ended early: everything before the cut was used."""

    exit_status = EXIT_PARTIAL


class ToolMissing(OsflowError):
    exit_status = EXIT_TOOL

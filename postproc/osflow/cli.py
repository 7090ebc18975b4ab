"""Command line: ``osflow-post`` and ``osflow post|record|profile``.

This module only parses arguments and turns what the commands return or raise into
exit statuses, in one place, :func:`run` (:class:`osflow.errors.ExitStatus`); the work
is done by :mod:`osflow.app` (post), :mod:`osflow.record` and :mod:`osflow.profile`.
Nothing prints a traceback unless ``--traceback`` is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import ExitStatus, OsflowError, OutputError, UsageError
from .render import FORMATS

EPILOG = """\
input:
  PDML on stdin (default) or from files, e.g.
    tshark -r x.pcapng -d tcp.port==5000,http -d tcp.port==8778,http -T pdml | osflow-post --ss ss.txt --ps ps.txt
  or a capture with -r (osflow runs tshark itself):
    osflow-post -r x.pcapng --ss ss.txt --ps ps.txt

exit status:
  0  ok
  2  bad usage
  3  unreadable or invalid input (not PDML, not a capture, a capture of no frame, bad table file)
  4  partial: the input ended early, tshark was killed or a helper tshark pass failed
     (everything read was output)
  5  tshark is missing
  6  the traces could not be sent to --otlp-endpoint (the output was written all the same)
  7  the output could not be written (a full disk, standard output closed); a reader that
     goes away (| head) is not an error: exit 0, nothing said
"""

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 itself; keep its one-line style
        raise UsageError(f"{message} (see {self.prog} --help)")


def _service_override(text: str) -> tuple[int, str]:
    port, sep, name = text.partition("=")
    if not sep or not port.isdigit() or not name:
        raise argparse.ArgumentTypeError(f"expected PORT=NAME (e.g. 5000=keystone), found {text!r}")
    return int(port), name


def _endpoint(text: str) -> tuple[str, str]:
    from .openstack import parse_endpoint

    url, sep, name = text.rpartition("=")
    try:
        if not sep or not name.strip():
            raise ValueError(f"expected URL=SERVICE (e.g. http://10.0.0.5/identity=keystone), found {text!r}")
        parse_endpoint(url, name.strip(), "--endpoint")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return url, name.strip()


def add_post_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pdml", nargs="*", metavar="PDML", help="PDML files (default: standard input; '-' is stdin)")
    p.add_argument("-r", "--read", metavar="CAPTURE|DIR", action="append", default=[],
                   help="read a pcap/pcapng capture (runs tshark), or a folder osflow record wrote (its capture or "
                        "ring files, ss.txt, ps.txt, meta.json); repeat -r DIR for one folder per host: their "
                        "flows are merged, each participant labelled service@host")
    p.add_argument("--clock-offset", action="append", default=[], metavar="HOST=SECONDS",
                   help="HOST's clock is SECONDS ahead of the first -r folder's host (default: found from the "
                        "segments both hosts captured; repeatable)")
    p.add_argument("--ss", action="append", default=[], metavar="FILE",
                   help="socket table: ss -tp/-tnp/-tnpH/-tlnp, netstat -tnp/-tlnp or lsof -nP -iTCP output, "
                        "'### <epoch>' snapshots allowed (repeatable)")
    p.add_argument("--ps", action="append", default=[], metavar="FILE",
                   help="process table: ps aux/-ef/-eo pid,ppid,user,args output (repeatable)")
    p.add_argument("--service", action="append", default=[], type=_service_override, metavar="PORT=NAME",
                   help="name the service on PORT (overrides the port map; repeatable); a service of the map or "
                        "a protocol (http, mysql, memcache, amqp) also has -r decode PORT as its protocol")
    p.add_argument("--endpoint", action="append", default=[], type=_endpoint, metavar="URL=SERVICE",
                   help="a request under URL (e.g. http://10.0.0.5/identity) is SERVICE's, behind the web server "
                        "it was sent to (repeatable; adds to or overrides the keystone catalog in the capture "
                        "and devstack's path prefixes)")
    p.add_argument("--tls-keylog", metavar="FILE",
                   help="decrypt TLS with this key log (SSLKEYLOGFILE's format; default: the tls-keys.log of a "
                        "-r folder osflow record wrote); its contents are never shown")
    p.add_argument("-f", "--format", choices=FORMATS,
                   help="output format (default: from -o's extension, else timeline)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (.txt timeline, .mmd Mermaid, .md both, .json JSON Lines, .html report, "
                        ".otlp.jsonl OpenTelemetry traces)")
    p.add_argument("--otlp-endpoint", metavar="URL",
                   help="also send the flow as OpenTelemetry traces (OTLP/HTTP, JSON) to URL/v1/traces, "
                        "e.g. http://collector:4318")
    p.add_argument("--mermaid-js", metavar="FILE",
                   help="the HTML report's mermaid build, dist/mermaid.min.js of the npm package mermaid "
                        "(default: $OSFLOW_MERMAID_JS, else a well-known place; see README)")
    p.add_argument("--client", metavar="PID|NAME",
                   help="the command whose story to show: a pid (and its descendants) or a participant's name "
                        "(default: the pid in meta.json beside the capture, else every OpenStackClient end)")
    p.add_argument("--meta", metavar="FILE",
                   help="the meta.json osflow record wrote (default: the one beside -r's capture): its command "
                        "is the client")
    p.add_argument("--all", dest="show_all", action="store_true",
                   help="show background pairs too (what the command did not cause)")
    p.add_argument("--no-group", dest="group", action="store_false",
                   help="one step per pair (do not collapse runs of similar DB/cache calls)")
    p.add_argument("--explain", action="store_true",
                   help="also print, per connection, the 4-tuple, the names chosen and the evidence")
    p.add_argument("--show-secrets", action="store_true",
                   help="show tokens and cache keys in full (they are hidden by default)")
    p.add_argument("--show-broker", action="store_true",
                   help="draw RPC through the broker (caller -> RabbitMQ -> callee) instead of caller -> callee")
    p.add_argument("--show-proxies", action="store_true",
                   help="draw a request through a proxy (HAProxy, nginx) as its legs, client -> proxy -> service, "
                        "instead of client -> service")
    p.add_argument("--traceback", action="store_true", help="show a Python traceback on errors")


def post_parser(prog: str = "osflow-post") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        description="From a capture to an attributed, OpenStack-aware timeline, Mermaid diagram or JSON.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"osflow {__version__}")
    add_post_arguments(p)
    return p


def post(argv: Sequence[str] | None = None, prog: str = "osflow-post") -> int:
    """``osflow-post ARGS``: the exit status (see :class:`osflow.errors.ExitStatus`)."""
    try:
        args = post_parser(prog).parse_args(argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_status
    return run(lambda: _post(args, prog), args.traceback, prog)


def _post(args, prog: str) -> int:
    from . import app

    if args.read and args.pdml:
        raise UsageError("give either -r CAPTURE or PDML files, not both")
    if len(args.pdml) > 1:
        raise UsageError("give one PDML file (or standard input)")
    capture, folders = _inputs(args.read)
    if args.tls_keylog and not args.read:
        raise UsageError("--tls-keylog is for -r CAPTURE or -r DIR (tshark decrypts with it); "
                         "give tshark -o tls.keylog_file:FILE for PDML")
    if args.clock_offset and len(folders) < 2:
        raise UsageError("--clock-offset needs two -r folders or more (one per host)")
    if folders and (args.ss or args.ps or args.meta) and len(folders) > 1:
        raise UsageError("with several -r folders, each folder's ss.txt, ps.txt and meta.json are read: "
                         "give no --ss, --ps or --meta")
    from .hosts import parse_offsets

    try:
        offsets = tuple(parse_offsets(args.clock_offset).items())
    except ValueError as e:
        raise UsageError(f"--clock-offset: {e}") from None
    options = app.PostOptions(
        capture=capture,
        folders=folders,
        clock_offsets=offsets,
        pdml=args.pdml[0] if args.pdml else "-",
        ss=tuple(args.ss),
        ps=tuple(args.ps),
        overrides=tuple(args.service),
        endpoints=tuple(args.endpoint),
        tls_keylog=_keylog(args.tls_keylog),
        format=args.format,
        output=args.output,
        group=args.group,
        explain=args.explain,
        show_secrets=args.show_secrets,
        show_broker=args.show_broker,
        show_proxies=args.show_proxies,
        client=args.client,
        meta=args.meta,
        show_all=args.show_all,
        mermaid_js=args.mermaid_js,
        otlp_endpoint=args.otlp_endpoint,
        progress=sys.stderr.isatty(),  # never on a pipe or a file
    )
    outcome = app.post(options)
    _flush_stdout()  # a full disk says so now, not at exit
    for note in outcome.notes:
        print(f"{prog}: {note}", file=sys.stderr)
    for w in outcome.warnings:
        print(f"{prog}: warning: {w}", file=sys.stderr)
    if outcome.export_error is not None:
        raise outcome.export_error
    if outcome.partial is not None:
        raise outcome.partial
    return ExitStatus.OK


def _keylog(path: str | None) -> str | None:
    """``--tls-keylog FILE``, once it is known to be a file osflow may read."""
    if path is None:
        return None
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        from .errors import InputError

        why = "no such file" if not os.path.exists(path) else "not a readable file"
        raise InputError(f"--tls-keylog: expected a TLS key log file, found {path!r} ({why})")
    return path


def _inputs(read: list[str]) -> tuple[str | None, tuple[str, ...]]:
    """``-r``'s values: one capture, or folders ``osflow record`` wrote (one per host)."""
    folders = tuple(r for r in read if os.path.isdir(r))
    if folders and len(folders) != len(read):
        raise UsageError("give -r CAPTURE once, or -r DIR once per host, not both")
    if not folders and len(read) > 1:
        raise UsageError("give one capture with -r (merge the files with mergecap), or one -r DIR per host")
    return (read[0] if read and not folders else None), folders


def run(fn: Callable[[], int], traceback: bool, prog: str) -> int:
    """Run a command, mapping every exception to one line on stderr and an exit status."""
    try:
        return fn()
    except OsflowError as e:
        if traceback:
            raise
        kind = "warning" if e.exit_status == ExitStatus.PARTIAL else "error"
        if isinstance(e, OutputError):
            _discard_stdout()
        print(f"{prog}: {kind}: {e}", file=sys.stderr)
        return e.exit_status
    except BrokenPipeError:
        # the reader went away (| head): not an error of ours, and nothing to say
        _discard_stdout()
        return ExitStatus.OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        if traceback:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (run with --traceback for details)", file=sys.stderr)
        return ExitStatus.INTERNAL


def _flush_stdout() -> None:
    """Flush standard output: a full disk is an :class:`OutputError`, a reader gone a BrokenPipeError."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to standard output: {e.strerror}") from None


def _discard_stdout() -> None:
    """What standard output still holds goes nowhere: Python's last flush at exit would otherwise
    fail again and print a traceback-like "Exception ignored" message."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or not a file (a test's StringIO)
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def post_main() -> int:
    """The ``osflow-post`` console script."""
    return _exiting(post(sys.argv[1:]))


def _exiting(status: int) -> int:
    """The process ends next: move every object of the run out of the garbage collector's reach.

    Its last pass at exit would walk them all (about 5 ms on a one-command capture) just
    before the process ends.  Entry points only: a caller of :func:`post` keeps its
    collector as it was.
    """
    gc.freeze()
    return status


def _record(argv: Sequence[str]) -> int:
    from . import record

    rp = _Parser(prog="osflow record", description="Capture OpenStack traffic while COMMAND runs (or for --duration), "
                 "with the socket owners and processes osflow-post needs.")
    record.add_arguments(rp)
    try:
        args = rp.parse_args(list(argv))
    except UsageError as e:
        print(f"osflow record: error: {e}", file=sys.stderr)
        return e.exit_status
    return run(lambda: record.run(record_options(args)), False, "osflow record")


def record_options(args: argparse.Namespace):
    """``osflow record``'s options from its parsed command line (:func:`osflow.record.add_arguments`)."""
    from .record import RecordOptions

    return RecordOptions(command=tuple(args.command or ()), interface=tuple(args.interface or ()), output=args.output,
                         ports=args.ports, duration=args.duration, ring_buffer=tuple(args.ring_buffer),
                         render=args.render, interval=args.interval, always_poll=args.always_poll,
                         linger=args.linger)


def _diff(argv: Sequence[str]) -> int:
    from . import diff

    dp = _Parser(prog="osflow diff", description="What changed between two runs of a command: the steps only one "
                 "made, the answers that differ, the steps that got slower or faster.")
    diff.add_arguments(dp)
    try:
        args = dp.parse_args(list(argv))
    except UsageError as e:
        print(f"osflow diff: error: {e}", file=sys.stderr)
        return e.exit_status
    return run(lambda: diff.run(args), args.traceback, "osflow diff")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "post":  # before building the parser: it imports every subcommand
        return _exiting(post(argv[1:], prog="osflow post"))
    if argv and argv[0] == "record":
        return _record(argv[1:])
    if argv and argv[0] == "diff":
        return _exiting(_diff(argv[1:]))
    p = _Parser(prog="osflow", description="osflow: how OpenStack services talk to each other, from a capture.")
    p.add_argument("--version", action="version", version=f"osflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("post", help="PDML or capture -> timeline, Mermaid, JSON (same as osflow-post)", add_help=False)
    from . import profile

    profile.add_arguments(sub.add_parser("profile", help="install the Wireshark profile and Lua plugin"))
    sub.add_parser("record", help="capture while a command runs, with socket and process logs", add_help=False)
    sub.add_parser("diff", help="what changed between two runs (recordings, captures or JSON Lines)", add_help=False)
    try:
        args = p.parse_args(argv)
    except UsageError as e:
        print(f"osflow: error: {e}", file=sys.stderr)
        return e.exit_status
    if args.command == "profile":
        return run(lambda: profile.run(args), False, "osflow profile")
    p.print_help()
    return ExitStatus.USAGE

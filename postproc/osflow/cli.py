"""Command line: ``osflow-post`` and ``osflow post|profile``.

Exceptions become exit statuses in one place, :func:`run` (see
:mod:`osflow.errors` for the table); nothing prints a traceback unless
``--traceback`` is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Callable, Iterable, Optional, Sequence, TextIO

from . import __version__
from .errors import EXIT_OK, EXIT_PARTIAL, OsflowError, UsageError

EPILOG = """\
input:
  PDML on stdin (default) or from files, e.g.
    tshark -r x.pcapng -d tcp.port==5000,http -d tcp.port==8778,http -T pdml | osflow-post --ss ss.txt --ps ps.txt
  or a capture with -r (osflow runs tshark itself):
    osflow-post -r x.pcapng --ss ss.txt --ps ps.txt

exit status:
  0  ok
  2  bad usage
  3  unreadable or invalid input (not PDML, not a capture, bad table file)
  4  partial: the input ended early (everything read was output)
  5  tshark is missing
"""

EXTENSIONS = {".txt": "timeline", ".mmd": "mermaid", ".md": "md", ".json": "json", ".jsonl": "json"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 itself; keep its one-line style
        raise UsageError(f"{message} (see {self.prog} --help)")


def _service_override(text: str) -> tuple[int, str]:
    port, sep, name = text.partition("=")
    if not sep or not port.isdigit() or not name:
        raise argparse.ArgumentTypeError(f"expected PORT=NAME (e.g. 5000=keystone), found {text!r}")
    return int(port), name


def add_post_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pdml", nargs="*", metavar="PDML", help="PDML files (default: standard input; '-' is stdin)")
    p.add_argument("-r", "--read", metavar="CAPTURE", help="read a pcap/pcapng capture (runs tshark)")
    p.add_argument("--ss", action="append", default=[], metavar="FILE",
                   help="socket table: ss -tp/-tnp/-tnpH/-tlnp, netstat -tnp/-tlnp or lsof -nP -iTCP output, "
                        "'### <epoch>' snapshots allowed (repeatable)")
    p.add_argument("--ps", action="append", default=[], metavar="FILE",
                   help="process table: ps aux/-ef/-eo pid,ppid,user,args output (repeatable)")
    p.add_argument("--service", action="append", default=[], type=_service_override, metavar="PORT=NAME",
                   help="name the service on PORT (overrides the port map; repeatable)")
    p.add_argument("-f", "--format", choices=("timeline", "mermaid", "json", "md"),
                   help="output format (default: from -o's extension, else timeline)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE (.txt timeline, .mmd Mermaid, .md both, .json JSON Lines)")
    p.add_argument("--no-group", dest="group", action="store_false",
                   help="one step per pair (do not collapse runs of similar DB/cache calls)")
    p.add_argument("--explain", action="store_true",
                   help="also print, per connection, the 4-tuple, the names chosen and the evidence")
    p.add_argument("--show-secrets", action="store_true",
                   help="show tokens and cache keys in full (they are hidden by default)")
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


def _output_format(args) -> str:
    if args.format:
        return args.format
    if args.output:
        ext = os.path.splitext(args.output)[1].lower()
        if ext in EXTENSIONS:
            return EXTENSIONS[ext]
    return "timeline"


def _preload(fmt: str) -> None:
    """Import the renderer now, so that nothing but rendering is left once the input ends."""
    import importlib

    for name in {"timeline": ("timeline",), "mermaid": ("mermaid",), "json": ("jsonl",),
                 "md": ("timeline", "mermaid")}[fmt]:
        importlib.import_module(f"osflow.render.{name}")


def _render(fmt: str, flow) -> Iterable[str]:
    # renderers are imported here so that --help stays fast
    if fmt == "timeline":
        from .render import timeline

        return timeline.render(flow)
    if fmt == "mermaid":
        from .render import mermaid

        return mermaid.render(flow)
    if fmt == "json":
        from .render import jsonl

        return jsonl.render(flow)
    return _markdown(flow)


def _markdown(flow) -> Iterable[str]:
    from .render import mermaid, timeline

    yield "# osflow"
    yield ""
    yield from timeline.render(flow, tablefmt="github")
    for lines in mermaid.diagrams(flow):
        yield ""
        yield "```mermaid"
        yield from lines
        yield "```"


def _explain(result) -> Iterable[str]:
    from tabulate import tabulate

    from . import quoting

    rows = []
    for c in result.flow.connections:
        note = ""
        if result.unnamed_without_tables:
            bare = result.unnamed_without_tables.get(c.stream)
            if bare is not None:
                lost = [who for who, now, then in (("client", c.client.label, bare[0]), ("server", c.server.label, bare[1]))
                        if now != then]
                if lost:
                    note = "only a socket table names the " + " and ".join(lost) + f" (without: {bare[0]} → {bare[1]})"
        rows.append(
            (
                c.stream,
                f"{c.client_address} → {c.server_address}",
                quoting.table_cell(c.client.label),
                quoting.table_cell(c.client.evidence, 70),
                quoting.table_cell(c.server.label),
                quoting.table_cell(c.server.evidence, 70),
                note,
            )
        )
    yield "Connections:"
    yield from tabulate(
        rows,
        headers=("stream", "4-tuple", "client", "client evidence", "server", "server evidence", "note"),
        disable_numparse=True,
    ).splitlines()


def _write(lines: Iterable[str], out: TextIO) -> None:
    for line in lines:
        out.write(line)
        out.write("\n")


def post(argv: Optional[Sequence[str]] = None, prog: str = "osflow-post") -> int:
    try:
        args = post_parser(prog).parse_args(argv)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_status
    return run(lambda: _post(args, prog), args.traceback, prog)


def _post(args, prog: str) -> int:
    from .errors import InputError, PartialInput
    from .pipeline import Tables, analyse

    if args.read and args.pdml:
        raise UsageError("give either -r CAPTURE or PDML files, not both")
    fmt = _output_format(args)
    _preload(fmt)  # while tshark (in a pipe) is still starting, not after the last packet
    tables = Tables.load(args.ss, args.ps)
    overrides = dict(args.service)
    opts = dict(overrides=overrides, group=args.group, show_secrets=args.show_secrets, explain=args.explain)
    if sys.stderr.isatty():  # never on a pipe or a file
        from .pipeline import Progress

        opts["progress"] = Progress(sys.stderr)
    if args.read:
        from .source import Tshark

        runner = Tshark(args.read)
        try:
            with runner as stream:
                result = analyse(stream, args.read, tables, reader=runner.reader(stream), **opts)
        except InputError:
            if runner.problem is not None:  # tshark's own words say more than "empty input"
                raise runner.problem from None
            raise
        if runner.problem is not None:
            if result.packets == 0 and not isinstance(runner.problem, PartialInput):
                raise runner.problem
            if result.partial is None:
                result.partial = PartialInput(str(runner.problem))
    else:
        paths = args.pdml or ["-"]
        if len(paths) > 1:
            raise UsageError("give one PDML file (or standard input)")
        path = paths[0]
        if path == "-":
            result = analyse(sys.stdin.buffer, "<stdin>", tables, **opts)
        else:
            try:
                f = open(path, "rb")
            except OSError as e:
                raise InputError(f"{path}: cannot read it: {e.strerror}") from None
            with f:
                result = analyse(f, path, tables, **opts)

    lines = _render(fmt, result.flow)
    if args.output:
        _write_output(args.output, fmt, result.flow, lines)
    else:
        _write(lines, sys.stdout)
    if args.explain:
        target = sys.stdout if (fmt in ("timeline", "md") and not args.output) else sys.stderr
        target.write("\n")
        _write(_explain(result), target)
    for w in result.flow.warnings:
        print(f"{prog}: warning: {w}", file=sys.stderr)
    if result.partial is not None:
        raise result.partial
    return EXIT_OK


def _write_output(path: str, fmt: str, flow, lines: Iterable[str]) -> None:

    if fmt == "mermaid":
        from .render import mermaid

        ds = mermaid.diagrams(flow)
        if len(ds) > 1:
            root, ext = os.path.splitext(path)
            paths = [path] + [f"{root}-{n}{ext}" for n in range(2, len(ds) + 1)]
            for p, d in zip(paths, ds):
                _write_file(p, d)
            print(f"osflow-post: the diagram was split into {len(ds)} files: {', '.join(paths)}", file=sys.stderr)
            return
    _write_file(path, lines)


def _write_file(path: str, lines: Iterable[str]) -> None:
    from .errors import InputError

    try:
        with open(path, "w", encoding="utf-8") as f:
            _write(lines, f)
    except OSError as e:
        raise InputError(f"{path}: cannot write it: {e.strerror}") from None


def run(fn: Callable[[], int], traceback: bool, prog: str) -> int:
    """Run a command, mapping every exception to one line on stderr and an exit status."""
    try:
        return fn()
    except OsflowError as e:
        if traceback:
            raise
        kind = "warning" if e.exit_status == EXIT_PARTIAL else "error"
        print(f"{prog}: {kind}: {e}", file=sys.stderr)
        return e.exit_status
    except BrokenPipeError:
        # the reader went away (| head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        if traceback:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (run with --traceback for details)", file=sys.stderr)
        return 1


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
    return run(lambda: record.run(args), False, "osflow record")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "post":  # before building the parser: it imports every subcommand
        return _exiting(post(argv[1:], prog="osflow post"))
    if argv and argv[0] == "record":
        return _record(argv[1:])
    p = _Parser(prog="osflow", description="osflow: how OpenStack services talk to each other, from a capture.")
    p.add_argument("--version", action="version", version=f"osflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("post", help="PDML or capture -> timeline, Mermaid, JSON (same as osflow-post)", add_help=False)
    try:
        from . import profile
    except ImportError:  # pragma: no cover - the profile module ships with the package
        profile = None
    if profile is not None:
        pp = sub.add_parser("profile", help="install the Wireshark profile and Lua plugin")
        profile.add_arguments(pp)
    sub.add_parser("record", help="capture while a command runs, with socket and process logs", add_help=False)
    try:
        args = p.parse_args(argv)
    except UsageError as e:
        print(f"osflow: error: {e}", file=sys.stderr)
        return e.exit_status
    if args.command == "profile" and profile is not None:
        return run(lambda: profile.run(args), False, "osflow profile")
    p.print_help()
    return 2

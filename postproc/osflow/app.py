"""The application: a capture or PDML, socket tables, options -> the outputs ``osflow-post`` writes.

:func:`post` is what ``osflow-post`` and ``osflow record --render`` run: it reads the
input (PDML from a file or standard input, or a capture through tshark), runs the
stages (:func:`osflow.pipeline.analyse`), renders the chosen format to a file or a
stream, and returns a :class:`PostOutcome`.  It raises :class:`~osflow.errors.OsflowError`
for what it cannot do and knows nothing of exit statuses or argument parsing: those
are :mod:`osflow.cli`'s.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import IO, TextIO, cast

from .errors import ExportError, InputError, OutputError, PartialInput
from .options import AnalysisOptions
from .pipeline import Result, Stream, Tables, analyse, collect
from .render import OUTPUTS, Format, Output, declaration, format_of, renderer
from .render.common import RenderOptions


def output_format(fmt: str | None, output: str | None) -> Format:
    """``--format`` if given, else the one ``-o``'s extension names (:attr:`osflow.render.Output.extensions`),
    else the timeline.

    >>> output_format(None, "flow.md"), output_format("json", "flow.md"), output_format(None, "x.html")
    ('md', 'json', 'html')
    >>> output_format(None, "traces.otlp.jsonl"), output_format(None, "flow.jsonl")
    ('otlp', 'json')
    """
    return fmt or (format_of(output) if output else None) or "timeline"


@dataclass(frozen=True)
class PostOptions:
    """What to read and what to write (``osflow-post``'s options)."""

    capture: str | None = None  #: a pcap/pcapng file, run through tshark (``-r``)
    pdml: str = "-"  #: a PDML file, ``-`` for standard input (when ``capture`` is None)
    ss: tuple[str, ...] = ()  #: socket tables (``--ss``)
    ps: tuple[str, ...] = ()  #: process tables (``--ps``)
    overrides: tuple[tuple[int, str], ...] = ()  #: ``--service PORT=NAME``
    format: Format | None = None  #: None: from ``output``'s extension, else the timeline
    output: str | None = None  #: a file to write, None for ``stdout``
    group: bool = True
    explain: bool = False
    show_secrets: bool = False
    show_broker: bool = False  #: draw RPC through RabbitMQ (``--show-broker``)
    show_proxies: bool = False  #: a request through a proxy as its legs (``--show-proxies``)
    progress: bool = False  #: frames, pairs and rate on ``stderr`` while reading
    client: str | None = None  #: ``--client PID|NAME`` (default: meta.json beside the capture, else OpenStackClient)
    show_all: bool = False  #: background pairs too (``--all``)
    meta: str | None = None  #: the recording's meta.json (``--meta``; default: the one beside ``capture``)
    mermaid_js: str | None = None  #: the HTML report's mermaid build (``--mermaid-js``; :mod:`osflow.mermaidjs`)
    otlp_endpoint: str | None = None  #: also POST the flow as OTLP/JSON to this URL's ``/v1/traces``
    folders: tuple[str, ...] = ()  #: ``osflow record`` folders (``-r DIR``, one per host; :mod:`osflow.hosts`)
    clock_offsets: tuple[tuple[str, float], ...] = ()  #: ``--clock-offset HOST=SECONDS``
    endpoints: tuple[tuple[str, str], ...] = ()  #: ``--endpoint URL=SERVICE``
    #: ``--tls-keylog FILE``: the TLS key log tshark decrypts with (default: a ``-r`` folder's own)
    tls_keylog: str | None = None


@dataclass(frozen=True)
class PostOutcome:
    """What :func:`post` did: the files it wrote, what it has to say, whether the input was cut short."""

    packets: int  #: TCP packets read
    pairs: int  #: request/response pairs found
    written: tuple[str, ...] = ()  #: files written (none when the output went to ``stdout``)
    notes: tuple[str, ...] = ()  #: e.g. "the diagram was split into 2 files: …"
    warnings: tuple[str, ...] = ()
    partial: PartialInput | None = None  #: the input ended early; everything read was output
    export_error: ExportError | None = None  #: sending to ``--otlp-endpoint`` failed (the output was written)


def post(options: PostOptions, stdout: TextIO | None = None, stderr: TextIO | None = None) -> PostOutcome:
    """Read, analyse and render as ``options`` say; see the module's docstring.

    How the input is read follows the format's declaration (:class:`osflow.render.Output`): a
    streamed format is written while it is read, a collected one drawn at the end from the same
    stream; ``--explain`` shows the connections, and the traces sent beside another format are
    rendered from the flow at the end: both need the whole flow.
    """
    stdout = (sys.stdout or _CLOSED) if stdout is None else stdout  # None: started with standard output closed
    stderr = sys.stderr if stderr is None else stderr
    out = declaration(output_format(options.format, options.output))
    looks = RenderOptions(show_secrets=options.show_secrets, show_broker=options.show_broker)
    module = renderer(out.format)  # now, while tshark (in a pipe) is still starting, not after the last packet
    render = partial(module.render, options=looks)
    extra: tuple[str, ...] = ()
    if out.mermaid_js:  # find mermaid's build before reading: a wrong --mermaid-js fails at once
        render, extra = _with_mermaid_js(render, options.mermaid_js)
    exporter = None
    if options.otlp_endpoint is not None:  # a bad URL fails before reading
        from .export import OtlpHttpExporter

        exporter = OtlpHttpExporter(options.otlp_endpoint)
        if out.traces:  # each line written, then sent
            render = _teed(render, exporter)
    needs = out.needs
    if options.explain or (exporter is not None and not out.traces):
        needs = "whole"
    if needs == "streamed":
        lines_of = partial(module.render_parts, options=looks)
        if exporter is not None:
            lines_of = _teed(lines_of, exporter)
        return _post_streamed(options, lines_of, stdout, stderr, exporter, extra)
    result = read(options, stderr, streamed=needs == "collected")
    flow = result.flow
    written: tuple[str, ...] = ()
    notes: tuple[str, ...] = flow.clocks
    split: tuple[str, ...] = ()
    if options.output is None and out.documents is not None:  # one document: the first, and a word if more
        ds = getattr(module, out.documents)(flow, options=looks)
        write_stdout(module.first_part(ds), stdout)
        if len(ds) > 1:
            split = (module.split_message(len(ds)).replace("this is part 1", "standard output holds part 1"),)
    elif options.output is None:
        write_stdout(render(flow), stdout)
    elif out.documents is not None:
        written = write_documents(options.output, getattr(module, out.documents)(flow, options=looks))
        if len(written) > 1:
            notes += (f"the diagram was split into {len(written)} files: {', '.join(written)}",)
    else:
        write_file(options.output, render(flow))
        written = (options.output,)
    if options.explain:
        target = stdout if (out.explain_after and options.output is None) else stderr
        from .render import explain

        write_stdout(itertools.chain(("",), explain.render(flow, looks)), target,
                     "standard output" if target is stdout else "standard error")
    if exporter is not None and not out.traces:  # another format was written: send the traces too
        exporter.send_all(renderer(_TRACES.format).render(flow, looks))
    return PostOutcome(result.packets, len(flow.pairs), written, notes, flow.warnings + extra + split, result.partial,
                       exporter.error if exporter is not None else None)


#: The format whose lines ``--otlp-endpoint`` sends.
_TRACES: Output = next(o for o in OUTPUTS if o.traces)


def _teed(render, exporter):
    """``render`` whose lines also go to ``exporter`` (after they are written)."""
    return lambda flow: exporter.tee(render(flow))


def _post_streamed(options: PostOptions, lines_of, stdout: TextIO, stderr: TextIO, exporter,
                   extra: tuple[str, ...]) -> PostOutcome:
    """Read and write at once: each line as soon as the stream gives out what it needs."""
    tables = _tables(options)
    analysis, progress = analysis_options(options, tables), _progress(options, stderr)
    out = _Sink(options.output, stdout)
    if options.folders:
        merged = _merged(options, tables)
        streamed = Stream(_NO_STREAM, merged.name, tables, analysis, reader=merged, progress=progress)
        out.write(lines_of(streamed), lambda: streamed.reader.count > 0)
        cut = streamed.partial
        warnings = tuple(merged.warnings()) + streamed.warnings
        out.close()
        return PostOutcome(streamed.packets, streamed.pairs, out.written, _clocks(merged), warnings + extra, cut,
                           exporter.error if exporter is not None else None)
    if options.capture is not None:
        from .tshark import Tshark

        runner = Tshark(options.capture, overrides=dict(options.overrides), keylog=options.tls_keylog)
        try:
            with runner as pipe:
                streamed = Stream(pipe, options.capture, tables, analysis, reader=runner.reader(pipe),
                                  progress=progress)
                out.write(lines_of(streamed), lambda: streamed.reader.count > 0)
        except InputError:
            if runner.problem is not None:  # tshark's own words say more than "empty input"
                raise runner.problem from None
            raise
        cut = _tshark_problem(runner, streamed.packets, streamed.partial)
    else:
        f = sys.stdin.buffer if options.pdml == "-" else _open(options.pdml)
        try:
            name = "<stdin>" if options.pdml == "-" else options.pdml
            streamed = Stream(f, name, tables, analysis, progress=progress)
            out.write(lines_of(streamed), lambda: True)
        finally:
            if f is not sys.stdin.buffer:
                f.close()
        cut = streamed.partial
    out.close()
    return PostOutcome(streamed.packets, streamed.pairs, out.written, (), streamed.warnings + extra, cut,
                       exporter.error if exporter is not None else None)


class _Sink:
    """Where streamed lines go: ``stdout`` or a file opened with the first line written."""

    def __init__(self, path: str | None, stdout: TextIO) -> None:
        self.path, self.stdout = path, stdout
        self.held: list[str] = []  # lines from before the input proved to be one (tshark may still fail)
        self._file: IO[str] | None = None

    @property
    def written(self) -> tuple[str, ...]:
        return (self.path,) if self.path is not None else ()

    def write(self, lines: Iterable[str], ready) -> None:
        for line in lines:
            if not ready():
                self.held.append(line)
                continue
            self._line(line)

    def _line(self, line: str) -> None:
        if self.held:
            held, self.held = self.held, []
            for h in held:
                self._line(h)
        if self.path is None:
            try:
                self.stdout.write(line)
                self.stdout.write("\n")
            except BrokenPipeError:
                raise
            except OSError as e:
                raise OutputError(f"cannot write to standard output: {e.strerror}") from None
            return
        out = self._open()
        try:
            out.write(line)
            out.write("\n")
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write it: {e.strerror}") from None

    def _open(self) -> IO[str]:
        if self._file is None:
            assert self.path is not None
            try:
                self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - kept open while lines stream
            except OSError as e:
                raise OutputError(f"{self.path}: cannot write it: {e.strerror}") from None
        return self._file

    def close(self) -> None:
        """Write what was held, create the file if nothing was written, close it."""
        held, self.held = self.held, []
        for h in held:
            self._line(h)
        if self.path is not None:
            try:
                self._open().close()
            except OSError as e:  # the last bytes are written on close: a full disk says so here
                raise OutputError(f"{self.path}: cannot write it: {e.strerror}") from None


def _with_mermaid_js(render, mermaid_js: str | None):
    """``render`` given mermaid's build (``--mermaid-js``, else a well-known place), and the warning
    when none was found."""
    from . import mermaidjs

    library = mermaidjs.find(mermaid_js)
    missing = () if library is not None else (f"no mermaid build found: the report shows the diagram as Mermaid "
                                              f"source ({mermaidjs.INSTALL_HINT})",)
    return partial(render, library=library, hint=mermaidjs.INSTALL_HINT), missing


def read(options: PostOptions, stderr: TextIO, streamed: bool = False) -> Result:
    """Run the stages on the input ``options`` name: all at the end (:func:`~osflow.pipeline.analyse`),
    or, if ``streamed``, while it is read (:func:`~osflow.pipeline.collect`)."""
    tables = _tables(options)
    analysis, progress = analysis_options(options, tables), _progress(options, stderr)

    def run(stream: IO[bytes], name: str, reader=None) -> Result:
        if streamed:
            return collect(Stream(stream, name, tables, analysis, reader=reader, progress=progress))
        return analyse(stream, name, tables, analysis, reader=reader, progress=progress)

    if options.folders:
        merged = _merged(options, tables)
        result = run(_NO_STREAM, merged.name, reader=merged)
        flow = replace(result.flow, warnings=tuple(merged.warnings()) + result.flow.warnings, clocks=_clocks(merged))
        return replace(result, flow=flow)
    if options.capture is not None:
        return _read_capture(options.capture, run, dict(options.overrides), options.tls_keylog)
    if options.pdml == "-":
        return run(sys.stdin.buffer, "<stdin>")
    with _open(options.pdml) as f:
        return run(f, options.pdml)


#: The byte stream given to the stages when a reader of its own brings the packets.
_NO_STREAM: IO[bytes] = cast(IO[bytes], None)


def _tables(options: PostOptions) -> Tables:
    """The socket and process tables: ``--ss``/``--ps``, or each ``-r`` folder's (one set per host)."""
    if not options.folders:
        return Tables.load(options.ss, options.ps)
    recs = recordings(options)
    if len(recs) == 1:
        return Tables.load(recs[0].ss + options.ss, recs[0].ps + options.ps)
    return Tables.load_hosts([(r.host, r.ss, r.ps) for r in recs])


def recordings(options: PostOptions):
    """The ``-r`` folders' files and hosts (:func:`osflow.hosts.recording`)."""
    from . import hosts

    recs = [hosts.recording(f) for f in options.folders]
    hosts.unique_hosts(recs)
    return recs


def _merged(options: PostOptions, tables: Tables):
    """The reader of the ``-r`` folders: one tshark per capture, the hosts merged (:class:`osflow.hosts.Merged`)."""
    from . import hosts

    recs = recordings(options)
    known = {r.host for r in recs[1:]}
    given = dict(options.clock_offsets)
    for host in given:
        if host not in known:
            from .errors import UsageError

            first = f" ({recs[0].host} is the first folder's: the clock the others are set to)" \
                if host == recs[0].host else ""
            raise UsageError(f"--clock-offset {host}=…: expected the host of a -r folder after the first "
                             f"({', '.join(sorted(known)) or 'none'}), found {host!r}{first}")
    # each folder's capture decrypted with its own key log, or every one with --tls-keylog's
    keylogs = {c: options.tls_keylog or r.keylog for r in recs for c in r.captures}
    return hosts.Merged(recs, partial(_host_capture, dict(options.overrides), keylogs), given,
                        tables.local_addresses(), tables.clock)


def _host_capture(overrides: dict[int, str], keylogs: dict[str, str | None], path: str, host):
    """One capture of a host's folder: its packets through tshark (TLS decrypted with its folder's key
    log, ``keylogs``); ``host`` told its first frame's time and whether it ended early
    (:data:`osflow.hosts.OpenCapture`)."""
    from .tshark import Tshark

    runner = Tshark(path, overrides=overrides, keylog=keylogs.get(path))
    count, partial_input = 0, None
    try:
        with runner as pipe:
            reader = runner.reader(pipe)
            for p in reader:
                if host.first_time is None:
                    host.first_time = reader.first_time
                count += 1
                yield p
            partial_input = reader.partial
    except InputError:
        if runner.problem is not None:  # tshark's own words say more than "empty input"
            raise runner.problem from None
        raise
    cut = _tshark_problem(runner, count, partial_input)
    if cut is not None:
        host.cut(cut)


def _clocks(merged) -> tuple[str, ...]:
    """One line per host after the first: its clock's offset (a clock not found is a warning instead)."""
    return tuple(o.line() for o in merged.offsets if o.how != "none")


def _progress(options: PostOptions, stderr: TextIO):
    if not options.progress:
        return None
    from .pipeline import Progress

    return Progress(stderr)


def _open(pdml: str) -> IO[bytes]:
    try:
        return open(pdml, "rb")
    except OSError as e:
        raise InputError(f"{pdml}: cannot read it: {e.strerror}") from None


def analysis_options(options: PostOptions, tables: Tables) -> AnalysisOptions:
    """What changes the analysis, from ``osflow-post``'s options and the tables read (who the client is)."""
    return AnalysisOptions(overrides=options.overrides, client=_client(options, tables),
                           show_secrets=options.show_secrets, group=options.group, show_all=options.show_all,
                           explain=options.explain, show_proxies=options.show_proxies,
                           endpoints=options.endpoints)


def _client(options: PostOptions, tables: Tables):
    """Who the command is: ``--client``, else the recording's meta.json (``--meta``, or the one beside
    the capture, or the ``-r`` folder's), else None (every OpenStackClient end).  With several hosts'
    folders, the command of the first folder that ran one, on its host."""
    from . import foreground

    if options.folders and len(options.folders) > 1:
        return _hosts_client(options, tables)
    meta = options.meta
    if meta is None and options.folders:
        meta = recordings(options)[0].meta
    if meta is None and options.capture is not None:
        meta = foreground.meta_beside(options.capture)
    if options.client is not None:
        recorded = foreground.read_meta(meta) if meta is not None else None
        return foreground.parse_client(options.client, foreground.parents_of(tables.processes, recorded))
    if meta is None:
        return None
    found = foreground.client_from_meta(meta, tables.processes, options.show_secrets)
    if options.folders and tables.sockets is None:  # a folder without ss.txt: the command by its name
        found = foreground.by_command_name(found, meta)
    return found


def _hosts_client(options: PostOptions, tables: Tables):
    """``_client`` for several hosts: a pid is one host's (the first folder's with ``--client PID``)."""
    from dataclasses import replace as _replace

    from . import foreground

    recs = recordings(options)
    hosts = tables.hosts or {}
    if options.client is not None:
        first = recs[0]
        recorded = foreground.read_meta(first.meta) if first.meta is not None else None
        found = foreground.parse_client(options.client, foreground.parents_of(hosts.get(first.host, (None, None))[1],
                                                                              recorded))
        return _replace(found, host=first.host) if found.pids else found
    ran = [r for r in recs if r.meta is not None and isinstance(foreground.read_meta(r.meta).get("command_pid"), int)]
    if not ran:
        with_meta = [r for r in recs if r.meta is not None]
        if not with_meta:
            return None
        return foreground.client_from_meta(with_meta[0].meta, None, options.show_secrets)
    r = ran[0]
    assert r.meta is not None
    sockets, processes = hosts.get(r.host, (None, None))
    found = foreground.client_from_meta(r.meta, processes, options.show_secrets)
    if sockets is None:
        found = foreground.by_command_name(found, r.meta)
    return _replace(found, host=r.host, why=f"{r.host}: {found.why}")


def _read_capture(capture: str, run, overrides: dict[int, str] | None = None, keylog: str | None = None) -> Result:
    from .tshark import Tshark

    runner = Tshark(capture, overrides=overrides, keylog=keylog)
    try:
        with runner as stream:
            result = run(stream, capture, reader=runner.reader(stream))
    except InputError:
        if runner.problem is not None:  # tshark's own words say more than "empty input"
            raise runner.problem from None
        raise
    return replace(result, partial=_tshark_problem(runner, result.packets, result.partial))


def _tshark_problem(runner, packets: int, partial: PartialInput | None) -> PartialInput | None:
    """What tshark's exit says: nothing (it went well), the input ended early, or an error raised
    (tshark read nothing)."""
    if runner.problem is None:
        if packets == 0 and partial is None and (empty := runner.no_frame()) is not None:
            raise empty  # a capture of no frame at all is not one osflow can read (exit 3)
        return partial
    if packets == 0 and not isinstance(runner.problem, PartialInput):
        raise runner.problem
    if partial is None:
        return PartialInput(str(runner.problem))
    # both: tshark's exit (killed, the capture cut short) first, then what the reader saw of it
    prefix = f"{runner.capture}: "
    return PartialInput(f"{runner.problem}; {str(partial).removeprefix(prefix)}")


# --------------------------------------------------------------------------- writing


def write_lines(lines: Iterable[str], out: IO[str]) -> None:
    """Write each line and a newline (renderers yield lines without one)."""
    for line in lines:
        out.write(line)
        out.write("\n")


def write_file(path: str, lines: Iterable[str]) -> None:
    """Write ``lines`` to ``path``; a file that cannot be written is an :class:`OutputError`."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            write_lines(lines, f)
    except OSError as e:
        raise OutputError(f"{path}: cannot write it: {e.strerror}") from None


def write_stdout(lines: Iterable[str], out: IO[str], name: str = "standard output") -> None:
    """:func:`write_lines` to standard output (or error, ``name``): a full disk is an :class:`OutputError`;
    a reader that went away (``| head``), a :class:`BrokenPipeError`, left to the command line."""
    try:
        write_lines(lines, out)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write to {name}: {e.strerror}") from None


class _ClosedStdout:
    """What is written when ``osflow-post`` was started with its standard output closed (``>&-``)."""

    def write(self, text: str) -> int:
        raise OutputError("cannot write to standard output: it is closed (give -o FILE)")

    def flush(self) -> None:
        pass


_CLOSED = cast(TextIO, _ClosedStdout())  # write and flush are all a stream is used for here


def write_documents(path: str, documents: list[list[str]]) -> tuple[str, ...]:
    """One document to ``path``; several (a diagram too long for Mermaid) to ``path``, ``<root>-2<ext>``, …"""
    if len(documents) == 1:
        write_file(path, documents[0])
        return (path,)
    root, ext = os.path.splitext(path)
    paths = (path,) + tuple(f"{root}-{n}{ext}" for n in range(2, len(documents) + 1))
    for p, d in zip(paths, documents, strict=True):
        write_file(p, d)
    return paths

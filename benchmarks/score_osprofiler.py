#!/usr/bin/env python3
"""Score osflow's story of a recording against OSProfiler's trace of the same command.

OSProfiler, on in every OpenStack service, records what a command caused with explicit parent
ids: the server side of every HTTP request ("wsgi"), every SQL statement ("db"), both sides of an
RPC ("rpc": the caller's ``*.rpcapi.*`` method, the callee's manager method) and the functions
between them.  This script runs ``osflow-post`` on the recording, matches every scored span to
one of osflow's pairs, and prints, for each trace:

    TRACE: spans matched M/N (x%), parents agree A/M (y%), foreground precision p%, recall r%

followed by each disagreement with its evidence (at most 10 of each sort a trace unless ``-v``).

    python benchmarks/score_osprofiler.py DIR [DIR...] [--no-tables] [-v]

DIR is an ``osflow record`` folder (one per host), ``osprofiler.json`` beside the capture in one
of them: what ``osprofiler trace show --json TRACE_ID`` prints, or a JSON list of such traces.
``--no-tables`` scores osflow without the socket and process tables (a copy of the folders with
only the capture files and ``meta.json``).  docs/accuracy.md says what each figure counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACE_FILE = "osprofiler.json"
#: a span and a pair further apart than this (seconds) are not matched
TOLERANCE = 2.0
#: disagreements of each sort printed per trace without -v
CAP = 10
#: MySQL statements OSProfiler does not see, all sent below SQLAlchemy's events: pool pings, the
#: driver's own COMMIT/ROLLBACK, and what a new connection is set up with (PyMySQL's SET AUTOCOMMIT,
#: SQLAlchemy's first look at the server, oslo.db's sql_mode)
UNSEEN_SQL = re.compile(r"^\s*(SELECT\s+1|COMMIT|ROLLBACK|SET\s+(AUTOCOMMIT|NAMES|SESSION)\b.*|"
                        r"SELECT\s+(VERSION|DATABASE)\(\)|SELECT\s+@@[\w.]+|SHOW\s+VARIABLES\b.*)\s*;?\s*$",
                        re.I | re.S)
#: the first word of an SQL statement (osflow's other MySQL requests are commands: login, quit, ping)
SQL_VERBS = frozenset(("SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "SHOW", "SET", "CREATE", "ALTER",
                       "DROP", "TRUNCATE", "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "LOCK",
                       "UNLOCK", "CALL", "EXPLAIN", "DESCRIBE"))


#: the sorts of disagreement, in the order they are printed
SORTS = ("unmatched", "parent", "false positive", "false negative")


class ScoreError(Exception):
    """Bad input: one line for stderr."""


# --------------------------------------------------------------------------- what is compared


@dataclasses.dataclass(frozen=True)
class Span:
    """One OSProfiler trace point."""

    id: str  #: OSProfiler's trace_id of the point
    trace: str  #: the trace's base id
    parent: str | None  #: the parent point's id, None at the top
    name: str  #: wsgi, db, rpc, compute_api, …
    kind: str | None  #: "http", "sql", "rpc" when scored, None for a point only walked through
    key: tuple[str, ...]  #: what a pair must say to be this span
    start: float  #: epoch seconds
    end: float
    where: str  #: project/service@host
    text: str  #: one line: the request, statement or function
    literals: frozenset[str] = frozenset()  #: a statement's parameters
    role: str = ""  #: an RPC span's side: "caller" or "callee"
    #: the process that wrote the point's start to OSProfiler's Redis store (its pid, from the socket
    #: table) and when, on the capture's clock (first host's): what the capture says of the span
    writer: int | None = None
    written: float | None = None


@dataclasses.dataclass(frozen=True)
class Pair:
    """One of osflow's request/response pairs (a line of its JSON Lines)."""

    id: int
    parent: int | None
    start: float  #: epoch seconds
    end: float
    protocol: str
    client: str
    server: str
    request: str
    background: bool
    connection: str  #: the client's address
    key: tuple[str, ...] | None  #: what a span must say to be this pair (None: no span can)
    seen: bool = False  #: of a kind OSProfiler sees (the foreground is counted over these)
    literals: frozenset[str] = frozenset()
    fanout: bool = False
    process: int | None = None  #: the client's pid, from the socket table (None: not known, or not one)

    def line(self, zero: float) -> str:
        return (f"#{self.id} {self.protocol} {self.client} → {self.server} at {self.start - zero:.6f} s: "
                f"{_short(self.request)}")


# --------------------------------------------------------------------------- normalising


_STRING = re.compile(r"(?:_binary|_utf8mb4|[NnXxBb])?'(?:[^'\\]|\\.|'')*'")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w])")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s|\bNULL\b|\?", re.I)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*")


def normalise_sql(text: str) -> str:
    """An SQL statement with its literals and placeholders made ``?``, lists of them ``(?)``.

    >>> normalise_sql("SELECT a FROM t WHERE t.id IN (%(id_1_1)s, %(id_1_2)s) AND t.n = 'x''y' LIMIT %(p)s")
    'SELECT a FROM t WHERE t.id IN (?) AND t.n = ? LIMIT ?'
    >>> normalise_sql("INSERT INTO t (a, b) VALUES (1, NULL),(2, 'z')")
    'INSERT INTO t (a, b) VALUES (?)'
    >>> normalise_sql("INSERT INTO t (a, b) VALUES (%s, %s)")
    'INSERT INTO t (a, b) VALUES (?)'
    """
    text = _STRING.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _LIST.sub("(?)", text)
    return " ".join(text.replace("%%", "%").split())


def sql_literals(text: str) -> frozenset[str]:
    """The string and number literals of an SQL statement as osflow shows it.

    >>> sorted(sql_literals("UPDATE t SET a='x\\\\'y', b=12 WHERE c = 'e05d'"))
    ['12', 'e05d', "x'y"]
    """
    found = {_unquote_sql(m.group()) for m in _STRING.finditer(text)}
    found.update(m.group() for m in _NUMBER.finditer(_STRING.sub("?", text)))
    return frozenset(found)


def _unquote_sql(literal: str) -> str:
    body = literal[literal.index("'") + 1:-1]
    return re.sub(r"\\(.)", r"\1", body.replace("''", "'"))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def rpc_literals(function: dict) -> frozenset[str]:
    """The resource UUIDs an RPC span's arguments name (OSProfiler keeps their ``repr``), lower case: what
    osflow's JSON gives an RPC pair as ``resources``.  Two calls of one method at once (two instances'
    ``Instance.save``) are told apart by them."""
    text = f"{function.get('args', '')} {function.get('kwargs', '')}"
    return frozenset(m.group(0).lower() for m in _UUID.finditer(text))


def param_literals(params: object) -> frozenset[str]:
    """A statement's parameters (a dict, a list, a list of those) as the strings osflow would show."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, (int, str)):
            found.add(str(value))

    walk(params)
    return frozenset(found)


def project_of(participant: str) -> str:
    """The OpenStack project a participant belongs to: ``nova-api@ctl`` -> ``nova``.

    >>> project_of("nova-api@controller"), project_of("neutron-server"), project_of("keystone DB")
    ('nova', 'neutron', 'keystone')
    """
    name = participant.split("@", 1)[0]
    return re.split(r"[-_ ]", name, maxsplit=1)[0].lower()


def http_key(project: str, method: str, target: str, query: str | None = None) -> tuple[str, ...]:
    """The key of an HTTP request: the server's project, method, path and query as sent."""
    if query is None:
        parts = urlsplit(target)
        path, query = parts.path, parts.query
    else:
        path = target
    return ("http", project, method.upper(), unquote(path).rstrip("/") or "/", unquote(query))


def _short(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


# --------------------------------------------------------------------------- OSProfiler's spans


def load_traces(path: str) -> list[dict]:
    """``osprofiler.json``: one trace (``trace show --json``) or a JSON list of them."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ScoreError(f"{path}: cannot read it: {e.strerror}") from None
    except ValueError as e:
        raise ScoreError(f"{path}: expected OSProfiler's JSON (osprofiler trace show --json), found bad JSON: {e}") \
            from None
    traces = data if isinstance(data, list) else [data]
    for i, trace in enumerate(traces):
        if not isinstance(trace, dict) or not isinstance(trace.get("children"), list):
            what = type(trace).__name__ if not isinstance(trace, dict) else f"an object with keys {sorted(trace)[:5]}"
            raise ScoreError(f"{path}: expected a trace (an object with \"children\") as item {i + 1}, found {what}")
    return traces


def _timestamp(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def _payloads(info: dict) -> tuple[dict, dict]:
    """A node's start and stop notifications (``meta.raw_payload.<name>-start``/``-stop``)."""
    start: dict = {}
    stop: dict = {}
    for k, v in info.items():
        if k.startswith("meta.raw_payload.") and isinstance(v, dict):
            if k.endswith("-start"):
                start = v
            elif k.endswith("-stop"):
                stop = v
    return start, stop


def walk_nodes(nodes: Iterable[object], path: str) -> Iterator[tuple[dict, str | None]]:
    """Every node of a trace's tree, with its parent's id (depth first)."""
    todo: list[tuple[object, str | None]] = [(n, None) for n in reversed(list(nodes))]
    while todo:
        node, parent = todo.pop()
        if not isinstance(node, dict) or not isinstance(node.get("info"), dict) or "trace_id" not in node:
            raise ScoreError(f"{path}: expected trace points (objects with \"info\" and \"trace_id\"), found "
                             f"{_short(json.dumps(node), 80)}")
        yield node, parent
        todo.extend((c, node["trace_id"]) for c in reversed(node.get("children") or []))


def spans_of(trace: dict, path: str) -> list[Span]:
    """A trace's points as :class:`Span` (RPC sides decided from the tree)."""
    raw: list[Span] = []
    base = ""
    for node, parent in walk_nodes(trace["children"], path):
        info = node["info"]
        start_n, stop_n = _payloads(info)
        base = base or start_n.get("base_id") or stop_n.get("base_id") or ""
        start = _timestamp(start_n.get("timestamp"))
        end = _timestamp(stop_n.get("timestamp"))
        if start is None and end is None:
            raise ScoreError(f"{path}: expected meta.raw_payload.<name>-start with a timestamp "
                             f"(%Y-%m-%dT%H:%M:%S.%f) in trace point {node['trace_id']}, found none")
        start = end if start is None else start
        end = start if end is None else end
        assert start is not None and end is not None
        name = str(info.get("name", ""))
        project = str(info.get("project") or start_n.get("project") or "")
        where = f"{project}/{info.get('service', '')}@{info.get('host', '')}"
        detail: dict = start_n["info"] if isinstance(start_n.get("info"), dict) else {}
        kind: str | None = None
        key: tuple[str, ...] = ()
        text, literals = name, frozenset[str]()
        if name == "wsgi" and isinstance(detail.get("request"), dict):
            r = detail["request"]
            kind = "http"
            key = http_key(project, str(r.get("method", "")), str(r.get("path", "")), str(r.get("query") or ""))
            text = f"{r.get('method')} {r.get('path')}" + (f"?{r['query']}" if r.get("query") else "")
        elif name == "db" and isinstance(detail.get("db"), dict):
            statement = str(detail["db"].get("statement", ""))
            kind, key, text = "sql", ("sql", project, normalise_sql(statement)), statement
            literals = param_literals(detail["db"].get("params"))
        elif name == "rpc" and isinstance(detail.get("function"), dict):
            function = str(detail["function"].get("name", ""))
            kind, key, text = "rpc", ("rpc", function.rsplit(".", 1)[-1]), function
            literals = rpc_literals(detail["function"])
        elif isinstance(detail.get("function"), dict):
            text = f"{name} {detail['function'].get('name', '')}"
        raw.append(Span(node["trace_id"], base, parent, name, kind, key, start, end, where, text, literals))
    return _rpc_sides([dataclasses.replace(s, trace=base or "?") for s in raw])


def _process(span: Span) -> str:
    return span.where.split("/", 1)[-1]


def _rpc_sides(spans: list[Span]) -> list[Span]:
    """Which side of an RPC each "rpc" span is.

    The callee's: its parent is a span of another process (the trace came with the message: the
    caller's ``rpcapi`` span, or whatever span was current when no ``rpcapi`` method is traced, as
    for nova-api's cast to the conductor and nova-compute's object calls).  The caller's: a callee
    below it, or an ``rpcapi`` method not called by another one (``ComputeAPI.get_client``, called
    by ``build_and_run_instance``, sends nothing).  Any other is a manager method its own process
    called: a function, walked through.  A callee whose method is hidden by a decorator
    (``expected_exceptions.<locals>.outer.<locals>.inner``) takes its caller's method."""
    by_id = {s.id: s for s in spans}
    callee = {s.id for s in spans if s.name == "rpc" and s.parent in by_id and
              _process(by_id[s.parent]) != _process(s)}
    has_callee = {by_id[s].parent for s in callee}

    def rpcapi(s: Span | None) -> bool:
        return s is not None and s.name == "rpc" and ".rpcapi." in s.text

    out = []
    for s in spans:
        up = by_id.get(s.parent or "")
        if s.kind != "rpc":
            out.append(s)
        elif s.id in callee:
            key = up.key if up is not None and up.kind == "rpc" and "<locals>" in s.text else s.key
            out.append(dataclasses.replace(s, role="callee", key=key))
        elif s.id in has_callee or (rpcapi(s) and not (rpcapi(up) and up is not None and
                                                        _process(up) == _process(s))):
            out.append(dataclasses.replace(s, role="caller"))
        else:
            out.append(dataclasses.replace(s, kind=None, key=()))
    return out


# --------------------------------------------------------------------------- osflow's pairs


def find_trace_file(dirs: Sequence[str]) -> str:
    found = [os.path.join(d, TRACE_FILE) for d in dirs if os.path.isfile(os.path.join(d, TRACE_FILE))]
    if not found:
        raise ScoreError(f"{' '.join(dirs)}: expected {TRACE_FILE} (osprofiler trace show --json) beside the "
                         f"capture in one of the folders, found none")
    if len(found) > 1:
        raise ScoreError(f"expected one {TRACE_FILE}, found {len(found)}: {', '.join(found)}")
    return found[0]


def _captures(folder: str) -> list[str]:
    names = sorted(os.listdir(folder))
    ring = sorted((int(m.group(1)), n) for n in names if (m := re.match(r"^capture_(\d+)_\d+\.pcapng$", n)))
    if ring:
        return [n for _, n in ring]
    return [n for n in names if n.endswith((".pcapng", ".pcap"))]


def check_dirs(dirs: Sequence[str]) -> None:
    for d in dirs:
        if not os.path.isdir(d):
            raise ScoreError(f"{d}: expected a folder osflow record wrote, found "
                             f"{'a file' if os.path.exists(d) else 'nothing'}")
        if not _captures(d):
            raise ScoreError(f"{d}: expected a folder osflow record wrote (capture.pcapng or ring files), "
                             f"found no capture in it")


def without_tables(dirs: Sequence[str], into: str) -> list[str]:
    """Copies (links) of the folders holding only their capture files and ``meta.json``."""
    out = []
    for i, d in enumerate(dirs):
        copy = os.path.join(into, str(i), os.path.basename(os.path.normpath(d)))
        os.makedirs(copy)
        for name in [*_captures(d), "meta.json"]:
            if os.path.isfile(os.path.join(d, name)):
                os.symlink(os.path.abspath(os.path.join(d, name)), os.path.join(copy, name))
        out.append(copy)
    return out


def first_frame(capture: str) -> float:
    """The epoch time of a capture's first frame (osflow's ``start`` counts from it)."""
    run = subprocess.run(["tshark", "-r", capture, "-c", "1", "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, check=False)
    try:
        return float(run.stdout.split()[0])
    except (IndexError, ValueError):
        raise ScoreError(f"{capture}: expected a capture with a frame, tshark says: "
                         f"{(run.stderr.strip().splitlines() or ['nothing'])[-1]}") from None


#: a connection pool's ping (oslo.db's on every checkout)
_PING = re.compile(r"^\s*SELECT\s+1\s*;?\s*$", re.I)


def socket_owners(dirs: Sequence[str]) -> dict[str, int]:
    """Local address (``ip:port``, as osflow writes it) -> the pid of the process its socket belonged
    to, from the folders' socket tables (``ss.txt``, read by osflow's own parser); an address seen
    with several processes (a port used again, a socket shared after a fork, the same loopback
    address on two hosts) is left out."""
    sys.path.insert(0, os.path.join(REPO, "postproc"))
    from osflow.tables.ss import parse_ss

    owners: dict[str, set[int]] = defaultdict(set)
    for d in dirs:
        for name in sorted(os.listdir(d)):
            if not (name == "ss.txt" or re.match(r"^ss_\d+.*\.txt$", name)):
                continue
            with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
                for entry in parse_ss(f.read(), name).entries:
                    owners[str(entry.sockname)].update(u.pid for u in entry.users)
    return {address: next(iter(pids)) for address, pids in owners.items() if len(pids) == 1}


#: a trace point's start as OSProfiler's Redis driver writes it (``LPUSH osprofiler_opt:<base id> <JSON>``)
_POINT_START = re.compile(rb'"name": "[^"]*-start", "base_id": "[^"]*", "trace_id": "([0-9a-f-]{36})"')


def trace_point_writers(dirs: Sequence[str], offsets: dict[str, float],
                        owners: dict[str, int]) -> dict[str, tuple[int | None, float]]:
    """Span id -> (pid, epoch time on the first host's clock) of the Redis write of its start: each
    service's process writes its trace points over its own connection to the store just before
    the work they time (a statement: right before it is sent)."""
    out: dict[str, tuple[int | None, float]] = {}
    for d in dirs:
        offset = offsets.get(_host(d), 0.0)
        for capture in _captures(d):
            run = subprocess.run(
                ["tshark", "-r", os.path.join(d, capture), "-Y", 'tcp.payload contains "osprofiler_opt:"',
                 "-T", "fields", "-E", "separator=/t", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src",
                 "-e", "tcp.srcport", "-e", "tcp.payload"], capture_output=True, text=True, check=False)
            for row in run.stdout.splitlines():
                cells = row.split("\t")
                if len(cells) < 5:
                    continue
                try:
                    when, payload = float(cells[0]), bytes.fromhex(cells[4].replace(":", ""))
                except ValueError:
                    continue
                pid = owners.get(f"{cells[1]}:{cells[3]}" if cells[1] else f"[{cells[2]}]:{cells[3]}")
                for m in _POINT_START.finditer(payload):
                    out.setdefault(m.group(1).decode(), (pid, when - offset))
    return out


def run_osflow(dirs: Sequence[str]) -> tuple[list[dict], dict[str, float]]:
    """``osflow-post -r DIR … -f json --all``: its JSON lines and the clock offsets it found."""
    cmd = [sys.executable, "-m", "osflow", "post", *[a for d in dirs for a in ("-r", d)], "-f", "json", "--all"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(REPO, "postproc"),
                                                                     os.environ.get("PYTHONPATH")])))
    run = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if run.returncode not in (0, 4):  # 4: partial input, everything read was written
        last = (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
        raise ScoreError(f"{' '.join(dirs)}: osflow-post failed: {last}")
    offsets = {m.group(1): float(m.group(2))
               for m in re.finditer(r"clock offset (\S+): ([+-]?\d+(?:\.\d+)?) s", run.stderr)}
    lines = []
    for n, text in enumerate(run.stdout.splitlines(), 1):
        try:
            lines.append(json.loads(text))
        except ValueError:
            raise ScoreError(f"osflow-post's JSON line {n}: expected JSON, found {_short(text, 60)!r}") from None
    return lines, offsets


def time_zero(dirs: Sequence[str], offsets: dict[str, float]) -> float:
    """The epoch time osflow's ``start`` counts from: the earliest first frame, clocks aligned to the
    first folder's host."""
    zeros = []
    for d in dirs:
        host = _host(d)
        zeros.append(first_frame(os.path.join(d, _captures(d)[0])) - offsets.get(host, 0.0))
    return min(zeros)


def _host(folder: str) -> str:
    try:
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            host = json.load(f).get("host")
    except (OSError, ValueError, AttributeError):
        host = None
    return host if isinstance(host, str) and host else os.path.basename(os.path.normpath(folder))


def pair_of(line: dict, zero: float) -> Pair:
    """One JSON line as a :class:`Pair`, keyed as a span would be when OSProfiler can see it."""
    protocol = str(line.get("protocol", ""))
    request = str(line.get("request", ""))
    key: tuple[str, ...] | None = None
    seen = False
    literals = frozenset[str]()
    if protocol == "http":
        method, _, target = request.partition(" ")
        key, seen = http_key(project_of(str(line.get("server", ""))), method, target.split(" ", 1)[0]), True
    elif protocol == "mysql":
        verb = request.split(None, 1)[0].upper() if request.split() else ""
        if verb in SQL_VERBS:
            key = ("sql", project_of(str(line.get("client", ""))), normalise_sql(request))
            literals = sql_literals(request)
            seen = not UNSEEN_SQL.match(request)
    elif protocol == "rpc" and line.get("method"):
        key, seen = ("rpc", str(line["method"])), True
        literals = frozenset(str(r) for r in line.get("resources") or ())
    return Pair(int(line["id"]), line.get("parent"), zero + float(line["start"]), zero + float(line["end"]),
                protocol, str(line.get("client", "")), str(line.get("server", "")), request,
                bool(line.get("background")), str(line.get("client_address", "")), key, seen, literals,
                line.get("kind") == "fanout")


# --------------------------------------------------------------------------- matching


def _cost(span: Span, pair: Pair) -> float:
    """How far apart in time: the start alone for a callee (its pair began at the publish); for a
    request, the ends (a busy server may queue a request long before its span starts); a statement
    whose start's write to the store the capture holds, from that write (the statement follows it
    at once, on the same clock); else the worse of start and end."""
    if span.kind == "sql" and span.written is not None:
        return abs(pair.start - span.written)
    if span.role == "callee":
        return abs(span.start - pair.start)
    if span.kind == "http":  # the server's span lies within the client's pair, after any queueing
        return abs(span.end - pair.end) + max(0.0, pair.start - span.start)
    return max(abs(span.start - pair.start), abs(span.end - pair.end))


def _greedy(spans: Iterable[Span], pairs_by_key: dict[tuple[str, ...], list[Pair]], taken: set[int],
            tolerance: float, unlike: Callable[[Span, Pair], int] | None = None) -> dict[str, Pair]:
    """One to one, the best candidates first: the statement's parameters all in the pair's literals
    (and what ``unlike`` says against the pair, fewest first), then the nearest in time."""
    edges = []
    for s in spans:
        for p in pairs_by_key.get(s.key, ()):
            if s.kind == "sql" and s.writer is not None and p.process is not None and s.writer != p.process:
                continue  # another process's statement: the store says which process ran it
            cost = _cost(s, p)
            if cost <= tolerance:
                edges.append((len(s.literals - p.literals) + (unlike(s, p) if unlike else 0), cost, s.id, p.id, s, p))
    edges.sort(key=lambda e: e[:4])
    out: dict[str, Pair] = {}
    for _, _, sid, pid, _, p in edges:
        if sid not in out and pid not in taken:
            out[sid] = p
            taken.add(pid)
    return out


def match(spans: Sequence[Span], pairs: Sequence[Pair], tolerance: float = TOLERANCE) -> dict[str, Pair]:
    """Every scored span's pair: HTTP, SQL and RPC callers one to one by content and time; an RPC
    callee shares its caller's pair, or is matched the same way to an RPC pair no callee took."""
    by_key: dict[tuple[str, ...], list[Pair]] = defaultdict(list)
    for p in pairs:
        if p.key is not None:
            by_key[p.key].append(p)
    pings = [s for s in spans if s.kind == "sql" and _PING.match(s.text)]
    ping_ids = {s.id for s in pings}
    matched = _greedy((s for s in spans if s.kind and s.role != "callee" and s.id not in ping_ids), by_key, set(),
                      tolerance)
    # a pool's ping, identical in every request, goes with what its connection does next: the statement
    # after it on the same connection is the same thread's, under the same trace point
    after: dict[int, Pair] = {}
    on_connection: dict[str, list[Pair]] = defaultdict(list)
    for q in pairs:
        if q.protocol == "mysql" and q.connection:
            on_connection[q.connection].append(q)
    for run in on_connection.values():
        run.sort(key=lambda q: q.start)
        for a, b in zip(run, run[1:], strict=False):
            after[a.id] = b
    span_of = {q.id: sid for sid, q in matched.items()}
    parent_of = {s.id: s.parent for s in spans}

    def unlike(s: Span, p: Pair) -> int:
        nxt = after.get(p.id)
        sid = span_of.get(nxt.id) if nxt is not None else None
        return 0 if sid is None or parent_of.get(sid) == s.parent else 1

    matched.update(_greedy(pings, by_key, {q.id for q in matched.values()}, tolerance, unlike))
    callers = {s.id for s in spans if s.role == "caller"}
    shared: set[int] = set()
    rest = []
    for s in (s for s in spans if s.role == "callee"):
        caller = matched.get(s.parent or "") if s.parent in callers else None
        if caller is not None and (caller.fanout or caller.id not in shared):
            matched[s.id] = caller
            shared.add(caller.id)
        else:
            rest.append(s)
    matched.update(_greedy(rest, by_key, shared, tolerance))
    return matched


# --------------------------------------------------------------------------- scoring


@dataclasses.dataclass
class Score:
    """One trace's figures and disagreements."""

    trace: str
    spans: int = 0
    matched: int = 0
    parents_agree: int = 0
    fg_true: int = 0  #: osflow foreground and matched to this trace
    fg_osflow: int = 0  #: osflow foreground (of the pairs OSProfiler can see, not another trace's)
    fg_truth: int = 0  #: matched to this trace
    problems: dict[str, list[str]] = dataclasses.field(default_factory=lambda: {k: [] for k in SORTS})

    def line(self) -> str:
        return (f"{self.trace}: spans matched {self.matched}/{self.spans} ({_pct(self.matched, self.spans)}), "
                f"parents agree {self.parents_agree}/{self.matched} ({_pct(self.parents_agree, self.matched)}), "
                f"foreground precision {_pct(self.fg_true, self.fg_osflow)}, recall "
                f"{_pct(self.fg_true, self.fg_truth)}")


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def expected_parent(span: Span, by_id: dict[str, Span], matched: dict[str, Pair]) -> tuple[Pair | None, Span | None]:
    """The match of the span's nearest ancestor matched to another pair (and that ancestor)."""
    own = matched[span.id]
    up = by_id.get(span.parent or "")
    while up is not None:
        p = matched.get(up.id)
        if p is not None and p.id != own.id:
            return p, up
        up = by_id.get(up.parent or "")
    return None, None


def osflow_parent(pair: Pair, pairs: dict[int, Pair], visible: set[int]) -> Pair | None:
    """osflow's nearest ancestor of the pair that is some span's match (what OSProfiler cannot see skipped)."""
    seen = {pair.id}
    up = pairs.get(pair.parent) if pair.parent is not None else None
    while up is not None and up.id not in visible and up.id not in seen:
        seen.add(up.id)
        up = pairs.get(up.parent) if up.parent is not None else None
    return up if up is not None and up.id in visible else None


def score(spans: Sequence[Span], pairs: Sequence[Pair], matched: dict[str, Pair], zero: float) -> list[Score]:
    """Per trace, in the order the traces came."""
    by_id = {s.id: s for s in spans}
    pairs_by_id = {p.id: p for p in pairs}
    visible = {p.id for p in matched.values()}
    owners: dict[int, set[str]] = defaultdict(set)  # pair -> the traces whose spans it matched
    for sid, q in matched.items():
        owners[q.id].add(by_id[sid].trace)
    by_key: dict[tuple[str, ...], list[Pair]] = defaultdict(list)
    for q in pairs:
        if q.key is not None:
            by_key[q.key].append(q)
    taken_by = {q.id: sid for sid, q in matched.items()}
    blind = untraced(pairs, matched)
    out = []
    for trace in dict.fromkeys(s.trace for s in spans):
        sc = Score(trace)
        for s in (s for s in spans if s.trace == trace and s.kind):
            sc.spans += 1
            p = matched.get(s.id)
            if p is None:
                sc.problems["unmatched"].append(_unmatched(s, by_key, taken_by, by_id, zero))
                continue
            sc.matched += 1
            want, via = expected_parent(s, by_id, matched)
            got = osflow_parent(p, pairs_by_id, visible)
            if (want.id if want else None) == (got.id if got else None):
                sc.parents_agree += 1
            else:
                sc.problems["parent"].append(
                    f"  parent of {p.line(zero)} ({s.name} span {s.id[:8]}): osflow's "
                    f"{got.line(zero) if got else 'none (top level)'}; OSProfiler's "
                    f"{want.line(zero) + f' (span {via.id[:8]} {via.name})' if want and via else 'none (top level)'}"
                    f"{_ambiguity(s, p, by_key, taken_by, by_id)}")
        for q in pairs:
            if not (q.seen or q.id in owners) or reach(q) in blind or \
                    (owners.get(q.id) and trace not in owners[q.id]):
                continue
            truth = trace in owners.get(q.id, ())
            fg = not q.background
            sc.fg_truth += truth
            sc.fg_osflow += fg
            sc.fg_true += truth and fg
            if fg and not truth:
                sc.problems["false positive"].append(
                    f"  foreground false positive: {q.line(zero)} (no span of this trace)")
            elif truth and not fg:
                sc.problems["false negative"].append(
                    f"  foreground false negative: {q.line(zero)} (background; span {taken_by[q.id][:8]})")
        out.append(sc)
    return out


def reach(pair: Pair) -> tuple[str, ...]:
    """What OSProfiler instruments or not as a whole: a database connection (an engine's pool is
    traced or not), else a client's calls to a server."""
    return (pair.client, pair.server, pair.connection) if pair.protocol == "mysql" else (pair.client, pair.server)


def untraced(pairs: Sequence[Pair], matched: dict[str, Pair]) -> dict[tuple[str, ...], list[Pair]]:
    """The pairs of OSProfiler's kinds on a database connection, or between a client and a server,
    none of whose pairs is a span's match: what OSProfiler does not instrument (placement's and
    neutron's databases, nova's cell databases reached through connections of their own, neutron's
    notifications to its agents), left out of the foreground's figures."""
    traced = {reach(p) for p in matched.values() if p.seen}  # a ping's match says little: any pool's would do
    out: dict[tuple[str, ...], list[Pair]] = defaultdict(list)
    for p in pairs:
        if p.seen and reach(p) not in traced:
            out[reach(p)].append(p)
    return dict(out)


def untraced_line(pairs: Sequence[Pair], matched: dict[str, Pair]) -> str | None:
    """One line on what :func:`untraced` left out, when any of it is foreground."""
    edges: dict[tuple[str, str], list[Pair]] = defaultdict(list)
    for k, v in untraced(pairs, matched).items():
        edges[(k[0], k[1])].extend(v)
    shown = [f"{c} → {s} ({len(v)} pairs, {fg} foreground)" for (c, s), v in sorted(edges.items())
             if (fg := sum(not p.background for p in v))]
    return f"not traced by OSProfiler (left out of the foreground figures): {'; '.join(shown)}" if shown else None


#: pairs with a span's key this close to its match (seconds) are told apart by time alone
AMBIGUOUS = 0.005


def _ambiguity(span: Span, own: Pair, by_key: dict[tuple[str, ...], list[Pair]], taken_by: dict[int, str],
               by_id: dict[str, Span]) -> str:
    """A note when the match may be another trace's: pairs of the same key and literals, matched to
    another trace's spans, that started within :data:`AMBIGUOUS` of this one."""
    rivals = [p for p in by_key.get(span.key, ()) if p.id != own.id and abs(p.start - own.start) <= AMBIGUOUS
              and p.literals == own.literals and p.id in taken_by and by_id[taken_by[p.id]].trace != span.trace]
    return f" [ambiguous: {len(rivals)} same pair(s) of other traces within 5 ms]" if rivals else ""


def _unmatched(span: Span, by_key: dict[tuple[str, ...], list[Pair]], taken_by: dict[int, str],
               by_id: dict[str, Span], zero: float) -> str:
    head = (f"  unmatched {span.name}{' ' + span.role if span.role else ''} span {span.id[:8]} ({span.where}, "
            f"at {span.start - zero:.6f} s): {_short(span.text)}")
    same = sorted(by_key.get(span.key, ()), key=lambda p: abs(p.start - span.start))
    # the same request or statement, told of another service or client (a misnamed end)
    elsewhere = sorted((p for k, ps in by_key.items() if k[0] == span.key[0] and k[2:] == span.key[2:]
                        and k != span.key for p in ps if abs(p.start - span.start) <= TOLERANCE),
                       key=lambda p: abs(p.start - span.start))
    if elsewhere and (not same or abs(elsewhere[0].start - span.start) < abs(same[0].start - span.start)):
        p = elsewhere[0]
        return (head + f" — osflow has it as #{p.id} {p.client} → {p.server} at {p.start - zero:.6f} s "
                f"({p.start - span.start:+.3f} s): not {span.where.split('/', 1)[0]}'s")
    if not same:
        return head + " — osflow has no pair with this " + {"http": "request at this service",
                                                              "sql": "statement", "rpc": "method"}.get(
            span.kind or "", "key")
    p = same[0]
    other = by_id.get(taken_by.get(p.id, ""))
    return (head + f" — nearest pair with the same {span.kind} key: #{p.id} at {p.start - zero:.6f} s "
            f"({p.start - span.start:+.3f} s)" + (f", taken by span {other.id[:8]}" if other else ""))


# --------------------------------------------------------------------------- printing


def report(scores: Sequence[Score], verbose: bool) -> Iterator[str]:
    for sc in scores:
        yield sc.line()
        for sort, problems in sc.problems.items():
            shown = problems if verbose else problems[:CAP]
            yield from shown
            if len(shown) < len(problems):
                yield f"  … {len(problems) - len(shown)} more ({sort}; -v shows all)"
    if len(scores) > 1:
        total = Score("ALL", *(sum(getattr(s, f) for s in scores) for f in
                               ("spans", "matched", "parents_agree", "fg_true", "fg_osflow", "fg_truth")))
        yield total.line()


def run(dirs: Sequence[str], no_tables: bool, verbose: bool, tolerance: float = TOLERANCE) -> list[str]:
    check_dirs(dirs)
    trace_file = find_trace_file(dirs)
    traces = load_traces(trace_file)
    with tempfile.TemporaryDirectory(prefix="score-osprofiler-") as tmp:
        read = without_tables(dirs, tmp) if no_tables else list(dirs)
        lines, offsets = run_osflow(read)
        zero = time_zero(read, offsets)
    spans = [s for t in traces for s in spans_of(t, trace_file)]
    if not any(s.kind for s in spans):
        raise ScoreError(f"{trace_file}: expected OSProfiler spans (wsgi, db, rpc), found none")
    hosts = {_host(d) for d in dirs}
    owners = socket_owners(dirs)  # the recording's own tables, with --no-tables too: the truth is the recording's
    writers = trace_point_writers(dirs, offsets, owners)
    spans = [_on_first_clock(s, offsets, hosts) for s in spans]
    spans = [dataclasses.replace(s, writer=writers[s.id][0], written=writers[s.id][1]) if s.id in writers else s
             for s in spans]
    pairs = [dataclasses.replace(q, process=owners.get(q.connection)) for q in (pair_of(line, zero) for line in lines)]
    matched = match(spans, pairs, tolerance)
    out = list(report(score(spans, pairs, matched, zero), verbose))
    note = untraced_line(pairs, matched)
    if note:
        out.append(note)
    if verbose:
        out.append(clock_check(spans, matched))
    return out


def clock_check(spans: Sequence[Span], matched: dict[str, Pair]) -> str:
    """How the matched spans' start times sit against their pairs' (a check of the time base)."""
    deltas = sorted(s.start - matched[s.id].start for s in spans if s.id in matched and s.role != "callee")
    if not deltas:
        return "clock: no span matched"
    mid = deltas[len(deltas) // 2]
    return (f"clock: a matched span starts {mid * 1000:+.1f} ms from its pair's first frame (median of "
            f"{len(deltas)}; from {deltas[0] * 1000:+.1f} to {deltas[-1] * 1000:+.1f} ms)")


def _on_first_clock(span: Span, offsets: dict[str, float], hosts: set[str]) -> Span:
    """A span of another recorded host brought to the first host's clock, as osflow's pairs are."""
    host = span.where.rsplit("@", 1)[-1]
    if host in hosts and offsets.get(host):
        return dataclasses.replace(span, start=span.start - offsets[host], end=span.end - offsets[host])
    return span


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="an osflow record folder (one per host)")
    ap.add_argument("--no-tables", action="store_true", help="score osflow without ss.txt and ps.txt")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every disagreement")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE,
                    help=f"seconds a span and its pair may be apart (default {TOLERANCE})")
    args = ap.parse_args(argv)
    try:
        out = run(args.dirs, args.no_tables, args.verbose, args.tolerance)
    except ScoreError as e:
        print(f"score_osprofiler: {e}", file=sys.stderr)
        return 1
    try:
        for line in out:
            print(line)
    except BrokenPipeError:
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

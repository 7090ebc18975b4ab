"""Two runs' steps, read from what osflow reads or writes, matched by what they are.

A run is a recording folder (``capture.pcapng`` with ``ss.txt``, ``ps.txt`` and ``meta.json``
beside it, as ``osflow record`` leaves them), a capture (its tables taken from beside it when they
are there) or JSON Lines (``osflow-post --format json``).  Either way it becomes a tree of
:class:`Node`: one per step of the timeline (a capture) or per pair (JSON Lines, which has one pair a
line; a capture compared with JSON Lines is then taken pair by pair too).

Two steps are the same step when they are at the same place in the tree (their parents are the same
step) and they are the same call: the same caller, callee and protocol, and the same request with
what differs call to call left out (:func:`template`: ids, UUIDs, numbers, literals).  Siblings are
aligned in order, as ``diff`` aligns lines (:class:`difflib.SequenceMatcher`), so a repeated call
is matched with its counterpart, not with the first of its kind.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field

from ..errors import InputError
from ..model import Flow
from ..openstack import tables_in
from ..redact import url_template

#: A matched step is slower or faster when its latency changed by at least this many ms...
MIN_MS = 1.0
#: ... and by at least this share of the first run's latency.
MIN_RATIO = 0.2
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


@dataclass
class Node:
    """One step (or pair) of a run, with what the diff compares."""

    n: int  #: the step's number as the timeline shows it (a pair's id for JSON Lines)
    depth: int
    client: str
    server: str
    protocol: str
    template: str  #: the request, what differs call to call left out (:func:`template`)
    text: str  #: the request as the timeline words it (secrets hidden)
    outcome: str  #: what came back, in a word that matters (:func:`outcome`)
    start: float  #: seconds from the run's first frame
    ms: float  #: latency
    pairs: int = 1  #: pairs in the step (a group holds several)
    children: list[Node] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.client, self.server, self.protocol, self.template)

    @property
    def who(self) -> str:
        return f"{self.client} → {self.server}"


@dataclass
class Run:
    """One side of the diff: its name, its top-level nodes, how long it ran."""

    name: str
    top: list[Node]
    steps: int
    ms: float


def template(protocol: str, request: str) -> str:
    """The request with what differs call to call left out.

    >>> template("http", "GET /v2.1/servers/e05d2ca6-1f2a-4b6c-8d9e-0a1b2c3d4e5f/action")
    'GET /v2.1/servers/{id}/action'
    >>> template("mysql", "SELECT a FROM user INNER JOIN project ON x WHERE id = 42")
    'SELECT project,user'
    >>> template("memcache", "get tokens/3f2a…"), template("rpc", "call select_destinations [T1]")
    ('get', 'call select_destinations')
    """
    words = request.split()
    if not words:
        return ""
    if protocol == "http" and len(words) > 1:
        return f"{words[0]} {url_template(words[1].split('?')[0])}"
    if protocol == "mysql":
        tables = ",".join(sorted(set(tables_in(request))))
        return f"{words[0].upper()} {tables}".rstrip() if tables else _NUMBER.sub("?", words[0].upper())
    if protocol == "rpc":
        return " ".join(w for w in words[:2] if not w.startswith("["))
    return words[0]


def outcome(protocol: str, response: str | None) -> str:
    """What came back, in a word that matters: an HTTP status, a cache hit or miss, an RPC's result
    or failure, a MySQL error; "" when it says nothing two runs should be compared on (row counts).

    >>> outcome("http", "201 CREATED, token T1"), outcome("memcache", "miss"), outcome("mysql", "3 rows")
    ('201', 'miss', '')
    >>> outcome("rpc", "failure NoValidHost"), outcome("mysql", "error 1146: no such table"), outcome("http", None)
    ('failure', 'error', '(no response)')
    """
    if response is None:
        return "(no response)"
    first = (response.split() or [""])[0].rstrip(",")
    if protocol in ("http", "memcache", "rpc"):
        return first
    if protocol == "mysql" and first.lower().startswith("error"):
        return "error"
    return ""


# --------------------------------------------------------------------------- reading a run


def from_flow(flow: Flow, name: str, per_pair: bool = False) -> Run:
    """A run from an analysed flow: its steps (or, ``per_pair``, each of their pairs, worded as JSON
    Lines words them)."""
    from ..render.common import seconds
    from ..render.steps import rows

    rs = rows(flow)
    top: list[Node] = []
    stack: list[Node] = []
    count = 0
    end = flow.origin
    for r in rs:
        step = r.step
        end = max(end, r.reach)
        items = [(p, 1) for p in step.pairs] if per_pair and step.is_group else [(step.first, len(step.pairs))]
        for p, pairs in items:
            group = step.is_group and not per_pair
            what = group_template(step.pairs) if group else template(p.protocol, p.request)
            ex = p.exchange
            start, stop = (r.start, r.end) if group else (ex.start, ex.end)
            count += 1
            # times as JSON Lines writes them (µs from the first frame), so both sources agree to the digit
            t0, t1 = float(seconds(start, flow.origin)), float(seconds(stop, flow.origin))
            text = step.summary if group else p.request if per_pair else p.message or p.request
            node = Node(p.id if per_pair else r.n, step.depth, p.client.label, p.server.label, p.protocol,
                        what, text or "", "" if group else outcome(p.protocol, p.response), t0, (t1 - t0) * 1000,
                        pairs)  # fmt: skip
            _place(node, stack, top)
    return Run(name, top, count, (end - flow.origin) * 1000)


def group_template(pairs) -> str:
    """A group's requests (a run of DB or cache calls), each templated, without the pool's pings."""
    kept = sorted({template(p.protocol, p.request) for p in pairs if not p.noise})
    return "group: " + ("; ".join(kept) if kept else "pool pings")


def _place(node: Node, stack: list[Node], top: list[Node]) -> None:
    while stack and stack[-1].depth >= node.depth:
        stack.pop()
    (stack[-1].children if stack else top).append(node)
    stack.append(node)


def from_jsonl(path: str, show_all: bool = False) -> Run:
    """A run from ``osflow-post --format json``'s JSON Lines: one node per pair, in the tree its
    ``parent`` ids make (background pairs left out unless ``show_all``: their children go under the
    nearest pair kept)."""
    records: list[dict] = []
    try:
        with open(path, encoding="utf-8") as f:
            for k, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except ValueError:
                    raise InputError(f"{path}:{k}: expected a JSON object a line (osflow-post --format json), "
                                     f"found {line.strip()[:60]!r}") from None
                if not isinstance(d, dict) or not {"id", "parent", "start", "end", "client", "server"} <= d.keys():
                    raise InputError(f"{path}:{k}: expected a pair of osflow-post --format json (id, parent, start, "
                                     f"end, client, server, …), found {line.strip()[:60]!r}")
                records.append(d)
    except OSError as e:
        raise InputError(f"{path}: cannot read it: {e.strerror}") from None
    by_id = {d["id"]: d for d in records}
    kept = {d["id"] for d in records if show_all or not d.get("background")}
    nodes: dict[int, Node] = {}
    top: list[Node] = []
    end = 0.0
    for d in records:
        end = max(end, float(d["end"]))
        if d["id"] not in kept:
            continue
        parent = d["parent"]
        while parent is not None and parent not in kept:
            parent = by_id[parent]["parent"] if parent in by_id else None
        protocol, request = d.get("protocol", ""), d.get("request") or ""
        node = Node(d["id"], 0 if parent is None else nodes[parent].depth + 1, d["client"], d["server"], protocol,
                    template(protocol, request), request, outcome(protocol, d.get("response")), float(d["start"]),
                    (float(d["end"]) - float(d["start"])) * 1000)  # fmt: skip
        nodes[d["id"]] = node
        (top if parent is None else nodes[parent].children).append(node)
    return Run(path, top, len(nodes), end * 1000)


def is_jsonl(path: str) -> bool:
    return not os.path.isdir(path) and path.lower().endswith((".json", ".jsonl"))


def capture_of(path: str) -> str:
    """The capture a run names: the file itself, or a recording folder's ``capture.pcapng`` (or its
    one ``*.pcapng``/``*.pcap``)."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or folder (expected a recording folder, a capture or JSON Lines)")
        return path
    named = os.path.join(path, "capture.pcapng")
    if os.path.isfile(named):
        return named
    found = sorted(f for f in os.listdir(path) if f.endswith((".pcapng", ".pcap")))
    if len(found) != 1:
        raise InputError(f"{path}: expected a recording folder with capture.pcapng, found "
                         f"{len(found)} capture files")  # fmt: skip
    return os.path.join(path, found[0])


def tables_beside(capture: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``ss.txt`` and ``ps.txt`` beside a capture, when they are there."""
    folder = os.path.dirname(os.path.abspath(capture))
    ss, ps = os.path.join(folder, "ss.txt"), os.path.join(folder, "ps.txt")
    return (ss,) if os.path.isfile(ss) else (), (ps,) if os.path.isfile(ps) else ()


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Line:
    """One line of the diff, in the order of the merged tree: a step in both runs, or in one."""

    a: Node | None
    b: Node | None
    depth: int  #: in the merged tree

    @property
    def kind(self) -> str:
        """removed (only in the first run), added (only in the second), slower, faster, or same."""
        if self.b is None:
            return "removed"
        if self.a is None:
            return "added"
        delta = self.b.ms - self.a.ms
        if abs(delta) >= MIN_MS and abs(delta) >= MIN_RATIO * self.a.ms:
            return "slower" if delta > 0 else "faster"
        return "same"

    @property
    def changed(self) -> bool:
        """Both runs made the call and got a different answer (an HTTP status, a hit for a miss)."""
        return self.a is not None and self.b is not None and self.a.outcome != self.b.outcome


@dataclass(frozen=True)
class Diff:
    """Both runs and the lines of their merged tree."""

    a: Run
    b: Run
    lines: tuple[Line, ...]

    def of(self, kind: str) -> list[Line]:
        return [line for line in self.lines if line.kind == kind]


def compare(a: Run, b: Run) -> Diff:
    """The two runs' trees merged: matched steps, and the ones only one run made."""
    out: list[Line] = []
    _merge(a.top, b.top, 0, out)
    return Diff(a, b, tuple(out))


def _merge(xs: list[Node], ys: list[Node], depth: int, out: list[Line], exact: bool = True) -> None:
    """Align siblings on their key; what is left, a group of DB or cache calls whose queries changed,
    is aligned again on its caller, callee and protocol alone (``exact`` False)."""
    keys = (lambda n: n.key) if exact else _loose
    sm = difflib.SequenceMatcher(None, [keys(x) for x in xs], [keys(y) for y in ys], autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            for x, y in zip(xs[i1:i2], ys[j1:j2], strict=True):
                out.append(Line(x, y, depth))
                _merge(x.children, y.children, depth + 1, out)
        elif op == "replace" and exact:
            _merge(xs[i1:i2], ys[j1:j2], depth, out, exact=False)
        else:
            for x in xs[i1:i2]:
                _alone(x, None, depth, out)
            for y in ys[j1:j2]:
                _alone(None, y, depth, out)


def _loose(n: Node) -> tuple[str, ...]:
    return (n.client, n.server, n.protocol) if n.template.startswith("group: ") else n.key


def _alone(x: Node | None, y: Node | None, depth: int, out: list[Line]) -> None:
    node = x if x is not None else y
    assert node is not None
    out.append(Line(x, y, depth))
    for c in node.children:
        _alone(c if x is not None else None, c if y is not None else None, depth + 1, out)


def summary(d: Diff) -> str:
    """How many steps both runs made, how many only one, how many changed."""
    both = sum(1 for line in d.lines if line.a is not None and line.b is not None)
    changed = sum(1 for line in d.lines if line.changed)
    return (f"{both} steps in both, {len(d.of('removed'))} only in A (removed), "
            f"{len(d.of('added'))} only in B (added), "
            f"{len(d.of('slower'))} slower, {len(d.of('faster'))} faster, {changed} answered otherwise")

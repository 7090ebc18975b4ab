"""Flow stage, foreground and background: which pairs the command caused.

A controller is never quiet: nova-compute reports to the conductor and to placement, the
scheduler and the conductor poll their service tables, pools ping their databases.  The
*foreground* is what the command caused:

* its roots are the pairs whose client is the command: a process of its process tree (the pid
  ``osflow record`` wrote to ``meta.json`` and its descendants, as ``ps.txt`` and
  ``meta.json``'s socket owners give their parents), or what ``--client PID|NAME`` names, or
  else every OpenStackClient end;
* then everything below them: their children in the flow's tree, and what was sent with one of
  their request ids (an ``X-OpenStack-Request-ID`` a request carried, oslo's ``_context_request_id``)
  with its own children, until nothing new is found (a cast's work goes on after the API answered).
  The link runs one way: from a pair to the work done for the ids it sent or was answered with,
  never back to the request that was answered with an id.

Everything else is *background*.  :func:`background` says which pairs are; the renderers of
diagrams and timelines show the foreground and one line on what they left out
(:func:`left_out`).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .hosts import read_meta
from .join import request_ids_of
from .model import Pair
from .openstack import service_of_command
from .redact import command_line


@dataclass(frozen=True)
class Client:
    """Who the command is: processes, or a participant's name (``--client``), or OpenStackClient."""

    pids: frozenset[int] = frozenset()  #: the command's process tree
    names: tuple[str, ...] = ()  #: participant labels or service keys, lower case
    why: str = "every OpenStackClient end (no meta.json, no --client)"
    #: a recording without a command (``osflow record --duration``): nothing is foreground
    nothing: bool = False
    #: with several hosts' recordings: the host the pids are on (a pid of another host is another process)
    host: str | None = None
    #: with ``pids`` but no process table: the service key the command's line names, for the ends
    #: no table gave a pid (the capture and meta.json alone)
    fallback: tuple[str, ...] = ()

    def is_client(self, pair: Pair) -> bool:
        c = pair.client
        if self.pids:
            if c.pid is None and self.fallback:
                return (c.service or "") in self.fallback
            return c.pid is not None and c.pid in self.pids and (self.host is None or c.host == self.host)
        if self.names:
            return c.label.lower() in self.names or (c.service or "") in self.names
        return False


#: With no meta.json and no --client: the ends the openstack CLI has.
DEFAULT = Client(names=("openstackclient",))


def parse_client(text: str, parents: dict[int, int | None] | None = None) -> Client:
    """``--client PID|NAME``: a pid (and its descendants) or a participant's label or service.

    >>> parse_client("openstack").names, parse_client("nova-compute").names
    (('openstack', 'openstackclient'), ('nova-compute',))
    >>> sorted(parse_client("10", {11: 10, 12: 11, 13: 1}).pids)
    [10, 11, 12]
    """
    text = text.strip()
    if text.isdigit():
        pid = int(text)
        return Client(pids=descendants(pid, parents or {}), why=f"--client {pid} and its descendants")
    name = text.lower()
    key, _ = service_of_command(text)
    names = (name,) + ((key,) if key and key != name else ())
    return Client(names=names, why=f"--client {text}")


def descendants(root: int, parents: dict[int, int | None]) -> frozenset[int]:
    """``root`` and every pid whose parent chain reaches it.

    >>> sorted(descendants(5, {6: 5, 7: 6, 8: 1, 5: 1}))
    [5, 6, 7]
    """
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in parents.items():
        if ppid is not None and ppid != pid:
            children[ppid].append(pid)
    out, todo = {root}, [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return frozenset(out)


def meta_beside(capture: str) -> str | None:
    """The ``meta.json`` ``osflow record`` wrote next to ``capture``, if there is one."""
    path = os.path.join(os.path.dirname(os.path.abspath(capture)), "meta.json")
    return path if os.path.isfile(path) else None


def parents_of(processes=None, meta: dict | None = None) -> dict[int, int | None]:
    """pid -> parent pid, from a :class:`~osflow.tables.ProcessTable` and from the socket owners
    ``meta.json`` lists (short-lived processes no ps snapshot holds; their parent as the socket log
    first saw it wins: a daemon reparented to init later was still started by its parent)."""
    parents: dict[int, int | None] = dict(processes.parents()) if processes is not None else {}
    for p in (meta or {}).get("socket_owners_not_in_ps") or ():
        if isinstance(p, dict) and isinstance(p.get("pid"), int):
            parents[p["pid"]] = p.get("ppid") if isinstance(p.get("ppid"), int) else None
    return parents


#: Programs that run another command (``timeout 300 openstack server stop vm1``): wrapper -> how
#: many words after its options are its own (``timeout``'s duration), and its options that take a value.
WRAPPERS: dict[str, tuple[int, frozenset[str]]] = {
    "timeout": (1, frozenset({"-s", "--signal", "-k", "--kill-after"})),
    "env": (0, frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"})),
    "nice": (0, frozenset({"-n", "--adjustment"})),
    "ionice": (0, frozenset({"-c", "--class", "-n", "--classdata", "-p", "--pid"})),
    "nohup": (0, frozenset()),
    "setsid": (0, frozenset()),
    "stdbuf": (0, frozenset({"-i", "-o", "-e"})),
    "sudo": (0, frozenset({"-u", "--user", "-g", "--group", "-C", "-D", "--chdir", "-h", "-p", "-U"})),
    "taskset": (1, frozenset()),
    "time": (0, frozenset({"-f", "--format", "-o", "--output"})),
    "unbuffer": (0, frozenset()),
}


def command_proper(words: Sequence[str]) -> list[str]:
    """The command a command line runs through its wrappers (:data:`WRAPPERS`, ``ip netns exec NS``).

    >>> command_proper("timeout -s KILL 300 env OS_CLOUD=x nice -n 5 /usr/bin/openstack server list".split())
    ['/usr/bin/openstack', 'server', 'list']
    >>> command_proper("ip netns exec compute1 openstack token issue".split())
    ['openstack', 'token', 'issue']
    >>> command_proper(["openstack"]), command_proper(["timeout"])
    (['openstack'], [])
    """
    out = list(words)
    while out:
        name = os.path.basename(out[0])
        if name == "ip" and out[1:3] == ["netns", "exec"]:
            out = out[4:]
            continue
        wrapper = WRAPPERS.get(name)
        if wrapper is None:
            break
        own, valued = wrapper
        i = 1
        while i < len(out) and (out[i].startswith("-") or (name == "env" and "=" in out[i])):
            i += 2 if out[i] in valued else 1
        out = out[i + own:]
    return out


def client_from_meta(path: str, processes=None, show_secrets: bool = False) -> Client:
    """The command of a recording: ``meta.json``'s ``command_pid`` and its descendants
    (:func:`parents_of`); a recording of a running system (no command) has no foreground.
    The command's secrets are hidden in what it says (:func:`osflow.redact.command_line`)."""
    meta = read_meta(path)
    pid = meta.get("command_pid")
    name = os.path.basename(path)
    if not isinstance(pid, int):
        return Client(nothing=True, why=f"{name}: a recording without a command (everything is background)")
    words = " ".join(map(str, meta.get("command") or ()))
    command = command_line(words, show_secrets)[:60]
    key = service_of_command(" ".join(command_proper(words.split())))[0] if processes is None else None
    return Client(pids=descendants(pid, parents_of(processes, meta)), fallback=(key,) if key else (),
                  why=f"{name}: the command's pid {pid} ({command}) and its descendants"
                      + (f", or without a process table every {key} end" if key else ""))


def by_command_name(client: Client, path: str) -> Client:
    """``client`` (a recording's command, by pid) when no socket table was read: no end has a pid
    then, so the command is known by the service its command line names (``openstack …`` is
    OpenStackClient).  A command that names none (a script that runs ``openstack`` several times,
    ``bash -c …``) is taken for what osflow takes without a recording's command: every
    OpenStackClient end, known by its User-Agent."""
    if not client.pids:
        return client
    from .openstack import service_of_command

    command = " ".join(command_proper([str(w) for w in read_meta(path).get("command") or ()]))
    key = service_of_command(command)[0]
    if key is None:
        return Client(names=DEFAULT.names, why=f"{client.why}; without socket tables, and a command that names "
                                               "no service: every OpenStackClient end")
    return Client(names=(key,), why=f"{client.why}; without socket tables: every {key} end")


def background(pairs: Sequence[Pair], client: Client) -> tuple[bool, ...]:
    """For each pair, whether it is background (see the module's docstring)."""
    closure = Closure(client)
    for i, p in enumerate(pairs):
        closure.add(i, p)
    return tuple(closure.settle(i) for i in range(len(pairs)))


class Closure:
    """The foreground worked out as pairs come, in request order (index ``i`` is pair ``i + 1``).

    A pair is foreground when the command made it, when its parent is, or when it was sent with
    a request id a foreground pair carried; a pair found foreground reaches back to the pairs not
    yet settled that were sent with its request ids (and their children).  :meth:`settle` fixes a
    pair's flag (a streamed flow gives it out); what is found later no longer changes it.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.roots = 0  #: pairs the command made
        self._fg: dict[int, bool] = {}  # index -> foreground, for the pairs placed and not forgotten
        self._settled: set[int] = set()  # of those, the ones whose flag is fixed
        self._children: dict[int, list[int]] = defaultdict(list)
        self._ids: dict[int, tuple[str, ...]] = {}  # index -> its request ids
        self._sent: dict[int, tuple[str, ...]] = {}  # index -> the request ids it was sent with
        self._by_request: dict[str, set[int]] = defaultdict(set)  # request id -> unsettled pairs sent with it
        self._reached: dict[str, float] = {}  # request id of a foreground pair -> when last seen

    def add(self, i: int, pair: Pair) -> None:
        """Place pair ``i`` (its parent placed before it)."""
        self._fg[i] = False
        if self.client.nothing:
            return
        parent = None if pair.parent is None else pair.parent - 1
        if parent is not None:
            self._children[parent].append(i)
        self._ids[i] = request_ids_of(pair.exchange)
        sent = self._sent[i] = request_ids_of(pair.exchange, sent_only=True)
        for r in sent:  # work done for request r
            self._by_request[r].add(i)
        root = self.client.is_client(pair)
        self.roots += root
        if root or (parent is not None and self._fg.get(parent)) or any(r in self._reached for r in sent):
            self._mark(i, pair.exchange.start)

    def move(self, i: int, old: int, new: int, when: float) -> None:
        """Pair ``i``, not settled, is found to be a child of ``new``, not of ``old``: foreground when
        ``new`` is (a flag once set stays: both are requests in progress, and a foreground one's
        other children were found foreground with it)."""
        kids = self._children.get(old)
        if kids is not None and i in kids:
            kids.remove(i)
        if self.client.nothing:
            return
        self._children[new].append(i)
        if self._fg.get(new):
            self._mark(i, when)

    def _mark(self, i: int, when: float) -> None:
        todo = [i]
        while todo:
            k = todo.pop()
            if self._fg.get(k, True) or k in self._settled:
                continue
            self._fg[k] = True
            todo += self._children.get(k, ())
            for r in self._ids.get(k, ()):
                if r not in self._reached:
                    todo += self._by_request.get(r, ())
                self._reached[r] = when

    def settle(self, i: int) -> bool:
        """Fix pair ``i``'s flag; True when it is background."""
        self._settled.add(i)
        for r in self._sent.get(i, ()):
            waiting = self._by_request.get(r)
            if waiting is not None:
                waiting.discard(i)
                if not waiting:
                    del self._by_request[r]
        return not self._fg[i]

    def forget(self, i: int) -> None:
        """Pair ``i`` is settled and gets no more children: drop what is kept for it."""
        self._fg.pop(i, None)
        self._settled.discard(i)
        self._children.pop(i, None)
        self._ids.pop(i, None)
        self._sent.pop(i, None)

    def forget_ids(self, before: float) -> None:
        """Forget the foreground's request ids not seen since ``before``."""
        for r in [r for r, t in self._reached.items() if t < before]:
            del self._reached[r]


def left_out(pairs: Iterable[Pair]) -> str | None:
    """One line on the background pairs a renderer left out, by the client that made them.

    None when there are none.
    """
    counts: Counter = Counter(p.client.label for p in pairs)
    if not counts:
        return None
    n = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{label} {k}" for label, k in top[:5]) + (", …" if len(top) > 5 else "")
    word = "pair" if n == 1 else "pairs"
    return f"{n} background {word} left out (--all shows them), by client: {shown}"

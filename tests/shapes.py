"""A command's story without what a deployment shape changes, to compare the lab's shapes.

The install guide's controller (every API on its own port), devstack's (one Apache on port 80, each
API under a path prefix, uwsgi behind it) and a TLS front (HAProxy terminating TLS) run the same
services: a command tells the same story on each when the same participants call each other, nested
the same way, for the same kinds of operations.  :func:`story` is that story, from ``osflow-post
--format json``'s pairs: for each pair of the foreground, the chain of (caller, callee, operation)
from the command's request down to it, as a set (how many queries or polls a run makes, their
order, ports, times and proxies are left out; a proxy is a hop, ``via``, never a caller or callee).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from osflow.openstack import ENDPOINT_PREFIXES, prefix_of_path

Step = tuple[str, str, str]


def operation(pair: dict[str, Any]) -> str:
    """What a pair does, without what the shape changes: ``METHOD /path`` for HTTP (devstack's path
    prefix and the query left out), the command for memcached, the protocol for the rest (a
    database's queries vary from run to run)."""
    request = pair.get("request") or ""
    if pair["protocol"] == "http":
        method, _, rest = request.partition(" ")
        path = rest.split(" ")[0].split("?")[0]
        prefix = prefix_of_path(path, ENDPOINT_PREFIXES)
        if prefix:
            path = path[len(prefix):] or "/"
        return f"{method} {path}"
    if pair["protocol"] == "memcache":
        return request.split(" ")[0]
    return str(pair["protocol"])


def story(pairs: Iterable[dict[str, Any]]) -> set[tuple[Step, ...]]:
    """The foreground's chains of (client, server, operation), from each root down to each pair."""
    pairs = list(pairs)
    by_id = {p["id"]: p for p in pairs}
    out: set[tuple[Step, ...]] = set()
    for p in pairs:
        if p["background"]:
            continue
        chain: list[Step] = []
        q: dict[str, Any] | None = p
        while q is not None:
            chain.append((q["client"], q["server"], operation(q)))
            q = by_id.get(q["parent"]) if q["parent"] is not None else None
        out.add(tuple(reversed(chain)))
    return out


def below(pairs: Iterable[dict[str, Any]], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The pairs under ``root`` in osflow's tree (its children, theirs, …), in the pairs' order (a
    parent comes before its children in ``--format json``)."""
    ids, out = {root["id"]}, []
    for p in pairs:
        if p["parent"] in ids:
            ids.add(p["id"])
            out.append(p)
    return out


def difference(got: set[tuple[Step, ...]], want: set[tuple[Step, ...]]) -> str:
    """What one story has that the other has not, one chain a line (for an assertion's message)."""
    lines = [f"- {' / '.join(map(str, c))}" for c in sorted(want - got)]
    lines += [f"+ {' / '.join(map(str, c))}" for c in sorted(got - want)]
    return "\n".join(lines)

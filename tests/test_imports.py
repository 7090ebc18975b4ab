"""The package's shape: the import rule of docs/architecture.md, no import cycle among osflow's
modules (imports inside functions count too), no module over 800 lines, and the command line loads
``osflow record`` only when it runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "postproc" / "osflow"
MAX_LINES = 800


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, whether it is a package's __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _known(name: str, modules) -> str:
    """The module ``name`` is, or the nearest package above it (``from .x import y``: y may be a name in x)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:`` (for annotations only)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(n) for stmt in node.body for n in ast.walk(stmt)
                         if isinstance(n, ast.Import | ast.ImportFrom))
    return found


def import_graph(runtime_only: bool = False) -> dict[str, set[str]]:
    """Every osflow module -> the osflow modules it imports, anywhere in its code (with
    ``runtime_only``, not counting the imports for type annotations only)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name.split(".") if is_package else name.split(".")[:-1]
        deps: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_only(tree) if runtime_only else set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps.update(_known(a.name, modules) for a in node.names if a.name.split(".")[0] == "osflow")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != "osflow":
                    continue
                for a in node.names:  # from . import source: the module osflow.source
                    sub = f"{base}.{a.name}"
                    deps.add(sub if sub in modules else _known(base, modules))
        deps.discard(name)
        graph[name] = deps
    return graph


# --------------------------------------------------------------------------- the import rule

#: The stages in order and their modules (docs/architecture.md, "How osflow is built").
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("source", ("source", "tshark")),
    # merge: several hosts' recordings (or one folder's capture files) made one stream of packets,
    # clocks aligned, each segment once, every end on its host; between source and decode
    ("merge", ("hosts",)),
    ("decode", ("decode",)),
    ("pair", ("pair",)),
    ("proxies", ("proxies",)),
    ("join", ("tables", "addresses", "join")),
    ("flow", ("flow", "prose", "foreground")),
    ("render", ("render",)),
)
#: The modules around the stages: what osflow knows and the shared data; any module may import them,
#: they import only each other.  ``protocols``: one module per protocol; ``oslo``: the oslo.messaging
#: body that the AMQP module reads.
AROUND = ("osflow", "model", "errors", "options", "openstack", "portmap", "tokens", "quoting", "redact", "wireshark",
          "oslo", "protocols")
#: What wires the stages and runs them: may import any module but the command line.
APPLICATION = ("pipeline", "app", "export", "mermaidjs", "profile", "record", "diff", "cli", "__main__")


def _place(module: str) -> tuple[str, int]:
    """(kind, stage index) of an osflow module: ``around``, ``stage`` or ``application``;
    ``unknown`` for a module the rule does not place (a new one: put it in the map above)."""
    short = module.removeprefix("osflow.") if module != "osflow" else "osflow"
    top = short.split(".")[0]
    for i, (_, names) in enumerate(STAGES):
        if top in names:
            return "stage", i
    if top in AROUND:
        return "around", -1
    if top in APPLICATION:
        return "application", len(STAGES)
    return "unknown", -1


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the rule: a stage imports only its own stage, the stages before it
    and the modules around them; a renderer only the modules around and the other renderers; a
    module around only the other modules around; nothing but ``__main__`` imports ``cli``."""
    found = []
    for module, deps in sorted(graph.items()):
        kind, stage = _place(module)
        if kind == "unknown":
            found.append(f"{module} is not placed in the import rule (tests/test_imports.py)")
            continue
        for dep in sorted(deps):
            dep_kind, dep_stage = _place(dep)
            if dep == "osflow.cli" and module != "osflow.__main__":
                why = "nothing imports cli"
            elif dep_kind in ("around", "unknown"):
                continue
            elif kind == "around":
                why = "a module around the stages imports only the others around"
            elif kind == "stage" and STAGES[stage][0] == "render" and STAGES[dep_stage][0] != "render":
                why = "a renderer imports only the modules around the stages and the other renderers"
            elif kind == "stage" and dep_stage > stage:
                why = "a stage imports only its own, the stages before it and the modules around them"
            else:
                continue
            found.append(f"{module} imports {dep}: {why}")
    return found


def test_the_rule_finds_what_breaks_it():
    graph = {
        "osflow.render.stats": {"osflow.flow", "osflow.model", "osflow.render.common"},  # a stage
        "osflow.render.otlp": {"osflow.quoting", "osflow.openstack", "osflow.protocols.mysql"},  # fine
        "osflow.flow": {"osflow.decode", "osflow.pipeline"},  # the application
        "osflow.decode": {"osflow.join"},  # a later stage
        "osflow.tokens": {"osflow.prose"},  # a module around importing a stage
        "osflow.app": {"osflow.cli", "osflow.pipeline", "osflow.render"},  # the command line
        "osflow.__main__": {"osflow.cli"},  # fine
        "osflow.newthing": set(),  # not placed
    }
    assert violations(graph) == [
        "osflow.app imports osflow.cli: nothing imports cli",
        "osflow.decode imports osflow.join: a stage imports only its own, the stages before it and the modules "
        "around them",
        "osflow.flow imports osflow.pipeline: a stage imports only its own, the stages before it and the modules "
        "around them",
        "osflow.newthing is not placed in the import rule (tests/test_imports.py)",
        "osflow.render.stats imports osflow.flow: a renderer imports only the modules around the stages and the "
        "other renderers",
        "osflow.tokens imports osflow.prose: a module around the stages imports only the others around",
    ]


def test_every_import_follows_the_rule_of_the_architecture_doc():
    graph = import_graph(runtime_only=True)
    assert "osflow.render.otlp" in graph and "osflow.pipeline" in graph["osflow.app"]
    found = violations(graph)
    assert not found, "imports against the rule (docs/architecture.md):\n" + "\n".join(found)


def test_a_type_only_import_is_not_a_dependency():
    assert "osflow.foreground" in import_graph()["osflow.options"]
    assert "osflow.foreground" not in import_graph(runtime_only=True)["osflow.options"]


# --------------------------------------------------------------------------- cycles, length


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_osflow_modules():
    graph = import_graph()
    assert "osflow.record.recorder" in graph and "osflow.app" in graph["osflow.record.recorder"]
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{m} imports {sorted(graph[m] & set(c))}" for m in c) + ")" for c in found
    )


def test_no_module_over_800_lines():
    long = {str(p.relative_to(ROOT)): n for p, _ in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


def test_the_command_line_loads_record_only_to_run_it():
    code = ("import sys, osflow.cli; osflow.cli.post_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('osflow.record') or m == 'osflow.app'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(ROOT / "postproc"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr

"""The package's import graph: rooms import one way, and no module imports itself round a cycle.

foundation <- cluster <- data (with documents, catalog) <- models, simulator <- agent <- plans <- cli
(and the queue-server startup file, an entry point). Every import is counted, the ones inside
functions too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import xanes_agent

PACKAGE = Path(xanes_agent.__file__).parent
# cluster (a Dask connection, importing nothing of the package) sits under data, whose builds use it
RANK = {"foundation": 0, "cluster": 0.5, "data": 1, "documents": 1, "catalog": 1, "models": 2, "simulator": 2,
        "agent": 3, "plans": 4, "cli": 5, "simulator.qserver": 5, "__main__": 6, "__init__": 6}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Modules of the package that ``path`` imports (resolved relative imports; names imported
    from a package count as its submodules where such a file exists)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("xanes_agent")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("xanes_agent"):
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                rel = Path(*sub.split(".")[1:])
                out.add(sub if (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel).is_dir() else target)
    return out


def _room(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    if parts[:2] == ["simulator", "qserver"]:
        return "simulator.qserver"
    return parts[0]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        graph[mod] = _imports(path, mod) - {mod}
    return graph


def test_every_module_belongs_to_a_room():
    rooms = {_room(m) for m in _graph()}
    assert rooms <= set(RANK), f"modules outside the known rooms: {rooms - set(RANK)}"


def test_no_import_from_a_higher_room():
    bad = []
    for mod, deps in _graph().items():
        for dep in deps:
            a, b = _room(mod), _room(dep)
            if a != b and RANK[b] >= RANK[a] and b != "__init__":
                bad.append(f"{mod} ({a}) imports {dep} ({b})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = _graph()
    # a package __init__ re-exporting its modules is not a cycle with them: drop package -> own child edges
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_violation(tmp_path):
    """The check can fail: a data module importing the agent is found."""
    f = tmp_path / "bad.py"
    f.write_text("from ..agent.agent import XANESAgent\n")
    deps = _imports(f, "xanes_agent.data.bad")
    assert "xanes_agent.agent.agent" in deps and RANK[_room("xanes_agent.agent.agent")] > RANK["data"]

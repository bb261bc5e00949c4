"""The engine's shape: no import cycles, and nothing of the platform (energy_assets, Dagster) behind any of it."""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def modules(package: str = "gpu_ops") -> dict[str, Path]:
    """Every module of `package` by dotted name (a package is its __init__)."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(module: str, path: Path) -> set[str]:
    """Dotted names a module imports, anywhere in it (a function-level import closes a cycle at run time too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def import_graph(package: str = "gpu_ops") -> dict[str, set[str]]:
    """module of `package` -> the modules of `package` it imports: each imported name counts as the nearest module that
    holds it (`from pkg import sub` is the module pkg.sub; `from pkg import function` is pkg)."""
    mods = modules(package)
    graph = {}
    for module, path in mods.items():
        deps = set()
        for name in imported(module, path):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != module:
                deps.add(name)
        graph[module] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as its path (first node repeated at the end), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_gpu_ops_has_no_import_cycle():
    graph = import_graph()
    assert {"gpu_ops.runner", "gpu_ops.measure", "gpu_ops.backends.ranked"} <= set(graph)
    assert "gpu_ops.backends.ranked" in graph["gpu_ops.runner"]  # the graph sees imports made inside functions
    assert find_cycle(graph) is None


def test_gpu_ops_never_imports_the_platform():
    mods = modules()
    platform = sorted(
        f"{m} imports {name}"
        for m, path in mods.items()
        for name in imported(m, path)
        if name.split(".")[0] in ("energy_assets", "dagster")
    )
    assert platform == []


def test_importing_every_gpu_ops_module_loads_no_dagster():
    """In a fresh interpreter: every module of the engine imported, then sys.modules searched for the platform."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {sorted(modules())!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'energy_assets'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

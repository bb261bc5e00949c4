"""Every third-party import is declared in pyproject.toml, in the dependency list or extra that its package uses:
the engine (gpu_ops) installs and runs without the platform's extras."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PLATFORM_EXTRAS = {"platform", "publish", "fleet", "dev"}  # what energy_assets may use beyond the engine's
NOT_INSTALLED_HERE = {"tensorrt_llm": "tensorrt-llm", "zeus": "zeus"}  # optional GPU-only packages


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared(extras: set[str] | None) -> set[str]:
    """Distributions in the core dependencies and the given extras (None: every extra)."""
    chosen = (
        PROJECT["optional-dependencies"] if extras is None else {k: PROJECT["optional-dependencies"][k] for k in extras}
    )
    names = {_name(r) for r in PROJECT["dependencies"]}
    return names | {_name(r) for reqs in chosen.values() for r in reqs if not r.startswith("llm-energy-measure")}


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it (at module level or inside a function)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            )
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("gpu_ops", "energy_assets"):
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _undeclared(package: str, declared: set[str]) -> list[str]:
    dists = packages_distributions()
    out = []
    for module, files in sorted(_imports(package).items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [])} or {NOT_INSTALLED_HERE.get(module, module)}
        if not names & declared:
            out.append(f"{module} (distribution {', '.join(sorted(names))}) imported by {', '.join(sorted(files))}")
    return out


def test_engine_imports_are_declared_outside_the_platform_extras():
    engine_extras = set(PROJECT["optional-dependencies"]) - PLATFORM_EXTRAS
    assert _undeclared("gpu_ops", _declared(engine_extras)) == []


def test_platform_imports_are_declared():
    assert _undeclared("energy_assets", _declared(None)) == []

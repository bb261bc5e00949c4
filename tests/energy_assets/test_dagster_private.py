"""Dagster's private API is used in energy_assets.dagster_private only, and only with the versions it was checked on."""

import ast
import importlib.metadata
import importlib.util
import inspect

from energy_assets import dagster_private
from tests.gpu_ops.test_imports import REPO


def private_uses(path):
    """`dagster._*` or a private dagster-celery name, imported or named in a string, in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        found += [
            n
            for n in names
            if n.startswith("dagster._")
            or (n.startswith("dagster_") and any(part.startswith("_") for part in n.split(".")[1:]))
        ]
    return found


def test_private_dagster_names_are_used_in_one_module_only():
    assert private_uses(REPO / "energy_assets" / "dagster_private.py")  # the finder sees what that module uses
    elsewhere = {
        str(path.relative_to(REPO)): uses
        for folder in ("energy_assets", "gpu_ops", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path.name != "dagster_private.py" and (uses := private_uses(path))
    }
    assert elsewhere == {}


def test_pinned_to_the_dagster_versions_it_was_checked_on():
    """On an upgrade this fails first: re-check every name in energy_assets/dagster_private.py, then move the pins."""
    assert importlib.metadata.version("dagster") == dagster_private.DAGSTER_VERSION == "1.13.27"
    assert importlib.metadata.version("dagster-celery") == dagster_private.DAGSTER_CELERY_VERSION == "0.29.27"


def test_each_private_name_still_has_the_shape_we_use():
    assert importlib.util.find_spec(f"{dagster_private.DAEMON_MODULE}.__main__") is not None  # `python -m` works
    assert dagster_private.RetryMode.from_config({"enabled": {}}) == dagster_private.RetryMode.ENABLED
    from dagster_celery.executor import _submit_task

    assert list(inspect.signature(_submit_task).parameters) == list(
        inspect.signature(dagster_private.submit_celery_task).parameters
    )
    import dagster as dg
    from dagster._daemon.auto_run_reexecution.event_log_consumer import _create_cursor_key

    assert dagster_private.RUN_RETRY_CURSOR_KEY == _create_cursor_key(dg.DagsterEventType.RUN_FAILURE)

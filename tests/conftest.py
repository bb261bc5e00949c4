import os
from pathlib import Path

import pytest

# The builtin model is built once per test session into a shared cache folder.
os.environ.setdefault("LEM_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".lem_cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REQUIRE_SERVICES = os.environ.get("LEM_REQUIRE_SERVICES") == "1"
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    """With LEM_REQUIRE_SERVICES=1 (CI, `make test`) a skipped test fails the session: a missing service or package
    must be seen, not summed up as "2 skipped". `make test LEM_ALLOW_SKIP=1` allows skips."""
    if REQUIRE_SERVICES and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.ensure_newline()
        reporter.write_sep("=", f"{len(_skipped)} test(s) skipped although LEM_REQUIRE_SERVICES=1", red=True)
        for line in _skipped:
            reporter.write_line(line, red=True)
        reporter.write_line("start the service or install the package; `LEM_ALLOW_SKIP=1 make test` allows skips")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def good_gpu_result(tmp_path_factory) -> Path:
    """One GPU-like result folder (NVML fake) for the session: the corpus mutates copies of it. Read-only."""
    from tests.energy_assets.conftest import fake_gpu_result

    return fake_gpu_result(tmp_path_factory.mktemp("good-gpu-result"), folder="good")


@pytest.fixture(scope="session")
def tiny_model_path():
    from gpu_ops.models.builtin import ensure_builtin

    return ensure_builtin("tiny-llama")

import atexit
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The builtin model is built once per test session into a shared cache folder.
os.environ.setdefault("LEM_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".lem_cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compute thread per process: pytest-xdist runs a worker per core, and the engines, Celery workers and Dagster
# processes they start share those cores; torch's default (a thread per core in every process) oversubscribes them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# vLLM's CPU worker pins its compute threads to core 0 and leaves core 1 to other processes (VLLM_CPU_OMP_THREADS_BIND
# auto): two engines, or an engine and the other worker's test, then queue on core 0 while core 1 idles
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
# The platform's inbox and automation sensors tick at every pass of Dagster's sensor loop (one each 5 s) instead of
# every 15 s: a daemon-driven test waits less per hop. Not 5: the loop skips a sensor whose interval is a moment short
# of elapsed, so 5 ticked every other pass (10 s)
os.environ.setdefault("LEM_SENSOR_INTERVAL_S", "1")
# Device locks of this test process only (each pytest-xdist worker has its own): a CPU run locks `cpu-<host>`, and
# parallel workers, or another checkout's tests on this machine, must not queue behind each other's measurements.
# Tests of the locks themselves set their own LEM_LOCK_DIR; a folder set by the caller holds this process's own.
if os.environ.get("LEM_LOCK_DIR"):
    os.makedirs(os.environ["LEM_LOCK_DIR"], exist_ok=True)
os.environ["LEM_LOCK_DIR"] = tempfile.mkdtemp(prefix="lem-test-locks-", dir=os.environ.get("LEM_LOCK_DIR") or None)
atexit.register(shutil.rmtree, os.environ["LEM_LOCK_DIR"], ignore_errors=True)

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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`make test`: -n TEST_WORKERS --dist loadgroup) the tests that share a module-scoped fixture
    (a measured run, a browser, a built site) stay on one worker, so the fixture is built once; the others spread one by
    one. The slow tests and the vLLM engines' group go first: a 3-minute test handed out last ran alone at the end
    while the other worker idled."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info and any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def long_first(item) -> int:
        group = item.get_closest_marker("xdist_group")
        return 0 if item.get_closest_marker("slow") or (group and group.args == ("vllm-engines",)) else 1

    items.sort(key=long_first)  # stable: the rest keep their order


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def good_gpu_result(tmp_path_factory) -> Path:
    """One GPU-like result folder (NVML fake) for the session, measured once even under pytest-xdist (the workers'
    temp folders share a parent; the first worker measures, the others wait for it): the corpus mutates copies of it.
    Read-only."""
    from tests.energy_assets.conftest import fake_gpu_result

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "good-gpu-result"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "complete").is_file():
            shutil.rmtree(shared / "remote", ignore_errors=True)  # what a worker that died half-way left
            fake_gpu_result(shared, folder="good")
            (shared / "complete").touch()
    return shared / "remote" / "good"


@pytest.fixture(scope="session")
def tiny_model_path():
    from gpu_ops.models.builtin import ensure_builtin

    return ensure_builtin("tiny-llama")

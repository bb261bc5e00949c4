"""`make test` never skips a service test silently: it runs pytest with LEM_REQUIRE_SERVICES=1 (unless
LEM_ALLOW_SKIP=1), and with that set a skipped test fails the session (tests/conftest.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_skip_fails_the_session_when_services_are_required(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\ndef test_needs_redis():\n    pytest.skip('Redis unreachable')\n\n"
        "def test_fine():\n    assert True\n"
    )

    def pytest_in(env_value: str | None):
        env = {"PATH": "/usr/bin:/bin", **({"LEM_REQUIRE_SERVICES": env_value} if env_value else {})}
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    required = pytest_in("1")
    assert required.returncode == 1, required.stdout
    assert "1 test(s) skipped although LEM_REQUIRE_SERVICES=1" in required.stdout
    assert "test_x.py::test_needs_redis: Skipped: Redis unreachable" in required.stdout
    allowed = pytest_in(None)
    assert allowed.returncode == 0 and "1 skipped" in allowed.stdout


def test_make_test_requires_services_unless_allowed():
    def dry_run(*extra: str) -> str:
        return subprocess.run(
            ["make", "-n", "-s", "test", "VENV=.venv-never-built", *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout

    assert "LEM_REQUIRE_SERVICES=1 .venv-never-built/bin/python -m pytest" in dry_run()
    assert "LEM_REQUIRE_SERVICES=0 .venv-never-built/bin/python -m pytest" in dry_run("LEM_ALLOW_SKIP=1")


def test_ci_fails_on_lint_findings_before_testing():
    """`make lint` runs ruff's linter and its format check; .ci/run (set -e) runs it before `make test`."""
    lint = subprocess.run(
        ["make", "-n", "-s", "lint", "VENV=.venv-never-built"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    assert lint[-2:] == [".venv-never-built/bin/ruff check .", ".venv-never-built/bin/ruff format --check ."]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and ci.index("\nmake lint\n") < ci.index("\nmake test\n")


def test_make_demo_gpu_is_the_gpu_campaign():
    """`make demo-gpu` was cited in the docs and did not exist."""
    out = subprocess.run(["make", "-n", "demo-gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LEM_DEMO=gpu" in out.stdout
    gpu = subprocess.run(["make", "-n", "demo", "LEM_DEMO=gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "energy_assets.ops.demo --campaign examples/campaign-gpu" in gpu.stdout


def test_make_tests_worker_groups_hold(tmp_path):
    """Under `make test`'s -n/--dist loadgroup, the tests of a module that share a module-scoped fixture run on one
    worker (tests/conftest.py groups them), so the fixture is built once. With pytest 9 and pytest-xdist 3.8 every
    group was silently ignored."""
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    for module in ("p", "q"):
        tests = "".join(
            f"def test_{module}{i}(shared):\n    time.sleep(0.2)\n"
            f"    (LOG / f'{module}{i}-{{os.environ[\"PYTEST_XDIST_WORKER\"]}}').touch()\n\n"
            for i in range(4)
        )
        (tmp_path / f"test_{module}.py").write_text(
            "import os, time\nfrom pathlib import Path\nimport pytest\n\n"
            f"LOG = Path({str(tmp_path / 'log')!r})\n\n"
            "@pytest.fixture(scope='module')\ndef shared():\n    return os.getpid()\n\n" + tests
        )
    (tmp_path / "log").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    workers = {m: {p.name.split("-")[1] for p in (tmp_path / "log").glob(f"{m}?-*")} for m in ("p", "q")}
    assert all(len(w) == 1 for w in workers.values()), workers

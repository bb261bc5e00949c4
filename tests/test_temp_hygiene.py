"""Temp hygiene: every temp folder the code or the tests create is removed. The fleet module is run in a child pytest
with its own empty TMPDIR (Celery workers killed with -9, a daemon-launched run, the power sampler, the CLI); what is
left there afterwards was leaked (it once left a lem-worker-* folder per worker)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVIEST = "tests/energy_assets/test_fleet.py"  # real PostgreSQL, Redis, Celery worker subprocesses killed mid-run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_heaviest_module_leaves_tmp_as_it_found_it(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(
        os.environ,
        TMPDIR=str(tmp),
        LEM_LOCK_DIR=str(tmp_path / "locks"),  # the GPU locks' folder is meant to last: kept out of the count
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    before = sorted(os.listdir(tmp))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "base"),
            HEAVIEST,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(os.listdir(tmp)) == before, f"left in TMPDIR by {HEAVIEST}: {sorted(os.listdir(tmp))}"

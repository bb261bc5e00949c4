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
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"),  # torch's compile cache, meant to last: likewise
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
    # pymp-*: Python's multiprocessing folder of each Celery worker the module kills with -9 on purpose (a process
    # killed outright removes nothing); anything else was left by our code or our tests
    left = sorted(n for n in os.listdir(tmp) if n not in before and not n.startswith("pymp-"))
    assert left == [], f"left in TMPDIR by {HEAVIEST}: {left}"


@pytest.mark.timeout(120)
def test_an_engine_servers_temp_socket_folder_is_removed_when_it_stops(tmp_path):
    """A socket path too long for a Unix socket gets a short temp folder: it goes when the server does."""
    from gpu_ops.serve import ServerProcess

    server = ServerProcess(tmp_path / ("x" * 120) / "engine.sock").start(dict(os.environ))
    folder = server.socket.parent
    assert folder.is_dir() and folder != tmp_path / ("x" * 120)
    server.stop()
    assert not folder.exists()


def test_an_engine_servers_socket_path_stays_short_when_the_temp_folder_path_is_long(tmp_path, monkeypatch):
    """A test's TMPDIR can itself be too long for a socket path: the short folder then goes in /tmp."""
    import tempfile

    from gpu_ops.serve import ServerProcess

    long_tmp = tmp_path / ("t" * 90)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    server = ServerProcess(long_tmp / "engine.sock")
    try:
        assert len(str(server.socket)) <= 100, server.socket
    finally:
        server.socket.parent.rmdir()

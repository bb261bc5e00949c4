"""The demo's own failure modes (the full demo runs in test_e2e.py and through `make demo`)."""

import subprocess
import sys
import time


def test_broken_code_location_stops_the_demo_at_once_with_its_error(tmp_path):
    """A code location that fails to load used to leave the demo printing "0 succeeded" until killed."""
    (tmp_path / "broken_location.py").write_text("raise ImportError('no module named celery_thing (demo test)')\n")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {tmp_path / 'broken_location.py'}\n      location_name: "
        "broken\n"
    )
    started = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "energy_assets.demo",
            "--home",
            str(tmp_path / "home"),
            "--storage",
            str(tmp_path / "storage"),
            "--port",
            "0",
            "--workspace",
            str(tmp_path / "workspace.yaml"),
            "--exit",
            "--campaign",
            str(tmp_path / "empty"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 1
    assert "code location 'broken' failed to load" in r.stderr and "no module named celery_thing" in r.stderr
    assert time.monotonic() - started < 90
    import psutil  # and it leaves no Dagster process behind

    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(tmp_path / "workspace.yaml") in " ".join(p.info["cmdline"] or [])
    ]

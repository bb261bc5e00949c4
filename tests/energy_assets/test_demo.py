"""The demo's own failure modes (the full demo runs in test_e2e.py and through `make demo`)."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _demo(tmp_path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`python -m energy_assets.demo --exit` on a fresh home and storage under tmp_path."""
    return subprocess.run(
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
            "--exit",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_broken_code_location_stops_the_demo_at_once_with_its_error(tmp_path):
    """A code location that fails to load used to leave the demo printing "0 succeeded" until killed."""
    (tmp_path / "broken_location.py").write_text("raise ImportError('no module named celery_thing (demo test)')\n")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_file:\n      relative_path: {tmp_path / 'broken_location.py'}\n      location_name: "
        "broken\n"
    )
    started = time.monotonic()
    r = _demo(
        tmp_path, "--workspace", str(tmp_path / "workspace.yaml"), "--campaign", str(tmp_path / "empty"), timeout=180
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


def test_a_failed_partition_is_reported_with_its_reason_and_the_others_still_rank(tmp_path):
    """On the H200 the demo stopped at the first failed run ("a run failed: see .../runs"), with the UI gone under
    --exit and the other partitions unmeasured. Now each failure is printed with its reason and the rest go on."""
    tiny = (REPO / "examples" / "tiny.yaml").read_text()
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    ok = tiny.replace("sweep:\n  batching.batch_size: [4, 8]\n", "")
    (campaign / "ok.yaml").write_text(ok)
    # a second good partition: the leaderboard must end with both (with partitioned statistics checks it kept the
    # first only, the automation never seeing the second one's checks passed)
    (campaign / "ok-small.yaml").write_text(
        ok.replace("name: tiny-demo", "name: small-demo").replace("builtin:tiny-llama", "builtin:small-llama")
    )
    (campaign / "needs-gpu.yaml").write_text(
        tiny.replace("name: tiny-demo", "name: micro-on-cuda")
        .replace("builtin:tiny-llama", "builtin:micro-llama")
        .replace("precision: fp32", "precision: fp32\ndevice: cuda")
    )
    evidence = tmp_path / "evidence"
    r = _demo(tmp_path, "--timeout", "600", "--campaign", str(campaign), "--evidence", str(evidence), timeout=900)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "failed: device: 'cuda' asked but torch sees no CUDA GPU" in r.stderr
    assert "1 partition(s) failed: builtin-micro-llama__pytorch|" in r.stderr
    assert "leaderboard:" in r.stdout
    board = r.stdout.split("leaderboard:")[1]
    assert "builtin-tiny-llama__pytorch" in board and "builtin-small-llama__pytorch" in board
    # the evidence of what did rank, its one traced number included (tokens/s here: no energy on a CPU)
    assert {p.name for p in evidence.iterdir()} >= {"leaderboard.csv", "site.tgz", "campaign.json", "trace.md"}
    trace = (evidence / "trace.md").read_text()
    assert trace.startswith("# Tracing tokens_per_s") and trace.rstrip().endswith("every step agrees")

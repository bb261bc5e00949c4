"""`run`'s conventions: --backend, --set KEY=VALUE, --json; stdout holds only the folder (or the JSON)."""

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from gpu_ops.cli import main
from tests.gpu_ops.test_runner import BASE


@pytest.fixture
def experiment(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text("# a comment is part of the file's bytes\n" + yaml.safe_dump(dict(BASE, cycles=3)))
    return p


def test_run_prints_only_the_folder_on_stdout_and_a_table_on_stderr(experiment, tmp_path, capfd):
    assert main(["run", str(experiment), "--out", str(tmp_path / "res"), "--set", "cycles=2"]) == 0
    out, err = capfd.readouterr()
    assert out.count("\n") == 1 and (Path(out.strip()) / "summary.json").is_file()  # what $(...) captures
    assert "throughput (tok/s, ± 95% CI)" in err and "cycle 1" in err
    assert "check counter_timeline_agree: skipped: energy unmeasured" in err  # CPU: nothing to check, not "ok"
    assert "counter_timeline_agree: ok" not in err


def test_run_json_backend_and_typed_settings(experiment, tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("VLLM_LOGGING_STREAM", raising=False)
    args = ["run", str(experiment), "--out", str(tmp_path / "res"), "--json", "--backend", "pytorch"]
    assert main([*args, "--set", "cycles=2", "--set", "batching.batch_size=2"]) == 0
    out, err = capfd.readouterr()
    summary = json.loads(out)  # stdout is the JSON and nothing else
    assert summary["file_sha"] == hashlib.sha256(experiment.read_bytes()).hexdigest()[:16]
    assert summary["backend"] == "pytorch" and [p["n_cycles"] for p in summary["sweep_points"]] == [2]
    config = json.loads((Path(summary["folder"]) / "summary.json").read_text())
    assert config["experiment_hash"] == summary["experiment_hash"]
    assert config["file_sha"] == summary["file_sha"]  # the result folder names the file it came from too
    statuses = {c["check"]: c["status"] for c in summary["checks"]}
    assert statuses["counter_timeline_agree"] == "skipped" and statuses["energy_present"] == "ok"
    assert "cycle 0" in err  # progress stays on stderr
    assert os.environ["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"  # vLLM's own logs default to stdout


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--set", "batching.batch_sise=8"], "did you mean 'batch_size'"),
        (["--set", "cycles"], "expected KEY=VALUE"),
        (["--set", "cycles=many"], "cycles"),
        (["--set", "name.first=x"], "name is a value"),
        (["--backend", "nosuch"], "backend"),
    ],
)
def test_a_bad_setting_names_the_field_and_writes_nothing(experiment, tmp_path, capsys, flags, named):
    assert main(["run", str(experiment), "--out", str(tmp_path / "res"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert not (tmp_path / "res").exists()


def test_a_closed_pipe_ends_a_listing_quietly():
    """`list-hardware | head -3` ended in a BrokenPipeError traceback and exit 1."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_ops.cli", "list-hardware"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_a_folder_of_results_is_taken_by_report_and_named_by_validate(experiment, tmp_path, capfd):
    results = tmp_path / "results"
    assert main(["run", str(experiment), "--out", str(results), "--set", "cycles=2", "--quiet"]) == 0
    (child,) = list(results.iterdir())
    capfd.readouterr()
    assert main(["validate", str(results)]) == 2
    err = capfd.readouterr().err
    assert f"pass one of them, e.g. {child}" in err and "remove" not in err
    assert main(["report", str(results), "--out", str(tmp_path / "site")]) == 0  # the parent folder is taken
    assert "1 leaderboard rows" in capfd.readouterr().out
    assert main(["report", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "site2")]) == 2
    err = capfd.readouterr().err
    assert "no such folder" in err and "a link or a file" not in err


def test_report_against_a_localhost_dagster_warns_and_marks_the_links_local(experiment, tmp_path, capfd):
    results = tmp_path / "results"
    assert main(["run", str(experiment), "--out", str(results), "--set", "cycles=2", "--quiet"]) == 0
    capfd.readouterr()
    site = tmp_path / "site"
    assert main(["report", str(results), "--out", str(site), "--dagster-url", "http://127.0.0.1:3000"]) == 0
    assert "warning: the Dagster URL http://127.0.0.1:3000 names this machine only" in capfd.readouterr().err
    assert '"links_local":true' in (site / "index.html").read_text()
    assert main(["report", str(results), "--out", str(site), "--dagster-url", "https://dagster.example.org"]) == 0
    assert "warning" not in capfd.readouterr().err and '"links_local":false' in (site / "index.html").read_text()


def test_show_config_shows_a_schedule_set_to_its_defaults(tmp_path, capsys):
    """A file asking for a daily re-measurement at the default time showed `schedule: {}`."""
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(dict(BASE, schedule={"interval": "daily"})))
    assert main(["show-config", str(p)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["schedule"] == {"interval": "daily", "at": "03:00", "days": []}

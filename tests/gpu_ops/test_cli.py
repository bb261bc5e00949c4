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

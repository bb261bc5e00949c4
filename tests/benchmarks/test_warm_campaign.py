"""benchmarks/warm_campaign.py: the figures its targets judge, read from what the campaign and compare left."""

import json
from pathlib import Path

import pytest

from benchmarks import warm_campaign as W


def _campaign(folder, share, vllm_kinds):
    folder.mkdir(parents=True)
    runs = [
        {"partition": "synthetic-llama-3.2-1b__pytorch|h100", "seconds_by_kind": {"engine_start": 9.0}},
        {"partition": "synthetic-llama-3.2-1b__vllm|h100", "seconds_by_kind": vllm_kinds},
    ]
    (folder / "campaign.json").write_text(
        json.dumps({"runs": runs, "wall_s": 100.0, "windows_s": 100.0 * share, "share_in_windows": share})
    )


def test_figures_give_each_pass_its_share_and_the_warm_over_cold_vllm_start(tmp_path):
    evidence, compare = tmp_path / "evidence", tmp_path / "compare"
    _campaign(evidence / "pass-1", 0.62, {"engine_start": 30.0, "compile": 20.0, "weights": 10.0, "cycle": 90.0})
    _campaign(evidence / "pass-2", 0.9, {"cycle": 90.0})
    for backend, kinds in (("pytorch", {"engine_start": 5.0}), ("vllm", {"engine_start": 9.0, "compile": 3.0})):
        (compare / "runs" / backend).mkdir(parents=True)
        (compare / "runs" / backend / "summary.json").write_text(
            json.dumps({"backend": backend, "wall_time": {"seconds": kinds}})
        )
    f = W.figures(evidence, compare, passes=2, compare_code=0)
    assert f["vllm_start_cold_s"] == 60.0 and f["vllm_start_warm_cache_s"] == 12.0
    assert f["series"] == {
        "share_pass1": [0.62],
        "share_pass2": [0.9],
        "vllm_start_warm_over_cold": [pytest.approx(0.2)],
        "compare_exit_code": [0],
    }


def test_missing_runs_leave_their_series_empty_never_zero(tmp_path):
    f = W.figures(tmp_path / "evidence", tmp_path / "compare", passes=2, compare_code=None)
    assert f["series"] == {"vllm_start_warm_over_cold": [], "compare_exit_code": []}


def test_compare_runs_on_the_engine_cache_folder_the_campaigns_engine_server_filled(tmp_path, monkeypatch):
    """compare's vLLM start is the 'warm cache' figure only if it reads the compile cache pass 1 wrote: the one the
    platform's engine server keeps in its storage (LEM_CACHE_DIR alone left compare on another folder: a miss)."""
    from energy_assets.ops.local import Platform

    calls = []

    def run(cmd, cwd=None, env=None):
        calls.append((cmd, env))
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(W.subprocess, "run", run)
    W.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")])
    (demo, demo_env), (compare, compare_env) = calls
    assert "energy_assets.ops.demo" in demo and "compare" in compare
    arg = {k: v for k, v in zip(demo, demo[1:]) if k.startswith("--")}
    platform = Platform(Path(arg["--home"]), Path(arg["--storage"]), port=1)
    assert Path(compare_env["LEM_ENGINE_CACHE_DIR"]) == platform.engines.cache_root
    assert demo_env["LEM_ENGINE_CACHE_DIR"] == compare_env["LEM_ENGINE_CACHE_DIR"]


def test_compares_vllm_start_leaves_out_the_engine_stop_after_its_last_window(tmp_path):
    """A CLI run stops the engines it started and records that as engine_start after its last window (gpu_ops.measure);
    the campaign's runs leave theirs warm, so the warm start counts only the start (a CPU dry run: 62.3 s of start,
    5.5 s of stop)."""
    spans = [
        {"kind": "engine_start", "start": 1.0, "end": 11.0, "label": "default", "parts": {"compile": 4.0}},
        {"kind": "warmup", "start": 11.0, "end": 12.0, "label": "default"},
        {"kind": "cycle", "start": 12.0, "end": 15.0, "label": "default"},
        {"kind": "engine_start", "start": 15.0, "end": 20.0, "label": ""},
        {"kind": "bookkeeping", "start": 20.0, "end": 21.0, "label": ""},
    ]
    wall = {"start": 0.0, "end": 21.0, "seconds": {"engine_start": 11.0, "compile": 4.0}, "spans": spans}
    (tmp_path / "runs" / "vllm").mkdir(parents=True)
    (tmp_path / "runs" / "vllm" / "summary.json").write_text(json.dumps({"backend": "vllm", "wall_time": wall}))
    assert W.compare_vllm_start(tmp_path) == pytest.approx(10.0)

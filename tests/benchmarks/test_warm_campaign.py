"""benchmarks/warm_campaign.py: the figures its targets judge, read from what the campaign and compare left."""

import json
from pathlib import Path

import pytest

from benchmarks import warm_campaign as W


def _campaign(folder, share, vllm_start_s):
    folder.mkdir(parents=True)
    runs = [
        {"partition": "synthetic-llama-3.2-1b__pytorch|h100", "engine_start_s": 9.0},
        {"partition": "synthetic-llama-3.2-1b__vllm|h100", "engine_start_s": vllm_start_s},
    ]
    (folder / "campaign.json").write_text(
        json.dumps({"runs": runs, "wall_s": 100.0, "windows_s": 100.0 * share, "share_in_windows": share})
    )


def test_figures_give_each_pass_its_share_and_the_warm_over_cold_vllm_start(tmp_path):
    evidence, compare = tmp_path / "evidence", tmp_path / "compare"
    _campaign(evidence / "pass-1", 0.62, 60.0)
    _campaign(evidence / "pass-2", 0.9, 0.0)
    spare = {"kind": "engine_start", "label": "spare", "start": 100.0, "end": 103.5}
    for backend, start, spans in (("pytorch", 5.0, [spare]), ("vllm", 12.0, [])):
        (compare / "runs" / backend).mkdir(parents=True)
        engines = [{"engine_id": "e-1", "engine_start_s": start, "engine_reused": False}]
        engines[0]["engine_prestarted"] = backend == "vllm"
        (compare / "runs" / backend / "summary.json").write_text(
            json.dumps({"backend": backend, "fingerprint": {"engines": engines}, "wall_time": {"spans": spans}})
        )
    f = W.figures(evidence, compare, passes=2, compare_code=0)
    assert f["vllm_start_cold_s"] == 60.0 and f["vllm_start_compare_s"] == 12.0
    assert f["compare_vllm_prestarted"] is True and f["compare_spare_wait_s"] == pytest.approx(3.5)
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


def test_zero_passes_run_compare_alone_and_judge_only_its_exit_code(tmp_path, monkeypatch):
    """--passes 0 (plan stage compare-gpu): no campaign is started, compare runs, and result.json holds compare's exit
    code with no campaign figure (never a zero standing in for one)."""
    import json

    calls = []
    monkeypatch.setattr(
        W.subprocess, "run", lambda cmd, cwd=None, env=None: calls.append(cmd) or type("D", (), {"returncode": 3})()
    )
    assert W.main(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "w"), "--passes", "0"]) == 1
    assert len(calls) == 1 and "compare" in calls[0]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["series"] == {"vllm_start_warm_over_cold": [], "compare_exit_code": [3]} and result["passes"] == {}


def test_an_engine_start_counts_only_the_engines_a_run_started_from_their_own_records():
    """Each engine's own start (gpu_ops.engines: process start to engine loaded) is the like-for-like figure: a
    campaign run's engine_start spans hold the eviction of the engine before it, and a CLI run's the stop of its
    engines after its last window (a CPU dry run: 5.5 s of stop beside 62.3 s of start)."""
    from energy_assets.ops.evidence import started_engine_s

    engines = [{"engine_start_s": 62.3, "engine_reused": False}, {"engine_start_s": 99.0, "engine_reused": True}]
    assert started_engine_s({"fingerprint": {"engines": engines}}) == pytest.approx(62.3)
    assert started_engine_s({"fingerprint": {"engines": engines[1:]}}) == 0.0  # found warm: no start
    assert started_engine_s({}) is None  # not recorded: unknown, never 0

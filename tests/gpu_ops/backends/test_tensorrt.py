"""The TensorRT-LLM adapter against a test double of its documented API (the library cannot be installed here)."""

import sys

import numpy as np
import pytest

from gpu_ops.config import parse_config
from gpu_ops.errors import BackendUnavailable, CapabilityError
from gpu_ops.runner import run_experiment
from gpu_ops.validation import blocking_failures, validate
from tests import fake_tensorrt_llm
from tests.fake_nvml import FakeGpu, FakeNVML

BASE = {
    "name": "trt",
    "model": "builtin:tiny-llama",
    "backend": "tensorrt",
    "precision": "bf16",
    "max_input_tokens": 128,
    "max_output_tokens": 60,
    "min_output_tokens": 60,
    "prompts": {"source": "random", "count": 4, "random": {"input_len": 100}},
    "batching": {"batch_size": 4},
    "cycles": 2,
    "warmup_requests": 0,
    "cooldown_s": 0,
    "energy": {"idle_baseline_s": 0},
}


def test_streams_every_token_and_reads_perf_metrics(tmp_path, tiny_model_path, monkeypatch):
    fake_tensorrt_llm.install(monkeypatch)
    cfg = parse_config(
        dict(
            BASE,
            tensorrt={"enable_kv_cache_reuse": True, "quantization": "fp8"},
            parallelism={"tensor": 2},
            gpus=[0, 1],
            traffic={"mode": "constant", "rate": 100},
        )
    )
    gpus = [FakeGpu(power=lambda t: 300.0, uuid=f"GPU-0000000{i}-1111-2222-3333-444444444444") for i in range(3)]
    out = run_experiment(cfg, tmp_path, nvml=FakeNVML(gpus))
    llm = fake_tensorrt_llm.LLM.instances[0]
    kw = llm.kwargs
    assert kw["tensor_parallel_size"] == 2 and kw["pipeline_parallel_size"] == 1 and kw["dtype"] == "bfloat16"
    assert (
        kw["quant_config"].quant_algo == "FP8"
        and kw["kv_cache_config"].enable_block_reuse is True
        and kw["max_batch_size"] == 4
    )
    assert llm.shut  # shut down at the end
    r, c = out.tables.requests, out.tables.cycles
    failed = blocking_failures(
        validate(out.tables)
    )  # consistent: every check passes (the fake counter steps every 2 ms)
    assert not failed, failed
    assert r.output_tokens.eq(60).all() and r.itl_s.map(len).eq(59).all()
    assert (r.first_token_s > r.arrival_s).all()
    # constant rate 100/s: requests sent 10 ms apart
    arr = r[r.cycle == 0].sort_values("request_id").arrival_s.to_numpy()
    assert np.allclose(np.diff(arr), 0.01)
    # the double steps every 4 ms; ITL measured on our clock
    assert 0.003 < c.itl_p50_s.iloc[0] < 0.05
    # cycle 0 sees no cached blocks; cycle 1 replays the same prompts: every full block reused
    assert c.prefix_cache_hit_rate.iloc[0] == 0.0 and c.prefix_cache_hit_rate.iloc[1] == 1.0
    assert (
        c.kv_cache_usage_peak.isna().all() and c.preemptions.isna().all() and c.spec_decode_acceptance_rate.isna().all()
    )
    assert (c.energy_status == "measured").all() and (c.gross_energy_j > 0).all()
    # energy over exactly the run's two GPUs (the host's third GPU is idle and excluded), with the per-GPU split kept
    assert (
        c.gpu_count.eq(2).all()
        and c.gpu_energy_by_device_j.str.count("gpu").eq(2).all()
        and "gpu2" not in c.gpu_energy_by_device_j.iloc[0]
    )
    # 2 x 300 W, not 3 x 300 W; the fake counter, like NVML's, moves in 100 ms steps, so a short window is within ~20 %
    assert c.avg_power_w.iloc[0] == pytest.approx(600.0, rel=0.2)
    assert "not verified on hardware" in out.tables.experiment.fingerprint_json.iloc[0]


def test_speculative_acceptance_is_token_weighted(monkeypatch):
    from gpu_ops.backends.tensorrt import aggregate_perf_metrics

    m = fake_tensorrt_llm
    perfs = [
        m.RequestPerfMetrics(speculative_decoding=m.SpeculativeDecodingMetrics(0.5, 5, 10)),
        m.RequestPerfMetrics(speculative_decoding=m.SpeculativeDecodingMetrics(1.0, 30, 30)),
        None,
    ]
    got = aggregate_perf_metrics(perfs)
    assert got["spec_decode_acceptance_rate"] == pytest.approx(35 / 40)


def test_not_importable_gives_exact_reason(monkeypatch):
    from gpu_ops.backends import get_backend
    from gpu_ops.backends.tensorrt import is_available

    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)
    ok, reason = is_available()
    assert not ok and "importing tensorrt_llm failed" in reason
    with pytest.raises(
        BackendUnavailable, match=r"backend 'tensorrt' unavailable: importing tensorrt_llm failed \(ModuleNotFoundError"
    ):
        get_backend("tensorrt")


def test_unsupported_options_are_named(tmp_path, tiny_model_path, monkeypatch):
    fake_tensorrt_llm.install(monkeypatch)
    with pytest.raises(CapabilityError, match=r"backend 'tensorrt' cannot honour: .*lora"):
        run_experiment(parse_config(dict(BASE, lora={"path": str(tmp_path)})), tmp_path)
    with pytest.raises(CapabilityError, match=r"batching.strategy 'dynamic'"):
        run_experiment(parse_config(dict(BASE, batching={"strategy": "dynamic"})), tmp_path)


def test_list_backends_marks_it_unverified(capsys):
    from gpu_ops.cli import main

    assert main(["list-backends"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tensorrt"))
    assert "[not verified on hardware]" in line


def test_capability_matrix_doc_is_generated_from_code():
    from pathlib import Path

    from gpu_ops.backends.matrix import render

    doc = Path(__file__).resolve().parents[3] / "docs" / "backends.md"
    assert doc.read_text() == render(), (
        "docs/backends.md is stale: python -m gpu_ops.backends.matrix > docs/backends.md"
    )

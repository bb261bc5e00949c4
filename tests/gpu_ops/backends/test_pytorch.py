"""Real transformers generation with the builtin tiny model on CPU."""

import json
import time

import pytest

from gpu_ops.backends import Request, check_capabilities, get_backend
from gpu_ops.config import parse_config
from gpu_ops.errors import BackendUnavailable, CapabilityError, ConfigError
from gpu_ops.models import list_models, resolve_model
from gpu_ops.models.builtin import build_digest, build_tiny_llama
from gpu_ops.prompts import build_prompts


def cfg(**over):
    base = {
        "name": "t",
        "model": "builtin:tiny-llama",
        "max_input_tokens": 32,
        "max_output_tokens": 6,
        "min_output_tokens": 6,
        "prompts": {"count": 6},
        "batching": {"strategy": "static", "batch_size": 4},
    }
    for k, v in over.items():
        base[k] = v
    return parse_config(base)


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    b = get_backend("pytorch")
    b.load(cfg())
    yield b
    b.close()


def test_builtin_model_is_deterministic(tmp_path):
    build_tiny_llama(tmp_path / "a")
    build_tiny_llama(tmp_path / "b")
    assert build_digest(tmp_path / "a") == build_digest(tmp_path / "b")
    conf = json.loads((tmp_path / "a" / "config.json").read_text())
    assert conf["head_dim"] == 64 and conf["model_type"] == "llama"


def test_model_sources(tmp_path, tiny_model_path):
    src = resolve_model("builtin:tiny-llama")
    assert src.weights == "synthetic" and src.slug == "builtin-tiny-llama" and (src.path / "tokenizer.json").is_file()
    assert resolve_model(str(tiny_model_path)).weights == "real"  # a local folder counts as real weights
    syn = resolve_model("synthetic:llama-3.1-8b")
    assert syn.weights == "synthetic" and syn.architecture["hidden_size"] == 4096
    names = [n for n, _ in list_models()]
    for arch in ("llama-3.2-1b", "llama-3.1-8b", "qwen2.5-7b", "mistral-7b"):
        assert f"synthetic:{arch}" in names
    with pytest.raises(ConfigError, match="unknown architecture"):
        resolve_model("synthetic:gpt-9")
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(str(tmp_path))


def _requests(backend, c, arrivals):
    prompts = build_prompts(c, backend.tokenizer, backend.vocab_size)
    return [
        Request(i, p, c.max_output_tokens, c.min_output_tokens, a) for i, (p, a) in enumerate(zip(prompts, arrivals))
    ]


def test_fixed_length_and_per_token_timestamps(backend):
    c = backend.cfg
    t0 = time.perf_counter()
    recs = backend.run(_requests(backend, c, [0.0] * 6), lambda: time.perf_counter() - t0)
    assert len(recs) == 6
    assert {r.batch_id for r in recs} == {0, 1}  # static: 4 + 2
    for r in recs:
        assert r.output_tokens == 6 and len(r.chunk_times_s) == 6
        assert all(b > a for a, b in zip(r.chunk_times_s, r.chunk_times_s[1:]))  # measured, increasing
        assert r.chunk_times_s[0] >= r.scheduled_s >= r.arrival_s


def test_each_request_generates_its_drawn_length_in_a_static_batch(backend):
    """output_lengths: uniform gives each request its own exact length (gpu_ops.prompts.output_limits); a static batch
    runs to its longest row, and each record counts only its own request's tokens."""
    from gpu_ops.measure import _requests as trace
    from gpu_ops.prompts import output_limits

    backend.cfg = cfg(output_lengths="uniform", min_output_tokens=1, max_output_tokens=12)
    prompts = build_prompts(backend.cfg, backend.tokenizer, backend.vocab_size)
    requests = trace(prompts, backend.cfg, 0.0)
    drawn = [hi for hi, _ in output_limits(backend.cfg, 6)]
    assert [(r.max_new_tokens, r.min_new_tokens) for r in requests] == [(k, k) for k in drawn]
    assert len(set(drawn)) > 1 and all(1 <= k <= 12 for k in drawn)
    t0 = time.perf_counter()
    recs = sorted(backend.run(requests, lambda: time.perf_counter() - t0), key=lambda r: r.id)
    assert [r.output_tokens for r in recs] == drawn
    assert all(len(r.chunk_times_s) == r.output_tokens for r in recs)


def test_token_timestamps_off_drops_the_per_step_hook(backend):
    """pytorch.token_timestamps: false runs generate without the streamer (no host copy per step): the batch end is
    measured, per-token latencies are unmeasured (None), never invented."""
    from gpu_ops.metrics import requests_frame

    backend.cfg = cfg(pytorch={"token_timestamps": False})
    t0 = time.perf_counter()
    recs = backend.run(_requests(backend, backend.cfg, [0.0] * 6), lambda: time.perf_counter() - t0)
    df = requests_frame(recs)
    assert all(r.chunk_times_s == [] and r.last_token_s >= r.scheduled_s for r in recs)
    assert df.ttft_s.isna().all() and df.tpot_s.isna().all() and df.e2e_s.gt(0).all() and df.output_tokens.eq(6).all()


def test_open_loop_dynamic_batches_respect_arrivals(backend):
    backend.cfg = cfg(batching={"strategy": "dynamic", "batch_size": 4}, traffic={"mode": "constant", "rate": 20})
    arrivals = [0.0, 0.05, 0.10, 0.15, 0.4, 0.45]
    t0 = time.perf_counter()
    recs = backend.run(_requests(backend, backend.cfg, arrivals), lambda: time.perf_counter() - t0)
    for r in recs:
        assert r.scheduled_s >= r.arrival_s - 1e-6  # never served before it arrived
    assert max(r.chunk_times_s[-1] for r in recs) >= 0.45  # the idle gap is inside the run
    assert recs[0].batch_id == 0 and len({r.batch_id for r in recs}) >= 2


def test_sorted_static_orders_by_prompt_length(backend):
    backend.cfg = cfg(batching={"strategy": "sorted_static", "batch_size": 3})
    reqs = [Request(i, list(range(4, 4 + n)), 2, 2, 0.0) for i, n in enumerate([9, 2, 7, 3, 8, 1])]
    t0 = time.perf_counter()
    recs = {r.id: r for r in backend.run(reqs, lambda: time.perf_counter() - t0)}
    assert {recs[i].batch_id for i in (1, 3, 5)} == {0} and {recs[i].batch_id for i in (0, 2, 4)} == {1}


def test_decoder_presets_sample(backend):
    one = [Request(0, [5, 6], 6, 6, 0.0)]
    backend.cfg = cfg(decoder={"preset": "creative"}, seed=1)
    kw = backend._generate_kwargs(one)
    assert kw["do_sample"] and kw["temperature"] == 1.0 and kw["top_k"] == 100
    backend.cfg = cfg(decoder={"preset": "creative", "temperature": 0.0})
    assert backend._generate_kwargs(one)["do_sample"] is False


def test_prompt_sources(tmp_path, backend):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "hello world"}\n{"text": "energy per token"}\n')
    ids = build_prompts(cfg(prompts={"source": "jsonl", "path": str(jl), "count": 3}), backend.tokenizer, 100)
    assert len(ids) == 3 and ids[0] == ids[2]
    sg = tmp_path / "sg.json"
    sg.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "why batch?"}, {"from": "gpt", "value": "x"}]}])
    )
    assert (
        len(build_prompts(cfg(prompts={"source": "sharegpt", "path": str(sg), "count": 2}), backend.tokenizer, 100))
        == 2
    )
    rnd = build_prompts(
        cfg(prompts={"source": "random", "count": 50, "random": {"input_len": 20, "range_ratio": 0.5}}),
        backend.tokenizer,
        100,
    )
    assert all(10 <= len(p) <= 30 for p in rnd) and len({len(p) for p in rnd}) > 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": 1}\n')
    with pytest.raises(ConfigError, match="line 1: needs a string field 'prompt'"):
        build_prompts(cfg(prompts={"source": "jsonl", "path": str(bad)}), backend.tokenizer, 100)


def test_capability_matrix_rejects_with_clear_message():
    b = get_backend("pytorch")
    with pytest.raises(CapabilityError, match=r"cannot honour: parallelism.pipeline=2"):
        check_capabilities(b.name, b.capabilities(), cfg(parallelism={"pipeline": 2}, gpus=[0, 1]))
    with pytest.raises(CapabilityError, match=r"parallelism tensor=2 with data=2 at once"):
        check_capabilities(b.name, b.capabilities(), cfg(parallelism={"tensor": 2, "data": 2}, gpus=[0, 1, 2, 3]))
    check_capabilities(b.name, b.capabilities(), cfg(parallelism={"tensor": 2}, gpus=[0, 1]))  # torchrun + TP plan
    with pytest.raises(BackendUnavailable, match="backend 'tensorrt'"):
        get_backend("tensorrt")


def _one_cycle(tmp_path, **over):
    from gpu_ops.runner import run_experiment

    base = {
        "name": "opt",
        "model": "builtin:tiny-llama",
        "max_input_tokens": 16,
        "max_output_tokens": 4,
        "min_output_tokens": 4,
        "prompts": {"count": 4},
        "batching": {"batch_size": 2},
        "cycles": 1,
        "warmup_requests": 0,
        "cooldown_s": 0,
    }
    base.update(over)
    return run_experiment(parse_config(base), tmp_path).tables


def test_lora_adapter_through_peft(tmp_path, tiny_model_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    base_params = sum(p.numel() for p in base.parameters())
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    t = _one_cycle(tmp_path / "out", lora={"path": str(tmp_path / "adapter"), "name": "demo"})
    assert (t.cycles.output_tokens == 16).all()
    assert t.sweep_points.backend_parameters.iloc[0] > base_params  # the adapter's weights are loaded


def test_assisted_generation_with_draft_model(tmp_path, tiny_model_path):
    t = _one_cycle(
        tmp_path,
        model="builtin:small-llama",
        batching={"batch_size": 1},
        pytorch={"assistant_model": "builtin:tiny-llama"},
    )
    assert (t.requests.output_tokens == 4).all() and t.requests.ttft_s.notna().all()


def test_static_cache_path_runs_on_cpu(tmp_path, tiny_model_path):
    t = _one_cycle(tmp_path, pytorch={"static_cache": True})
    assert (t.requests.output_tokens == 4).all()
    assert bool(t.sweep_points.backend_static_cache.iloc[0]) is True

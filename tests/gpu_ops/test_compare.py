"""`compare` before it measures: every backend's request trace computed with tokenizers alone, and a mismatch refused
at once, with nothing loaded; synthetic models share one tokenizer, so PyTorch and vLLM replay one trace."""

from types import SimpleNamespace

import pytest
import yaml

from gpu_ops import compare as cmp
from gpu_ops.cli import main
from gpu_ops.config import parse_config

SPEC = {
    "name": "cmp",
    "model": "builtin:tiny-llama",
    "max_input_tokens": 32,
    "max_output_tokens": 8,
    "min_output_tokens": 8,
    "prompts": {"source": "random", "count": 6, "random": {"input_len": 16}},
    "batching": {"batch_size": 2},
    "cycles": 2,
}


def _nothing_may_load(monkeypatch) -> list:
    """Every way compare could start a backend records the attempt (the test asserts none happened)."""
    import gpu_ops.measure  # noqa: F401 - imported first, it keeps the real get_backend for later tests

    loaded = []
    monkeypatch.setattr("gpu_ops.backends.get_backend", lambda name: loaded.append(name))
    monkeypatch.setattr(cmp, "_measure_each", lambda configs, *a: loaded.extend(configs))
    monkeypatch.setattr("gpu_ops.engines.EngineHost", lambda name, *a, **k: loaded.append(name))
    return loaded


def test_compare_refuses_a_trace_mismatch_before_any_backend_is_loaded(tmp_path, monkeypatch, capsys, tiny_model_path):
    import gpu_ops.prompts as prompts

    real = prompts.build_prompts

    def vllm_tokenises_otherwise(cfg, tokenizer, vocab_size):  # as if vLLM's tokenizer differed from PyTorch's
        ids = real(cfg, tokenizer, vocab_size)
        return [[i + 1 for i in p] for p in ids] if cfg.backend == "vllm" else ids

    monkeypatch.setattr(prompts, "build_prompts", vllm_tokenises_otherwise)
    loaded = _nothing_may_load(monkeypatch)
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    code = main(["compare", str(path), "--backends", "pytorch,vllm", "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and loaded == []
    assert "backends pytorch and vllm would replay different request traces" in err
    assert "request 0: prompt token ids differ" in err and "nothing was measured" in err
    assert not (tmp_path / "out").exists()


def test_same_model_gives_every_backend_one_planned_trace(tiny_model_path):
    configs = {b: parse_config(cmp.backend_data(SPEC, b)) for b in ("pytorch", "vllm")}
    traces = cmp.planned_traces(configs)
    cmp.check_same_traces(traces)  # no mismatch: nothing raised
    (label,) = traces["pytorch"]
    assert [r.prompt_token_ids for r in traces["pytorch"][label]] == [r.prompt_token_ids for r in traces["vllm"][label]]


def test_a_synthetic_model_draws_prompt_ids_from_its_shared_tokenizer_not_its_embedding_table(tiny_model_path):
    """Llama-3.2-1B shapes have a 128k-row embedding table; the builtin tokenizer both backends load is far smaller.
    PyTorch drew ids below the table's size and vLLM below the tokenizer's: two traces for one file."""
    from gpu_ops.backends.pytorch import PytorchBackend
    from gpu_ops.prompts import load_tokenizer

    tok = load_tokenizer("synthetic:llama-3.2-1b")
    backend = PytorchBackend()
    backend.tokenizer = tok
    backend.model = SimpleNamespace(config=SimpleNamespace(vocab_size=128256))
    assert backend.vocab_size == len(tok) < 128256
    spec = dict(SPEC, model="synthetic:llama-3.2-1b")
    traces = cmp.planned_traces({b: parse_config(cmp.backend_data(spec, b)) for b in ("pytorch", "vllm")})
    ids = [i for r in next(iter(traces["pytorch"].values())) for i in r.prompt_token_ids]
    assert max(ids) < len(tok)


def test_first_difference_names_the_request_and_field():
    a = [SimpleNamespace(prompt_token_ids=[1, 2], arrival_s=0.0, max_new_tokens=8, min_new_tokens=8)] * 2
    b = [a[0], SimpleNamespace(prompt_token_ids=[1, 2], arrival_s=0.5, max_new_tokens=8, min_new_tokens=8)]
    assert cmp.first_difference(a, b) == "request 1: arrival offset differ, 0.0 vs 0.5"
    assert cmp.first_difference(a, a) is None and cmp.first_difference(a, a[:1]) == "2 vs 1 requests"


@pytest.mark.parametrize("backends", ["pytorch", "pytorch,pytorch"])
def test_compare_needs_two_different_backends(tmp_path, backends, capsys):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    assert main(["compare", str(path), "--backends", backends, "--out", str(tmp_path / "out")]) == 2
    assert "--backends: give two or more different backends" in capsys.readouterr().err


def test_the_gpu_compare_file_starts_the_engine_the_gpu_campaign_warmed():
    """The warm-campaign stage times compare's vLLM start as the warm-cache start: it must be the same engine."""
    from pathlib import Path

    from gpu_ops.config import load_config
    from gpu_ops.engines import engine_identity
    from gpu_ops.strict_yaml import read_yaml

    examples = Path(__file__).resolve().parents[2] / "examples"
    campaign = load_config(examples / "campaign-gpu" / "llama-1b-vllm.yaml")
    compare = parse_config(cmp.backend_data(read_yaml(examples / "compare" / "pytorch-vllm-gpu.yaml"), "vllm"))
    assert {engine_identity(p.config) for p in campaign.expand()} == {engine_identity(compare)}


def test_compare_shows_each_backends_blocking_checks_and_exits_non_zero_when_one_failed(
    tmp_path, monkeypatch, capsys, tiny_model_path
):
    """On the H100 (docs/benchmarks §23) compare printed a J/token table from results that failed their blocking
    checks and exited 0. Each row now says how its backend's checks went, and a failure makes the exit code 1, as in
    `run`. Here a foreign process sits on the second backend's (fake) GPU; both are measured with PyTorch on the CPU."""
    from gpu_ops.runner import run_experiment
    from tests.fake_nvml import FakeGpu, FakeNVML

    def measure(configs, root, pool, say, nvml):
        out = {}
        for backend, cfg in configs.items():
            nvml = FakeNVML([FakeGpu(pids=[1] if backend == "vllm" else [])])  # pid 1 is not ours
            batching = cfg.batching.model_copy(update={"strategy": "static"})  # vLLM batches as PyTorch
            pytorch = cfg.model_copy(update={"backend": "pytorch", "batching": batching})
            out[backend] = run_experiment(pytorch, root, nvml=nvml)
        return out

    monkeypatch.setattr(cmp, "_measure_each", measure)
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    code = main(["compare", str(path), "--backends", "pytorch,vllm", "--out", str(tmp_path / "out"), "-q"])
    out = capsys.readouterr()
    assert code == 1, out.err
    import pandas as pd

    checks = dict(zip(*pd.read_csv(tmp_path / "out" / "compare.csv")[["backend", "checks"]].to_numpy().T))
    assert checks["vllm"].startswith("failed: ") and "no_foreign_gpu_process" in checks["vllm"]
    assert "no_foreign_gpu_process" not in checks["pytorch"]  # each row shows its own backend's checks
    assert f"vllm: {checks['vllm'].removeprefix('failed: ')}" in out.err.splitlines()[-1]
    assert out.err.splitlines()[-1].startswith("error: blocking checks failed: ")
    assert checks["vllm"] in out.out  # the printed table


def test_compare_keeps_every_engine_in_a_process_of_its_own_whatever_the_placement_variable_says(monkeypatch):
    """Inline, PyTorch's CUDA context would stay open in the measuring process while vLLM measures its idle baseline
    (the H100 read 124.3 W for it, issue #26); compare's pool places engines in processes even when told otherwise."""
    from gpu_ops.engines import EnginePool

    monkeypatch.setenv("LEM_ENGINE_PLACEMENT", "inline")
    spec = parse_config(cmp.backend_data(SPEC, "pytorch"))
    assert EnginePool(placement="process").placement(spec, uses_cuda=True) == "process"
    assert EnginePool().placement(spec, uses_cuda=True) == "inline"  # a run's own pool does as told

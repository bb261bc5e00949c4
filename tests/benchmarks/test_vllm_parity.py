"""The parity benchmark's fairness: both sides get the same engine arguments with the prefix cache off, rounds
alternate which side goes first, the priming round is not counted, and a stopped run keeps its finished rounds.
(The benchmark itself ran end to end on vLLM's CPU build through the ledger: docs/benchmarks §8a.)"""

import argparse
import json
import os

import pytest
import yaml

from benchmarks import vllm_parity as V


def args(tmp_path, **over) -> argparse.Namespace:
    base = dict(model="builtin:micro-llama", dtype="bf16", prompts=8, input_len=16, output_len=8, max_num_seqs=8,
                max_model_len=64, gpu_memory_utilization=None, enforce_eager=True, rounds=4, warmup=0, prime=True,
                child_timeout=60.0, out=str(tmp_path))  # fmt: skip
    return argparse.Namespace(**{**base, **over})


def test_rounds_alternate_and_the_priming_round_is_not_counted(tmp_path, monkeypatch):
    calls = []

    def side(name, tok_s):
        def run(cfg_path, out, round_name, *rest):
            calls.append((round_name, name))
            return {"exit_code": 0, "wall_s": 1.0, "tok_s": tok_s}

        return run

    monkeypatch.setattr(V, "ours_round", side("ours", 110.0))
    monkeypatch.setattr(V, "theirs_round", side("theirs", 100.0))
    assert V.orchestrate(args(tmp_path)) == 0
    assert [c[1] for c in calls] == ["ours", "theirs", "theirs", "ours"] * 2 + ["ours", "theirs"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["series"]["ratio"] == [pytest.approx(1.1)] * 4  # prime not among them
    assert [r["round"] for r in result["rounds"]] == [f"round-{i:02d}" for i in range(4)]
    ours = V.experiment(args(tmp_path))
    assert ours["vllm"]["enable_prefix_caching"] is False and ours["cycles"] == 1 and ours["warmup_requests"] == 0


def test_a_side_that_failed_leaves_its_round_out_of_the_ratios(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "ours_round", lambda *a: {"exit_code": 0, "wall_s": 1.0, "tok_s": 100.0})
    fails = iter([None, 100.0, 100.0])
    monkeypatch.setattr(V, "theirs_round", lambda *a: {"exit_code": 1, "wall_s": 1.0, "tok_s": next(fails)})
    V.orchestrate(args(tmp_path, rounds=3, prime=False))
    result = json.loads((tmp_path / "result.json").read_text())
    assert len(result["series"]["ratio"]) == 2 and result["rounds"][0]["ratio"] is None


vllm = pytest.importorskip("vllm") if os.environ.get("LEM_REQUIRE_SERVICES") != "1" else __import__("vllm")


def test_vllm_bench_gets_the_engine_arguments_our_backend_uses(tmp_path):
    from gpu_ops.backends.vllm import engine_kwargs
    from gpu_ops.config import load_config
    from gpu_ops.models import resolve_model

    a = args(tmp_path, gpu_memory_utilization=0.05)
    path = tmp_path / "ours.yaml"
    path.write_text(yaml.safe_dump(V.experiment(a)))
    cfg = load_config(path)
    ours = engine_kwargs(cfg, resolve_model(cfg.model))
    theirs = V.bench_args(path, tmp_path / "t.json", warmup=0)
    pairs = {f: v for f, v in zip(theirs, theirs[1:] + [""]) if f.startswith("--") and not v.startswith("--")}
    for flag, key in (("--model", "model"), ("--tokenizer", "tokenizer"), ("--dtype", "dtype"),
                      ("--max-num-seqs", "max_num_seqs"), ("--max-model-len", "max_model_len"),
                      ("--gpu-memory-utilization", "gpu_memory_utilization"), ("--seed", "seed")):  # fmt: skip
        assert pairs[flag] == str(ours[key]), flag
    assert ours["enable_prefix_caching"] is False and "--no-enable-prefix-caching" in theirs
    assert ours["enforce_eager"] is True and "--enforce-eager" in theirs
    assert (pairs["--num-prompts"], pairs["--random-input-len"], pairs["--random-output-len"]) == ("8", "16", "8")

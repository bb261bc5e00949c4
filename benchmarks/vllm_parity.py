"""Our vLLM backend vs vLLM's own `vllm bench throughput`, the same workload side by side in one run.

Both sides: random token prompts of --input-len, exactly --output-len new tokens (EOS ignored), --prompts
requests at once, the same engine arguments (model, dtype, max_model_len, max_num_seqs, memory share,
eager mode, seed). Rounds alternate (ours, theirs, ours, ...); each side's median output tokens/s is
compared. Goal: ours / theirs >= 0.97. Ours is measured over the energy meter's window (its sampler
thread running), so the ratio includes the meter's overhead.

    python benchmarks/vllm_parity.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path


def ours(args, out: Path) -> list[float]:
    from gpu_ops.config import parse_config
    from gpu_ops.runner import run_experiment

    cfg = parse_config({
        "name": "parity", "model": args.model, "backend": "vllm", "precision": args.dtype, "seed": 0,
        "max_input_tokens": args.input_len, "max_output_tokens": args.output_len, "min_output_tokens": args.output_len,
        "prompts": {"source": "random", "count": args.prompts, "random": {"input_len": args.input_len}},
        "batching": {"batch_size": args.prompts}, "cycles": args.cycles, "warmup_requests": args.prompts, "cooldown_s": 0,
        "energy": {"idle_baseline_s": 0},
        "vllm": {"gpu_memory_utilization": args.gpu_memory_utilization, "enforce_eager": args.enforce_eager,
                 "max_model_len": args.input_len + args.output_len + 16},
    })
    t = run_experiment(cfg, out).tables
    return t.cycles.tokens_per_s.tolist()


def theirs(args, model_path: str, out: Path) -> float:
    from vllm.benchmarks import throughput as T
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    p = FlexibleArgumentParser()
    T.add_cli_args(p)
    result = out / "theirs.json"
    argv = ["--model", model_path, "--dtype", {"bf16": "bfloat16", "fp32": "float32"}[args.dtype], "--seed", "0",
            "--dataset-name", "random", "--random-input-len", str(args.input_len), "--random-output-len", str(args.output_len),
            "--random-range-ratio", "0", "--num-prompts", str(args.prompts), "--num-warmups", str(args.prompts),
            "--max-model-len", str(args.input_len + args.output_len + 16), "--max-num-seqs", str(args.prompts),
            "--gpu-memory-utilization", str(args.gpu_memory_utilization), "--output-json", str(result)]
    if args.enforce_eager:
        argv.append("--enforce-eager")
    T.main(p.parse_args(argv))
    r = json.loads(result.read_text())
    return r["num_requests"] * args.output_len / r["elapsed_time"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:small-llama")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=1, help="measured cycles per round of ours (1: each side measures one pass per engine)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.2)
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()

    from gpu_ops.models import resolve_model

    model_path = str(resolve_model(args.model).path)
    ours_tps, theirs_tps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            ours_tps += ours(args, Path(tmp) / f"ours-{i}")
            theirs_tps.append(theirs(args, model_path, Path(tmp)))
            print(f"round {i}: ours {ours_tps[-args.cycles:]} tok/s; theirs {theirs_tps[-1]:.1f} tok/s", flush=True)
    o, t = statistics.median(ours_tps), statistics.median(theirs_tps)
    print(f"\nworkload: {args.model} {args.dtype}, {args.prompts} prompts x {args.input_len} in / {args.output_len} out, "
          f"max_num_seqs {args.prompts}, eager={args.enforce_eager}")
    print(f"ours   (llm-energy-measure vllm backend, meter on): median {o:.1f} output tok/s over {len(ours_tps)} cycles")
    print(f"theirs (vllm bench throughput):                      median {t:.1f} output tok/s over {len(theirs_tps)} runs")
    ratio = o / t
    print(f"ratio ours/theirs = {ratio:.3f} (goal >= 0.97): {'PASS' if ratio >= 0.97 else 'FAIL'}")
    return 0 if ratio >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())

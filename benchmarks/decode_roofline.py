"""Decode throughput and J/token at bs1 and bs64, PyTorch eager vs compiled static cache, and vLLM, as a share of
the HBM-bandwidth roofline (weight bytes / bandwidth): the bandwidth measured by a copy, and the peak of the GPU's
hardware profile (gpu_ops/hardware), which the estimates' roofline uses. Each variant is a full engine run (idle
baseline, warm-up window holding compilation, >= 3 measured cycles).

    python benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b --out results/roofline
    python benchmarks/decode_roofline.py --only pytorch-compiled-bs1,vllm-bs1     # bs1 side by side
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gpu_ops.config import parse_config
from gpu_ops.estimate import BYTES_PER_WEIGHT
from gpu_ops.hardware import resolve
from gpu_ops.runner import run_experiment


def measured_bandwidth_gbs() -> float | None:
    """Device-to-device copy of 2 GiB; bytes read + written over time."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    a.random_()
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1000)
    times.sort()
    return 2 * n / times[len(times) // 2] / 1e9


VARIANTS = (
    "pytorch-eager-bs1",
    "pytorch-eager-bs64",
    "pytorch-compiled-bs1",
    "pytorch-compiled-bs64",
    "vllm-bs1",
    "vllm-bs64",
)


def variant(name: str, model: str, out_tokens: int, count: int, cycles: int) -> dict:
    backend, *kind, bs = name.split("-")
    bs = int(bs.removeprefix("bs"))
    data = {
        "name": f"roofline-{name}",
        "model": model,
        "backend": backend,
        "precision": "bf16",
        "device": "auto",
        "max_input_tokens": 128,
        "max_output_tokens": out_tokens,
        "min_output_tokens": out_tokens,
        "prompts": {"source": "random", "count": count, "random": {"input_len": 128}},
        "batching": {"batch_size": bs},
        "cycles": cycles,
        "warmup_requests": bs,
        "cooldown_s": 0,
        "energy": {"idle_baseline_s": 2},
    }
    if backend == "pytorch":
        compiled = kind == ["compiled"]
        data["batching"]["strategy"] = "static"
        data["pytorch"] = {"static_cache": compiled, "torch_compile": compiled}
    else:
        data["vllm"] = {"gpu_memory_utilization": 0.3, "max_model_len": 128 + out_tokens + 16}
    return data


def parameters(info, cfg) -> int:
    """Parameter count: the PyTorch backend reports it; for vLLM it is computed from the model's architecture."""
    if "backend_parameters" in info and info["backend_parameters"] == info["backend_parameters"]:
        return int(info["backend_parameters"])
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from gpu_ops.models import resolve_model

    source = resolve_model(cfg.model)
    if source.architecture:
        arch = dict(source.architecture)
        config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    else:
        config = AutoConfig.from_pretrained(str(source.path))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="synthetic:llama-3.2-1b")
    ap.add_argument("--out", default="results/roofline")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument(
        "--bs1-count", type=int, nargs=2, default=[3, 16], help="requests per cycle at bs1: eager, compiled/vLLM"
    )
    ap.add_argument("--bs64-batches", type=int, default=4, help="batches of 64 per cycle")
    ap.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    args = ap.parse_args()
    rows = []
    for name in [v for v in args.only.split(",") if v]:
        if name not in VARIANTS:
            ap.error(f"--only: unknown variant '{name}'; choose from {', '.join(VARIANTS)}")
        bs = int(name.rsplit("bs", 1)[1])
        compiled = "eager" not in name
        # enough requests for windows of several seconds (>= 10 counter updates; cross-check stable)
        count = (args.bs1_count[1] if compiled else args.bs1_count[0]) if bs == 1 else bs * args.bs64_batches
        cfg = parse_config(variant(name, args.model, args.tokens, count, args.cycles))
        t0 = time.time()
        outcome = run_experiment(cfg, Path(args.out), progress=lambda m: print(m, file=sys.stderr, flush=True))
        t = outcome.tables
        p = t.summary["sweep_points"][0]
        info = t.sweep_points.iloc[0]
        weight_bytes = parameters(info, cfg) * BYTES_PER_WEIGHT[cfg.precision]
        tpot = p["tpot_mean_s_mean"]
        decode_tok_s = bs / tpot if tpot else None
        rows.append(
            {
                "variant": cfg.name,
                "batch_size": bs,
                "compiled": compiled,
                "cycles": p["n_cycles"],
                "tokens_per_s": p["tokens_per_s_mean"],
                "decode_tok_s": decode_tok_s,
                "j_per_token": p["j_per_token_mean"],
                "j_per_token_ci95": p["j_per_token_ci95"],
                "j_per_token_cv": p["j_per_token_cv"],
                "net_j_per_token": p["net_j_per_token_mean"],
                "avg_power_w": p["avg_power_w_mean"],
                "warmup_s": t.summary["warmup_s"].get("default"),
                "weight_bytes": weight_bytes,
                "hardware": t.summary["hardware"],
                "cross_check_worst": float(t.cycles.cross_check_rel_diff.abs().max()),
                "folder": str(outcome.folder),
                "wall_s": time.time() - t0,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    bw = measured_bandwidth_gbs()  # after the runs: its buffers must not shrink a vLLM engine's memory share
    for r in rows:
        r["roofline_decode_tok_s"] = bw * 1e9 / r["weight_bytes"] * r["batch_size"] if bw else None
        r["share_of_roofline"] = r["decode_tok_s"] / r["roofline_decode_tok_s"] if bw and r["decode_tok_s"] else None
        peak = resolve(r["hardware"]).bandwidth_gbs  # None: a GPU without a standard profile
        r["profile_bandwidth_gbs"] = peak
        r["share_of_peak_roofline"] = (
            r["decode_tok_s"] * r["weight_bytes"] / r["batch_size"] / (peak * 1e9)
            if (peak and r["decode_tok_s"])
            else None
        )
    print(f"\nmeasured copy bandwidth: {bw:.0f} GB/s" if bw else "\nno GPU: roofline not computed")
    if rows and rows[0]["profile_bandwidth_gbs"]:
        print(f"profile {rows[0]['hardware']}: peak bandwidth {rows[0]['profile_bandwidth_gbs']:.0f} GB/s")
    print(
        f"{'variant':<26}{'tok/s':>10}{'decode tok/s':>14}{'J/token':>10}{'CV':>8}{'W':>8}{'warm-up s':>11}"
        f"{'roofline %':>12}{'of peak %':>11}"
    )
    for r in rows:

        def f(v, fmt):
            return format(v, fmt) if v is not None and v == v else "n/a".rjust(int(fmt.split(".")[0]))

        print(
            f"{r['variant']:<26}{f(r['tokens_per_s'], '10.1f')}{f(r['decode_tok_s'], '14.1f')}"
            f"{f(r['j_per_token'], '10.4f')}"
            f"{f(r['j_per_token_cv'], '8.3f')}{f(r['avg_power_w'], '8.1f')}{f(r['warmup_s'], '11.1f')}"
            f"{f(r['share_of_roofline'] * 100 if r['share_of_roofline'] else None, '12.1f')}"
            f"{f(r['share_of_peak_roofline'] * 100 if r['share_of_peak_roofline'] else None, '11.1f')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

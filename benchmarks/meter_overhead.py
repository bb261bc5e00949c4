"""What the energy meter costs the measured work: throughput with the meter on vs off, paired rounds on one loaded
model or engine, in one process.

- on: one cycle exactly as a run measures it (gpu_ops.measure.run_cycle: the sampler process running, the window's
  counter reads at its edges); tokens / window length.
- off: the same `backend.run` with no meter at all; tokens / its wall time (after a device sync).
Each round runs both, and which goes first alternates. With `--control`, each round also runs "off" a second time (the
three arms in rotating order): the off/off ratio is an A/A control, the host's own round-to-round swing.

Judged as statistics (#27), not by a round's minimum (the host alone swings a round by more than the goal): the median
paired ratio and its percentile-bootstrap 95 % CI (benchmarks.decision.bootstrap_interval, seed 0). Met when the median
is within ±0.5 % of 1 and the CI's lower end is >= 0.99 (it rules out a cost above 1 %); fewer than 10 rounds are not
evaluable. The A/A control is judged by the same rule: where it fails, the host is too noisy to judge the meter.
Targets: benchmarks/targets/meter-overhead.yaml (the CI) and meter-overhead-median.yaml (the median).

    python benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --rounds 10 \
        --compiled
    python benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b --batch-size 256 \
        --prompts 1024 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="pytorch", choices=["pytorch", "vllm"])
    ap.add_argument("--model", default="builtin:tiny-llama")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=None, help="requests per round (default: 2 batches)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sample-hz", type=float, default=None, help="sampling rate (default: the config default)")
    ap.add_argument(
        "--compiled", action="store_true", help="PyTorch: static cache + torch.compile (less host noise on a GPU)"
    )
    ap.add_argument("--control", action="store_true", help="add a second meter-off arm: the A/A noise floor")
    args = ap.parse_args()

    from gpu_ops.backends import get_backend
    from gpu_ops.backends.pytorch import resolve_device
    from gpu_ops.config import parse_config
    from gpu_ops.energy import build_meter
    from gpu_ops.measure import _requests, run_cycle
    from gpu_ops.prompts import build_prompts

    data = {
        "name": "meter-overhead",
        "model": args.model,
        "backend": args.backend,
        "precision": args.precision
        or ("bf16" if args.model.startswith("synthetic") or args.backend == "vllm" else "fp32"),
        "max_input_tokens": 128,
        "max_output_tokens": args.tokens,
        "min_output_tokens": args.tokens,
        "prompts": {"source": "random", "count": args.prompts or args.batch_size * 2, "random": {"input_len": 128}},
        "batching": {"batch_size": args.batch_size},
        "cooldown_s": 0,
        "energy": {"idle_baseline_s": 0},
    }
    if args.sample_hz:
        data["energy"]["sample_hz"] = args.sample_hz
    if args.backend == "pytorch":
        data["batching"]["strategy"] = "static"
        data["pytorch"] = {"static_cache": args.compiled, "torch_compile": args.compiled}
    else:
        data["vllm"] = {
            "max_model_len": 512,
            "gpu_memory_utilization": 0.5 if resolve_device(parse_config(data)).startswith("cuda") else None,
        }
    cfg = parse_config(data)
    backend = get_backend(args.backend)
    backend.load(cfg)
    prompts = build_prompts(cfg, backend.tokenizer, backend.vocab_size)
    backend.warmup(_requests(prompts, cfg, 0.0))
    use_cuda = resolve_device(cfg).startswith("cuda")
    rows = []
    with build_meter(cfg, use_cuda, sync=backend.sync) as meter:
        arms = ["on", "off"] + (["off2"] if args.control else [])
        for i in range(args.rounds):
            got = {}
            for mode in arms[i % len(arms) :] + arms[: i % len(arms)]:
                if mode == "on":
                    c = run_cycle(backend, meter, cfg, prompts, "overhead", i)
                    got["on"] = c.requests.output_tokens.sum() / c.window.duration_s
                else:
                    requests = _requests(prompts, cfg, 0.0)
                    backend.before_cycle()
                    backend.sync()
                    t0 = time.perf_counter()
                    delivered = backend.run(requests, lambda t0=t0: time.perf_counter() - t0)
                    backend.sync()
                    elapsed = time.perf_counter() - t0
                    records = backend.after_cycle(delivered).records
                    got[mode] = sum(r.output_tokens for r in records) / elapsed
            got["ratio"] = got["on"] / got["off"]
            control = ""
            if args.control:
                control = f"  off2 {got['off2']:10.1f} tok/s  off/off2 {got['off'] / got['off2']:.4f}"
            rows.append(got)
            print(
                f"round {i} ({arms[i % len(arms)]} first): on {got['on']:10.1f} tok/s  off "
                f"{got['off']:10.1f} tok/s  ratio {got['ratio']:.4f}{control}",
                flush=True,
            )
        hz = meter.sample_hz
        sampler = meter.sampler_kind if meter.measures_gpu else "none (no GPU)"
    backend.close()
    print(
        f"backend: {args.backend}  model: {args.model}  batch: {args.batch_size}  compiled: {args.compiled}  "
        f"sampling: {hz:.0f} Hz, sampler: {sampler}"
    )
    print(
        f"median tok/s: on {statistics.median(r['on'] for r in rows):.1f}, off "
        f"{statistics.median(r['off'] for r in rows):.1f}"
    )
    print(judged("paired ratio on/off", [r["ratio"] for r in rows]))
    if args.control:
        print(judged("A/A control off/off2", [r["off"] / r["off2"] for r in rows]))
    return 0


MIN_ROUNDS = 10
MEDIAN_WITHIN = 0.005
COST_RULED_OUT = 0.99


def verdict(ratios: list[float]) -> tuple[float, float, float, str]:
    """(median, CI low, CI high, verdict) of paired ratios: 'PASS' when the median is within MEDIAN_WITHIN of 1 and
    the bootstrap CI's lower end is at least COST_RULED_OUT; 'not evaluable' under MIN_ROUNDS rounds."""
    from benchmarks.decision import bootstrap_interval

    med = statistics.median(ratios)
    low, high = bootstrap_interval(ratios, "median", 0.95, 10_000, 0)
    if len(ratios) < MIN_ROUNDS:
        return med, low, high, f"not evaluable (fewer than {MIN_ROUNDS} rounds)"
    ok = abs(med - 1.0) <= MEDIAN_WITHIN and low >= COST_RULED_OUT
    return med, low, high, "PASS" if ok else "FAIL"


def judged(name: str, ratios: list[float]) -> str:
    """One summary line; `median deviation` is what meter-overhead-median.yaml reads."""
    med, low, high, result = verdict(ratios)
    return (
        f"{name} over {len(ratios)} rounds: median {med:.4f}, bootstrap 95 % CI {low:.4f}-{high:.4f}, range "
        f"{min(ratios):.4f}-{max(ratios):.4f}; median deviation {med - 1:+.4f} (goal: median within "
        f"±{MEDIAN_WITHIN:.1%}, CI lower end >= {COST_RULED_OUT}): {result}"
    )


if __name__ == "__main__":
    sys.exit(main())

"""What the energy meter costs the measured work: throughput with the meter on vs off, paired rounds on one loaded
model or engine, in one process.

- on: one cycle exactly as a run measures it (gpu_ops.measure.run_cycle: the sampler process running, the window's
  counter reads at its edges); tokens / window length.
- off: the same `backend.run` with no meter at all; tokens / its wall time (after a device sync).
Each round runs both, and which goes first alternates. Reported: each round's paired ratio on/off, their median,
IQR and minimum. Goal on a GPU at the default sampling rate: median >= 0.995 and no round below 0.99.
With `--control`, each round also runs "off" a second time (the three arms in rotating order): the off/off ratio is
an A/A control, the host's own round-to-round swing, which no meter could beat; on/off outside its range is a cost.

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
        hz = 1.0 / meter.sample_period_s
        sampler = meter.sampler_kind if meter.measures_gpu else "none (no GPU)"
    backend.close()
    ratios = sorted(r["ratio"] for r in rows)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    med = statistics.median(ratios)
    print(
        f"backend: {args.backend}  model: {args.model}  batch: {args.batch_size}  compiled: {args.compiled}  "
        f"sampling: {hz:.0f} Hz, sampler: {sampler}"
    )
    print(
        f"median tok/s: on {statistics.median(r['on'] for r in rows):.1f}, off "
        f"{statistics.median(r['off'] for r in rows):.1f}"
    )
    print(
        f"paired ratio on/off over {len(rows)} rounds: median {med:.4f}, IQR {q[0]:.4f}-{q[2]:.4f}, min "
        f"{ratios[0]:.4f}, max {ratios[-1]:.4f} (goal: median >= 0.995, min >= 0.99): "
        f"{'PASS' if med >= 0.995 and ratios[0] >= 0.99 else 'FAIL'}"
    )
    if args.control:
        aa = sorted(r["off"] / r["off2"] for r in rows)
        qa = statistics.quantiles(aa, n=4) if len(aa) >= 2 else [aa[0]] * 3
        print(
            f"A/A control off/off2 over {len(rows)} rounds: median {statistics.median(aa):.4f}, IQR {qa[0]:.4f}-"
            f"{qa[2]:.4f}, min {aa[0]:.4f}, max {aa[-1]:.4f} (the host's swing with no meter in either arm)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

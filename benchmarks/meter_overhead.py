"""Throughput with the energy meter on (power sampler thread + window edges) vs off, alternating in one
process on one loaded model. Prints the ratio of medians; the goal on a GPU is >= 0.99.

    python benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from gpu_ops.backends import get_backend
from gpu_ops.backends.pytorch import resolve_device
from gpu_ops.config import parse_config
from gpu_ops.energy import build_meter
from gpu_ops.prompts import build_prompts
from gpu_ops.runner import _requests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:tiny-llama")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--compiled", action="store_true", help="static cache + torch.compile (less host noise on a GPU)")
    args = ap.parse_args()
    cfg = parse_config({
        "name": "meter-overhead", "model": args.model, "precision": args.precision or ("bf16" if args.model.startswith("synthetic") else "fp32"),
        "max_input_tokens": 128, "max_output_tokens": args.tokens, "min_output_tokens": args.tokens,
        "prompts": {"source": "random", "count": args.batch_size * 2, "random": {"input_len": 128}},
        "batching": {"strategy": "static", "batch_size": args.batch_size},
        "pytorch": {"static_cache": args.compiled, "torch_compile": args.compiled},
    })
    backend = get_backend("pytorch")
    backend.load(cfg)
    prompts = build_prompts(cfg, backend.tokenizer, backend.vocab_size)
    backend.warmup(_requests(prompts, cfg, 0.0))
    use_cuda = resolve_device(cfg).startswith("cuda")
    results: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(args.rounds):
        for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
            reqs = _requests(prompts, cfg, 0.0)
            if mode == "on":
                with build_meter(cfg, use_cuda, sync=backend.sync) as meter:
                    meter.begin_window("run")
                    t0 = time.perf_counter()
                    records = backend.run(_requests(prompts, cfg, meter.now()), meter.now)
                    meter.end_window("run")
                    elapsed = time.perf_counter() - t0
            else:
                backend.sync()
                t0 = time.perf_counter()
                records = backend.run(reqs, lambda: time.perf_counter() - t0)
                backend.sync()
                elapsed = time.perf_counter() - t0
            tok_s = sum(r.output_tokens for r in records) / elapsed
            results[mode].append(tok_s)
            print(f"round {i} meter {mode:<3}: {tok_s:10.1f} tok/s", flush=True)
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print(f"device: {backend.info['device']}  model: {args.model}  batch: {args.batch_size}  compiled: {args.compiled}")
    print(f"spread: on {min(results['on']):.1f}-{max(results['on']):.1f}, off {min(results['off']):.1f}-{max(results['off']):.1f} tok/s")
    print(f"median tok/s meter on {on:.1f}, off {off:.1f}, ratio on/off = {on / off:.4f}")
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

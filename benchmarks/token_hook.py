"""What the per-token timestamp hook costs: PyTorch's `generate` streamer copies each step's tokens to the host (a
device sync per step). Paired rounds on one loaded, compiled model: the hook on vs off (pytorch.token_timestamps),
each a measured cycle with the meter running, the order alternating. Reported: per-round ratios of throughput and
J/token (off / on), their medians, and each arm's J/token CV across rounds.

    python benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 --prompts 256 --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:tiny-llama")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--eager", action="store_true", help="no static cache / torch.compile")
    args = ap.parse_args()

    from gpu_ops.backends import get_backend
    from gpu_ops.backends.pytorch import resolve_device
    from gpu_ops.config import parse_config
    from gpu_ops.energy import build_meter
    from gpu_ops.measure import _requests, run_cycle
    from gpu_ops.prompts import build_prompts

    def config(hook: bool):
        return parse_config(
            {
                "name": "token-hook",
                "model": args.model,
                "precision": "bf16" if args.model.startswith("synthetic") else "fp32",
                "max_input_tokens": 128,
                "max_output_tokens": args.tokens,
                "min_output_tokens": args.tokens,
                "prompts": {"source": "random", "count": args.prompts, "random": {"input_len": 128}},
                "batching": {"strategy": "static", "batch_size": args.batch_size},
                "cooldown_s": 0,
                "energy": {"idle_baseline_s": 0},
                "pytorch": {"static_cache": not args.eager, "torch_compile": not args.eager, "token_timestamps": hook},
            }
        )

    arms = {"on": config(True), "off": config(False)}
    backend = get_backend("pytorch")
    backend.load(arms["on"])
    prompts = build_prompts(arms["on"], backend.tokenizer, backend.vocab_size)
    backend.warmup(_requests(prompts[: args.batch_size], arms["on"], 0.0))
    rows = []
    with build_meter(arms["on"], resolve_device(arms["on"]).startswith("cuda"), sync=backend.sync) as meter:
        for i in range(args.rounds):
            got = {}
            for arm in ("on", "off") if i % 2 == 0 else ("off", "on"):
                assert backend.load(arms[arm]) is False  # a run-time option: the compiled model is reused
                c = run_cycle(backend, meter, arms[arm], prompts, f"hook-{arm}", i)
                tokens = c.requests.output_tokens.sum()
                got[arm] = (
                    tokens / c.window.duration_s,
                    c.window.gpu_energy_j / tokens if c.window.gpu_energy_j else None,
                )
            rows.append(got)
            print(
                f"round {i}: hook on {got['on'][0]:9.1f} tok/s {got['on'][1] or float('nan'):.5f} J/token | "
                f"off {got['off'][0]:9.1f} tok/s {got['off'][1] or float('nan'):.5f} J/token",
                flush=True,
            )
    backend.close()
    tps = [r["off"][0] / r["on"][0] for r in rows]
    print(f"throughput off/on per round: median {statistics.median(tps):.4f} (min {min(tps):.4f}, max {max(tps):.4f})")
    if all(r["on"][1] and r["off"][1] for r in rows):
        jpt = [r["off"][1] / r["on"][1] for r in rows]
        print(f"J/token off/on per round: median {statistics.median(jpt):.4f} (min {min(jpt):.4f}, max {max(jpt):.4f})")
        for arm in ("on", "off"):
            vals = [r[arm][1] for r in rows]
            print(
                f"J/token CV with the hook {arm}: {statistics.stdev(vals) / statistics.mean(vals):.4f} over "
                f"{len(vals)} rounds"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the per-token timestamp hook and `run --show-tokens` cost, on one loaded, compiled model.

PyTorch's `generate` streamer copies each step's tokens to the host (a device sync per step). The arms, each a
measured cycle with the meter running, in an order that rotates from round to round:
- off: no hook (pytorch.token_timestamps: false);
- on: the hook (the default);
- display (with `--display`): the hook, and the token display process of `run --show-tokens` attached.
Reported: per-round paired ratios of throughput and J/token (off / on; with `--display` also on / display), their
medians and ranges, and each arm's J/token CV across rounds.

    python benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 --prompts 256 --rounds 6 --display
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
    ap.add_argument("--display", action="store_true", help="add the arm with `run --show-tokens`'s display")
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

    arms = {"off": config(False), "on": config(True)}
    if args.display:
        arms["display"] = arms["on"]
    backend = get_backend("pytorch")
    backend.load(arms["on"])
    prompts = build_prompts(arms["on"], backend.tokenizer, backend.vocab_size)
    display = None
    if args.display:  # started before the warm-up, which it watches, so its start-up is not inside a round
        from gpu_ops.display import TokenDisplay

        source = backend.source
        display = TokenDisplay(str(source.tokenizer_path or source.path or source.spec), args.batch_size)
        backend.token_display = display
    backend.warmup(_requests(prompts[: args.batch_size], arms["on"], 0.0))
    names = list(arms)
    rows = []
    with build_meter(arms["on"], resolve_device(arms["on"]).startswith("cuda"), sync=backend.sync) as meter:
        for i in range(args.rounds):
            got = {}
            for arm in names[i % len(names) :] + names[: i % len(names)]:
                assert backend.load(arms[arm]) is False  # a run-time option: the compiled model is reused
                backend.token_display = display if arm == "display" else None
                c = run_cycle(backend, meter, arms[arm], prompts, f"arm-{arm}", i)
                tokens = c.requests.output_tokens.sum()
                got[arm] = (
                    tokens / c.window.duration_s,
                    c.window.gpu_energy_j / tokens if c.window.gpu_energy_j else None,
                )
            rows.append(got)
            print(
                f"round {i}: "
                + " | ".join(f"{a} {got[a][0]:9.1f} tok/s {got[a][1] or float('nan'):.5f} J/token" for a in names),
                flush=True,
            )
    backend.token_display = None
    if display is not None:
        display.close()
    backend.close()
    pairs = [("off", "on", "the hook")] + ([("on", "display", "the display")] if args.display else [])
    for base, arm, what in pairs:
        tps = [r[base][0] / r[arm][0] for r in rows]
        print(
            f"{what}: throughput {base}/{arm} per round: median {statistics.median(tps):.4f} "
            f"(min {min(tps):.4f}, max {max(tps):.4f})"
        )
        if all(r[base][1] and r[arm][1] for r in rows):
            jpt = [r[base][1] / r[arm][1] for r in rows]
            print(
                f"{what}: J/token {base}/{arm} per round: median {statistics.median(jpt):.4f} "
                f"(min {min(jpt):.4f}, max {max(jpt):.4f})"
            )
    for arm in names:
        vals = [r[arm][1] for r in rows]
        if all(vals):
            cv = statistics.stdev(vals) / statistics.mean(vals)
            print(f"J/token CV, arm {arm}: {cv:.4f} over {len(vals)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())

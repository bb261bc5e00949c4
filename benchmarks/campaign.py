"""A 20-sweep-point campaign (batch size x batching strategy x decoder preset, 3 cycles each): the share of
wall time spent inside measured windows, i.e. how much of the machine time becomes measurements.
Goal on a GPU: >= 85 %.

    python benchmarks/campaign.py --model synthetic:llama-3.2-1b --precision bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpu_ops.config import parse_config
from gpu_ops.runner import run_experiment


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:tiny-llama")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batch-sizes", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    ap.add_argument(
        "--cooldown", type=float, default=0.2, help="seconds between cycles (a methodology choice, not overhead)"
    )
    ap.add_argument("--out", default="results/campaign")
    args = ap.parse_args()
    cfg = parse_config(
        {
            "name": "campaign-20",
            "model": args.model,
            "precision": args.precision,
            "max_input_tokens": 128,
            "max_output_tokens": args.tokens,
            "min_output_tokens": args.tokens,
            "prompts": {"source": "random", "count": args.prompts, "random": {"input_len": 64, "range_ratio": 0.5}},
            "cycles": 3,
            "warmup_requests": 8,
            "cooldown_s": args.cooldown,
            "energy": {"idle_baseline_s": 3},
            "sweep": {
                "batching.batch_size": args.batch_sizes,
                "batching.strategy": ["static", "sorted_static"],
                "decoder.preset": ["deterministic", "standard"],
            },
        }
    )
    assert len(cfg.expand()) == 20
    t0 = time.perf_counter()
    out = run_experiment(cfg, Path(args.out), progress=lambda m: None)
    wall = time.perf_counter() - t0
    w = out.tables.windows
    measured = float(w[w.kind == "cycle"].duration_s.sum())
    warm = float(w[w.kind == "warmup"].duration_s.sum())
    idle = float(w[w.kind.str.startswith("idle")].duration_s.sum())
    print(
        f"hardware: {out.tables.experiment.hardware.iloc[0]}  model: {args.model}  sweep points: "
        f"{out.tables.cycles.sweep_point.nunique()}"
    )
    print(
        f"wall {wall:.1f} s: measured windows {measured:.1f} s, warm-up {warm:.1f} s, idle baseline {idle:.1f} s, "
        f"other (load, cooldown, bookkeeping) {wall - measured - warm - idle:.1f} s"
    )
    cooldown = args.cooldown * len(w[w.kind == "cycle"])
    print(
        f"share of wall time inside measured windows: {measured / wall:.1%} (cooldown {cooldown:.1f} s of it by "
        f"choice; share of the time not spent cooling down: {measured / (wall - cooldown):.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU validation of the per-request energy attribution (docs/energy.md, "Per-request energy"; issue #32).

    python benchmarks/request_energy.py --out RUN_DIR                 # measures examples/request-energy/*.yaml
    python benchmarks/request_energy.py --folder RESULT_FOLDER --out RUN_DIR   # analyses a folder already measured
    python benchmarks/request_energy.py --latest --out RUN_DIR        # the newest folder of the ledger's GPU runs

Two claims, each with a target stated before the run:
- batch 1 (benchmarks/targets/request-energy-bs1.yaml): each request's attributed `energy_j` equals its measured
  energy, the counter-scaled power timeline over its own span (from the previous request's last token, or the window
  start, to its own last token), within 5 % (median over requests, bootstrap upper bound); the same with each
  request's own drawn output length (request-energy-bs1-mixed.yaml, output_lengths: uniform);
- batching (benchmarks/targets/request-energy-prefill.yaml): the mixed run's attributed prefill energy per prompt
  token agrees with the prefill-only phase run's energy per prompt token within their combined 95 % intervals
  (per cycle: |mixed - phase run| / combined interval <= 1).
Also printed: the requests' energy summing to each window, and the step-attributed part alone at batch 1.
Writes RUN_DIR/result.json (its `series`: bs1_rel_dev, prefill_gap_over_interval, ...) for the ledger's targets.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from gpu_ops.energy.meter import integrate
from gpu_ops.results import read_tables
from gpu_ops.stats import summarize

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples/request-energy/vllm-attribution.yaml"
RUNS = REPO / "docs/benchmarks/runs/request-energy"


def point(labels, *needles: str) -> str:
    """The sweep point whose label holds every needle (labels are `field=value,...`)."""
    found = [s for s in labels if all(n in s.split(",") for n in needles)]
    if len(found) != 1:
        raise SystemExit(f"expected one sweep point with {needles}, found {found}")
    return found[0]


def bs1_deviations(t, label: str) -> tuple[list[float], list[float], list[float]]:
    """Per request at batch 1: energy_j / measured - 1, (prefill + decode) / measured - 1; and per window the
    requests' sum / window energy - 1."""
    power = t.timeline.groupby("t_s", as_index=False).power_w.sum()
    tt, pp = power.t_s.to_numpy(), power.power_w.to_numpy()
    dev, steps_dev, sums = [], [], []
    windows = t.windows[(t.windows.kind == "cycle") & (t.windows.sweep_point == label)]
    for _, w in windows.iterrows():
        req = t.requests[(t.requests.sweep_point == label) & (t.requests.cycle == int(w.cycle))]
        req = req.sort_values("last_token_s")
        scale = w.gpu_energy_j / w.timeline_energy_j
        starts = np.concatenate([[w.start_s], req.last_token_s.to_numpy()[:-1]])
        for (_, r), a in zip(req.iterrows(), starts):
            measured = (integrate(tt, pp, a, r.last_token_s) or math.nan) * scale
            dev.append(r.energy_j / measured - 1)
            steps_dev.append((r.prefill_energy_j + r.decode_energy_j) / measured - 1)
        sums.append(req.energy_j.sum() / w.gpu_energy_j - 1)
    return dev, steps_dev, sums


def prefill_agreement(t, prefill_only: str, mixed: str) -> tuple[list[float], dict]:
    """Per cycle of the mixed run: |its attributed prefill J per prompt token - the prefill-only run's mean J per
    prompt token| / sqrt(ci_mixed^2 + ci_phase^2); and the two figures with their intervals."""
    cyc = t.cycles
    phase = cyc[cyc.sweep_point == prefill_only]
    phase_per_token = (phase.gross_energy_j / phase.input_tokens).tolist()
    req = t.requests[t.requests.sweep_point == mixed]
    per_cycle = req.groupby("cycle").apply(lambda g: g.prefill_energy_j.sum() / g.prompt_tokens.sum()).tolist()
    a, b = summarize(per_cycle), summarize(phase_per_token)
    combined = math.hypot(a["ci95"] or 0.0, b["ci95"] or 0.0)
    gaps = [abs(v - b["mean"]) / combined if combined else math.inf for v in per_cycle]
    mixed_cyc = cyc[cyc.sweep_point == mixed]
    share_attr = (req.groupby("cycle").prefill_energy_j.sum() / mixed_cyc.set_index("cycle").gross_energy_j).tolist()
    return gaps, {
        "mixed_prefill_j_per_prompt_token": a,
        "phase_run_j_per_prompt_token": b,
        "gap_over_combined_interval_of_means": abs(a["mean"] - b["mean"]) / combined if combined else None,
        "mixed_prefill_share_of_window": share_attr,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="run folder: results/ and result.json go here")
    ap.add_argument("--folder", type=Path, help="analyse this result folder instead of measuring")
    ap.add_argument("--latest", action="store_true", help=f"analyse the newest result folder under {RUNS}")
    args = ap.parse_args()
    folder = args.folder
    if args.latest:
        found = sorted(RUNS.glob("*/results/*/summary.json"))
        if not found:
            raise SystemExit(f"no result folder under {RUNS}: run the request-energy stage on a GPU first")
        folder = found[-1].parent
    if folder is None:
        results = args.out / "results"
        cmd = [sys.executable, "-m", "gpu_ops.cli", "run", str(EXAMPLE), "--out", str(results)]
        print("$", " ".join(cmd), flush=True)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # a failed blocking check still writes it
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise SystemExit(f"the run wrote no result folder (exit {done.returncode})")
        folder = Path(lines[-1])
        print(f"run exit {done.returncode}", flush=True)
    t = read_tables(folder)
    labels = sorted(t.sweep_points.sweep_point)
    drawn = [s for s in labels if "output_lengths=uniform" in s.split(",")]  # folders from before it have none
    bs1 = point([s for s in labels if s not in drawn], "batch_size=1")
    bs1_mixed = point(drawn, "batch_size=1") if drawn else None
    prefill_only = point(labels, "max_output_tokens=1")
    mixed = point(labels, "max_output_tokens=128")
    dev, steps_dev, sums = bs1_deviations(t, bs1)
    mixed_dev, _, mixed_sums = bs1_deviations(t, bs1_mixed) if bs1_mixed else ([], [], [])
    sums += mixed_sums
    gaps, detail = prefill_agreement(t, prefill_only, mixed)
    abs_dev = [abs(d) for d in dev]
    print(f"result folder: {folder}")
    print(
        f"batch 1: {len(dev)} requests; |energy_j / measured - 1| median {np.median(abs_dev):.4f}, max "
        f"{max(abs_dev):.4f}; steps only (prefill + decode) median {np.median(np.abs(steps_dev)):.4f}"
    )
    if mixed_dev:
        lengths = t.requests[t.requests.sweep_point == bs1_mixed].output_tokens
        print(
            f"batch 1, mixed output lengths ({lengths.min()}-{lengths.max()} tokens): {len(mixed_dev)} requests; "
            f"|energy_j / measured - 1| median {np.median(np.abs(mixed_dev)):.4f}, max {max(map(abs, mixed_dev)):.4f}"
        )
    print(f"requests' energy_j sum / window - 1, every window of batch 1: max |.| {max(map(abs, sums)):.2e}")
    a, b = detail["mixed_prefill_j_per_prompt_token"], detail["phase_run_j_per_prompt_token"]
    print(
        f"prefill J per prompt token: mixed (attributed) {a['mean']:.4g} ± {a['ci95']}, prefill-only run "
        f"{b['mean']:.4g} ± {b['ci95']}; per-cycle gap / combined interval {[round(g, 3) for g in gaps]}"
    )
    shares = [round(s, 4) for s in detail["mixed_prefill_share_of_window"]]
    print(f"mixed run: attributed prefill share of each window {shares}")
    all_sums = []
    for label in labels:
        for _, w in t.windows[(t.windows.kind == "cycle") & (t.windows.sweep_point == label)].iterrows():
            req = t.requests[(t.requests.sweep_point == label) & (t.requests.cycle == int(w.cycle))]
            all_sums.append(abs(req.energy_j.sum() - w.gpu_energy_j) / (w.energy_uncertainty_j or 1e-9))
    print(f"every window: |sum of requests - window| / window's ± at most {max(all_sums):.3g} (<= 1: within its ±)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(
        json.dumps(
            {
                "folder": str(folder),
                "series": {  # what the targets read (benchmarks.decision)
                    "bs1_rel_dev": abs_dev,
                    "bs1_mixed_rel_dev": [abs(d) for d in mixed_dev],
                    "bs1_steps_rel_dev": [abs(d) for d in steps_dev],
                    "window_sum_rel_dev": sums,
                    "window_sum_over_uncertainty": all_sums,
                    "prefill_gap_over_interval": [detail["gap_over_combined_interval_of_means"]],
                    "prefill_gap_per_cycle": gaps,
                },
                "prefill": detail,
            },
            indent=1,
            default=lambda v: None if isinstance(v, float) and math.isnan(v) else v,
        )
    )


if __name__ == "__main__":
    main()

"""How well the counter-vs-timeline tolerance fits the H200: every cycle window of the committed session-6 result
folders, its counter and timeline energy, the timeline's standard error σ (gpu_ops.energy.meter.timeline_sigma), the
difference in units of σ, and which windows the earlier sqrt rule and the current rule pass. If σ is right, |diff|/σ
has an RMS near 1 (below 1: σ is conservative) and rarely exceeds CROSS_CHECK_Z.

    python benchmarks/cross_check_calibration.py    # output: docs/benchmarks/raw/session6/cross_check_calibration.txt
"""

from __future__ import annotations

import math
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_ops.energy.meter import timeline_energy
from gpu_ops.energy.tolerance import (
    CROSS_CHECK_FLOOR,
    CROSS_CHECK_Z,
    LEGACY_CROSS_CHECK_SCALE,
    cross_check_tolerance,
    legacy_cross_check_tolerance,
    timeline_edge_error,
    timeline_sigma,
)

RAW = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "raw" / "session6"
LAGS_S = (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2)  # timeline shifted against the counter: is it a lag?
ARCHIVES = [
    "campaign-quarantine-llama-1b-pytorch.tgz",
    "vllm-streaming-poisson.tgz",
    "machine2/platform-raw-llama-1b-pytorch.tgz",
    "machine2/vllm-cli.tgz",
]


def main() -> None:
    rows, lag_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for archive in ARCHIVES:
            out = Path(tmp) / archive.replace("/", "_")
            with tarfile.open(RAW / archive) as tar:
                tar.extractall(out, filter="data")
            for summary in sorted(out.rglob("summary.json")):
                folder = summary.parent
                w = pd.read_parquet(folder / "windows.parquet")
                tl = pd.read_parquet(folder / "timeline.parquet")
                cycles = w[(w.kind == "cycle") & (w.gpu_energy_status == "measured")]
                for lag in LAGS_S:
                    shifted = [
                        (timeline_energy(tl, r.start_s + lag, r.end_s + lag) - r.gpu_energy_j) / r.gpu_energy_j
                        for r in cycles.itertuples()
                    ]
                    rms = math.sqrt(float(np.mean(np.square(shifted))))
                    lag_rows.append({"run": archive.split("/")[-1].removesuffix(".tgz"), "lag_s": lag, "rms_pct": rms})
                for r in cycles.itertuples():
                    sigma = timeline_sigma(tl, r.start_s, r.end_s)
                    diff = (r.timeline_energy_j - r.gpu_energy_j) / r.gpu_energy_j
                    edge = timeline_edge_error(tl, r.start_s, r.end_s, 0.1)  # the H200's power field: 100 ms
                    new = cross_check_tolerance(r.gpu_energy_j, r.energy_uncertainty_j, sigma, edge_j=edge)
                    old = legacy_cross_check_tolerance(r.duration_s, 0.1, CROSS_CHECK_FLOOR, LEGACY_CROSS_CHECK_SCALE)
                    rows.append(
                        {
                            "run": archive.split("/")[-1].removesuffix(".tgz"),
                            "sweep_point": str(r.sweep_point)[:40],
                            "cycle": int(r.cycle),
                            "window_s": round(r.duration_s, 2),
                            "counter_j": round(r.gpu_energy_j, 1),
                            "diff_pct": round(100 * diff, 2),
                            "sigma_pct": round(100 * sigma / r.gpu_energy_j, 2),
                            "z": round(diff * r.gpu_energy_j / sigma, 2) if sigma else math.nan,
                            "old_tol_pct": round(100 * old, 2),
                            "old_pass": abs(diff) <= old,
                            "tol_pct": round(100 * new, 2),
                            "pass": abs(diff) <= new,
                        }
                    )
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.to_string(index=False))
    lags = pd.DataFrame(lag_rows).pivot(index="run", columns="lag_s", values="rms_pct") * 100
    print(
        "\nRMS of (timeline - counter) / counter, %, with the timeline shifted by lag_s (a lag would show a minimum):"
    )
    print(lags.round(2).to_string())
    z = df.z.dropna().to_numpy()
    print(
        f"\n{len(df)} cycle windows of {df.run.nunique()} H200 runs: |diff|/σ RMS {math.sqrt(np.mean(z**2)):.2f}, "
        f"max {np.abs(z).max():.2f} (tolerance: {CROSS_CHECK_Z:g} σ + edges + counter ± + {CROSS_CHECK_FLOOR:.1%}); "
        f"old sqrt rule passed {int(df.old_pass.sum())}/{len(df)}, current rule {int(df['pass'].sum())}/{len(df)}"
    )


if __name__ == "__main__":
    main()

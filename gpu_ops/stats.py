"""Multi-cycle statistics per sweep point: mean, sample std, 95 % CI from the exact Student-t quantile, CV."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from gpu_ops.errors import UserError

IDENTITY = ("model", "backend", "hardware", "weights")
"""Columns that must agree inside one aggregate: mixing them would average different things."""

SUMMARISED = (
    "duration_s", "tokens_per_s", "requests_per_s", "gross_energy_j", "net_energy_j", "j_per_token", "net_j_per_token",
    "tokens_per_j", "j_per_request", "avg_power_w", "peak_power_w", "peak_memory_bytes", "ttft_mean_s", "ttft_p50_s",
    "ttft_p99_s", "tpot_mean_s", "tpot_p50_s", "tpot_p99_s", "itl_p50_s", "itl_p99_s", "e2e_mean_s", "e2e_p99_s",
    "goodput_req_per_s", "goodput_per_j", "prefill_energy_j", "decode_energy_j", "cross_check_rel_diff", "cpu_energy_j",
    "energy_uncertainty_j", "window_tail_s",
    "prefix_cache_hit_rate", "kv_cache_usage_peak", "preemptions", "spec_decode_acceptance_rate",  # ENGINE_METRICS
)
GPU_ENERGY = ("gross_energy_j", "net_energy_j", "j_per_token", "net_j_per_token", "tokens_per_j", "j_per_request",
              "avg_power_w", "goodput_per_j", "prefill_energy_j", "decode_energy_j", "cross_check_rel_diff")
"""Statistics that come from the GPU energy counter: missing for a sweep point with an unmeasured cycle, never
computed from the cycles that happened to be measured (that subset would rank as if it were the whole point)."""


def fmt_value(v, unit: str = "", scale: float = 1.0, digits: int = 4) -> str:
    """A summarised value for a terminal table: 'unmeasured' for a missing (None/NaN) value, never 0."""
    return "unmeasured" if v is None or v != v else f"{v * scale:.{digits}g}{unit}"


CI_MISSING = "n/a"


def fmt_ci(v, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    """' ± <95 % CI half-width>', or ' ± n/a' without one (a single cycle): a missing CI shows as missing, never ±0."""
    return f" ± {CI_MISSING}" if v is None or v != v else f" ± {v * scale:.{digits}g}{unit}"


def summarize(values) -> dict[str, float | int | None]:
    """n, mean, std (ddof=1), ci95 half-width = t(0.975, n-1) * std / sqrt(n), cv = std / mean."""
    x = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "cv": None}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None, "cv": None}
    std = float(x.std(ddof=1))
    ci = float(sps.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95": ci, "cv": std / abs(mean) if mean else None}


def check_homogeneous(cycles: pd.DataFrame, keys: tuple[str, ...] = ("sweep_point",)) -> None:
    for key, group in cycles.groupby(list(keys), dropna=False):
        for col in IDENTITY:
            if col in group and group[col].nunique(dropna=False) > 1:
                raise UserError(f"cannot aggregate sweep point {key}: mixed {col} values {sorted(group[col].astype(str).unique())}; "
                                "aggregate each model/backend/hardware/weights separately")


def sweep_point_statistics(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep point: identity columns, n_cycles, and <metric>_{mean,std,ci95,cv} for every metric."""
    if cycles.empty:
        return pd.DataFrame()
    check_homogeneous(cycles)
    rows = []
    for point, group in cycles.groupby("sweep_point", sort=True):
        row: dict = {"sweep_point": point, "n_cycles": len(group)}
        for col in IDENTITY + ("precision", "batch_size", "parallelism", "config_hash"):
            if col in group:
                row[col] = group[col].iloc[0]
        if "energy_status" in group:  # one unmeasured cycle makes the point's energy unmeasured
            unmeasured = group[group.energy_status != "measured"]
            row["energy_status"] = "unmeasured" if len(unmeasured) else "measured"
            row["unmeasured_reason"] = unmeasured.unmeasured_reason.iloc[0] if len(unmeasured) else None
        for metric in SUMMARISED:
            if metric in group:
                unmeasured = metric in GPU_ENERGY and row.get("energy_status") == "unmeasured"
                s = summarize([] if unmeasured else group[metric].tolist())
                for k in ("mean", "std", "ci95", "cv"):
                    row[f"{metric}_{k}"] = s[k]
        rows.append(row)
    return pd.DataFrame(rows)

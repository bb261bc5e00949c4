"""The leaderboard table: one row per sweep point and hardware, ranked views, provenance columns.

Defined here (no Dagster) so the platform's `leaderboard` asset and the CLI's `report` build the same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROVENANCE = ("partition_key", "raw_run_id", "raw_storage_id", "raw_data_version", "raw_code_version", "stats_code_version",
              "config_hash", "fingerprint_hash")
RANKS = {  # view -> (column, ascending)
    "rank_j_per_token": ("j_per_token_mean", True),
    "rank_tokens_per_j": ("tokens_per_j_mean", False),
    "rank_throughput": ("tokens_per_s_mean", False),
    "rank_ttft": ("ttft_p50_s_mean", True),
}
COLUMNS = ("experiment_key", "hardware", "sweep_point", "model", "backend", "weights", "precision", "batch_size", "parallelism", "gpu_count",
           "n_cycles",
           "energy_status", "unmeasured_reason", "j_per_token_mean", "j_per_token_ci95", "net_j_per_token_mean", "tokens_per_j_mean",
           "tokens_per_s_mean", "tokens_per_s_ci95", "ttft_p50_s_mean", "ttft_p99_s_mean", "tpot_mean_s_mean", "avg_power_w_mean",
           "j_per_request_mean", "goodput_req_per_s_mean", "cross_check_rel_diff_mean")


def build_leaderboard(stats: pd.DataFrame) -> pd.DataFrame:
    """Statistics of every partition -> one ranked table; synthetic weights flagged; unmeasured energy is not ranked (NaN)."""
    if stats.empty:
        return pd.DataFrame(columns=list(COLUMNS) + list(PROVENANCE) + list(RANKS) + ["flag"])
    df = stats.copy()
    df["gpu_count"] = df.hardware.astype(str).map(gpu_count)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    # results written before the parallelism column: one GPU cannot have been split; more GPUs are not known
    df["parallelism"] = df.parallelism.where(df.parallelism.notna(), np.where(df.gpu_count <= 1, "single", "unknown"))
    df = df[[*COLUMNS, *PROVENANCE]].copy()
    df["flag"] = np.where(df.weights == "synthetic", "synthetic weights", "")
    for view, (col, asc) in RANKS.items():
        df[view] = df[col].astype(float).rank(method="min", ascending=asc, na_option="keep").astype("Int64")
    return df.sort_values(["rank_j_per_token", "rank_throughput", "experiment_key", "hardware", "sweep_point"],
                          na_position="last", kind="stable").reset_index(drop=True)


def gpu_count(hardware: str) -> int:
    """GPUs in a hardware profile slug: `2x-nvidia-h100...` -> 2, one GPU -> 1, a CPU profile -> 0."""
    if hardware.startswith("cpu-"):
        return 0
    head = hardware.split("x-", 1)[0]
    return int(head) if head.isdigit() and hardware.startswith(f"{head}x-") else 1

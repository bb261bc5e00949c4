"""The leaderboard table: one row per sweep point and hardware, ranked views, provenance columns.

Defined here (no Dagster) so the platform's `leaderboard` asset and the CLI's `report` build the same table; its
columns are gpu_ops.schema.LEADERBOARD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpu_ops.conversions import NO_CONVERSIONS, Conversions, converted
from gpu_ops.schema import CONVERSION, LEADERBOARD, LEADERBOARD_PROVENANCE, RANKED
from gpu_ops.stats import UNRECORDED_SUBMITTER, headline_cv, unstable

PROVENANCE = LEADERBOARD_PROVENANCE.names
RANKS = {rank: (stat, LEADERBOARD[stat].better == "lower") for rank, stat in RANKED.items()}
"""rank column -> (the statistic it ranks, ascending)."""
RENAMED = {"sweep_point_hash": "config_hash", "experiment_hash": "experiment_config_hash"}
"""leaderboard column -> its name in the statistics: the sweep point's hash is `config_hash` there (as in the result
folder); statistics stored before stats-v3 name the experiment's hash `experiment_config_hash`."""
COMPUTED = ("flag", "cv", "unstable", *CONVERSION.names)
FROM_STATISTICS = tuple(n for n in LEADERBOARD.names if n not in RANKS and n not in COMPUTED)
"""The leaderboard's columns taken from the statistics of each partition (the rest are computed here)."""
READ_FROM_STATISTICS = tuple(
    dict.fromkeys(
        (
            *(n for n in FROM_STATISTICS if n not in RENAMED),
            *RENAMED.values(),
            "experiment_hash",
            "j_per_token_cv",
            "tokens_per_s_cv",
        )
    )
)
"""The statistics columns the leaderboard reads."""


def build_leaderboard(stats: pd.DataFrame, conversions: Conversions = NO_CONVERSIONS) -> pd.DataFrame:
    """Statistics of every partition -> one ranked table; synthetic weights flagged; unmeasured energy is not ranked
    (NaN). `conversions`: the carbon and cost inputs (gpu_ops.conversions); by default every input is unknown."""
    if stats.empty:
        return LEADERBOARD.frame([])
    df = stats.copy()
    for col, old in RENAMED.items():
        if old in df:
            df[col] = df[old] if col not in df else df[col].fillna(df[old])
    for col in (*FROM_STATISTICS, "j_per_token_cv", "tokens_per_s_cv"):
        if col not in df:  # statistics computed before the column existed
            df[col] = np.nan
    # results written before the parallelism column: one GPU cannot have been split; more GPUs are not known
    df["parallelism"] = df.parallelism.where(df.parallelism.notna(), np.where(df.gpu_count <= 1, "single", "unknown"))
    df["submitter"] = df.submitter.astype(object).where(df.submitter.notna(), UNRECORDED_SUBMITTER)  # stored before it
    cv = headline_cv(df)
    df = df[list(FROM_STATISTICS)].copy()
    df["cv"] = cv
    df["unstable"] = unstable(cv)
    synthetic = pd.Series(np.where(df.weights == "synthetic", "synthetic weights", ""), index=df.index)
    drifted = pd.Series(np.where(df.drift.astype("boolean").fillna(False), "drift", ""), index=df.index)
    df["flag"] = (synthetic + "; " + drifted).str.strip("; ")
    df = pd.concat([df, converted(df, conversions)], axis=1)
    for view, (col, asc) in RANKS.items():
        df[view] = df[col].astype(float).rank(method="min", ascending=asc, na_option="keep").astype("Int64")
    df = df.sort_values(
        ["rank_j_per_token", "rank_throughput", "experiment_key", "hardware", "sweep_point"],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)
    return LEADERBOARD.conform(df)

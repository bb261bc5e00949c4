"""The leaderboard table: one row per sweep point and hardware, ranked views, provenance columns.

Defined here (no Dagster) so the platform's `leaderboard` asset and the CLI's `report` build the same table; its
columns are gpu_ops.schema.LEADERBOARD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpu_ops.conversions import NO_CONVERSIONS, Conversions, converted
from gpu_ops.ranking import RankingRules, not_ranked_reasons, rank_bands, rank_label, throughput_fallback
from gpu_ops.schema import CONVERSION, LEADERBOARD, LEADERBOARD_PROVENANCE, RANKED, RANKING
from gpu_ops.stats import UNRECORDED_SUBMITTER, ranked_figure

PROVENANCE = LEADERBOARD_PROVENANCE.names
RANKS = {rank: (stat, LEADERBOARD[stat].better == "lower") for rank, stat in RANKED.items()}
"""rank column -> (the statistic it ranks, ascending)."""
INTERVALS = {
    "rank_j_per_token": ("ranked_j_per_token_ci95", None),
    "rank_tokens_per_j": ("tokens_per_j_ci95", None),
    "rank_throughput": ("tokens_per_s_ci95", None),
    "rank_ttft": ("ttft_p50_pooled_lo_s", "ttft_p50_pooled_hi_s"),
    "rank_j_per_good_token": ("j_per_good_token_ci95", None),
}
"""rank column -> its 95 % interval: a CI half-width around the mean, or (lower end, upper end)."""
RENAMED = {"sweep_point_hash": "config_hash", "experiment_hash": "experiment_config_hash"}
"""leaderboard column -> its name in the statistics: the sweep point's hash is `config_hash` there (as in the result
folder); statistics stored before stats-v3 name the experiment's hash `experiment_config_hash`."""
COMPUTED = (
    "flag",
    "cv",
    "unstable",
    "rank_basis",
    "ranked_j_per_token_mean",
    "ranked_j_per_token_ci95",
    *RANKING.names,
    *CONVERSION.names,
)
FROM_STATISTICS = tuple(n for n in LEADERBOARD.names if n not in RANKS and n not in COMPUTED)
"""The leaderboard's columns taken from the statistics of each partition (the rest are computed here)."""
RANKING_INPUTS = (
    "j_per_token_cv",
    "tokens_per_s_cv",
    "tokens_per_j_ci95",
    "steady_j_per_token_mean",
    "steady_j_per_token_ci95",
    "steady_j_per_token_cv",
    "cycle_batch_fill_mean",
    "ttft_p50_pooled_lo_s",
    "ttft_p50_pooled_hi_s",
)
"""Statistics the ranking reads that the leaderboard does not keep."""
READ_FROM_STATISTICS = tuple(
    dict.fromkeys(
        (
            *(n for n in FROM_STATISTICS if n not in RENAMED),
            *RENAMED.values(),
            "experiment_hash",
            *RANKING_INPUTS,
        )
    )
)
"""The statistics columns the leaderboard reads."""


def rank_rows(df: pd.DataFrame, rules: RankingRules) -> pd.DataFrame:
    """`df` (statistics rows, one per sweep point and hardware) with the ranking's columns added: the ranked J/token
    and its basis, the CV and stability, whether each row is ranked and why not, every rank view in bands, and the
    throughput fallback of the rows whose energy is unmeasured (gpu_ops.ranking.throughput_fallback). The one place
    ranks are made: the CLI, the site, the Dagster metadata and the HF export all show these."""
    df = df.copy()
    basis, mean, ci, cv = ranked_figure(df)
    df["rank_basis"], df["ranked_j_per_token_mean"], df["ranked_j_per_token_ci95"], df["cv"] = basis, mean, ci, cv
    df["unstable"] = (cv > rules.max_cv).astype("boolean").mask(cv.isna())
    reasons = not_ranked_reasons(df, rules)
    df["ranked"], df["not_ranked_reason"] = reasons.isna(), reasons
    for view, (col, asc) in RANKS.items():
        a, b = INTERVALS[view]
        m = df[col].astype(float)
        lo, hi = (m - df[a].astype(float), m + df[a].astype(float)) if b is None else (df[a], df[b])
        df[view], tied = rank_bands(m, lo, hi, asc, df.ranked)
        if view == "rank_j_per_token":
            df["rank_tied"] = tied
            df["rank_label"] = [rank_label(r, t) for r, t in zip(df[view], tied)]
        if view == "rank_throughput":
            df["throughput_fallback_rank"], df["throughput_fallback_label"] = throughput_fallback(df, m, lo, hi)
    df["ranking_rules"] = rules.describe()
    return df


def build_leaderboard(
    stats: pd.DataFrame, rules: RankingRules | None = None, conversions: Conversions = NO_CONVERSIONS
) -> pd.DataFrame:
    """Statistics of every partition -> one table, ranked under `rules` (default: the instance's,
    RankingRules.from_env); synthetic weights and drift flagged; a row that breaks a rule is kept, unranked, with its
    reason, and sorts below every ranked row (rows whose energy is unmeasured last, by their throughput fallback).
    `conversions`: the carbon and cost inputs (gpu_ops.conversions); by default every input is unknown."""
    if stats.empty:
        return LEADERBOARD.frame([])
    rules = RankingRules.from_env() if rules is None else rules
    df = stats.copy()
    for col, old in RENAMED.items():
        if old in df:
            df[col] = df[old] if col not in df else df[col].fillna(df[old])
    for col in (*FROM_STATISTICS, *RANKING_INPUTS):
        if col not in df:  # statistics computed before the column existed
            df[col] = np.nan
    # results written before the parallelism column: one GPU cannot have been split; more GPUs are not known
    df["parallelism"] = df.parallelism.where(df.parallelism.notna(), np.where(df.gpu_count <= 1, "single", "unknown"))
    df["submitter"] = df.submitter.astype(object).where(df.submitter.notna(), UNRECORDED_SUBMITTER)  # stored before it
    df = rank_rows(df, rules)
    synthetic = pd.Series(np.where(df.weights == "synthetic", "synthetic weights", ""), index=df.index)
    drifted = pd.Series(np.where(df.drift.astype("boolean").fillna(False), "drift", ""), index=df.index)
    df["flag"] = (synthetic + "; " + drifted).str.strip("; ")
    df = pd.concat([df, converted(df, conversions)], axis=1)
    order = {  # column -> ascending
        "rank_j_per_token": True,
        "ranked_j_per_token_mean": True,
        "rank_throughput": True,
        "throughput_fallback_rank": True,
        "tokens_per_s_mean": False,
        "experiment_key": True,
        "hardware": True,
        "sweep_point": True,
    }
    df = df.sort_values(list(order), ascending=list(order.values()), na_position="last", kind="stable")
    df = df.reset_index(drop=True)
    return LEADERBOARD.conform(df[list(LEADERBOARD.names)])

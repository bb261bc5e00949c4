"""Leaderboard checks: rows that cannot be traced, or that mix things, must not be published."""

import dagster as dg
import pandas as pd

from energy_assets.leaderboard import leaderboard
from gpu_ops.leaderboard import PROVENANCE


@dg.asset_check(asset=leaderboard, blocking=True, description="every row carries its full provenance block")
def every_row_has_provenance(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    missing = leaderboard[list(PROVENANCE)].isna().any(axis=1) if len(leaderboard) else pd.Series(dtype=bool)
    return dg.AssetCheckResult(passed=not bool(missing.any()), metadata={"rows_without_provenance": int(missing.sum())})


@dg.asset_check(
    asset=leaderboard, blocking=True, description="a row's backend is the one its experiment partition names"
)
def no_mixed_backends(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    if leaderboard.empty:
        return dg.AssetCheckResult(passed=True)
    bad = leaderboard[leaderboard.experiment_key.str.rsplit("__", n=1).str[-1] != leaderboard.backend]
    dup = leaderboard.duplicated(["experiment_key", "hardware", "sweep_point"])
    return dg.AssetCheckResult(
        passed=bad.empty and not dup.any(), metadata={"mismatched_rows": len(bad), "duplicate_rows": int(dup.sum())}
    )


@dg.asset_check(
    asset=leaderboard, description="synthetic-weights rows are flagged, never mixed silently with real ones"
)
def synthetic_weights_flagged(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    syn = leaderboard[leaderboard.weights == "synthetic"] if len(leaderboard) else leaderboard
    unflagged = syn[syn["flag"] != "synthetic weights"] if len(syn) else syn
    return dg.AssetCheckResult(
        passed=unflagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"synthetic_rows": len(syn), "unflagged": len(unflagged)},
    )

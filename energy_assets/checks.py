"""Leaderboard checks: rows that cannot be traced, or that mix things, must not be published. Each message names the
rows at fault by partition and sweep point."""

import dagster as dg
import pandas as pd

from energy_assets.leaderboard import leaderboard
from gpu_ops.errors import excerpt
from gpu_ops.leaderboard import PROVENANCE


def _rows(df: pd.DataFrame) -> str:
    """'partition / sweep point' of each row, bounded for a message."""
    return excerpt(", ".join(f"{r.partition_key} / {r.sweep_point}" for r in df.itertuples()), bare=True)


@dg.asset_check(asset=leaderboard, blocking=True, description="every row carries its full provenance block")
def every_row_has_provenance(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    missing = leaderboard[list(PROVENANCE)].isna().any(axis=1) if len(leaderboard) else pd.Series(dtype=bool)
    bad = leaderboard[missing] if len(leaderboard) else leaderboard
    return dg.AssetCheckResult(
        passed=bad.empty,
        description=f"{len(bad)} row(s) without full provenance: {_rows(bad)}" if len(bad) else "every row traceable",
        metadata={"rows_without_provenance": int(missing.sum())},
    )


@dg.asset_check(
    asset=leaderboard, blocking=True, description="a row's backend is the one its experiment partition names"
)
def no_mixed_backends(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    if leaderboard.empty:
        return dg.AssetCheckResult(passed=True, description="no rows")
    bad = leaderboard[leaderboard.experiment_key.str.rsplit("__", n=1).str[-1] != leaderboard.backend]
    dup = leaderboard.duplicated(["experiment_key", "hardware", "sweep_point"])
    problems = [f"backend differs from the partition's: {_rows(bad)}"] if len(bad) else []
    problems += [f"duplicate rows: {_rows(leaderboard[dup])}"] if dup.any() else []
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or "one backend per partition, no duplicate rows",
        metadata={"mismatched_rows": len(bad), "duplicate_rows": int(dup.sum())},
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
        description=f"synthetic weights without the flag: {_rows(unflagged)}"
        if len(unflagged)
        else f"{len(syn)} synthetic-weights row(s), all flagged",
        metadata={"synthetic_rows": len(syn), "unflagged": len(unflagged)},
    )

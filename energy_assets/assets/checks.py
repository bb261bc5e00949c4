"""Leaderboard checks: rows that cannot be traced, or that mix things, must not be published. Each message names the
rows at fault by partition and sweep point.

Each check runs with every leaderboard materialization: the automation requests it beside the leaderboard (in the
same run), and a materialization that left it out gets it on the next tick. The publishing assets read the checks'
outcome on the leaderboard they publish (`require_checked_leaderboard`) and refuse one whose blocking checks did not
pass, however they were launched."""

import dagster as dg
import pandas as pd

from energy_assets.assets.leaderboard import leaderboard
from gpu_ops.errors import excerpt
from gpu_ops.leaderboard import PROVENANCE

WITH_THE_LEADERBOARD = dg.AutomationCondition.any_deps_updated()
"""True when the leaderboard is requested in this tick (the check joins its run) or was updated without the check."""


def _rows(df: pd.DataFrame) -> str:
    """'partition / sweep point' of each row, bounded for a message."""
    return excerpt(", ".join(f"{r.partition_key} / {r.sweep_point}" for r in df.itertuples()), bare=True)


@dg.asset_check(
    asset=leaderboard,
    blocking=True,
    description="every row carries its full provenance block",
    automation_condition=WITH_THE_LEADERBOARD,
)
def every_row_has_provenance(leaderboard: pd.DataFrame) -> dg.AssetCheckResult:
    missing = leaderboard[list(PROVENANCE)].isna().any(axis=1) if len(leaderboard) else pd.Series(dtype=bool)
    bad = leaderboard[missing] if len(leaderboard) else leaderboard
    return dg.AssetCheckResult(
        passed=bad.empty,
        description=f"{len(bad)} row(s) without full provenance: {_rows(bad)}" if len(bad) else "every row traceable",
        metadata={"rows_without_provenance": int(missing.sum())},
    )


@dg.asset_check(
    asset=leaderboard,
    blocking=True,
    description="a row's backend is the one its experiment partition names",
    automation_condition=WITH_THE_LEADERBOARD,
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
    asset=leaderboard,
    description="synthetic-weights rows are flagged, never mixed silently with real ones",
    automation_condition=WITH_THE_LEADERBOARD,
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


LEADERBOARD_CHECKS = (every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged)
BLOCKING = [spec.key for check in LEADERBOARD_CHECKS for spec in check.check_specs if spec.blocking]


class UncheckedLeaderboard(dg.Failure):
    """The leaderboard to publish has no passing result of a blocking check (failed, or not evaluated on it)."""


def require_checked_leaderboard(instance: dg.DagsterInstance) -> None:
    """Refuse to publish unless every blocking check passed on the leaderboard's latest materialization (the one a
    publishing asset reads): a check that failed, or never ran on it, stops the site, the snapshot and the Hub."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=leaderboard.key), limit=1).records
    latest = records[0] if records else None
    if latest is None:
        raise UncheckedLeaderboard("no leaderboard materialized yet: materialize leaderboard (with its checks) first")
    executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(BLOCKING)
    problems = []
    for key in BLOCKING:
        ex = executions.get(key)
        evaluation = ex.evaluation if ex is not None else None
        target = evaluation.target_materialization_data if evaluation is not None else None
        if target is None or target.storage_id != latest.storage_id:
            problems.append(f"{key.name}: not evaluated on the latest leaderboard")
        elif not evaluation.passed:
            problems.append(f"{key.name}: failed ({excerpt(evaluation.description or '', bare=True)})")
    if problems:
        raise UncheckedLeaderboard(
            "not publishing a leaderboard whose blocking checks did not pass: "
            + "; ".join(problems)
            + ". Materialize leaderboard with its checks and fix what they name"
        )

"""Drift: a re-measured sweep point whose headline figure moved outside the combined interval of the old and new
measurements (docs/metrics.md, "Drift").

The headline is J/token (tokens/s where energy is unmeasured). Two means differ beyond their noise when
|new - old| > sqrt(ci_new^2 + ci_old^2), the 95 % half-widths combined as for independent measurements. Without an
interval on either side (a single cycle) drift cannot be told: empty, never False.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpu_ops.schema import HEADLINE_FIGURES, HISTORY

HEADLINES = {f.name: f.unit for f in HEADLINE_FIGURES}
"""The headline figures in order (schema.HEADLINE_FIGURES), each with its unit."""


def headline(row) -> tuple[str, float | None, float | None]:
    """(figure name, mean, ci95) of a statistics row's headline: J/token, else tokens/s."""
    for name in HEADLINES:
        mean = row.get(f"{name}_mean")
        if mean is not None and not pd.isna(mean):
            ci = row.get(f"{name}_ci95")
            return name, float(mean), None if ci is None or pd.isna(ci) else float(ci)
    return HEADLINE_FIGURES.names[0], None, None


def compare(new_row, old_row) -> tuple[bool | None, str]:
    """(drift?, a sentence saying why) for one sweep point's new and stored statistics."""
    name, new, new_ci = headline(new_row)
    old_name, old, old_ci = headline(old_row)
    unit = HEADLINES[name]
    if new is None or old is None or name != old_name:
        return None, f"not compared: {name} of one side is missing"
    if new_ci is None or old_ci is None:
        return None, f"{name} {old:.4g} -> {new:.4g} {unit}; no interval on one side (a single cycle): not judged"
    allowed = math.hypot(new_ci, old_ci)
    moved = new - old
    verdict = abs(moved) > allowed
    return verdict, (
        f"{name} {old:.4g} ± {old_ci:.2g} -> {new:.4g} ± {new_ci:.2g} {unit}: moved {moved:+.3g}, "
        f"{'outside' if verdict else 'within'} the combined interval ± {allowed:.2g}"
    )


def with_drift(stats: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """`stats` (one partition's statistics) with its drift columns (schema.STATISTICS_DRIFT) against `previous`,
    the statistics stored before this measurement; a sweep point measured for the first time is not judged."""
    stats = stats.copy()
    old = {} if previous is None or previous.empty else {r["sweep_point"]: r for _, r in previous.iterrows()}
    verdicts, details, before = [], [], []
    for _, row in stats.iterrows():
        prior = old.get(row["sweep_point"])
        if prior is None:
            verdicts.append(None), details.append("first measurement"), before.append(None)
            continue
        v, why = compare(row, prior)
        verdicts.append(v), details.append(why), before.append(prior.get("raw_run_id"))
    stats["drift"] = pd.Series(verdicts, index=stats.index, dtype="boolean")
    stats["drift_detail"] = details
    stats["drift_previous_run_id"] = before
    return stats


def history_rows(stats: pd.DataFrame, measured_at: str) -> pd.DataFrame:
    """The rows (schema.HISTORY) one materialization of a partition's statistics adds to the history."""
    rows = []
    for _, r in stats.iterrows():
        name, mean, ci = headline(r)
        rows.append(
            HISTORY.record(
                partition_key=r["partition_key"],
                sweep_point=r["sweep_point"],
                measured_at=measured_at,
                raw_run_id=r["raw_run_id"],
                figure=name,
                mean=mean,
                ci95=ci,
                drift=None if pd.isna(r.get("drift", np.nan)) else bool(r["drift"]),
            )
        )
    return HISTORY.frame(rows)


def previous_statistics(history: pd.DataFrame, raw_run_id: str) -> pd.DataFrame:
    """The last measurement of each sweep point in a partition's `history` from another raw run than `raw_run_id`
    (statistics recomputed from the same raw data are no re-measurement), as statistics columns for with_drift."""
    other = history[history.raw_run_id != raw_run_id] if len(history) else history
    if other.empty:
        return pd.DataFrame()
    last = other.sort_values("measured_at", kind="stable").groupby("sweep_point", sort=True).tail(1)
    return pd.DataFrame(
        [
            {
                "sweep_point": r.sweep_point,
                "raw_run_id": r.raw_run_id,
                f"{r.figure}_mean": r.mean,
                f"{r.figure}_ci95": r.ci95,
            }
            for r in last.itertuples(index=False)
        ]
    )


def extend_history(history: pd.DataFrame, added: pd.DataFrame) -> pd.DataFrame:
    """`history` with `added` (one materialization's rows); a raw run already in it replaces its own rows."""
    if history.empty:
        return HISTORY.conform(added)
    keep = history[~history.raw_run_id.isin(set(added.raw_run_id))]
    return HISTORY.conform(pd.concat([keep, added], ignore_index=True))

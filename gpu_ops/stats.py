"""Multi-cycle statistics per sweep point: mean, sample std, 95 % CI from the exact Student-t quantile, CV of each
per-cycle figure; and latency percentiles over the pooled requests of all cycles, with bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpu_ops.errors import UserError
from gpu_ops.ranking import CYCLE_WINDOW, STEADY, RankingRules
from gpu_ops.readable import number
from gpu_ops.results import ResultTables
from gpu_ops.schema import (
    GPU_COUNT,
    GPU_SECONDS,
    MEASURED,
    POINT_SETTINGS,
    POOLED_LATENCY,
    POOLED_OF,
    POOLED_QUANTILES,
    PUBLISHED_STATISTICS,
    RAW_PROVENANCE,
    STATISTICS,
    STATISTICS_DRIFT,
    STATISTICS_OF,
    SUMMARISED,
    plain,
)

IDENTITY = MEASURED.names
"""Columns that must agree inside one aggregate: mixing them would average different things."""
POINT = (*POINT_SETTINGS.names, GPU_COUNT.name)
"""Columns equal in every cycle of a sweep point (its settings), carried into its statistics."""


def fmt_value(v, unit: str = "", scale: float = 1.0, digits: int = 4) -> str:
    """A summarised value for a terminal table: 'unmeasured' for a missing (None/NaN) value, never 0."""
    return "unmeasured" if v is None or v != v else f"{number(v * scale, digits)}{unit}"


IDLE_RISE_FLAG = 0.20
"""Idle power this much higher after a run than before it is flagged: the GPU had not settled back (heat, clocks, a
process), so the baseline subtracted for net energy moved during the run."""


def idle_rise(before, after) -> float | None:
    """(after - before) / before of the idle baselines; None where either is unmeasured."""
    before, after = plain(before), plain(after)
    return None if before is None or after is None or before <= 0 else (after - before) / before


def idle_rise_note(before, after) -> str | None:
    """The flag people read when idle power rose past IDLE_RISE_FLAG, else None."""
    rise = idle_rise(before, after)
    if rise is None or rise <= IDLE_RISE_FLAG:
        return None
    return (
        f"idle power rose {rise:.0%} from before the run to after it (> {IDLE_RISE_FLAG:.0%}): the GPU had not "
        "settled, so net energy rests on a baseline that moved"
    )


CI_MISSING = "n/a"
CV_UNSTABLE = RankingRules.max_cv
"""A sweep point whose ranked J/token varies more than this over its cycles (CV = std / mean) is unstable: its rank
among others is within its noise, so it is not ranked (the instance may set another, gpu_ops.ranking)."""


def ranked_figure(stats: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """(basis, mean, ci95, cv) of the J/token each row is ranked by: a serving run's (one with engine steps against
    max_num_seqs, so a cycle batch fill) steady-state J/token, else its cycle windows' J/token. The CV falls back to
    that of tokens/s where energy is unmeasured, so a row without energy still shows its spread."""

    def col(name: str) -> pd.Series:
        return stats[name].astype(float) if name in stats else pd.Series(np.nan, index=stats.index)

    serving = col("cycle_batch_fill_mean").notna()
    basis = pd.Series(np.where(serving, STEADY, CYCLE_WINDOW), index=stats.index, dtype=object)
    mean = col("steady_j_per_token_mean").where(serving, col("j_per_token_mean"))
    ci = col("steady_j_per_token_ci95").where(serving, col("j_per_token_ci95"))
    cv = col("steady_j_per_token_cv").where(serving, col("j_per_token_cv"))
    return basis, mean, ci, cv.where(cv.notna(), col("tokens_per_s_cv"))


def headline_cv(stats: pd.DataFrame) -> pd.Series:
    """The CV of each row's ranked J/token (steady state for a serving run), or of tokens/s where energy is
    unmeasured; NaN with one cycle."""
    return ranked_figure(stats)[3]


def unstable(cv: pd.Series) -> pd.Series:
    """The stability verdict of each CV: True above CV_UNSTABLE, missing when there is no CV (a single cycle)."""
    return (cv > CV_UNSTABLE).astype("boolean").mask(cv.isna())


def fmt_ci(v, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    """' ± <95 % CI half-width>', or ' ± n/a' without one (a single cycle): a missing CI shows as missing, never ±0."""
    return f" ± {CI_MISSING}" if v is None or v != v else f" ± {number(v * scale, digits)}{unit}"


def summarize(values) -> dict[str, float | int | None]:
    """n, mean, std (ddof=1), ci95 half-width = t(0.975, n-1) * std / sqrt(n), cv = std / mean."""
    # scipy.stats here, not at import: every run the platform launches, its code servers and the CLI import this
    # module, and most of them compute no statistics
    from scipy import stats as sps

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


def percentile_interval(values: np.ndarray, q: float, level: float = 0.95) -> tuple[float, float, float] | None:
    """The q-th percentile (numpy's linear interpolation, as vLLM's benchmark) and its `level` bootstrap percentile
    interval, computed exactly rather than by resampling: a resample's k-th order statistic (k = ceil(n q / 100)) is
    at most x_(j) exactly when at least k of its n draws are, a Binomial(n, j / n) event. So the interval's ends are
    order statistics read off binomial tails: no Monte Carlo noise (a re-derivation reproduces them), and cheap for the
    ~10^5 inter-token gaps of a GPU run. None without values."""
    from scipy import stats as sps

    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return None
    k = max(1, math.ceil(n * q / 100.0))
    at_most = sps.binom.sf(k - 1, n, np.arange(1, n + 1) / n)  # P(resampled quantile <= x_(j)), rising in j
    tail = (1.0 - level) / 2.0
    lo, hi = np.searchsorted(at_most, tail), np.searchsorted(at_most, 1.0 - tail)
    return float(np.percentile(x, q)), float(x[min(lo, n - 1)]), float(x[min(hi, n - 1)])


def pooled_latency(requests: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per sweep point, schema.POOLED_LATENCY: each latency's percentiles over the requests of all its cycles (a
    per-cycle p99 of a few hundred requests rests on a handful of them; the mean of five such is no p99 of the run)."""
    out: dict[str, dict[str, float | None]] = {}
    for point, group in requests.groupby("sweep_point", sort=True):
        row: dict[str, float | None] = dict.fromkeys(POOLED_LATENCY.names)
        for m, source in POOLED_OF.items():
            if source not in group:
                continue
            col = group[source]
            values = np.concatenate([np.asarray(v, dtype=float) for v in col]) if source == "itl_s" else col.to_numpy()
            for q in POOLED_QUANTILES:
                found = percentile_interval(np.asarray(values, dtype=float), q)
                if found is not None:
                    row.update(zip((f"{m}_p{q}_pooled_s", f"{m}_p{q}_pooled_lo_s", f"{m}_p{q}_pooled_hi_s"), found))
        out[point] = row
    return out


def check_homogeneous(cycles: pd.DataFrame, keys: tuple[str, ...] = ("sweep_point",)) -> None:
    for key, group in cycles.groupby(list(keys), dropna=False):
        for col in IDENTITY:
            if col in group and group[col].nunique(dropna=False) > 1:
                raise UserError(
                    f"cannot aggregate sweep point {key}: mixed {col} values "
                    f"{sorted(group[col].astype(str).unique())}; aggregate each model/backend/hardware/weights "
                    "separately"
                )


def sweep_point_statistics(
    cycles: pd.DataFrame, requests: pd.DataFrame | None = None, sweep_points: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per sweep point (schema.STATISTICS): its identity and settings, n_cycles,
    <metric>_{mean,std,ci95,cv} of every summarised metric, the pooled latency percentiles of `requests` (empty
    without them) and the GPU-seconds the point cost from `sweep_points` (empty without it, or for a folder written
    before it was recorded). A metric a folder predates has empty statistics. The
    statistics of a metric from the GPU energy counter are empty for a point with an unmeasured cycle: never computed
    from the cycles that happened to be measured (that subset would rank as if it were the whole point)."""
    if cycles.empty:
        return STATISTICS.frame([])
    check_homogeneous(cycles)
    missing = [c for c in ("sweep_point", *IDENTITY, *POINT, "energy_status", "unmeasured_reason") if c not in cycles]
    if missing:
        raise UserError(f"cannot summarise cycles without the columns {missing}; they identify each sweep point")
    rows = []
    pooled = pooled_latency(requests) if requests is not None and len(requests) else {}
    cost = (
        dict(zip(sweep_points.sweep_point, sweep_points[GPU_SECONDS.name]))
        if sweep_points is not None and GPU_SECONDS.name in sweep_points
        else {}
    )
    for point, group in cycles.groupby("sweep_point", sort=True):
        unmeasured = group[
            group.energy_status != "measured"
        ]  # one unmeasured cycle makes the point's energy unmeasured
        row = {
            "sweep_point": point,
            "n_cycles": len(group),
            **{c: plain(group[c].iloc[0]) for c in (*IDENTITY, *POINT)},
            "energy_status": "unmeasured" if len(unmeasured) else "measured",
            "unmeasured_reason": plain(unmeasured.unmeasured_reason.iloc[0]) if len(unmeasured) else None,
        }
        for metric in SUMMARISED:
            values = [] if metric.name not in group or (metric.from_counter and len(unmeasured)) else group[metric.name]
            s = summarize(list(values))
            row.update({f"{metric.name}_{k}": s[k] for k in STATISTICS_OF})
        row.update(pooled.get(point, dict.fromkeys(POOLED_LATENCY.names)))
        row["window_min_s"] = window_min(group)
        row[GPU_SECONDS.name] = plain(cost.get(point))
        rows.append(STATISTICS.record(**row))
    return STATISTICS.frame(rows)


def window_min(cycles: pd.DataFrame) -> float | None:
    """The shortest ranked window of a sweep point's cycles: a serving run's steady state (None when a cycle had
    none: its J/token cannot be ranked), else the cycle window."""
    serving = "cycle_batch_fill" in cycles and cycles.cycle_batch_fill.notna().any()
    windows = cycles.get("steady_duration_s" if serving else "duration_s")
    return None if windows is None or windows.isna().any() or not len(windows) else float(windows.min())


def result_statistics(tables: ResultTables) -> pd.DataFrame:
    """A result folder's statistics: summary.json's, as the runner computed them, when they hold every statistic of this
    version (the raw checks found them equal to their recomputation from the cycles, gpu_ops.rederive); else computed
    from the cycles (a folder written by an earlier version)."""
    stored = tables.summary.get("sweep_points")
    if (
        isinstance(stored, list)
        and stored
        and all(isinstance(s, dict) and set(s) == set(STATISTICS.names) for s in stored)
    ):
        return STATISTICS.frame(STATISTICS.record(**s) for s in stored)
    return sweep_point_statistics(tables.cycles, tables.requests, tables.sweep_points)


UNRECORDED_SUBMITTER = "unrecorded"  # raw data stored before submitters were recorded


def published_statistics(
    tables: ResultTables,
    partition_key: str,
    stats_code_version: str,
    raw: dict[str, object],
    file_sha: str | None = None,
    submitter: str = "local",
) -> pd.DataFrame:
    """The statistics of one raw partition with where they came from (schema.PUBLISHED_STATISTICS): the platform's
    cycle_statistics asset and `llm-energy-measure report` both publish these. `raw`: the raw partition's run id,
    storage id, data version and code version (schema.RAW_PROVENANCE); `file_sha`: the experiment file's, when known;
    `submitter`: who signed an uploaded result ("local": measured by whoever publishes it)."""
    if set(raw) != set(RAW_PROVENANCE.names):
        raise ValueError(f"raw provenance needs exactly {list(RAW_PROVENANCE.names)}, got {sorted(raw)}")
    exp = tables.experiment.iloc[0]
    return PUBLISHED_STATISTICS.conform(
        result_statistics(tables).assign(
            partition_key=partition_key,
            experiment_key=exp.experiment_key,
            fingerprint_hash=exp.fingerprint_hash,
            experiment_name=exp["name"],
            file_sha=file_sha,
            experiment_hash=exp.config_hash,
            stats_code_version=stats_code_version,
            submitter=submitter,
            **dict.fromkeys(STATISTICS_DRIFT.names),
            **raw,
        )
    )

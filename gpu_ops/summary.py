"""The summary of one run: a table for the terminal (`run`) and a JSON object for programs (`run --json`).

Both come from the same record (`run_summary`): the three config hashes, per sweep point each figure's mean with its
95 % t-CI, the headline CV, and whether the leaderboard will rank it (and why not, gpu_ops.ranking), and each check's
status. A missing value
is `null` in JSON and "unmeasured" or "n/a" in the table, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gpu_ops.leaderboard import rank_rows
from gpu_ops.ranking import RankingRules
from gpu_ops.results import ResultTables
from gpu_ops.schema import RUN_SUMMARY_FIGURES, plain
from gpu_ops.stats import idle_rise_note, result_statistics
from gpu_ops.validation import Finding


@dataclass(frozen=True)
class Figure:
    """A summarised figure of the table: statistics `<metric>_mean` / `<metric>_ci95` (a pooled percentile: itself and
    its interval's ends), shown in `unit` x `scale`."""

    metric: str
    header: str
    unit: str
    scale: float = 1.0


FIGURES = tuple(Figure(f.name.removesuffix("_mean"), f.label, f.unit, f.scale) for f in RUN_SUMMARY_FIGURES)
"""schema.RUN_SUMMARY_FIGURES, each by the key it has in `run --json`."""


def _figure(row, metric: str) -> dict:
    """A figure's middle and half-width: a per-cycle metric's mean and 95 % t-CI; a pooled percentile (one definition
    of TTFT p50 everywhere: over all requests of all cycles) and half its bootstrap interval."""
    if metric.endswith("_pooled_s"):
        lo, hi = (plain(row.get(metric.removesuffix("_s") + f"_{b}_s")) for b in ("lo", "hi"))
        return {"mean": plain(row.get(metric)), "ci95": None if lo is None or hi is None else (hi - lo) / 2}
    return {"mean": plain(row[f"{metric}_mean"]), "ci95": plain(row[f"{metric}_ci95"])}


def run_summary(tables: ResultTables, folder: Path, findings: list[Finding], file_sha: str | None) -> dict:
    """The record both outputs print: plain JSON values (None for missing, never NaN)."""
    exp = tables.experiment.iloc[0]
    rules = RankingRules.from_env()
    st = rank_rows(result_statistics(tables), rules)  # the leaderboard's verdicts, so both say the same
    hashes = dict(zip(tables.sweep_points.sweep_point, tables.sweep_points.config_hash))
    points = []
    for _, row in st.iterrows():
        points.append(
            {
                "sweep_point": row.sweep_point,
                "sweep_point_hash": hashes.get(row.sweep_point),
                "n_cycles": int(row.n_cycles),
                "energy_status": row.energy_status,
                "unmeasured_reason": plain(row.unmeasured_reason),
                **{f.metric: _figure(row, f.metric) for f in FIGURES},
                "cv": plain(row.cv),
                "unstable": plain(row.unstable),
                "ranked": bool(row.ranked),
                "not_ranked_reason": plain(row.not_ranked_reason),
            }
        )
    return {
        "folder": str(folder),
        "name": str(exp["name"]),
        "model": str(exp.model),
        "backend": str(exp.backend),
        "hardware": str(exp.hardware),
        "weights": str(exp.weights),
        "file_sha": file_sha,
        "experiment_hash": str(exp.config_hash),
        "fingerprint_hash": str(exp.fingerprint_hash),
        "cv_unstable_above": rules.max_cv,
        "ranking_rules": rules.describe(),
        "sweep_points": points,
        "idle_rise_note": idle_rise_note(exp.idle_before_w, exp.idle_after_w),
        "checks": [{"check": f.check, "status": f.status, "message": f.message} for f in findings],
        "passed": all(f.passed for f in findings if f.blocking),
    }


def _decimals(values: list[float]) -> int:
    """Decimals that give the column's largest value 4 significant digits; every row of the column uses them."""
    big = max((abs(v) for v in values), default=0.0)
    return 0 if not big else min(6, max(0, 3 - math.floor(math.log10(big))))


def _cell(mean, ci, decimals: int, scale: float) -> str:
    if mean is None:
        return "unmeasured"
    ci_text = "n/a" if ci is None else f"{ci * scale:.{decimals}f}"
    return f"{mean * scale:.{decimals}f} ± {ci_text}"


def summary_table(summary: dict) -> str:
    """The run as the terminal shows it: a title, the three hashes, then one row per sweep point under headers with
    units; each figure is mean ± 95 % t-CI with one precision per column."""
    points = summary["sweep_points"]
    headers = (
        ["sweep point", "cycles"]
        + [f"{f.header} ({f.unit}, ± 95% CI)" for f in FIGURES]
        + ["CV", "sweep_point_hash", "note"]
    )
    rows = []
    decimals = {
        f.metric: _decimals([p[f.metric]["mean"] * f.scale for p in points if p[f.metric]["mean"] is not None])
        for f in FIGURES
    }
    for p in points:
        note = [f"not ranked: {p['not_ranked_reason']}"] if p.get("not_ranked_reason") else []
        rows.append(
            [p["sweep_point"], str(p["n_cycles"])]
            + [_cell(p[f.metric]["mean"], p[f.metric]["ci95"], decimals[f.metric], f.scale) for f in FIGURES]
            + ["n/a" if p["cv"] is None else f"{p['cv']:.1%}", p["sweep_point_hash"] or "n/a", "; ".join(note)]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = set(range(1, len(headers) - 2))

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    reasons = sorted({p["unmeasured_reason"] for p in points if p["unmeasured_reason"]})
    return "\n".join(
        [
            f"{summary['name']}: {summary['model']} on {summary['backend']} / {summary['hardware']} "
            f"(weights: {summary['weights']})",
            f"file_sha {summary['file_sha'] or 'n/a'} · experiment_hash {summary['experiment_hash']}",
            line(headers).rstrip(),
            line(["-" * w for w in widths]).rstrip(),
            *(line(r).rstrip() for r in rows),
            *(f"energy unmeasured: {r}" for r in reasons),
            *([f"warning: {summary['idle_rise_note']}"] if summary.get("idle_rise_note") else []),
        ]
    )


def check_lines(summary: dict) -> list[str]:
    """One line per check: 'ok', 'FAILED' or, for a check of measured energy on a run without any, 'skipped'."""
    return [
        f"  check {c['check']}: {c['message']}"
        if c["status"] == "skipped"
        else f"  check {c['check']}: {c['status']} - {c['message']}"
        for c in summary["checks"]
    ]

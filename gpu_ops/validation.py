"""Physics and consistency checks on a result: one definition used by the CLI, the results inbox and the
platform's asset checks, so a number that fails here never reaches a leaderboard."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from gpu_ops.results import ResultTables

POWER_LIMIT_SLACK = 1.05


@dataclass
class Finding:
    check: str
    passed: bool
    message: str
    blocking: bool = True
    metadata: dict = field(default_factory=dict)


def _measured(c: pd.DataFrame) -> pd.DataFrame:
    return c[c.energy_status == "measured"]


def check_energy_present(t: ResultTables) -> Finding:
    c = t.cycles
    bad = c[((c.energy_status == "measured") & c.gross_energy_j.isna())
            | ((c.energy_status != "measured") & (c.unmeasured_reason.isna() | (c.unmeasured_reason.astype(str).str.len() == 0)))
            | ~c.energy_status.isin(["measured", "unmeasured"])]
    n_unmeasured = int((c.energy_status == "unmeasured").sum())
    return Finding("energy_present", bad.empty,
                   f"{len(bad)} cycle(s) lack energy and a reason" if len(bad) else
                   (f"energy measured in all {len(c)} cycles" if not n_unmeasured else
                    f"{n_unmeasured} cycle(s) explicitly unmeasured: {c.unmeasured_reason.dropna().iloc[0]}"),
                   metadata={"cycles": len(c), "unmeasured_cycles": n_unmeasured})


def check_net_energy(t: ResultTables) -> Finding:
    m = _measured(t.cycles)
    bad = m[(m.gross_energy_j < 0) | (m.net_energy_j.notna() & (m.net_energy_j < 0))]
    return Finding("net_energy_non_negative", bad.empty,
                   f"{len(bad)} cycle(s) with negative energy (min net {bad.net_energy_j.min():.3f} J): idle baseline above load power?"
                   if len(bad) else "gross and net energy >= 0", metadata={"bad_cycles": len(bad)})


def check_power_limit(t: ResultTables) -> Finding:
    m = _measured(t.cycles)
    m = m[m.power_limit_w.notna() & m.avg_power_w.notna()]
    bad = m[m.avg_power_w > m.power_limit_w * POWER_LIMIT_SLACK]
    return Finding("power_within_limit", bad.empty,
                   f"{len(bad)} cycle(s) average above the power limit (max {bad.avg_power_w.max():.1f} W > {bad.power_limit_w.max():.1f} W)"
                   if len(bad) else f"average power within the power limit ({len(m)} cycle(s) checked)",
                   metadata={"max_avg_power_w": float(m.avg_power_w.max()) if len(m) else None})


def check_window_length(t: ResultTables) -> Finding:
    m = _measured(t.cycles)
    bad = m[m.too_short.astype(bool)]
    return Finding("window_long_enough", bad.empty,
                   f"{len(bad)} measured window(s) shorter than 10 energy-counter updates (min {bad.duration_s.min():.3f} s); "
                   "use more prompts or cycles of >= 1 s" if len(bad) else "every measured window spans >= 10 counter updates",
                   metadata={"min_duration_s": float(m.duration_s.min()) if len(m) else None})


def check_cross_check(t: ResultTables) -> Finding:
    m = _measured(t.cycles)
    m = m[m.cross_check_rel_diff.notna()]
    legacy = float(t.experiment.iloc[0].get("cross_check_tolerance", 0.10) or 0.10)  # folders from before per-window tolerances
    tol = m.cross_check_tolerance.astype(float).fillna(legacy) if "cross_check_tolerance" in m else pd.Series(legacy, index=m.index)
    bad = m[m.cross_check_rel_diff.abs() > tol]
    worst = float(m.cross_check_rel_diff.abs().max()) if len(m) else None
    return Finding("counter_timeline_agree", bad.empty,
                   f"{len(bad)} cycle(s) where counter and timeline energy differ by more than their tolerance (worst {worst:.2%} "
                   f"against {float(tol[bad.cross_check_rel_diff.abs().idxmax()]):.2%})"
                   if len(bad) else (f"counter vs timeline within tolerance (worst {worst:.2%}; tolerance {tol.min():.2%}-{tol.max():.2%} "
                                     "by window length)" if worst is not None else "no measured windows to cross-check"),
                   metadata={"worst_rel_diff": worst, "tolerance_min": float(tol.min()) if len(tol) else None})


def check_foreign_processes(t: ResultTables) -> Finding:
    c = t.cycles
    bad = c[c.foreign_processes.fillna("").astype(str).str.len() > 0]
    return Finding("no_foreign_gpu_process", bad.empty,
                   f"{len(bad)} cycle(s) saw other processes on the GPU (pids {', '.join(sorted(set(bad.foreign_processes)))})"
                   if len(bad) else "no foreign process on the GPU during any window")


def check_single_identity(t: ResultTables) -> Finding:
    c = t.cycles
    mixed = {col: sorted(c[col].astype(str).unique()) for col in ("model", "backend", "hardware", "weights") if c[col].nunique() > 1}
    return Finding("one_model_backend_per_partition", not mixed,
                   f"mixed identity in one result: {mixed}" if mixed else "one model, backend, hardware and weights kind")


RAW_CHECKS = (check_energy_present, check_net_energy, check_power_limit, check_window_length, check_cross_check,
              check_foreign_processes, check_single_identity)


RAW_CHECK_NAMES = ("energy_present", "net_energy_non_negative", "power_within_limit", "window_long_enough",
                   "counter_timeline_agree", "no_foreign_gpu_process", "one_model_backend_per_partition")


def validate(t: ResultTables) -> list[Finding]:
    if t.cycles.empty:
        return [Finding(name, False, "the result holds no cycles") for name in RAW_CHECK_NAMES]
    return [check(t) for check in RAW_CHECKS]


def blocking_failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking and not f.passed]

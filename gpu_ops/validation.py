"""Physics and consistency checks on a result: one definition used by the CLI, the results inbox and the
platform's asset checks, so a number that fails here never reaches a leaderboard.

A result may come from another machine, so nothing it states is taken on trust: its derived figures are recomputed
from its raw readings (gpu_ops.rederive), and what it claims to be (model, backend, hardware, experiment key) is
checked against its config, its environment fingerprint and its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from gpu_ops import rederive
from gpu_ops.config import content_hash
from gpu_ops.environment import fingerprint_profile, validate_slug
from gpu_ops.errors import UserError, excerpt
from gpu_ops.models import weights_of
from gpu_ops.results import ResultTables, load_json

POWER_LIMIT_SLACK = 1.05
ENERGY_STATUSES = ("measured", "unmeasured")
MAX_LISTED = 3  # problems quoted in one message; the count says how many there were


@dataclass
class Finding:
    check: str
    passed: bool
    message: str
    blocking: bool = True
    metadata: dict = field(default_factory=dict)
    skipped: bool = False  # nothing to check (a check of measured energy on a run that measured none)

    @property
    def status(self) -> str:
        """'ok', 'FAILED' or 'skipped': what a terminal shows; a skipped check is never shown as 'ok'."""
        return "skipped" if self.skipped else "ok" if self.passed else "FAILED"


Verdict = tuple[bool, str] | tuple[bool, str, dict]
RAW_CHECKS: dict[str, Callable[[ResultTables], Verdict]] = {}


def _check(name: str):
    """Register a blocking check under `name` (the asset check's name too)."""

    def register(fn: Callable[[ResultTables], Verdict]):
        RAW_CHECKS[name] = fn
        return fn

    return register


def _listed(problems: list[str], ok: str) -> Verdict:
    if not problems:
        return True, ok
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return False, f"{len(problems)} problem(s): " + "; ".join(problems[:MAX_LISTED]) + more, {"problems": len(problems)}


def _measured(c: pd.DataFrame) -> pd.DataFrame:
    return c[c.energy_status == "measured"]


def _points(bad: pd.DataFrame) -> str:
    """' in sweep point(s) a, b': where the cycles a message counts are."""
    return f" in sweep point(s) {excerpt(', '.join(sorted(set(bad.sweep_point.astype(str)))), bare=True)}"


def _bad_numbers(s: pd.Series, low: float | None = None, strict: bool = False) -> pd.Series:
    """Missing, infinite, or below `low` (at or below when `strict`)."""
    x = pd.to_numeric(s, errors="coerce").astype(float)
    bad = ~np.isfinite(x)
    if low is not None:
        bad |= (x <= low) if strict else (x < low)
    return bad


@_check("values_physical")
def check_values_physical(t: ResultTables) -> Verdict:
    """Finite, positive durations and energies, known energy states, non-negative counts and power samples."""
    c, w = t.cycles, t.windows
    problems = []
    duration, energy = "is not a positive, finite duration", "is measured but not a positive, finite energy"
    rules = [
        ("cycles", "duration_s", _bad_numbers(c.duration_s, 0, strict=True), duration),
        (
            "cycles",
            "window_end_s",
            _bad_numbers(c.window_end_s - c.window_start_s, 0, strict=True),
            "is not after window_start_s",
        ),
        ("cycles", "energy_status", ~c.energy_status.isin(ENERGY_STATUSES), f"is not one of {ENERGY_STATUSES}"),
        (
            "cycles",
            "gross_energy_j",
            (c.energy_status == "measured") & _bad_numbers(c.gross_energy_j, 0, strict=True),
            energy,
        ),
        ("cycles", "output_tokens", c.output_tokens < 0, "is negative"),
        ("windows", "duration_s", _bad_numbers(w.duration_s, 0, strict=True), duration),
        (
            "windows",
            "gpu_energy_j",
            (w.gpu_energy_status == "measured") & _bad_numbers(w.gpu_energy_j, 0, strict=True),
            energy,
        ),
        ("windows", "kind", ~w.kind.isin(rederive.WINDOW_KINDS), f"is not one of {rederive.WINDOW_KINDS}"),
        ("timeline", "power_w", _bad_numbers(t.timeline.power_w, 0), "is not a finite, non-negative power"),
        ("timeline", "t_s", _bad_numbers(t.timeline.t_s), "is not a finite time"),
        ("requests", "output_tokens", t.requests.output_tokens < 0, "is negative"),
        ("requests", "itl_s", t.requests.itl_s.isna(), "is missing (an empty list when no token times were seen)"),
    ]
    for table, column, bad, what in rules:
        if bad.any():
            first = getattr(t, table)[column][bad].iloc[0]
            problems.append(
                f"{int(bad.sum())} {table} row(s) where {column} {what} (e.g. {excerpt(rederive.plain(first))})"
            )
    return _listed(problems, "durations, energies, counts and power samples are finite and in range")


@_check("partition_claim_consistent")
def check_partition_claim(t: ResultTables) -> Verdict:
    """What the result says it is (experiment row, summary.json, cycles, config, fingerprint) agrees everywhere: the
    partition it lands in is derived from its model, backend and hardware, not taken from one editable field."""
    exp, c, s = t.experiment.iloc[0], t.cycles, t.summary
    problems = []
    for col, what in (("experiment_key", "experiment"), ("hardware", "hardware")):
        try:
            validate_slug(exp[col], what)
        except UserError as exc:
            problems.append(str(exc))
    for col in ("model", "backend", "hardware", "weights", "experiment_key"):
        values = sorted(set(c[col].astype(str)))
        if values != [str(exp[col])]:
            problems.append(f"cycles.{col} is {excerpt(values)} but experiment.{col} is {excerpt(exp[col])}")
    for key, col in (
        *((c, c) for c in ("name", "model", "backend", "hardware", "weights", "experiment_key")),
        ("experiment_hash", "config_hash"),
    ):
        if s.get(key) != exp[col]:
            problems.append(f"summary.json {key} is {excerpt(s.get(key))} but experiment.{col} is {excerpt(exp[col])}")
    cfg = rederive.config_of(exp.config_json, "experiment.config_json")
    # the hash of the config as resolved when measured (its stored JSON): fields added since keep old hashes valid
    claims = {
        "name": cfg.name,
        "model": cfg.model,
        "backend": cfg.backend,
        "config_hash": content_hash(load_json(exp.config_json, "experiment.config_json")),
        "weights": weights_of(cfg.model),
        "experiment_key": cfg.experiment_key(),
        "cross_check_tolerance": cfg.energy.cross_check_tolerance,
    }
    problems += [
        f"experiment.{k} is {excerpt(rederive.plain(exp[k]))}, its config gives {excerpt(v)}"
        for k, v in claims.items()
        if not rederive.same(exp[k], v)
    ]
    fp = load_json(exp.fingerprint_json, "experiment.fingerprint_json")
    if not isinstance(fp, dict) or fp != s.get("fingerprint"):
        problems.append("experiment.fingerprint_json differs from summary.json's fingerprint")
    else:
        gpus = fp.get("gpus") or []
        derived = {
            "hardware": fingerprint_profile(fp),
            "fingerprint_hash": fp.get("fingerprint_hash"),
            "config_hash": fp.get("config_hash"),
        }
        problems += [
            f"experiment.{k} is {excerpt(exp[k])}, the environment fingerprint gives {excerpt(v)}"
            for k, v in derived.items()
            if exp[k] != v
        ]
        if fp.get("hardware_profile") != exp.hardware:
            problems.append(
                f"the fingerprint's hardware_profile is {excerpt(fp.get('hardware_profile'))}, "
                f"experiment.hardware is {excerpt(exp.hardware)}"
            )
        limit = sum(g.get("power_limit_w") or 0 for g in gpus) or None
        if not all(rederive.same(v, limit) for v in c.power_limit_w):
            problems.append(
                f"cycles.power_limit_w is {excerpt(sorted(set(c.power_limit_w.astype(float))))}, the "
                f"fingerprint's GPUs give {excerpt(limit)}"
            )
        if not (c.gpu_count == len(gpus)).all():
            problems.append(
                f"cycles.gpu_count is {excerpt(sorted(set(c.gpu_count)))}, the fingerprint lists {len(gpus)} GPU(s)"
            )
    if not isinstance(load_json(exp.meter_json, "experiment.meter_json"), dict) or load_json(
        exp.meter_json, "experiment.meter_json"
    ) != s.get("meter"):
        problems.append("experiment.meter_json differs from summary.json's meter")
    return _listed(
        problems,
        "experiment key, model, backend, hardware and weights agree with the config, the "
        "fingerprint, summary.json and every cycle",
    )


@_check("windows_match_cycles")
def check_windows_match_cycles(t: ResultTables) -> Verdict:
    """One cycle window per cycle, requests only for cycles that exist, and the window values the cycles repeat."""
    c, w = t.cycles, t.windows
    problems = []
    for kind in ("idle_before", "idle_after"):
        if (w.kind == kind).sum() > 1:
            problems.append(f"{(w.kind == kind).sum()} {kind} windows, at most one")
    cw = w[w.kind == "cycle"]
    if cw.cycle.isna().any():
        problems.append("a cycle window without a cycle number")
    cycle_keys = list(zip(c.sweep_point, c.cycle))
    window_keys = list(zip(cw.sweep_point, cw.cycle.fillna(-1).astype(int)))
    if len(set(cycle_keys)) != len(cycle_keys) or len(set(window_keys)) != len(window_keys):
        problems.append("a sweep point and cycle appear twice in cycles or in the cycle windows")
    unmatched = sorted(set(cycle_keys) ^ set(window_keys), key=str)
    if unmatched:
        problems.append(f"cycles and cycle windows differ: {excerpt(unmatched)} appear in one table only")
    strays = sorted(set(zip(t.requests.sweep_point, t.requests.cycle)) - set(cycle_keys), key=str)
    if strays:
        problems.append(f"requests of cycles that do not exist: {excerpt(strays)}")
    if sorted(set(c.sweep_point)) != sorted(t.sweep_points.sweep_point):
        problems.append(
            f"cycles cover sweep points {excerpt(sorted(set(c.sweep_point)))}, sweep_points lists "
            f"{excerpt(sorted(t.sweep_points.sweep_point))}"
        )
    windows = {(r.sweep_point, r.cycle): r for _, r in cw.iterrows()}
    never_stored = {*t.added.get("cycles", ()), *t.added.get("windows", ())}  # by an older folder: not compared
    for _, row in c.iterrows():
        win = windows.get((row.sweep_point, row.cycle))
        if win is None:
            continue
        for col, wcol in {
            **rederive.COPIED_FROM_WINDOW,
            "duration_s": "duration_s",
            "gross_energy_j": "gpu_energy_j",
            "energy_status": "gpu_energy_status",
        }.items():
            if col not in never_stored and wcol not in never_stored and not rederive.same(row[col], win[wcol]):
                problems.append(
                    f"cycles {excerpt(row.sweep_point)} cycle {row.cycle}: {col} is "
                    f"{excerpt(rederive.plain(row[col]))}, its window's {wcol} is "
                    f"{excerpt(rederive.plain(win[wcol]))}"
                )
    return _listed(problems, f"{len(c)} cycles, each with its window; the values they share agree")


@_check("measured_energy_has_timeline")
def check_measured_timeline(t: ResultTables) -> Verdict:
    """Measured energy comes with the power timeline of every GPU it sums: without it nothing can cross-check it."""
    m = t.windows[(t.windows.kind == "cycle") & (t.windows.gpu_energy_status == "measured")]
    devices = set(t.timeline.device.astype(str))
    problems = []
    for _, w in m.iterrows():
        inside = t.timeline[(t.timeline.t_s >= w.start_s) & (t.timeline.t_s <= w.end_s)]
        labels = set(rederive.parse_by_device(w.gpu_energy_by_device_j))
        if inside.empty or rederive.is_missing(w.timeline_energy_j) or not labels <= devices:
            problems.append(
                f"window {excerpt(w['name'])}: measured energy but "
                + (
                    "no power samples inside it"
                    if inside.empty
                    else f"no timeline for {excerpt(sorted(labels - devices))}"
                    if not labels <= devices
                    else "no timeline energy"
                )
            )
    return _listed(problems, f"every measured window ({len(m)}) has its power timeline")


@_check("derived_values_match_raw")
def check_derived(t: ResultTables) -> Verdict:
    """J/token, tokens/s, net energy, latencies, idle power and the statistics' CIs, from the raw readings."""
    return _listed(rederive.derived_problems(t), "every derived figure equals its recomputation from the raw readings")


@_check("energy_present")
def check_energy_present(t: ResultTables) -> Verdict:
    """Every cycle has energy, or says why not: unmeasured energy is empty with a reason, never 0."""
    c = t.cycles
    reasons = c.unmeasured_reason.fillna("").astype(str)
    bad = c[
        ((c.energy_status == "measured") & c.gross_energy_j.isna())
        | ((c.energy_status != "measured") & (reasons.str.len() == 0))
        | ~c.energy_status.isin(ENERGY_STATUSES)
    ]
    n_unmeasured = int((c.energy_status == "unmeasured").sum())
    return (
        bad.empty,
        f"{len(bad)} cycle(s){_points(bad)} lack energy and a reason"
        if len(bad)
        else (
            f"energy measured in all {len(c)} cycles"
            if not n_unmeasured
            else f"{n_unmeasured} cycle(s) explicitly unmeasured: {c.unmeasured_reason.dropna().iloc[0]}"
        ),
        {"cycles": len(c), "unmeasured_cycles": n_unmeasured},
    )


@_check("net_energy_non_negative")
def check_net_energy(t: ResultTables) -> Verdict:
    """Gross and net (idle-subtracted) energy are not negative: a negative one means the idle baseline was wrong."""
    m = _measured(t.cycles)
    bad = m[(m.gross_energy_j < 0) | (m.net_energy_j.notna() & (m.net_energy_j < 0))]
    return (
        bad.empty,
        f"{len(bad)} cycle(s){_points(bad)} with negative energy (min net {bad.net_energy_j.min():.3f} J): idle "
        "baseline above load power?"
        if len(bad)
        else "gross and net energy >= 0",
        {"bad_cycles": len(bad)},
    )


@_check("power_within_limit")
def check_power_limit(t: ResultTables) -> Verdict:
    """Energy at most power limit x duration (and average power at most the limit): a GPU cannot draw more. Measured
    energy without a known limit fails: it could not be checked."""
    m = _measured(t.cycles)
    unknown = m[_bad_numbers(m.power_limit_w, 0, strict=True)]
    if len(unknown):
        return (
            False,
            f"{len(unknown)} measured cycle(s) without a power limit (power_limit_w empty): their energy "
            "cannot be checked against what the GPUs can draw; measure where NVML reports the power limit",
            {"cycles_without_limit": len(unknown)},
        )
    allowed = m.power_limit_w * POWER_LIMIT_SLACK
    bad = m[(m.gross_energy_j > allowed * m.duration_s) | (m.avg_power_w > allowed)]
    worst = float((m.gross_energy_j / m.duration_s).max()) if len(m) else None
    return (
        bad.empty,
        f"{len(bad)} cycle(s){_points(bad)} above the power limit (energy / duration up to {worst:.1f} W > "
        f"{bad.power_limit_w.max():.1f} W)"
        if len(bad)
        else f"energy within power limit x duration ({len(m)} cycle(s) checked)",
        {"max_avg_power_w": worst},
    )


@_check("window_long_enough")
def check_window_length(t: ResultTables) -> Verdict:
    """Each measured window spans at least 10 energy-counter updates: shorter ones are dominated by the counter's
    quantisation."""
    m = _measured(t.cycles)
    bad = m[m.too_short.astype(bool)]
    return (
        bad.empty,
        f"{len(bad)} measured window(s){_points(bad)} shorter than 10 energy-counter updates "
        f"(min {bad.duration_s.min():.3f} s); "
        "use more prompts or cycles of >= 1 s"
        if len(bad)
        else "every measured window spans >= 10 counter updates",
        {"min_duration_s": float(m.duration_s.min()) if len(m) else None},
    )


@_check("counter_timeline_agree")
def check_cross_check(t: ResultTables) -> Verdict:
    """Each window within its own tolerance (the counter's ± and the timeline's own error, docs/energy.md); folders
    from before per-window tolerances use the experiment's single one (then 10 %)."""
    m = _measured(t.cycles)
    m = m[m.cross_check_rel_diff.notna()]
    legacy = t.experiment.iloc[0].cross_check_tolerance
    legacy = 0.10 if pd.isna(legacy) else float(legacy)
    tol = m.cross_check_tolerance.astype(float).fillna(legacy)
    over = m.cross_check_rel_diff.abs() - tol
    bad = m[over > 0]
    worst = float(m.cross_check_rel_diff.abs().max()) if len(m) else None
    if len(bad):
        i = over.idxmax()
        return (
            False,
            f"{len(bad)} cycle(s) where counter and timeline energy differ by more than their window's "
            f"tolerance (worst: {abs(m.cross_check_rel_diff[i]):.2%} against {tol[i]:.2%} in "
            f"{excerpt(m.sweep_point[i])} cycle {int(m.cycle[i])})",
            {"worst_rel_diff": worst},
        )
    return (
        True,
        f"counter vs timeline within each window's tolerance (worst {worst:.2%}; tolerances "
        f"{tol.min():.2%}-{tol.max():.2%} from each window's counter ± and timeline error)"
        if worst is not None
        else "no measured windows to cross-check",
        {"worst_rel_diff": worst},
    )


@_check("no_foreign_gpu_process")
def check_foreign_processes(t: ResultTables) -> Verdict:
    """No other process used the GPUs during a window: its energy would be counted as the model's."""
    c = t.cycles
    bad = c[c.foreign_processes.fillna("").astype(str).str.len() > 0]
    pids = excerpt(", ".join(sorted(set(bad.foreign_processes))))
    return (
        bad.empty,
        f"{len(bad)} cycle(s){_points(bad)} saw other processes on the GPU (pids {pids})"
        if len(bad)
        else "no foreign process on the GPU during any window",
    )


@_check("one_model_backend_per_partition")
def check_single_identity(t: ResultTables) -> Verdict:
    """One model, backend, hardware profile and weights kind in the whole result: a partition never mixes them."""
    c = t.cycles
    mixed = {
        col: sorted(c[col].astype(str).unique())
        for col in ("model", "backend", "hardware", "weights")
        if c[col].nunique() > 1
    }
    return not mixed, (
        f"mixed identity in one result: {excerpt(mixed)}" if mixed else "one model, backend, hardware and weights kind"
    )


RAW_CHECK_NAMES = tuple(RAW_CHECKS)
RAW_CHECK_DESCRIPTIONS = {name: " ".join(fn.__doc__.split("\n\n")[0].split()) for name, fn in RAW_CHECKS.items()}
"""What each check asserts (its docstring's first paragraph): the Dagster UI shows it beside the check."""
ENERGY_CHECKS = (
    "measured_energy_has_timeline",
    "net_energy_non_negative",
    "power_within_limit",
    "window_long_enough",
    "counter_timeline_agree",
)
"""Checks of measured energy: with no measured cycle they have nothing to check and say so ("skipped")."""


def _run(name: str, check: Callable[[ResultTables], Verdict], t: ResultTables) -> Finding:
    """A check that raises on tables it cannot make sense of fails; it never takes its caller down."""
    try:
        passed, message, *meta = check(t)
    except UserError as exc:  # our own message: it names the field
        return Finding(name, False, str(exc))
    except Exception as exc:  # crafted tables can break any assumption
        return Finding(
            name,
            False,
            f"could not be evaluated on these tables ({type(exc).__name__}: "
            f"{excerpt(str(exc), bare=True)}); they are not consistent",
        )
    return Finding(name, bool(passed), message, metadata=meta[0] if meta else {})


def validate(t: ResultTables) -> list[Finding]:
    if t.cycles.empty:
        return [Finding(name, False, "the result holds no cycles") for name in RAW_CHECK_NAMES]
    if "energy_status" in t.cycles and not (t.cycles.energy_status == "measured").any():
        reason = next(iter(t.cycles.unmeasured_reason.dropna().astype(str)), "no reason given")
        skipped = Finding("", True, f"skipped: energy unmeasured ({excerpt(reason, bare=True)})", skipped=True)
        return [
            replace(skipped, check=name) if name in ENERGY_CHECKS else _run(name, check, t)
            for name, check in RAW_CHECKS.items()
        ]
    return [_run(name, check, t) for name, check in RAW_CHECKS.items()]


def blocking_failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking and not f.passed]


def failure_message(failed: list[Finding]) -> str:
    """One line naming each failed check and what it found."""
    return "physics checks failed: " + "; ".join(f"{f.check}: {f.message}" for f in failed)

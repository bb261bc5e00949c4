"""Every derived figure of a result, recomputed from its raw readings with the engine's own functions.

A result folder holds raw readings (windows: each GPU's counter energy and the window edges; requests: arrival and
token times; timeline: power samples) and figures derived from them (cycles: J/token, tokens/s, net energy, ...;
summary.json: statistics with their CIs). An uploaded folder is untrusted, so its derived figures are recomputed here
with the functions that produced them (`metrics.request_metrics` and `cycle_metrics`, `energy.meter.timeline_energy` and
`window_figures`, `IdleBaseline`, `config.expand_sweep`, `stats.sweep_point_statistics`), and every disagreement
is reported. Each function returns a list of problems, empty when the folder is consistent.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from gpu_ops import phases
from gpu_ops.backends.base import RequestRecord
from gpu_ops.config import ExperimentConfig, content_hash, expand_sweep, parse_config
from gpu_ops.energy.meter import EDGE_MARGIN_S, IdleBaseline, WindowMeasurement, timeline_energy, window_figures
from gpu_ops.energy.nvml import COUNTER_UPDATE_S
from gpu_ops.energy.sampler import DEFAULT_SAMPLE_HZ, sample_period_s
from gpu_ops.energy.tolerance import (
    CROSS_CHECK_FLOOR,
    CROSS_CHECK_Z,
    LEGACY_CROSS_CHECK_SCALE,
    RULES,
    cross_check_tolerance,
    legacy_cross_check_tolerance,
    physics_tolerance,
    timeline_edge_error,
    timeline_sigma,
)
from gpu_ops.errors import UserError, excerpt
from gpu_ops.metrics import cycle_metrics, request_metrics
from gpu_ops.results import ResultTables, load_json
from gpu_ops.schema import CYCLE_WINDOW, WINDOW_FIELD, plain
from gpu_ops.stats import sweep_point_statistics
from gpu_ops.steady import max_num_seqs, steady_state

REL_TOL = 1e-9  # recomputed with the same float64 operations: only library versions may move the last digits
# The meter integrates a window's timeline as the window closes: it saw the samples up to its end and perhaps a few
# the sampler thread took while the window was being closed, not the later ones the stored timeline holds. The
# recomputation tries each of those views (the window's end, then each later sample time up to this many).
MAX_LATE_SAMPLES = 16
BY_DEVICE_ABS_TOL_J = 1e-5  # per-GPU energies are stored with 6 decimals
WINDOW_KINDS = ("idle_before", "warmup", "cycle", "idle_after")
COPIED_FROM_WINDOW = {name: WINDOW_FIELD.get(name, name) for name in CYCLE_WINDOW.names}
"""cycles column -> the field of the cycle's window it repeats (schema.CYCLE_WINDOW)."""
REQUEST_FIGURES = ("ttft_s", "tpot_s", "e2e_s", "queue_s")


def is_missing(v) -> bool:
    return plain(v) is None


def same(stored, derived, abs_tol: float = 1e-12) -> bool:
    """Both missing, or equal (numbers within REL_TOL)."""
    if is_missing(stored) or is_missing(derived):
        return is_missing(stored) and is_missing(derived)
    if isinstance(stored, (str, bool, np.bool_)) or isinstance(derived, (str, bool, np.bool_)):
        return type(plain(stored)) is type(plain(derived)) and plain(stored) == plain(derived)
    try:
        return math.isclose(float(stored), float(derived), rel_tol=REL_TOL, abs_tol=abs_tol)
    except (TypeError, ValueError):
        return False


def _differs(where: str, column: str, stored, derived) -> str:
    return f"{where}: {column} is {excerpt(plain(stored))}, the raw data give {excerpt(plain(derived))}"


def parse_by_device(text) -> dict[str, float]:
    """`gpu0=1.5;gpu1=2.0` (WindowMeasurement.readings) -> {"gpu0": 1.5, "gpu1": 2.0}."""
    out: dict[str, float] = {}
    for part in filter(None, str(plain(text) or "").split(";")):
        label, sep, value = part.partition("=")
        if not sep:
            raise UserError(f"gpu_energy_by_device_j {excerpt(text)}: expected device=J pairs separated by ';'")
        out[label] = float(value)
    return out


def parse_pids(text) -> list[int]:
    """`12,34` -> [12, 34]."""
    try:
        return [int(p) for p in filter(None, str(plain(text) or "").split(","))]
    except ValueError:
        raise UserError(f"foreign_processes {excerpt(text)}: expected process ids separated by ','") from None


def window_from_row(row: pd.Series) -> WindowMeasurement:
    """A stored windows row back as the WindowMeasurement the meter returned (the inverse of its readings)."""
    values = {f.name: plain(row.get(f.name)) for f in dataclasses.fields(WindowMeasurement)}
    values.update(
        gpu_energy_by_device_j=parse_by_device(row["gpu_energy_by_device_j"]),
        foreign_processes=parse_pids(row["foreign_processes"]),
        too_short=bool(row["too_short"]),
        throttle_reasons=int(values["throttle_reasons"] or 0),
        n_samples=int(row["n_samples"]),
    )
    return WindowMeasurement(**values)


def _sorted_timeline(t: ResultTables) -> tuple[pd.DataFrame, np.ndarray]:
    tl = t.timeline.sort_values("t_s", kind="stable").reset_index(drop=True)
    return tl, tl.t_s.to_numpy(dtype=float)


def _around(tl: pd.DataFrame, ts: np.ndarray, start: float, end: float) -> pd.DataFrame:
    """The samples timeline_energy looks at, found by bisection (it filters them again)."""
    lo, hi = np.searchsorted(ts, start - EDGE_MARGIN_S, "left"), np.searchsorted(ts, end + EDGE_MARGIN_S, "right")
    return tl.iloc[lo:hi]


def _cuts(around: pd.DataFrame, end_s: float) -> list[float]:
    """The last sample time the meter may have seen when it closed a window ending at `end_s` (see MAX_LATE_SAMPLES)."""
    late = np.unique(around.t_s[around.t_s > end_s].to_numpy())[:MAX_LATE_SAMPLES]
    return [end_s, *late.tolist()]


def config_of(text, where: str) -> ExperimentConfig:
    """A config stored in a table cell (JSON), validated like an experiment file."""
    return parse_config(load_json(text, where), where)


def _meter_number(meter, key: str, default: float) -> float:
    value = meter.get(key) if isinstance(meter, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default


def _sensed(meter) -> tuple[float, float] | None:
    """The sensed stretch the meter recorded (two positive seconds, the first larger), else None; anything else is
    refused, so a hostile folder cannot steer the attribution it is checked against."""
    value = meter.get("sensed_stretch_s") if isinstance(meter, dict) else None
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == 2 and all(type(v) in (int, float) for v in value)
    if not ok or not 1.0 > value[0] > value[1] >= 0:
        raise UserError(f"experiment.meter_json: sensed_stretch_s {excerpt(value)} is not [first, second] seconds with "
                        "1 > first > second >= 0")  # fmt: skip
    return float(value[0]), float(value[1])


@dataclasses.dataclass(frozen=True)
class MeterRules:
    """The counter update period and the cross-check rule a result was measured under (its meter_json)."""

    step_s: float
    rule: str  # gpu_ops.energy.tolerance.RULES
    floor: float
    z: float  # sigma-v2's z
    scale: float  # sqrt-v1's scale
    edge_period_s: float | None  # the edge term's period; None: a folder from before the edge term
    sensed_stretch_s: tuple[float, float] | None = None  # gpu_ops.phases' sensed fit; None: the timeline integral

    def tolerances(self, w, gpu_j: float | None, seen_at_close: list[pd.DataFrame]) -> list[float | None]:
        """The window's tolerance under this rule for each set of samples the meter may have seen when it closed it:
        every cut of `seen_at_close` (the first ends at the window's end), with or without the window's last sample
        per GPU (a late one). σ depends only on the samples inside, the edge term also on those past the end."""
        if gpu_j is None:
            return [None]
        if self.rule == "sqrt-v1":
            return [legacy_cross_check_tolerance(w.duration_s, self.step_s, self.floor, self.scale)]
        gpus = max(1, len(parse_by_device(w.gpu_energy_by_device_j)))
        full = seen_at_close[0]
        inside = full[(full.t_s >= w.start_s) & (full.t_s <= w.end_s)]
        variants = [[], list(inside.groupby("device").t_s.idxmax())] if len(inside) else [[]]
        cuts = seen_at_close if self.edge_period_s else seen_at_close[:1]
        out = []
        for late in variants:
            sigma = timeline_sigma(full.drop(late), w.start_s, w.end_s) if self.rule == "sigma-v2" else None
            for view in cuts:
                edge = (
                    timeline_edge_error(view.drop(late), w.start_s, w.end_s, self.edge_period_s)
                    if self.edge_period_s
                    else 0.0
                )
                u = plain(w.energy_uncertainty_j)
                out.append(
                    physics_tolerance(gpu_j, u, w.duration_s, gpus, edge)
                    if self.rule == "physics-v1"
                    else cross_check_tolerance(gpu_j, u, sigma, self.floor, self.z, edge)
                )
        return out


def meter_rules(t: ResultTables) -> MeterRules:
    """The rules the meter recorded (meter_json; a folder from before the rule was recorded names the one it was judged
    under once read: gpu_ops.results.upgrade); the nominal counter period where the meter did not measure it."""
    meter = load_json(t.experiment.iloc[0].meter_json, "experiment.meter_json")
    named = meter.get("cross_check_rule") if isinstance(meter, dict) else None
    if named not in RULES:
        raise UserError(f"experiment.meter_json: cross_check_rule {excerpt(named)} is not one of {list(RULES)}")
    step = _meter_number(meter, "counter_step_s", COUNTER_UPDATE_S)
    return MeterRules(
        step_s=step,
        rule=named,
        floor=_meter_number(meter, "cross_check_floor", CROSS_CHECK_FLOOR),
        z=_meter_number(meter, "cross_check_z", CROSS_CHECK_Z),
        scale=_meter_number(meter, "cross_check_scale", LEGACY_CROSS_CHECK_SCALE),
        edge_period_s=max(step, sample_period_s(_meter_number(meter, "sample_hz", DEFAULT_SAMPLE_HZ)))
        if meter.get("cross_check_edges") is True
        else None,
        sensed_stretch_s=_sensed(meter),
    )


def window_problems(t: ResultTables) -> list[str]:
    """Each window's duration, counter total, timeline energy, sample count and the figures they imply."""
    out = []
    tl, ts = _sorted_timeline(t)
    rules, tolerance = meter_rules(t), plain(t.experiment.iloc[0].cross_check_tolerance)
    never_stored = set(t.added.get("windows", ()))  # figures an older folder did not write: nothing to compare
    for _, w in t.windows.iterrows():
        where = f"windows {excerpt(w['name'])}"
        if not same(w.duration_s, w.end_s - w.start_s):
            out.append(_differs(where, "duration_s", w.duration_s, w.end_s - w.start_s))
        by_dev = parse_by_device(w.gpu_energy_by_device_j)
        measured = w.gpu_energy_status == "measured"
        if measured and not same(w.gpu_energy_j, sum(by_dev.values()), BY_DEVICE_ABS_TOL_J * len(by_dev)):
            out.append(_differs(where, "gpu_energy_j", w.gpu_energy_j, sum(by_dev.values())))
        if not measured and (not is_missing(w.gpu_energy_j) or by_dev):
            out.append(f"{where}: gpu_energy_status is {excerpt(w.gpu_energy_status)} but it holds energy")
        around = _around(tl, ts, w.start_s, w.end_s)
        seen_at_close = [around[around.t_s <= cut] for cut in _cuts(around, w.end_s)]
        derived_j = [timeline_energy(view, w.start_s, w.end_s) for view in seen_at_close]
        if not any(same(w.timeline_energy_j, j) for j in derived_j):
            out.append(_differs(where, "timeline_energy_j", w.timeline_energy_j, derived_j[0]))
        inside = int((seen_at_close[0].t_s >= w.start_s).sum())  # a late sample may have been missed, one per GPU
        if not inside - around.device.nunique() <= w.n_samples <= inside:
            out.append(_differs(where, "n_samples", w.n_samples, inside))
        gpu_j = plain(w.gpu_energy_j) if measured else None
        allowed = rules.tolerances(w, gpu_j, seen_at_close)
        derived = window_figures(w.duration_s, gpu_j, plain(w.timeline_energy_j), rules.step_s, tolerance, allowed[0])
        if tolerance is None and any(same(w.cross_check_tolerance, a) for a in allowed):
            derived.pop("cross_check_tolerance")
        out += [_differs(where, k, w[k], v) for k, v in derived.items() if k not in never_stored and not same(w[k], v)]
    return out


def idle_power(t: ResultTables) -> tuple[WindowMeasurement | None, WindowMeasurement | None, float | None]:
    w = t.windows
    before, after = (w[w.kind == kind] for kind in ("idle_before", "idle_after"))
    idle = IdleBaseline(
        window_from_row(before.iloc[0]) if len(before) else None, window_from_row(after.iloc[0]) if len(after) else None
    )
    return idle.before, idle.after, idle.power_w


def request_problems(t: ResultTables, max_output_tokens: dict[str, int]) -> list[str]:
    """TTFT, TPOT, E2E and queue time of every request from its arrival and token times (metrics.request_metrics);
    output tokens within the sweep point's max_output_tokens."""
    out = []
    for r in t.requests.itertuples(index=False):
        where = f"requests {excerpt(r.sweep_point)} cycle {r.cycle} request {r.request_id}"
        rec = RequestRecord(
            int(r.request_id),
            int(r.prompt_tokens),
            int(r.output_tokens),
            float(r.arrival_s),
            float(r.scheduled_s),
            [],
            int(r.batch_id),
            plain(r.prefill_end_s),
            plain(r.first_token_s),
            plain(r.last_token_s),
            tokenize_s=plain(getattr(r, "tokenize_s", None)),
        )
        derived = request_metrics(rec)
        out += [
            _differs(where, k, getattr(r, k), getattr(derived, k))
            for k in REQUEST_FIGURES
            if not same(getattr(r, k), getattr(derived, k))
        ]
        limit = max_output_tokens.get(r.sweep_point)
        if limit is not None and r.output_tokens > limit:
            out.append(
                f"{where}: {r.output_tokens} output tokens, more than the sweep point's max_output_tokens {limit}"
            )
    return out


def cycle_problems(t: ResultTables, configs: dict[str, ExperimentConfig]) -> list[str]:
    """Every figure of every cycle from its window, its requests, the idle baseline and the timeline
    (metrics.cycle_metrics), and the idle powers of the experiment row."""
    out = []
    before, after, idle = idle_power(t)
    exp = t.experiment.iloc[0]
    for column, derived in (
        ("idle_power_w", idle),
        ("idle_before_w", before.avg_power_w if before else None),
        ("idle_after_w", after.avg_power_w if after else None),
    ):
        if not same(exp[column], derived):
            out.append(_differs("experiment", column, exp[column], derived))
    windows = {(r.sweep_point, r.cycle): r for _, r in t.windows[t.windows.kind == "cycle"].iterrows()}
    requests = {key: g.reset_index(drop=True) for key, g in t.requests.groupby(["sweep_point", "cycle"], sort=False)}
    steps = {key: g for key, g in t.steps.groupby(["sweep_point", "cycle"], sort=False)} if len(t.steps) else {}
    sensed = meter_rules(t).sensed_stretch_s
    never_stored = set(t.added.get("cycles", ()))  # figures an older folder did not write: nothing to compare
    for _, c in t.cycles.iterrows():
        key = (c.sweep_point, c.cycle)
        where = f"cycles {excerpt(c.sweep_point)} cycle {c.cycle}"
        if key not in windows:
            out.append(f"{where}: no cycle window to derive it from")
            continue
        req = requests.get(key, t.requests.iloc[0:0])
        window = window_from_row(windows[key])
        split = phases.attribute(t.timeline, req, window, steps.get(key, t.steps.iloc[0:0]), sensed)
        derived = cycle_metrics(req, window, idle, configs[c.sweep_point].slo, plain(c.peak_memory_bytes), split)
        cfg = configs[c.sweep_point]
        steady = steady_state(steps.get(key, t.steps.iloc[0:0]), t.timeline, window, max_num_seqs(cfg))
        out += [
            _differs(where, k, c[k], v)
            for k, v in (derived.as_dict() | steady.as_dict()).items()
            if k not in never_stored and not same(c[k], v)
        ]
        out += request_energy_problems(where, req, window)
    return out


def request_energy_problems(where: str, req: pd.DataFrame, window) -> list[str]:
    """The requests' attributed energies (phases.PhaseSplit.request_j) sum to the window's counter energy within its
    ± (the edge-alignment bound; a rounding tolerance where it has none)."""
    if not req.energy_j.notna().any() or window.gpu_energy_j is None:
        return []
    total, window_j = float(req.energy_j.sum()), float(window.gpu_energy_j)
    allowed = max(window.energy_uncertainty_j or 0.0, 1e-9 * abs(window_j))
    if abs(total - window_j) > allowed:
        return [
            f"{where}: requests' energy_j sum to {total:.6g} J, the window measured {window_j:.6g} J "
            f"(± {allowed:.3g} J); the per-request attribution must share out the window's energy"
        ]
    return []


def sweep_point_problems(t: ResultTables, cfg: ExperimentConfig) -> tuple[list[str], dict[str, ExperimentConfig]]:
    """The sweep points the experiment's config expands to (labels, configs, hashes) against the sweep_points table and
    the cycles' per-point columns; returns the problems and each label's config."""
    out = []
    points = {p.label: p.config for p in expand_sweep(cfg, "experiment.config_json")}
    stored = t.sweep_points
    if sorted(stored.sweep_point) != sorted(points):
        return [
            f"sweep_points: {excerpt(sorted(stored.sweep_point))}, the experiment's config expands to "
            f"{excerpt(sorted(points))}"
        ], points
    for _, row in stored.iterrows():
        where = f"sweep_points {excerpt(row.sweep_point)}"
        point = points[row.sweep_point]
        # the hash of the config as resolved when measured (its stored JSON): fields added since keep old hashes valid
        stored_hash = content_hash(load_json(row.config_json, f"{where}: config_json"))
        if not same(row.config_hash, stored_hash):
            out.append(_differs(where, "config_hash", row.config_hash, stored_hash))
        if config_of(row.config_json, f"{where}: config_json") != point:
            out.append(f"{where}: config_json is not the config the experiment's sweep gives this point")
    hashes = dict(zip(stored.sweep_point, stored.config_hash))
    for _, c in t.cycles.iterrows():
        point = points.get(c.sweep_point)
        if point is None:
            out.append(f"cycles: sweep point {excerpt(c.sweep_point)} is not one of the experiment's")
            continue
        for column, derived in (
            ("precision", point.precision),
            ("batch_size", point.batching.batch_size),
            ("parallelism", point.parallelism.label),
            ("config_hash", hashes[c.sweep_point]),
        ):
            if not same(c[column], derived):
                out.append(_differs(f"cycles {excerpt(c.sweep_point)} cycle {c.cycle}", column, c[column], derived))
    return out, points


def statistics_problems(t: ResultTables) -> list[str]:
    """summary.json's statistics per sweep point (means, CIs, ...) against stats.sweep_point_statistics."""
    stored = t.summary.get("sweep_points")
    derived = sweep_point_statistics(t.cycles, t.requests, t.sweep_points).to_dict(orient="records")
    if not isinstance(stored, list) or len(stored) != len(derived) or not all(isinstance(s, dict) for s in stored):
        return [f"summary.json: sweep_points is {excerpt(stored)}, expected one statistics object per sweep point"]
    out = []
    for s, d in zip(stored, derived):
        where = f"summary.json sweep point {excerpt(d['sweep_point'])}"
        out += [_differs(where, k, s[k], v) for k, v in d.items() if k in s and not same(s[k], v)]
        out += [f"{where}: {excerpt(k)} is not a statistic of this result" for k in s if k not in d]
    warmups = {w.sweep_point: w.duration_s for w in t.windows[t.windows.kind == "warmup"].itertuples()}
    if (
        not isinstance(t.summary.get("warmup_s"), dict)
        or set(t.summary["warmup_s"]) != set(warmups)
        or not all(same(t.summary["warmup_s"][k], v) for k, v in warmups.items())
    ):
        out.append(_differs("summary.json", "warmup_s", t.summary.get("warmup_s"), warmups))
    idle = t.experiment.iloc[0].idle_power_w
    if not same(t.summary.get("idle_power_w"), idle):
        out.append(_differs("summary.json", "idle_power_w", t.summary.get("idle_power_w"), idle))
    return out


def derived_problems(t: ResultTables) -> list[str]:
    """All of the above: windows, requests, sweep points, cycles, statistics."""
    cfg = config_of(t.experiment.iloc[0].config_json, "experiment: config_json")
    point_problems, configs = sweep_point_problems(t, cfg)
    if point_problems:  # the per-point configs are needed below
        return point_problems
    return (
        window_problems(t)
        + request_problems(t, {k: c.max_output_tokens for k, c in configs.items()})
        + cycle_problems(t, configs)
        + statistics_problems(t)
    )

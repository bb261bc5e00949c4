"""How far the power timeline may stray from the energy counter over a window: the rules, each by its version.

A result records the rule its meter used (meter_json `cross_check_rule`); its windows are judged, and re-derived
(gpu_ops.rederive), under that rule. A new rule is a new version: it is fixed before the windows it judges, never
fitted to them, and validated out of sample on a new GPU run (docs/methodology.md).

- `physics-v1` (today's): the sensor's documented physics and nothing fitted: the counter's resolution (NVML reports
  mJ) and its edge-alignment ± (the update period at each edge, gpu_ops.energy.meter), the power field's documented
  accuracy (nvidia-smi: "accurate to within +/- 5 watts", per GPU, over the window's length), and the edge bound (a
  reading stands for one power-field update period, so where the power steps at an edge the integral can misplace up
  to that period times the step).
- `sigma-v2`: floor + (counter ± + 3 sigma of the timeline's integral + edge bound) / counter. Its floor and z were
  chosen after the H200 windows it judged (issue #27): kept to re-derive the folders written under it.
- `sqrt-v1`: floor + 0.1 sqrt(update period / length), for folders from before sigma-v2.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RULE = "physics-v1"
"""The rule new windows are measured under (recorded in meter_json as `cross_check_rule`)."""
RULES = ("physics-v1", "sigma-v2", "sqrt-v1")
POWER_ACCURACY_W = 5.0
"""The power reading's documented accuracy per GPU (nvidia-smi --help-query-gpu, power.draw: "accurate to within
+/- 5 watts")."""
COUNTER_RESOLUTION_J = 0.001
"""The energy counter's unit (nvmlDeviceGetTotalEnergyConsumption reports millijoules): one unit per read, two reads."""

CROSS_CHECK_FLOOR = 0.005  # sigma-v2 and sqrt-v1: floor + (counter ± + CROSS_CHECK_Z * timeline sigma) / counter
CROSS_CHECK_Z = 3.0
LEGACY_CROSS_CHECK_SCALE = 0.1  # sqrt-v1: floor + scale * sqrt(step / duration)


def physics_tolerance(
    gpu_energy_j: float, uncertainty_j: float | None, duration_s: float, gpus: int, edge_j: float
) -> float:
    """physics-v1: (counter ± + counter resolution + power-field accuracy x length + edge bound) / counter energy,
    for a window of `duration_s` over `gpus` GPUs. Nothing in it depends on how the two estimates happened to agree."""
    counter = (uncertainty_j or 0.0) + 2 * COUNTER_RESOLUTION_J * gpus
    return (counter + POWER_ACCURACY_W * gpus * duration_s + edge_j) / gpu_energy_j


def cross_check_tolerance(
    gpu_energy_j: float,
    uncertainty_j: float | None,
    timeline_sigma_j: float | None,
    floor: float = CROSS_CHECK_FLOOR,
    z: float = CROSS_CHECK_Z,
    edge_j: float = 0.0,
) -> float:
    """sigma-v2: the counter's own ± plus `z` standard errors of the timeline's integral plus the edge bound, over
    the counter's energy, plus a floor."""
    spread = (uncertainty_j or 0.0) + z * (timeline_sigma_j or 0.0) + edge_j
    return floor + spread / gpu_energy_j


def legacy_cross_check_tolerance(duration_s: float, step_s: float, floor: float, scale: float) -> float:
    """sqrt-v1: the rule folders written before the timeline's standard error was recorded were checked with."""
    return floor + scale * math.sqrt(step_s / max(duration_s, 1e-9))


def timeline_edge_error(timeline: pd.DataFrame, start_s: float, end_s: float, period_s: float) -> float:
    """Bound (J) of the timeline's error at a window's two edges, summed over devices: a reading stands for up to one
    `period_s` (the power field's update period, or the sampling interval if longer), so where the power steps at an
    edge (idle -> load) the integral can misplace up to period x the step: the mean reading in the period after the
    edge minus the mean in the period before it."""
    total = 0.0
    for _, g in timeline.groupby("device"):
        t, p = g.t_s.to_numpy(dtype=float), g.power_w.to_numpy(dtype=float)
        for edge in (start_s, end_s):
            before, after = p[(t >= edge - period_s) & (t < edge)], p[(t >= edge) & (t <= edge + period_s)]
            if len(before) and len(after):
                total += period_s * abs(float(after.mean()) - float(before.mean()))
    return total


def timeline_sigma(timeline: pd.DataFrame, start_s: float, end_s: float) -> float | None:
    """sigma-v2's standard error (J) of the timeline's integral over [start_s, end_s], summed over devices in
    quadrature: the update-to-update spread (RMS of successive differences / sqrt 2) / sqrt(updates), times the
    window's length."""
    inside = timeline[(timeline.t_s >= start_s) & (timeline.t_s <= end_s)]
    if not len(inside):
        return None
    variance = 0.0
    for _, g in inside.groupby("device"):
        p = g.power_w.to_numpy(dtype=float)
        updates = p[np.r_[True, np.diff(p) != 0]]
        if len(updates) > 1:
            spread = math.sqrt(float(np.mean(np.square(np.diff(updates)))) / 2.0)
            variance += (spread * (end_s - start_s)) ** 2 / len(updates)
    return math.sqrt(variance)

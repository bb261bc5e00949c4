"""Optional GPU conditioning before the measured cycles: thermal pre-conditioning and a clock lock.

A cold GPU runs its first minutes at other clocks and power than a warm one, so a run's first cycles can differ from
its last for a reason that is not the configuration. Pre-conditioning repeats the warm-up work until the GPU's
temperature is flat (its slope over the last `SLOPE_WINDOW_S` at most `FLAT_C_PER_MIN`), or a time limit passes. A
clock lock (where the driver permits it: it needs root or a permissive driver setting) removes the boost governor's
swings. Both are optional, and the run records exactly what was done (the meter's `conditioning`, in meter_json):
what was asked, what the driver refused and why, and where pre-conditioning stopped.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from gpu_ops.energy.nvml import NvmlSource

SLOPE_WINDOW_S = 30.0
FLAT_C_PER_MIN = 0.5


def temperature_slope(timeline: pd.DataFrame) -> float | None:
    """The hottest GPU's temperature trend over `timeline` in °C per minute (least-squares line); None with fewer
    than two temperature readings at distinct times."""
    temps = timeline.dropna(subset=["temp_c"]).groupby("t_s").temp_c.max()
    if len(temps) < 2:
        return None
    t = temps.index.to_numpy(dtype=float)
    return float(np.polyfit(t - t[0], temps.to_numpy(dtype=float), 1)[0] * 60.0)


def precondition(
    meter,
    work: Callable[[], None],
    limit_s: float,
    window_s: float = SLOPE_WINDOW_S,
    flat_c_per_min: float = FLAT_C_PER_MIN,
) -> dict:
    """Repeat `work` (the warm-up requests) until the temperature slope over the last `window_s` is within
    ±`flat_c_per_min`, or `limit_s` passed. Returns what was done: seconds, rounds, the last slope and temperature,
    and whether it settled (never claims a flat temperature it did not see)."""
    start = meter.now()
    rounds, slope, flat = 0, None, False
    while True:
        work()
        rounds += 1
        now = meter.now()
        if now - start >= window_s:
            slope = temperature_slope(meter.timeline(now - window_s, now))
            flat = slope is not None and abs(slope) <= flat_c_per_min
        if flat or now - start >= limit_s:
            break
    last = meter.timeline(meter.now() - window_s, meter.now()).temp_c.dropna()
    return {
        "seconds": round(meter.now() - start, 3),
        "rounds": rounds,
        "slope_c_per_min": slope,
        "temp_c": float(last.iloc[-1]) if len(last) else None,
        "flat": flat,
        "rule": f"|slope| <= {flat_c_per_min:g} C/min over the last {window_s:g} s, at most {limit_s:g} s",
    }


def lock_clocks(gpu: NvmlSource, mhz: int) -> dict:
    """Lock each GPU's SM clock at `mhz` (nvmlDeviceSetGpuLockedClocks) where the driver permits it. Returns what was
    done: the GPUs locked and, for each refused one, the driver's reason (the run goes on unlocked there)."""
    locked, refused = [], {}
    for t in gpu.targets:
        try:
            gpu.nvml.nvmlDeviceSetGpuLockedClocks(t.handle, mhz, mhz)
            locked.append(t.label)
        except Exception as exc:
            if not type(exc).__name__.startswith("NVMLError"):
                raise
            refused[t.label] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return {"requested_mhz": mhz, "locked": locked, "refused": refused}


def unlock_clocks(gpu: NvmlSource, record: dict) -> None:
    """Give the GPUs `lock_clocks` locked back to the driver's governor."""
    for t in gpu.targets:
        if t.label in record.get("locked", []):
            gpu.nvml.nvmlDeviceResetGpuLockedClocks(t.handle)

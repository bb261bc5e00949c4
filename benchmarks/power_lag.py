"""How far the GPU power reading lags the work, read through the meter's own sampler (the timeline every window and
every per-step attribution uses), apart from any run it would correct (issue #32; docs/benchmarks §21: isolated
prefill steps of a few hundredths of a second read low, because the power rises after them).

    python benchmarks/power_lag.py --out RUN_DIR [--gpu 0] [--repeats 20]

A square wave of matrix-multiply bursts with known edges (each edge stamped on the meter clock after a CUDA sync),
`repeats` bursts of each length in BURSTS_S, each after IDLE_S of idle:
- per long burst, the rise lag: when the reading first crosses halfway from the idle level before the burst to the
  burst's plateau, after the burst began (interpolated between samples); and the fall lag at its end, likewise;
- per short burst (as long as an isolated prefill step), the share of its energy above idle that the reading shows
  inside the burst's own span, as recorded and shifted later by the median rise lag.
RUN_DIR/result.json holds each figure per burst (`series`: rise_lag_s, fall_lag_s, short_captured, ...), the
timeline and the edges, so that the figures can be derived again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

BURSTS_S = (0.3, 0.04)  # long: a plateau to measure the lag on; short: an isolated prefill step's length (§21)
IDLE_S = 0.6
PLATEAU_TAIL = 0.5  # the plateau is the mean of a long burst's last half, shifted by its lag


def crossing(t: np.ndarray, p: np.ndarray, after: float, level: float, rising: bool) -> float | None:
    """The first time after `after` at which the reading crosses `level` (rising or falling), interpolated
    linearly between the two samples around it."""
    i = int(np.searchsorted(t, after))
    for k in range(max(i, 1), len(t)):
        a, b = p[k - 1], p[k]
        if (rising and a < level <= b) or (not rising and a > level >= b):
            return float(t[k - 1] + (t[k] - t[k - 1]) * (level - a) / (b - a))
    return None


def mean_in(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float | None:
    inside = p[(t >= a) & (t <= b)]
    return float(inside.mean()) if len(inside) else None


def edge_lags(t: np.ndarray, p: np.ndarray, bursts: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per long burst: rise lag (halfway crossing after its start - start) and fall lag (after its end - end)."""
    rises, falls = [], []
    for start, end in bursts:
        idle = mean_in(t, p, start - IDLE_S / 2, start)
        seen = p[(t >= start) & (t <= end + IDLE_S / 2)]
        if idle is None or not len(seen):
            continue
        rough = crossing(t, p, start, idle + 0.5 * (float(seen.max()) - idle), True)  # locates the plateau
        if rough is None:
            continue
        lag = rough - start
        plateau = mean_in(t, p, start + lag + (end - start) * (1 - PLATEAU_TAIL), end + lag)
        if plateau is None or plateau <= idle:
            continue
        half = idle + 0.5 * (plateau - idle)
        up, down = crossing(t, p, start, half, True), crossing(t, p, end, half, False)
        if up is not None:
            rises.append(up - start)
        if down is not None:
            falls.append(down - end)
    return rises, falls


def energy_above(t: np.ndarray, p: np.ndarray, a: float, b: float, idle: float) -> float:
    """The reading's energy above `idle` over [a, b] (trapezoids on the samples inside, clipped at zero)."""
    inside = (t >= a) & (t <= b)
    if inside.sum() < 2:
        return 0.0
    y, x = np.clip(p[inside] - idle, 0.0, None), t[inside]
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def captured(t: np.ndarray, p: np.ndarray, bursts: list[tuple[float, float]], shift_s: float) -> list[float]:
    """Per short burst: the energy above idle the reading shows inside [start, end] shifted by `shift_s`, over all it
    shows from the burst's start until the next idle stretch (end + IDLE_S / 2)."""
    out = []
    for start, end in bursts:
        idle = mean_in(t, p, start - IDLE_S / 2, start)
        if idle is None:
            continue
        total = energy_above(t, p, start, end + IDLE_S / 2, idle)
        if total > 0:
            out.append(energy_above(t, p, start + shift_s, end + shift_s, idle) / total)
    return out


def figures(t: np.ndarray, p: np.ndarray, long: list, short: list) -> dict:
    rises, falls = edge_lags(t, p, long)
    lag = statistics.median(rises) if rises else 0.0
    return {
        "rise_lag_s": rises,
        "fall_lag_s": falls,
        "short_captured": captured(t, p, short, 0.0),
        "short_captured_at_rise_lag": captured(t, p, short, lag),
        "median_rise_lag_s": lag if rises else None,
    }


def square_wave(meter, torch, repeats: int) -> dict[float, list[tuple[float, float]]]:
    """Bursts of bf16 matrix multiplies; each edge is stamped on the meter clock after a CUDA sync."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    torch.cuda.synchronize()
    out: dict[float, list[tuple[float, float]]] = {s: [] for s in BURSTS_S}
    import time

    for length in BURSTS_S:
        for _ in range(repeats):
            time.sleep(IDLE_S)
            start = meter.now()
            while meter.now() - start < length:
                for _ in range(4):
                    a @ b
                torch.cuda.synchronize()
            out[length].append((start, meter.now()))
    time.sleep(IDLE_S)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the run's raw folder ({run_dir} under the ledger)")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    import torch

    from gpu_ops.config import parse_config
    from gpu_ops.energy import build_meter

    if not torch.cuda.is_available():
        print("power_lag.py needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    torch.cuda.set_device(args.gpu)
    cfg = parse_config({"name": "power-lag", "model": "builtin:micro-llama", "gpus": [args.gpu]})
    with build_meter(cfg, use_cuda=True) as meter:
        desc = meter.describe()
        begin = meter.begin_window("square-wave")
        edges = square_wave(meter, torch, args.repeats)
        meter.end_window("square-wave")
        timeline = meter.timeline(begin, meter.now())
    power = timeline.groupby("t_s", as_index=False).power_w.sum()
    t, p = power.t_s.to_numpy(), power.power_w.to_numpy()
    got = figures(t, p, edges[BURSTS_S[0]], edges[BURSTS_S[1]])
    result = {
        "device": torch.cuda.get_device_name(args.gpu),
        "power_source": desc.get("power_source"),
        "sample_hz": desc.get("sample_hz"),
        "sample_period_s": float(np.median(np.diff(t))) if len(t) > 1 else None,
        "bursts_s": list(BURSTS_S),
        "idle_s": IDLE_S,
        "edges": {str(k): v for k, v in edges.items()},
        "timeline": {"t_s": t.tolist(), "power_w": p.tolist()},
        "series": got,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out / "result.json")
    print(f"device {result['device']}, power {result['power_source']}, sample period {result['sample_period_s']} s")
    for key in ("rise_lag_s", "fall_lag_s", "short_captured", "short_captured_at_rise_lag"):
        v = got[key]
        print(f"{key}: n {len(v)}, median {statistics.median(v):.4f}, min {min(v):.4f}, max {max(v):.4f}" if v else
              f"{key}: none")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

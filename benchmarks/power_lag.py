"""How the GPU power reading follows the work, read through the meter's own sampler (the timeline every window and
every per-step attribution uses), apart from any run it would correct (issue #32, docs/benchmarks §21: isolated
prefill steps of a few hundredths of a second read low, because their power shows up later).

    python benchmarks/power_lag.py --out RUN_DIR [--gpu 0] [--repeats 20]

The H100's power field changes only every ~100 ms (its update period), so a reading cannot show work shorter than
that where it happened. What a per-step attribution needs to know is what each update reports. The model under test:
each update reports the mean power over the update period before it. A square wave of matrix-multiply bursts with
known edges (stamped on the meter clock after a CUDA sync), sampled at 500 Hz so that every update is seen:
- the update times (the samples where the reading changes) and their period;
- per long burst, the first update after its start: the share of the way from the idle level to the burst's level
  it reads, against the share of its period the burst covered ((update - start) / period); the model predicts them
  equal, and `first_update_error` is their difference;
- per long burst, the rise lag (the reading's halfway crossing after the start) and the fall lag, as read;
- per short burst (as long as an isolated prefill step), the share of its energy above idle that the reading, as
  recorded, shows inside the burst's own span.
RUN_DIR/result.json holds each figure per burst (`series`), the timeline and the edges, so that all of it can be
derived again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gpu_ops.energy.meter import integrate

BURSTS_S = (0.5, 0.04)  # long: several update periods of plateau; short: an isolated prefill step's length (§21)
IDLE_S = 0.8  # several update periods, so that the reading is back at idle before the next burst
SAMPLE_HZ = 500.0  # every ~100 ms update seen within 2 ms


def update_times(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The first sample of each new reading: when the field was updated (to within one sampling period)."""
    return t[1:][np.diff(p) != 0]


def reading_at(t: np.ndarray, p: np.ndarray, when: float) -> float:
    """The reading held at `when` (the last sample at or before it)."""
    return float(p[max(int(np.searchsorted(t, when, side="right")) - 1, 0)])


def burst_levels(t, p, updates: np.ndarray, start: float, end: float, period: float) -> tuple[float, float] | None:
    """(idle reading at the burst's start, the burst's level: the median reading of the updates whose period lies
    wholly inside it); None when no update does."""
    inside = updates[(updates > start + 2 * period) & (updates <= end)]
    if not len(inside):
        return None
    return reading_at(t, p, start), float(np.median([reading_at(t, p, u) for u in inside]))


def first_update_errors(t, p, updates: np.ndarray, bursts: list[tuple[float, float]]) -> tuple[list, list]:
    """Per long burst: (share of the way from idle to the burst's level that the first update after its start
    reads) - (share of the update period before that update the burst covered); and that covered share."""
    period = float(np.median(np.diff(updates)))
    errors, covered = [], []
    for start, end in bursts:
        before = updates[updates <= start]
        after = updates[updates > start]
        levels = burst_levels(t, p, updates, start, end, period)
        if not len(before) or not len(after) or levels is None or levels[1] <= levels[0]:
            continue
        idle, level = levels
        read = (reading_at(t, p, after[0]) - idle) / (level - idle)
        share = min(1.0, (after[0] - start) / period)
        errors.append(read - share)
        covered.append(share)
    return errors, covered


def crossing(t: np.ndarray, p: np.ndarray, after: float, until: float, level: float, rising: bool) -> float | None:
    """The first time in (after, until] at which the reading crosses `level`, interpolated between samples."""
    for k in range(max(int(np.searchsorted(t, after)), 1), int(np.searchsorted(t, until, side="right"))):
        a, b = p[k - 1], p[k]
        if (rising and a < level <= b) or (not rising and a > level >= b):
            return float(t[k - 1] + (t[k] - t[k - 1]) * (level - a) / (b - a))
    return None


def edge_lags(t, p, updates: np.ndarray, bursts: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per long burst: the reading's halfway crossing after its start, minus the start; and after its end."""
    period = float(np.median(np.diff(updates)))
    rises, falls = [], []
    for start, end in bursts:
        levels = burst_levels(t, p, updates, start, end, period)
        if levels is None:
            continue
        idle, level = levels
        half = idle + 0.5 * (level - idle)
        up = crossing(t, p, start, end, half, True)
        down = crossing(t, p, end, end + IDLE_S, half, False)
        if up is not None:
            rises.append(up - start)
        if down is not None:
            falls.append(down - end)
    return rises, falls


def edge_reads(t, p, updates: np.ndarray, bursts: list[tuple[float, float]], edge: str, n: int = 2) -> list[tuple]:
    """Per long burst, sorted by the first column: seconds from its start (edge "rise") or end ("fall") to the first
    update after it, then the share of the way from idle to the burst's level that each of the first `n` updates
    after the edge reads. Shows which part of its period an update reports (docs/benchmarks §22)."""
    period = float(np.median(np.diff(updates)))
    rows = []
    for start, end in bursts:
        at = start if edge == "rise" else end
        after = updates[updates > at][:n]
        levels = burst_levels(t, p, updates, start, end, period)
        if levels is None or len(after) < n or levels[1] <= levels[0]:
            continue
        idle, level = levels
        rows.append((float(after[0] - at), *((reading_at(t, p, u) - idle) / (level - idle) for u in after)))
    return sorted(rows)


def fit_stretch(rise: list[tuple], fall: list[tuple], sample_s: float) -> tuple[float, float]:
    """The stretch [update - first, update - second] (seconds) whose mean power best predicts the edge reads (least
    squares over a 1 ms grid): a burst that began x before an update covers the part of the stretch after u - x, one
    that ended y before it the part before u - y. An update is seen up to one sample late: x and y lose half a sample.
    Reads above the burst's level (its start's overshoot) count as the full level. gpu_ops.energy.meter.SENSED_STRETCH_S
    holds the H100's (docs/benchmarks §22)."""
    best = None
    for first in np.arange(0.002, 0.1, 0.001):
        for second in np.arange(0.0, first - 0.0015, 0.001):
            err = 0.0
            for edge, rows in (("rise", rise), ("fall", fall)):
                for ms, read, *_ in rows:
                    covered = float(np.clip((ms - sample_s / 2 - second) / (first - second), 0.0, 1.0))
                    err += (min(read, 1.0) - (covered if edge == "rise" else 1.0 - covered)) ** 2
            if best is None or err < best[0]:
                best = (err, round(float(first), 3), round(float(second), 3))
    return best[1], best[2]


def captured(t: np.ndarray, p: np.ndarray, bursts: list[tuple[float, float]]) -> list[float]:
    """Per short burst: the energy above idle the reading shows inside [start, end], over all it shows from the
    start until the next burst could begin (end + IDLE_S)."""
    out = []
    for start, end in bursts:
        above = np.clip(p - reading_at(t, p, start), 0.0, None)
        total = integrate(t, above, start, end + IDLE_S)
        if total:
            out.append((integrate(t, above, start, end) or 0.0) / total)
    return out


def figures(t: np.ndarray, p: np.ndarray, long: list, short: list) -> dict:
    """Every figure of the module docstring. The model figures need a reading sampled at least 5 times per update
    period (else an update's time is not known); without that they are empty, and `unresolved` says why."""
    updates = update_times(t, p)
    sample = float(np.median(np.diff(t)))
    period = float(np.median(np.diff(updates))) if len(updates) >= 3 else None
    if period is None or sample * 5 > period:
        return {"update_period_s": period, "unresolved": f"sampled every {sample:.4f} s, updates every {period} s",
                "first_update_error": [], "abs_first_update_error": [], "covered_share": [], "rise_lag_s": [],
                "fall_lag_s": [], "short_captured": captured(t, p, short)}  # fmt: skip
    errors, covered = first_update_errors(t, p, updates, long)
    rises, falls = edge_lags(t, p, updates, long)
    return {
        "update_period_s": period,
        "unresolved": None,
        "first_update_error": errors,
        "abs_first_update_error": [abs(e) for e in errors],
        "covered_share": covered,
        "rise_lag_s": rises,
        "fall_lag_s": falls,
        "short_captured": captured(t, p, short),
    }


def square_wave(meter, torch, repeats: int) -> dict[float, list[tuple[float, float]]]:
    """Bursts of bf16 matrix multiplies; each edge is stamped on the meter clock after a CUDA sync."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    out: dict[float, list[tuple[float, float]]] = {s: [] for s in BURSTS_S}
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
    warm = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):  # cuBLAS set-up and kernel loading before any burst is timed
        warm @ warm
    torch.cuda.synchronize()
    cfg = parse_config({"name": "power-lag", "model": "builtin:micro-llama", "gpus": [args.gpu],
                        "energy": {"sample_hz": SAMPLE_HZ}})  # fmt: skip
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
        "update_period_s": got.pop("update_period_s"),
        "unresolved": got.pop("unresolved"),
        "series": got,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out / "result.json")
    print(f"device {result['device']}, power {result['power_source']}, sample period {result['sample_period_s']} s, "
          f"update period {result['update_period_s']} s")  # fmt: skip
    for key, v in got.items():
        print(f"{key}: n {len(v)}, median {statistics.median(v):.4f}, min {min(v):.4f}, max {max(v):.4f}" if v else
              f"{key}: none")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How often the GPU energy counter really steps, and what the meter records for windows shorter and longer
than that step: the evidence behind COUNTER_UPDATE_S, the `too_short` flag and "no counter step = unmeasured".

    python benchmarks/counter_step.py [--seconds 3] [--gpu 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pynvml as nv

from gpu_ops.config import parse_config
from gpu_ops.energy import build_meter


def step_intervals(handle, seconds: float) -> list[float]:
    """Poll the counter as fast as NVML answers; the times between value changes are its update period."""
    changes, last = [], nv.nvmlDeviceGetTotalEnergyConsumption(handle)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        value = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != last:
            changes.append(time.perf_counter())
            last = value
    return [b - a for a, b in zip(changes, changes[1:])]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--gpu", type=int, default=0)
    args = ap.parse_args()
    nv.nvmlInit()
    handle = nv.nvmlDeviceGetHandleByIndex(args.gpu)
    print(f"device: {nv.nvmlDeviceGetName(handle)}, driver {nv.nvmlSystemGetDriverVersion()}")
    gaps = step_intervals(handle, args.seconds)
    if gaps:
        q = statistics.quantiles(gaps, n=20)
        print(
            f"counter steps in {args.seconds:.0f} s (idle GPU): {len(gaps) + 1}; interval ms: min "
            f"{min(gaps) * 1e3:.1f}, p5 {q[0] * 1e3:.1f}, median {statistics.median(gaps) * 1e3:.1f}, p95 "
            f"{q[-1] * 1e3:.1f}, max {max(gaps) * 1e3:.1f}"
        )
    else:
        print(f"counter did not step in {args.seconds:.0f} s")
    cfg = parse_config({"name": "counter-step", "model": "builtin:micro-llama", "gpus": [args.gpu]})
    with build_meter(cfg, use_cuda=True) as meter:
        for ms in (5, 20, 50, 100, 200, 1000):
            hits = 0
            for _ in range(10):
                meter.begin_window("w")
                time.sleep(ms / 1000)
                w = meter.end_window("w")
                hits += w.gpu_energy_status == "measured"
            print(
                f"{ms:5d} ms windows: {hits}/10 measured; last: {w.gpu_energy_status}, "
                f"{f'{w.gpu_energy_j:.3f} J' if w.gpu_energy_j is not None else w.gpu_unmeasured_reason}, "
                f"too_short={w.too_short}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

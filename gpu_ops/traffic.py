"""Arrival schedules. Open loop: a request is sent at its arrival time whether or not earlier ones finished.

Gaps follow vLLM's benchmark: Gamma(shape=burstiness, scale=1/(rate*burstiness)); burstiness 1 is Poisson.
"""

from __future__ import annotations

import numpy as np

from gpu_ops.config import Traffic


def arrival_times(traffic: Traffic, n: int) -> np.ndarray:
    """Seconds after the cycle start at which each of `n` requests arrives (first at 0)."""
    if n <= 0:
        return np.zeros(0)
    if traffic.mode == "offline":
        return np.zeros(n)
    if traffic.mode == "constant":
        return np.arange(n, dtype=float) / traffic.rate
    rng = np.random.default_rng(traffic.seed)
    gaps = rng.gamma(shape=traffic.burstiness, scale=1.0 / (traffic.rate * traffic.burstiness), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])

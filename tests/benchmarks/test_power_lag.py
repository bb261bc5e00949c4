"""benchmarks/power_lag.py: the sensor-lag figures, on a simulated reading whose delay and response are known."""

import math

import numpy as np

from benchmarks import power_lag as L


def simulated(delay_s: float, tau_s: float, period_s: float, seed: int = 0):
    """A square wave of bursts (BURSTS_S, 10 each, IDLE_S apart) read by a sensor that answers `delay_s` late with a
    first-order response of time constant `tau_s`: 80 W idle, 700 W busy, sampled every `period_s` with jitter."""
    bursts: dict[float, list[tuple[float, float]]] = {b: [] for b in L.BURSTS_S}
    now = 0.0
    for length in L.BURSTS_S:
        for _ in range(10):
            now += L.IDLE_S
            bursts[length].append((now, now + length))
            now += length
    now += L.IDLE_S
    fine = np.arange(0.0, now, 0.0005)
    on = np.zeros_like(fine)
    for spans in bursts.values():
        for a, b in spans:
            on[(fine - delay_s >= a) & (fine - delay_s < b)] = 1.0
    y, alpha = np.empty_like(on), 0.0005 / tau_s
    level = 0.0
    for i, v in enumerate(on):
        level += alpha * (v - level)
        y[i] = level
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, now, period_s) + rng.uniform(0, period_s / 4, size=len(np.arange(0.0, now, period_s)))
    t = t[t < now]
    p = 80.0 + 620.0 * np.interp(t, fine, y) + rng.normal(0, 2.0, size=len(t))
    return t, p, bursts


def test_the_lags_of_a_known_sensor_are_found():
    delay, tau = 0.03, 0.01
    t, p, bursts = simulated(delay, tau, period_s=0.005)
    got = L.figures(t, p, bursts[L.BURSTS_S[0]], bursts[L.BURSTS_S[1]])
    expected = delay + tau * math.log(2)  # a first-order response crosses halfway tau*ln2 after it starts
    assert len(got["rise_lag_s"]) == 10 and len(got["fall_lag_s"]) == 10
    assert abs(np.median(got["rise_lag_s"]) - expected) < 0.004
    assert abs(np.median(got["fall_lag_s"]) - expected) < 0.004
    # a 40 ms burst read in its own span shows under half its energy; read at the lag, most of it (the response's
    # rise and tail stay outside any 40 ms span)
    assert np.median(got["short_captured"]) < 0.4 < 0.7 < np.median(got["short_captured_at_rise_lag"])


def test_a_sensor_without_lag_shows_a_short_burst_in_its_own_span():
    t, p, bursts = simulated(0.0, 0.001, period_s=0.002)
    got = L.figures(t, p, bursts[L.BURSTS_S[0]], bursts[L.BURSTS_S[1]])
    assert np.median(got["rise_lag_s"]) < 0.003
    assert np.median(got["short_captured"]) > 0.9

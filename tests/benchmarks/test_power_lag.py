"""benchmarks/power_lag.py: what each update of a power reading reports, on simulated sensors whose behaviour is
known: one that reports the mean power of the update period before each update (the model the target states), and
one that reports the power of one moment, some time late."""

import numpy as np

from benchmarks import power_lag as L

PERIOD = 0.1  # the H100 power field's update period (docs/benchmarks §21)


def simulated(kind: str, seed: int = 0, sample_s: float = 0.002):
    """Bursts (BURSTS_S, 12 each, IDLE_S apart; starts at random phases to the updates), 80 W idle and 700 W busy,
    read by a sensor updated every PERIOD: `mean` reports the mean power of the period before each update, `late`
    the power 30 ms before it, `stretch` the mean of [update - 25 ms, update - 10 ms]; the reading is sampled every
    `sample_s`."""
    rng = np.random.default_rng(seed)
    bursts: dict[float, list[tuple[float, float]]] = {b: [] for b in L.BURSTS_S}
    now = 0.0
    for length in L.BURSTS_S:
        for _ in range(12):
            now += L.IDLE_S + rng.uniform(0, PERIOD)
            bursts[length].append((now, now + length))
            now += length
    now += L.IDLE_S
    fine = np.arange(0.0, now, 0.0005)
    power = np.full_like(fine, 80.0)
    for spans in bursts.values():
        for a, b in spans:
            power[(fine >= a) & (fine < b)] = 700.0
    updates = np.arange(rng.uniform(0, PERIOD) + PERIOD, now, PERIOD)
    if kind == "mean":
        values = [power[(fine > u - PERIOD) & (fine <= u)].mean() for u in updates]
    elif kind == "stretch":  # what §22 found on the H100: the mean of a short stretch ending 10 ms before the update
        values = [power[(fine > u - 0.025) & (fine <= u - 0.01)].mean() for u in updates]
    else:
        values = list(np.interp(updates - 0.03, fine, power))
    values = np.array(values) + rng.normal(0, 0.5, size=len(updates))  # every update changes the reading a little
    t = np.arange(updates[0], now, sample_s)
    p = values[np.searchsorted(updates, t, side="right") - 1]
    return t, p, bursts


def test_a_sensor_reporting_the_mean_of_each_update_period_meets_the_model():
    t, p, bursts = simulated("mean")
    got = L.figures(t, p, bursts[L.BURSTS_S[0]], bursts[L.BURSTS_S[1]])
    assert abs(got["update_period_s"] - PERIOD) < 0.003 and got["unresolved"] is None
    assert len(got["abs_first_update_error"]) == 12 and np.median(got["abs_first_update_error"]) < 0.05
    assert 0.05 < np.median(got["rise_lag_s"]) < 0.15  # read up to a period late
    assert np.median(got["short_captured"]) < 0.6  # most of a 40 ms burst shows up after it


def test_a_sensor_reporting_one_late_moment_fails_the_model():
    t, p, bursts = simulated("late")
    got = L.figures(t, p, bursts[L.BURSTS_S[0]], bursts[L.BURSTS_S[1]])
    assert np.median(got["abs_first_update_error"]) > 0.2  # the target (median <= 0.1) tells the two apart


def test_a_reading_sampled_too_slowly_to_see_its_updates_gives_no_model_figure():
    t, p, bursts = simulated("mean")
    coarse = np.arange(0, len(t), 150)  # one sample every 0.3 s: updates are missed
    got = L.figures(t[coarse], p[coarse], bursts[L.BURSTS_S[0]], bursts[L.BURSTS_S[1]])
    assert got["abs_first_update_error"] == [] and got["unresolved"].startswith("sampled every 0.3000 s")


def test_edge_reads_show_which_stretch_of_its_period_an_update_reports():
    """On the `stretch` sensor: an update that came under 10 ms after a burst's start reads idle, one over 25 ms after
    it the full level; after a burst's end, the reverse."""
    t, p, bursts = simulated("stretch", seed=0)
    updates = L.update_times(t, p)
    rise = L.edge_reads(t, p, updates, bursts[L.BURSTS_S[0]], "rise")
    fall = L.edge_reads(t, p, updates, bursts[L.BURSTS_S[0]], "fall")
    assert len(rise) == len(fall) == 12 and [r[0] for r in rise] == sorted(r[0] for r in rise)
    assert all(abs(first) < 0.05 for ms, first, _ in rise if ms < 0.009)
    assert all(abs(first - 1) < 0.05 for ms, first, _ in rise if ms > 0.027)
    assert all(abs(first - 1) < 0.05 for ms, first, _ in fall if ms < 0.009)
    assert all(abs(first) < 0.05 for ms, first, _ in fall if ms > 0.027)
    assert all(abs(second - 1) < 0.05 for _, _, second in rise)  # a period later the reading is at the full level
    early = [first for ms, first, _ in rise if ms < 0.009] + [first for ms, first, _ in rise if ms > 0.027]
    assert len(early) >= 6  # the random phases put enough edges on both sides to tell
    first, second = L.fit_stretch(rise, fall, 0.002)
    assert abs(first - 0.025) <= 0.002 and abs(second - 0.010) <= 0.002  # the stretch the sensor senses

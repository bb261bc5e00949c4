"""Thermal pre-conditioning and the clock lock (#27): each optional, and the run records exactly what was done.
Clocks are only ever "locked" on the NVML fake."""

import numpy as np
import pandas as pd
import pytest

from gpu_ops.energy.conditioning import lock_clocks, precondition, temperature_slope
from gpu_ops.energy.nvml import NvmlSource, select_targets
from gpu_ops.measure import _clocks_locked
from tests.fake_nvml import FakeGpu, FakeNVML
from tests.gpu_ops.energy.test_meter import meter_for


def temps(t: np.ndarray, c: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"t_s": t, "device": "gpu0", "power_w": 300.0, "temp_c": c})


def test_the_slope_is_the_hottest_gpus_trend_per_minute():
    t = np.arange(0, 60, 0.5)
    assert temperature_slope(temps(t, 40 + t / 60)) == pytest.approx(1.0)
    assert temperature_slope(temps(t, np.full_like(t, 70.0))) == pytest.approx(0.0)
    assert temperature_slope(temps(t[:1], t[:1])) is None


class Warming:
    """A meter stand-in whose GPU warms at `rate` °C/min until `flat_after` s, then holds; each work round is 5 s."""

    def __init__(self, rate: float, flat_after: float):
        self.t, self.rate, self.flat_after = 0.0, rate, flat_after

    def now(self) -> float:
        return self.t

    def work(self) -> None:
        self.t += 5.0

    def timeline(self, a: float, b: float) -> pd.DataFrame:
        t = np.arange(max(a, 0.0), b + 1e-9, 0.5)
        return temps(t, 40 + self.rate * np.minimum(t, self.flat_after) / 60)


def test_preconditioning_stops_when_the_temperature_is_flat_and_says_so():
    m = Warming(rate=6.0, flat_after=120.0)
    done = precondition(m, m.work, limit_s=600.0)
    assert (
        done["flat"] and 120.0 < done["seconds"] < 600.0
    )  # not while it still warms and abs(done["slope_c_per_min"]) <= 0.5
    assert done["temp_c"] == pytest.approx(52.0) and done["rounds"] == done["seconds"] / 5


def test_preconditioning_that_runs_out_of_time_does_not_claim_a_flat_temperature():
    m = Warming(rate=6.0, flat_after=1e9)
    done = precondition(m, m.work, limit_s=60.0)
    assert not done["flat"] and done["seconds"] == 60.0 and done["slope_c_per_min"] == pytest.approx(6.0)


def test_a_clock_lock_is_recorded_as_done_or_refused_and_reset_afterwards():
    gpus = [FakeGpu(uuid="GPU-a", clock_lock_allowed=True), FakeGpu(uuid="GPU-b")]
    nv = FakeNVML(gpus)
    record = lock_clocks(NvmlSource(nv, select_targets(nv, [0, 1], {})), 1410)
    assert record["locked"] == ["gpu0"] and "NoPermission" in record["refused"]["gpu1"] and gpus[0].locked_clocks
    with meter_for(nv, gpus=[0, 1]) as m, _clocks_locked(m, 1410, lambda msg: None):
        assert gpus[0].locked_clocks == (1410, 1410) and gpus[1].locked_clocks is None
    assert gpus[0].locked_clocks is None  # reset to the governor
    assert m.describe()["conditioning"]["clock_lock"]["locked"] == ["gpu0"]
    with meter_for(nv) as m, _clocks_locked(m, None, lambda msg: None):
        pass
    assert m.describe()["conditioning"] == {"precondition": None, "clock_lock": None}  # nothing asked, nothing done

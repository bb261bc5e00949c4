"""Drift: a re-measured sweep point outside the combined interval of old and new is marked; within it, not."""

import pandas as pd

from gpu_ops.drift import history_rows, with_drift


def stats(mean, ci, run="r1", point="bs8"):
    return pd.DataFrame(
        [
            {
                "partition_key": "m__vllm|h100",
                "sweep_point": point,
                "j_per_token_mean": mean,
                "j_per_token_ci95": ci,
                "tokens_per_s_mean": 100.0,
                "tokens_per_s_ci95": 1.0,
                "raw_run_id": run,
            }
        ]
    )


def test_drift_is_raised_outside_the_combined_interval():
    out = with_drift(stats(0.130, 0.004, "r2"), stats(0.100, 0.004, "r1")).iloc[0]
    assert out.drift is True or bool(out.drift) is True
    assert out.drift_previous_run_id == "r1" and "outside" in out.drift_detail


def test_drift_is_not_raised_within_the_combined_interval():
    # |0.105 - 0.100| = 0.005 < sqrt(0.004^2 + 0.004^2) = 0.0057
    out = with_drift(stats(0.105, 0.004, "r2"), stats(0.100, 0.004, "r1")).iloc[0]
    assert bool(out.drift) is False and "within" in out.drift_detail


def test_drift_is_not_judged_on_a_first_measurement_or_without_intervals():
    first = with_drift(stats(0.1, 0.004), None).iloc[0]
    assert pd.isna(first.drift) and first.drift_detail == "first measurement"
    single = with_drift(stats(0.2, None, "r2"), stats(0.1, 0.004)).iloc[0]
    assert pd.isna(single.drift)  # one cycle: no interval, no verdict (never False)


def test_history_rows_keep_each_measurement_with_its_verdict():
    judged = with_drift(stats(0.130, 0.004, "r2"), stats(0.100, 0.004, "r1"))
    h = history_rows(judged, "2026-12-06T21:00:00+00:00")
    assert h.iloc[0].raw_run_id == "r2" and h.iloc[0].figure == "j_per_token" and bool(h.iloc[0].drift) is True

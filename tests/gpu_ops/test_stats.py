"""Statistics are computed in one place (stats.sweep_point_statistics, by the runner); readers reuse summary.json's."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_ops import stats
from gpu_ops.results import read_tables
from gpu_ops.schema import PUBLISHED_STATISTICS, STATISTICS

EARLIER = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "raw" / "multigpu" / "earlier-run"
RAW = {"raw_run_id": "r", "raw_storage_id": 7, "raw_data_version": "v", "raw_code_version": "c"}


def test_a_folder_of_this_version_is_summarised_by_its_summary_json(good_gpu_result, monkeypatch):
    t = read_tables(good_gpu_result)
    computed = stats.sweep_point_statistics(t.cycles, t.requests, t.sweep_points)
    assert computed.ttft_p99_pooled_s.notna().all()
    monkeypatch.setattr(stats, "sweep_point_statistics", lambda *a: pytest.fail("statistics computed a second time"))
    reused = stats.result_statistics(t)
    pd.testing.assert_frame_equal(reused, computed)
    published = stats.published_statistics(t, "k|h", "stats-test", RAW)
    assert list(published.columns) == list(PUBLISHED_STATISTICS.names)
    assert published.loc[0, "experiment_key"] == t.experiment.experiment_key[0] and published.raw_storage_id[0] == 7


def test_a_folder_from_an_earlier_version_is_summarised_from_its_cycles():
    """Its summary.json predates statistics of this version (gpu_count among them): they are computed."""
    t = read_tables(next(EARLIER.glob("llama8b-tp2__*")))
    assert "gpu_count" not in t.summary["sweep_points"][0]
    st = stats.result_statistics(t)
    assert list(st.columns) == list(STATISTICS.names) and st.gpu_count.tolist() == [2]
    assert st.j_per_token_mean[0] == pytest.approx(t.summary["sweep_points"][0]["j_per_token_mean"], rel=1e-12)
    with pytest.raises(ValueError, match="raw provenance needs exactly"):
        stats.published_statistics(t, "k|h", "s", {"raw_run_id": "r"})


def test_the_exact_bootstrap_interval_matches_resampling():
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=300)
    for q in (50, 90, 99):
        point, lo, hi = stats.percentile_interval(x, q)
        resampled = np.percentile(x[rng.integers(0, len(x), (20000, len(x)))], q, axis=1)
        mc_lo, mc_hi = np.quantile(resampled, [0.025, 0.975])
        assert point == pytest.approx(np.percentile(x, q))
        assert lo == pytest.approx(mc_lo, rel=0.02) and hi == pytest.approx(mc_hi, rel=0.02) and lo <= point <= hi
    assert stats.percentile_interval(np.array([np.nan]), 50) is None


def test_latency_percentiles_pool_the_requests_of_all_cycles():
    """Five cycles of 100 requests; one cycle holds all five slow ones. The run's p99 is what one request in a hundred
    sees; averaging per-cycle p99s lets that one cycle's p99 (10 s) lift it to 2 s."""
    rows = [
        {
            "sweep_point": "p",
            "cycle": c,
            "ttft_s": 10.0 if c == 0 and i < 5 else 0.1 + i * 1e-4,
            "tpot_s": 0.01,
            "e2e_s": 1.0,
            "itl_s": [0.01, 0.02],
        }
        for c in range(5)
        for i in range(100)
    ]
    requests = pd.DataFrame(rows)
    pooled = stats.pooled_latency(requests)["p"]
    per_cycle_p99 = requests.groupby("cycle").ttft_s.quantile(0.99).mean()
    assert pooled["ttft_p99_pooled_s"] == pytest.approx(np.percentile(requests.ttft_s, 99))
    assert pooled["ttft_p99_pooled_s"] < 0.25 < 1.9 < per_cycle_p99
    assert pooled["ttft_p99_pooled_lo_s"] <= pooled["ttft_p99_pooled_s"] <= pooled["ttft_p99_pooled_hi_s"] == 10.0
    assert pooled["itl_p50_pooled_s"] == pytest.approx(0.015)  # every gap of every request, flattened


def test_stability_judges_j_per_token_and_falls_back_to_throughput_only_when_energy_is_unmeasured():
    limit = stats.CV_UNSTABLE
    rows = pd.DataFrame(
        {
            "j_per_token_cv": [limit * 2, limit / 2, None, None],
            "tokens_per_s_cv": [limit / 2, limit * 2, limit * 2, None],  # one cycle: no CV at all
        }
    )
    cv = stats.headline_cv(rows)
    assert cv.tolist()[:3] == [limit * 2, limit / 2, limit * 2] and pd.isna(cv.iloc[3])
    verdict = stats.unstable(cv)
    assert verdict.tolist()[:3] == [True, False, True] and pd.isna(verdict.iloc[3])

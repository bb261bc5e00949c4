"""Statistics are computed in one place (stats.sweep_point_statistics, by the runner); readers reuse summary.json's."""

from pathlib import Path

import pandas as pd
import pytest

from gpu_ops import stats
from gpu_ops.results import read_tables
from gpu_ops.schema import PUBLISHED_STATISTICS, STATISTICS

EARLIER = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "raw" / "multigpu" / "earlier-run"
RAW = {"raw_run_id": "r", "raw_storage_id": 7, "raw_data_version": "v", "raw_code_version": "c"}


def test_a_folder_of_this_version_is_summarised_by_its_summary_json(good_gpu_result, monkeypatch):
    t = read_tables(good_gpu_result)
    computed = stats.sweep_point_statistics(t.cycles)
    monkeypatch.setattr(stats, "sweep_point_statistics", lambda c: pytest.fail("statistics computed a second time"))
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


def test_stability_judges_j_per_token_and_falls_back_to_throughput_only_when_energy_is_unmeasured():
    limit = stats.UNSTABLE_CV
    rows = pd.DataFrame(
        {
            "j_per_token_cv": [limit * 2, limit / 2, None, None],
            "tokens_per_s_cv": [limit / 2, limit * 2, limit * 2, None],  # one cycle: no CV at all
        }
    )
    verdict = stats.stability(rows)
    assert verdict.cv.tolist()[:3] == [limit * 2, limit / 2, limit * 2] and pd.isna(verdict.cv.iloc[3])
    assert verdict.unstable.tolist() == [True, False, True, False]

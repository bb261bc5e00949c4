import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from gpu_ops.backends.base import RequestRecord
from gpu_ops.config import Slo, Traffic
from gpu_ops.errors import UserError
from gpu_ops.metrics import cycle_metrics, meets_slo, request_metrics, requests_frame
from gpu_ops.phases import PhaseSplit, phase_intervals
from gpu_ops.stats import summarize, sweep_point_statistics
from gpu_ops.traffic import arrival_times
from tests.gpu_ops.test_phases import window


def test_request_metrics_follow_vllm_definitions():
    rec = RequestRecord(
        id=0,
        prompt_tokens=10,
        output_tokens=4,
        arrival_s=1.0,
        scheduled_s=1.5,
        chunk_times_s=[2.0, 2.1, 2.3, 2.6],
        batch_id=0,
        prefill_end_s=2.0,
    )
    r = request_metrics(rec)
    assert r.ttft_s == pytest.approx(1.0)  # first token - sent
    assert r.e2e_s == pytest.approx(1.6)  # last token - sent
    assert r.itl_s == pytest.approx([0.1, 0.2, 0.3])  # gaps between tokens
    assert r.tpot_s == pytest.approx((1.6 - 1.0) / 3)  # (E2E - TTFT) / (out - 1)
    assert r.queue_s == pytest.approx(0.5)


def test_tpot_undefined_for_single_token():
    rec = RequestRecord(0, 5, 1, 0.0, 0.0, [0.4])
    r = request_metrics(rec)
    assert r.tpot_s is None and r.itl_s == [] and r.ttft_s == pytest.approx(0.4)


def test_goodput_slo():
    req = pd.DataFrame({"ttft_s": [0.1, 0.5, 0.2], "tpot_s": [0.01, 0.01, 0.09]})
    assert meets_slo(req, Slo(ttft_ms=300, tpot_ms=50)).tolist() == [True, False, False]
    assert meets_slo(req, Slo()).all()


def test_phase_intervals_merge_batches():
    recs = [
        RequestRecord(0, 3, 2, 0.0, 0.0, [1.0, 2.0], 0, 1.0),
        RequestRecord(1, 3, 2, 0.0, 0.0, [1.0, 2.0], 0, 1.0),
        RequestRecord(2, 3, 2, 2.0, 2.5, [3.0, 4.0], 1, 3.0),
    ]
    pre, dec = phase_intervals(requests_frame(recs))
    assert pre == [(0.0, 1.0), (2.5, 3.0)] and dec == [(1.0, 2.0), (3.0, 4.0)]


def test_summarize_uses_exact_student_t():
    x = [10.0, 12.0, 11.0, 13.0, 9.0]
    s = summarize(x)
    assert s["n"] == 5 and s["mean"] == pytest.approx(11.0)
    assert s["std"] == pytest.approx(np.std(x, ddof=1))
    assert s["ci95"] == pytest.approx(sps.t.ppf(0.975, 4) * np.std(x, ddof=1) / np.sqrt(5))
    assert s["ci95"] > 1.96 * np.std(x, ddof=1) / np.sqrt(5)  # wider than the normal approximation
    assert s["cv"] == pytest.approx(np.std(x, ddof=1) / 11.0)
    assert summarize([None, float("nan")])["mean"] is None
    assert summarize([3.0])["ci95"] is None  # one cycle: no interval


def cycles_frame(**columns) -> pd.DataFrame:
    """Cycles of one model on one machine: the given columns, the sweep points' settings filled in."""
    n = len(columns["sweep_point"])
    settings = {
        "model": "m",
        "backend": "pytorch",
        "hardware": "h",
        "weights": "real",
        "precision": "fp32",
        "batch_size": 1,
        "parallelism": "single",
        "config_hash": "c",
        "gpu_count": 1,
        "energy_status": "measured",
        "unmeasured_reason": None,
    }
    return pd.DataFrame({**{k: [v] * n for k, v in settings.items()}, **columns})


def test_aggregation_refuses_mixed_identity():
    cycles = cycles_frame(sweep_point=["a", "a"], backend=["pytorch", "vllm"], j_per_token=[1.0, 2.0])
    with pytest.raises(UserError, match="mixed backend"):
        sweep_point_statistics(cycles)


def test_statistics_one_row_per_point_and_unmeasured_propagates():
    cycles = cycles_frame(
        sweep_point=["a", "a", "a", "b", "b", "b"],
        tokens_per_s=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        j_per_token=[0.1, 0.2, 0.3, np.nan, np.nan, np.nan],
        energy_status=["measured"] * 3 + ["unmeasured"] * 3,
        unmeasured_reason=[None] * 3 + ["no GPU"] * 3,
        gpu_count=[1] * 3 + [0] * 3,
    )
    st = sweep_point_statistics(cycles).set_index("sweep_point")
    assert st.loc["a", "n_cycles"] == 3 and st.loc["a", "tokens_per_s_mean"] == pytest.approx(2.0)
    assert st.loc["b", "energy_status"] == "unmeasured" and st.loc["b", "unmeasured_reason"] == "no GPU"
    assert st.loc["b", "j_per_token_mean"] is None or np.isnan(st.loc["b", "j_per_token_mean"])
    assert st.gpu_count.to_dict() == {"a": 1, "b": 0}  # carried through, never parsed back from the hardware slug
    assert np.isnan(st.loc["a", "energy_uncertainty_j_mean"])  # a metric the cycles lack: empty, the schema's columns


def test_arrivals_open_loop():
    assert arrival_times(Traffic(mode="offline"), 3).tolist() == [0, 0, 0]
    assert arrival_times(Traffic(mode="constant", rate=4), 3).tolist() == [0, 0.25, 0.5]
    a = arrival_times(Traffic(mode="poisson", rate=10, seed=3), 20001)
    assert a[0] == 0 and np.all(np.diff(a) >= 0)
    assert np.mean(np.diff(a)) == pytest.approx(0.1, rel=0.03)  # mean gap 1/rate
    assert np.std(np.diff(a)) == pytest.approx(0.1, rel=0.05)  # exponential: std == mean
    bursty = arrival_times(Traffic(mode="poisson", rate=10, burstiness=0.25, seed=3), 20001)
    assert np.std(np.diff(bursty)) > 1.8 * np.std(np.diff(a))  # Gamma(0.25): CV = 2
    assert np.array_equal(a, arrival_times(Traffic(mode="poisson", rate=10, seed=3), 20001))  # seeded


def test_a_point_with_an_unmeasured_cycle_has_no_energy_statistics_and_is_not_ranked():
    """Two of three cycles measured: the point's energy is unmeasured, not the mean of the two that happened to be."""
    from gpu_ops.leaderboard import PROVENANCE, build_leaderboard
    from gpu_ops.ranking import ENERGY_UNMEASURED, RankingRules
    from gpu_ops.schema import CYCLES

    cycles = cycles_frame(
        sweep_point=["a"] * 3 + ["b"] * 3,
        duration_s=[30.0] * 6,
        tokens_per_s=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        j_per_token=[0.1, 0.2, np.nan, 0.4, 0.5, 0.6],
        gross_energy_j=[1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
        energy_status=["measured", "measured", "unmeasured"] + ["measured"] * 3,
        unmeasured_reason=[None, None, "counter did not advance", None, None, None],
    )
    st = sweep_point_statistics(cycles).set_index("sweep_point")
    assert (
        st.loc["a", "energy_status"] == "unmeasured" and st.loc["a", "unmeasured_reason"] == "counter did not advance"
    )
    for metric in ("j_per_token", "gross_energy_j"):
        assert CYCLES[metric].from_counter and all(
            pd.isna(st.loc["a", f"{metric}_{k}"]) for k in ("mean", "std", "ci95", "cv")
        )
    assert st.loc["a", "tokens_per_s_mean"] == pytest.approx(2.0)  # not an energy figure: still summarised
    assert st.loc["b", "j_per_token_mean"] == pytest.approx(0.5)
    board = build_leaderboard(
        st.reset_index().assign(experiment_key="m__pytorch", **{**dict.fromkeys(PROVENANCE, "p"), "raw_storage_id": 1}),
        RankingRules(max_cv=1),  # only the energy rule can refuse these noisy cycles
    ).set_index("sweep_point")
    assert pd.isna(board.rank_j_per_token["a"]) and board.not_ranked_reason["a"] == ENERGY_UNMEASURED
    assert board.rank_j_per_token["b"] == 1


def test_a_missing_ci_shows_as_missing_never_as_zero():
    from gpu_ops.stats import fmt_ci

    assert fmt_ci(None) == " ± n/a" and fmt_ci(float("nan")) == " ± n/a" and fmt_ci(0.0123) == " ± 0.012"


def test_j_per_good_token_divides_the_energy_by_the_good_requests_output_tokens():
    recs = [  # TTFT 0.1 s, 0.5 s, 0.2 s; 11, 21 and 6 output tokens
        RequestRecord(0, 8, 11, 0.0, 0.0, [], first_token_s=0.1, last_token_s=0.6),
        RequestRecord(1, 8, 21, 0.0, 0.0, [], first_token_s=0.5, last_token_s=1.5),
        RequestRecord(2, 8, 6, 0.0, 0.0, [], first_token_s=0.2, last_token_s=0.5),
    ]
    req = requests_frame(recs)
    w = window(0.0, 2.0)
    nan = pd.Series(np.nan, index=req.index)
    none = PhaseSplit(None, None, None, None, nan, nan)
    good = cycle_metrics(req, w, 100.0, Slo(ttft_ms=300), None, none)
    assert good.good_requests == 2
    assert good.j_per_good_token == pytest.approx(w.gpu_energy_j / (11 + 6))
    assert good.j_per_good_token > good.j_per_token
    assert cycle_metrics(req, w, 100.0, Slo(), None, none).j_per_good_token is None  # no SLO: no good tokens defined
    assert cycle_metrics(req, w, 100.0, Slo(ttft_ms=50), None, none).j_per_good_token is None  # none good

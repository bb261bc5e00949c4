"""Ranking rules and rank bands (#27): each rule can refuse a row, with its reason; overlapping 95 % intervals share a
rank; unranked rows never sort above ranked ones; the instance sets its own thresholds. Rows whose energy is unmeasured
get a throughput fallback (#29), in the same bands, never an energy rank."""

import pandas as pd
import pytest

from gpu_ops.errors import UserError
from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.ranking import CYCLE_WINDOW, STEADY, RankingRules, fallback_label, rank_bands, rank_label, rank_shown
from gpu_ops.results import read_tables
from gpu_ops.stats import published_statistics

RAW = {"raw_run_id": "r" * 36, "raw_storage_id": 7, "raw_data_version": "v", "raw_code_version": "c"}
RULES = RankingRules()


@pytest.fixture(scope="module")
def stats_row(good_gpu_result) -> pd.DataFrame:
    """One statistics row of a real result, made to pass every default rule as an offline batch."""
    st = published_statistics(read_tables(good_gpu_result), "k|h", "s", RAW).iloc[[0]]
    return st.assign(
        n_cycles=RULES.min_cycles + 2,
        j_per_token_mean=1.0,
        j_per_token_ci95=0.01,
        j_per_token_cv=RULES.max_cv / 5,
        window_min_s=RULES.min_window_s * 1.5,
    )


def serving(row: pd.DataFrame, **changes) -> pd.DataFrame:
    """`row` as a serving run whose steady state passes every rule, then `changes`."""
    ok = {
        "cycle_batch_fill_mean": 0.9,
        "batch_fill_mean": (1 + RULES.min_batch_fill) / 2,
        "steady_j_per_token_mean": 0.5,
        "steady_j_per_token_ci95": 0.005,
        "steady_j_per_token_cv": RULES.max_cv / 5,
    }
    return row.assign(**(ok | changes))


def board_of(*rows: pd.DataFrame) -> pd.DataFrame:
    named = [r.assign(sweep_point=f"p{i}") for i, r in enumerate(rows)]
    return build_leaderboard(pd.concat(named, ignore_index=True), RULES).set_index("sweep_point")


@pytest.mark.parametrize(
    "broken, reason",
    [
        ({"window_min_s": 5.0}, "short window: 5 s (< 20 s)"),
        ({"n_cycles": 2}, "2 cycles (< 3)"),
        ({"j_per_token_cv": 0.10}, "unstable: J/token CV 10.0% (> 5.0%)"),
        ({"energy_status": "unmeasured", "j_per_token_mean": float("nan")}, "energy unmeasured"),
    ],
)
def test_each_rule_refuses_an_offline_row_with_its_reason(stats_row, broken, reason):
    board = board_of(stats_row, stats_row.assign(**broken))
    assert board.loc["p0", "ranked"] and board.loc["p0", "rank_label"] == "1"
    bad = board.loc["p1"]
    assert not bad.ranked and reason in bad.not_ranked_reason
    assert pd.isna(bad.rank_j_per_token) and pd.isna(bad.rank_throughput) and bad.rank_label == ""
    assert board.index.tolist() == ["p0", "p1"]  # stored and shown, below the ranked row


def test_a_serving_row_is_ranked_by_its_steady_state_and_refused_below_fill(stats_row):
    board = board_of(serving(stats_row), serving(stats_row, batch_fill_mean=0.6))
    ok, low = board.loc["p0"], board.loc["p1"]
    assert ok.rank_basis == STEADY and ok.ranked_j_per_token_mean == 0.5 and ok.ranked
    assert not low.ranked and low.not_ranked_reason == "batch fill 0.60 (< 0.85)"
    assert board_of(stats_row).loc["p0", "rank_basis"] == CYCLE_WINDOW


def test_a_serving_row_without_a_steady_state_is_not_ranked(stats_row):
    board = board_of(serving(stats_row, window_min_s=float("nan"), batch_fill_mean=float("nan")))
    assert "no steady state" in board.loc["p0", "not_ranked_reason"]


def test_a_short_steady_state_is_refused_even_when_the_cycle_is_long(stats_row):
    board = board_of(serving(stats_row, window_min_s=5.0, duration_s_mean=60.0))
    assert board.loc["p0", "not_ranked_reason"] == "short window: 5 s (< 20 s)"


def test_overlapping_intervals_share_a_rank_band(stats_row):
    rows = [
        stats_row.assign(j_per_token_mean=1.00, j_per_token_ci95=0.05),  # [0.95, 1.05]: the leader
        stats_row.assign(j_per_token_mean=1.04, j_per_token_ci95=0.02),  # overlaps the leader: tied
        stats_row.assign(j_per_token_mean=1.10, j_per_token_ci95=0.04),  # overlaps #2 only: a new band
        stats_row.assign(j_per_token_mean=2.00, j_per_token_ci95=0.01),
    ]
    board = board_of(*rows)
    assert board.rank_j_per_token.tolist() == [1, 1, 3, 4]
    assert board.rank_label.tolist() == ["=1", "=1", "3", "4"]
    assert board.rank_tied.tolist() == [True, True, False, False]
    apart = board_of(*(r.assign(j_per_token_ci95=0.001) for r in rows))
    assert apart.rank_j_per_token.tolist() == [1, 2, 3, 4]


def test_an_invalid_row_never_ranks_above_a_valid_one(stats_row):
    cheap_but_short = stats_row.assign(j_per_token_mean=0.01, window_min_s=1.0)
    board = board_of(cheap_but_short, stats_row)
    assert board.index.tolist() == ["p1", "p0"] and board.rank_j_per_token.tolist()[0] == 1


def test_rank_bands_by_hand():
    mean = pd.Series([3.0, 1.0, 2.0, 9.0])
    ci = pd.Series([0.1, 0.1, 0.95, 0.1])
    rank, tied = rank_bands(mean, mean - ci, mean + ci, True, pd.Series([True, True, True, False]))
    assert rank.tolist()[:3] == [3, 1, 1] and pd.isna(rank[3]) and tied.tolist()[:3] == [False, True, True]
    higher, _ = rank_bands(mean, mean - ci, mean + ci, False, pd.Series([True] * 4))
    assert higher.tolist() == [2, 4, 2, 1]  # 3.0 and 2.0 overlap; 1.0 overlaps 2.0 but not the band's leader
    assert rank_label(pd.NA, pd.NA) == "" and rank_label(2, True) == "=2" and rank_label(2, False) == "2"


def test_the_instance_sets_its_thresholds_and_bad_ones_are_refused(stats_row, monkeypatch):
    monkeypatch.setenv("LEM_RANK_MIN_WINDOW_S", "60")
    board = build_leaderboard(stats_row)
    assert "short window: 30 s (< 60 s)" in board.not_ranked_reason[0] and "window >= 60 s" in board.ranking_rules[0]
    monkeypatch.setenv("LEM_RANK_MIN_WINDOW_S", "ten")
    with pytest.raises(UserError, match="LEM_RANK_MIN_WINDOW_S='ten' is not a number"):
        RankingRules.from_env()
    assert RankingRules.from_env({"LEM_RANK_MIN_CYCLES": "5"}).min_cycles == 5


def unmeasured(row: pd.DataFrame, tokens_per_s: float, ci: float, **changes) -> pd.DataFrame:
    """`row` with its energy unmeasured (a CPU run) and the throughput given."""
    nan = float("nan")
    return row.assign(
        energy_status="unmeasured",
        j_per_token_mean=nan,
        j_per_token_ci95=nan,
        j_per_token_cv=nan,
        tokens_per_j_mean=nan,
        tokens_per_j_ci95=nan,
        tokens_per_s_mean=tokens_per_s,
        tokens_per_s_ci95=ci,
        **changes,
    )


def test_rows_without_energy_get_a_throughput_fallback_in_bands_that_never_ranks_them(stats_row):
    """A CPU demo showed every row 'not ranked: energy unmeasured' in no order: each now gets a band by throughput among
    the unmeasured rows (overlapping intervals tie), beside its reason; a measured row has none."""
    board = board_of(
        unmeasured(stats_row, 100.0, 5.0),  # [95, 105]: the fallback's leader
        unmeasured(stats_row, 98.0, 2.0),  # overlaps the leader: tied
        unmeasured(stats_row, 50.0, 1.0, window_min_s=1.0),  # a short window too: still ordered, the reason says so
        stats_row.assign(tokens_per_s_mean=10.0),  # measured and ranked, though slower than every unmeasured row
        stats_row.assign(tokens_per_s_mean=1e6, j_per_token_cv=0.5),  # measured, unranked (unstable): no fallback
        unmeasured(stats_row, float("nan"), float("nan")),  # no throughput: no fallback
    )
    assert board.throughput_fallback_rank.loc[["p0", "p1", "p2"]].tolist() == [1, 1, 3]
    assert board.throughput_fallback_label.loc[["p0", "p1", "p2"]].tolist() == [
        "throughput =1 of 3",
        "throughput =1 of 3",
        "throughput 3 of 3",
    ]
    for measured_or_empty in ("p3", "p4", "p5"):
        assert pd.isna(board.loc[measured_or_empty, "throughput_fallback_rank"])
        assert board.loc[measured_or_empty, "throughput_fallback_label"] == ""
    fallback = board.loc[["p0", "p1", "p2"]]
    assert not fallback.ranked.any() and fallback.rank_j_per_token.isna().all()
    assert fallback.rank_throughput.isna().all()  # never an energy (or throughput) rank
    assert board.loc["p3", "rank_label"] == "1" and board.loc["p3", "rank_throughput"] == 1  # the energy ranks alone
    # the valid row first, the measured unranked one next, then the fallback's order, the row without throughput last
    assert board.index.tolist() == ["p3", "p4", "p0", "p1", "p2", "p5"]
    shown = [rank_shown(r.rank_label, r.not_ranked_reason, r.throughput_fallback_label) for r in board.itertuples()]
    assert shown[0] == "1" and shown[2:4] == ["not ranked: energy unmeasured · throughput =1 of 3"] * 2
    assert shown[4] == "not ranked: energy unmeasured; short window: 1 s (< 20 s) · throughput 3 of 3"
    assert shown[5] == "not ranked: energy unmeasured" and shown[1].startswith("not ranked: unstable")
    apart = board_of(*(unmeasured(stats_row, v, 0.1) for v in (50.0, 100.0, 98.0)))
    assert apart.throughput_fallback_label.tolist() == ["throughput 1 of 3", "throughput 2 of 3", "throughput 3 of 3"]


def test_a_board_without_unmeasured_rows_has_no_fallback_and_labels_read_as_shown(stats_row):
    board = board_of(stats_row, stats_row.assign(window_min_s=1.0))
    assert board.throughput_fallback_rank.isna().all() and (board.throughput_fallback_label == "").all()
    assert fallback_label(2, True, 4) == "throughput =2 of 4" and fallback_label(pd.NA, pd.NA, 4) == ""
    assert rank_shown("=2", None, "") == "=2"
    assert rank_shown("", "energy unmeasured", "") == "not ranked: energy unmeasured"

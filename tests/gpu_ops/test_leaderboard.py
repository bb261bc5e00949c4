"""The leaderboard: the headline CV and its stability verdict on every row, the three config hashes by name, and the
submitter of each row's raw data (`unrecorded` for older statistics)."""

import pandas as pd

from gpu_ops.leaderboard import PROVENANCE, build_leaderboard
from gpu_ops.results import read_tables
from gpu_ops.stats import CV_UNSTABLE, UNRECORDED_SUBMITTER, published_statistics

RAW = {"raw_run_id": "r" * 36, "raw_storage_id": 7, "raw_data_version": "v", "raw_code_version": "c"}


def test_rows_carry_the_headline_cv_and_flag_an_unstable_one(good_gpu_result):
    st = published_statistics(read_tables(good_gpu_result), "k|h", "s", RAW, file_sha="f" * 16)
    noisy = st.assign(sweep_point="noisy", j_per_token_cv=CV_UNSTABLE * 3)
    board = build_leaderboard(pd.concat([st, noisy], ignore_index=True)).set_index("sweep_point")
    point = st.sweep_point.iloc[0]
    assert board.loc[point, "cv"] == st.j_per_token_cv.iloc[0]
    assert bool(board.loc[point, "unstable"]) is bool(st.j_per_token_cv.iloc[0] > CV_UNSTABLE)
    assert board.loc["noisy", "cv"] == CV_UNSTABLE * 3 and bool(board.loc["noisy", "unstable"])


def test_without_energy_the_cv_is_of_throughput_and_one_cycle_has_no_verdict(good_gpu_result):
    st = published_statistics(read_tables(good_gpu_result), "k|h", "s", RAW)
    unmeasured = st.assign(j_per_token_cv=float("nan"))
    board = build_leaderboard(unmeasured)
    assert board.cv.tolist() == st.tokens_per_s_cv.tolist()
    single = build_leaderboard(unmeasured.assign(tokens_per_s_cv=float("nan")))
    assert single.cv.isna().all() and single.unstable.isna().all()


def test_the_three_hashes_are_named_and_old_statistics_still_read(good_gpu_result):
    t = read_tables(good_gpu_result)
    st = published_statistics(t, "k|h", "s", RAW, file_sha="a" * 16)
    board = build_leaderboard(st)
    assert set(board.file_sha) == {"a" * 16}
    assert set(board.experiment_hash) == {t.experiment.config_hash.iloc[0]}
    assert sorted(board.sweep_point_hash) == sorted(t.sweep_points.config_hash)
    stored_before = st.drop(columns=["experiment_hash", "file_sha"]).assign(experiment_config_hash="e" * 16)
    old = build_leaderboard(stored_before)
    assert set(old.experiment_hash) == {"e" * 16} and old.file_sha.isna().all()


def test_each_row_names_its_submitter_and_older_statistics_say_unrecorded(good_gpu_result):
    tables = read_tables(good_gpu_result)
    signed = build_leaderboard(published_statistics(tables, "k|h", "s", RAW, submitter="alice-lab"))
    assert "submitter" in PROVENANCE and set(signed.submitter) == {"alice-lab"}
    assert set(build_leaderboard(published_statistics(tables, "k|h", "s", RAW)).submitter) == {"local"}
    older = published_statistics(tables, "k|h", "s", RAW).drop(columns=["submitter"])  # stored before the column
    board = build_leaderboard(older)
    assert set(board.submitter) == {UNRECORDED_SUBMITTER} and board[list(PROVENANCE)].notna().all().all()

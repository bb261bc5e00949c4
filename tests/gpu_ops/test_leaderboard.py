"""The leaderboard's submitter provenance: the signer of each row's raw data, `unrecorded` for older statistics."""

from gpu_ops.leaderboard import PROVENANCE, build_leaderboard
from gpu_ops.results import read_tables
from gpu_ops.stats import UNRECORDED_SUBMITTER, published_statistics

RAW = {"raw_run_id": "r", "raw_storage_id": 7, "raw_data_version": "v", "raw_code_version": "c"}


def test_each_row_names_its_submitter_and_older_statistics_say_unrecorded(good_gpu_result):
    tables = read_tables(good_gpu_result)
    signed = build_leaderboard(published_statistics(tables, "k|h", "s", RAW, submitter="alice-lab"))
    assert "submitter" in PROVENANCE and set(signed.submitter) == {"alice-lab"}
    assert set(build_leaderboard(published_statistics(tables, "k|h", "s", RAW)).submitter) == {"local"}
    older = published_statistics(tables, "k|h", "s", RAW).drop(columns=["submitter"])  # stored before the column
    board = build_leaderboard(older)
    assert set(board.submitter) == {UNRECORDED_SUBMITTER} and board[list(PROVENANCE)].notna().all().all()

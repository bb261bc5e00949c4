"""The leaderboard asset's metadata: linked top rows that the Dagster UI shows in place."""

import pandas as pd

from energy_assets.assets.leaderboard import top_markdown
from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.results import read_tables
from gpu_ops.stats import published_statistics


def test_top_rows_link_run_and_partition_and_stay_short_enough_to_show_in_place(good_gpu_result):
    t = read_tables(good_gpu_result)
    parts = [
        published_statistics(
            t,
            f"exp{i}__pytorch|h100-80gb-hbm3",
            "s",
            {
                "raw_run_id": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd",
                "raw_storage_id": i,
                "raw_data_version": "v",
                "raw_code_version": "c",
            },
        )
        for i in range(12)
    ]
    board = build_leaderboard(pd.concat(parts, ignore_index=True))
    text = top_markdown(board)
    assert len(text) < 1000 and "more rows in `top_rows`" in text
    first = board.iloc[0]
    assert f"[{first.raw_run_id[:8]}](/runs/{first.raw_run_id})" in text
    assert f"[{first.partition_key.replace('|', chr(92) + '|')}](/assets/raw_measurements?" in text
    assert top_markdown(board.head(1)).count("/runs/") == 1


def _board(good_gpu_result, n: int, **changes) -> pd.DataFrame:
    t = read_tables(good_gpu_result)
    parts = [
        published_statistics(
            t,
            f"synthetic-llama-3.1-8b-instruct-long-name{i}__pytorch|h100-80gb-hbm3",
            "s",
            {
                "raw_run_id": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd",
                "raw_storage_id": i,
                "raw_data_version": "v",
                "raw_code_version": "c",
            },
        ).assign(**changes)
        for i in range(n)
    ]
    return build_leaderboard(pd.concat(parts, ignore_index=True))


def test_every_top_row_shown_is_whole_and_linked_even_with_a_public_dagster_url(good_gpu_result, monkeypatch):
    """With a long public URL as the links' base, the third row lost its link to the 950-character limit."""
    monkeypatch.setenv("LEM_DAGSTER_URL", "https://dagster.energy-measurement.example.org:3000")
    text = top_markdown(_board(good_gpu_result, 12))
    table = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| rank |")]
    assert table and len(text) < 1000
    assert f"_{12 - len(table)} more rows in `top_rows`" in text  # the rest counted, none cut in half
    assert all(line.count("](/runs/") == 1 and line.count("](/assets/raw_measurements?") == 1 for line in table)


def test_top_shows_the_unstable_flag_and_why_a_row_is_not_ranked(good_gpu_result):
    board = _board(good_gpu_result, 2)
    board["unstable"] = board.cv.notna()  # a numpy bool column, as the leaderboard has
    board["cv"] = 0.25
    text = top_markdown(board)
    assert text.count("**unstable**") == 2
    board = _board(good_gpu_result, 2, j_per_token_mean=float("nan"), energy_status="unmeasured")
    text = top_markdown(board)
    ranks = [line.split("|")[1].strip() for line in text.splitlines()[2:] if line.startswith("| ")]
    assert len(ranks) == 2 and all(r.startswith("not ranked: energy unmeasured") for r in ranks)  # never blank

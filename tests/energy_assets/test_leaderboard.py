"""The leaderboard asset's metadata: linked top rows that the Dagster UI shows in place."""

import pandas as pd

from energy_assets.leaderboard import top_markdown
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

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


def _stats(good_gpu_result, n: int, first: int = 0, **changes) -> pd.DataFrame:
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
        for i in range(first, first + n)
    ]
    return pd.concat(parts, ignore_index=True)


def _board(good_gpu_result, n: int, **changes) -> pd.DataFrame:
    return build_leaderboard(_stats(good_gpu_result, n, **changes))


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


def test_top_shows_the_throughput_fallback_of_rows_without_energy_beside_the_reason(good_gpu_result):
    """#29: on a CPU the top table ordered nothing; a row whose energy is unmeasured now shows its throughput band
    among those rows beside its reason, as the leaderboard stores it, and a ranked row keeps its place above them."""
    from energy_assets.tables import rows_table
    from gpu_ops.schema import LEADERBOARD_TOP_ROWS

    nan = float("nan")
    cpu = _board(good_gpu_result, 3, j_per_token_mean=nan, tokens_per_j_mean=nan, energy_status="unmeasured")
    text = top_markdown(cpu)
    ranks = [line.split("|")[1].strip() for line in text.splitlines()[2:] if line.startswith("| ")]
    assert ranks and ranks == [
        f"not ranked: {r.not_ranked_reason} · {r.throughput_fallback_label}" for r in cpu.head(len(ranks)).itertuples()
    ]
    assert all(r.endswith(f" of {len(cpu)}") and " · throughput " in r for r in ranks)
    assert cpu.throughput_fallback_rank.is_monotonic_increasing  # the rows in the fallback's order
    top = rows_table(cpu, LEADERBOARD_TOP_ROWS).records
    assert [r.data["throughput_fallback_label"] for r in top] == cpu.throughput_fallback_label.tolist()
    # a valid row, however slow, above a fast row without energy; its rank is its band alone
    valid = _stats(good_gpu_result, 1, n_cycles=5, j_per_token_cv=0.01, window_min_s=60.0, tokens_per_s_mean=1.0)
    fast = _stats(good_gpu_result, 1, 1, j_per_token_mean=nan, energy_status="unmeasured", tokens_per_s_mean=1e9)
    both = build_leaderboard(pd.concat([fast, valid], ignore_index=True))
    lines = [line for line in top_markdown(both).splitlines()[2:] if line.startswith("| ")]
    assert lines[0].startswith("| 1 |") and "· throughput" in lines[-1] and both.ranked.iloc[0]

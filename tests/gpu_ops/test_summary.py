"""The run summary: one record for the terminal table and `run --json`; CIs, CV, the stability verdict, the hashes."""

import json
import re

from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.results import read_tables
from gpu_ops.stats import published_statistics, result_statistics
from gpu_ops.summary import FIGURES, run_summary, summary_table
from gpu_ops.validation import validate

RAW = {"raw_run_id": "r", "raw_storage_id": 1, "raw_data_version": "v", "raw_code_version": "c"}


def test_the_summary_is_plain_json_with_the_hashes_and_the_leaderboards_cv(good_gpu_result):
    t = read_tables(good_gpu_result)
    s = run_summary(t, good_gpu_result, validate(t), "ab" * 8)
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert s["file_sha"] == "ab" * 8 and s["experiment_hash"] == t.experiment.config_hash.iloc[0]
    board = build_leaderboard(published_statistics(t, "k|h", "s", RAW)).set_index("sweep_point")
    for p in s["sweep_points"]:
        assert p["sweep_point_hash"] == board.loc[p["sweep_point"], "sweep_point_hash"]
        assert p["cv"] == board.loc[p["sweep_point"], "cv"] and p["unstable"] == board.loc[p["sweep_point"], "unstable"]
        assert p["j_per_token"]["ci95"] is not None and p["tokens_per_s"]["mean"] > 0
    assert s["passed"] and all(c["status"] == "ok" for c in s["checks"])


def test_the_table_has_units_cis_and_one_precision_per_column(good_gpu_result):
    t = read_tables(good_gpu_result)
    s = run_summary(t, good_gpu_result, validate(t), None)
    s["sweep_points"].append(dict(s["sweep_points"][0], sweep_point="x", tokens_per_s={"mean": 1.5, "ci95": 0.25}))
    lines = summary_table(s).splitlines()
    header = lines[2]
    assert all(f"({f.unit}, ± 95% CI)" in header for f in FIGURES) and "CV" in header and "sweep_point_hash" in header
    throughput = header.index("throughput")
    cells = [re.match(r"\s*([\d.]+) ± ([\d.]+)", line[throughput:]).groups() for line in lines[4:6]]
    decimals = {len(v.partition(".")[2]) for pair in cells for v in pair}
    assert len(decimals) == 1, cells  # 1.50 beside 37.26: not 1.5 beside 37.2635


def test_a_missing_ci_energy_and_cv_show_as_missing_never_zero(good_gpu_result):
    t = read_tables(good_gpu_result)
    s = run_summary(t, good_gpu_result, validate(t), None)
    point = s["sweep_points"][0]
    point.update(
        n_cycles=1,
        cv=None,
        unstable=None,
        energy_status="unmeasured",
        unmeasured_reason="run on CPU",
        j_per_token={"mean": None, "ci95": None},
        tokens_per_s={"mean": 10.0, "ci95": None},
    )
    text = summary_table(dict(s, sweep_points=[point]))
    row = text.splitlines()[4]
    assert "10.00 ± n/a" in row and "unmeasured" in row and " n/a " in row
    assert not re.search(r"± 0\.?0*(\s|$)", text)  # a missing CI is never shown as ± 0
    assert text.endswith("energy unmeasured: run on CPU")


def test_a_point_the_leaderboard_would_not_rank_says_why(good_gpu_result, monkeypatch):
    t = read_tables(good_gpu_result)
    st = result_statistics(t)
    monkeypatch.setenv("LEM_RANK_MAX_CV", str(float(st.j_per_token_cv.min()) / 2))  # every point too noisy
    s = run_summary(t, good_gpu_result, validate(t), None)
    text = summary_table(s)
    for p in s["sweep_points"]:
        assert p["ranked"] is False and p["unstable"] is True and "unstable: J/token CV" in p["not_ranked_reason"]
        assert f"not ranked: {p['not_ranked_reason']}" in text
    monkeypatch.setenv("LEM_RANK_MAX_CV", "1")
    monkeypatch.setenv("LEM_RANK_MIN_WINDOW_S", "0")
    monkeypatch.setenv("LEM_RANK_MIN_CYCLES", "1")
    relaxed = run_summary(t, good_gpu_result, validate(t), None)
    assert all(p["ranked"] and p["not_ranked_reason"] is None for p in relaxed["sweep_points"])
    assert "not ranked" not in summary_table(relaxed)


def test_ttft_p50_has_one_definition_the_pooled_one_the_site_shows(good_gpu_result):
    """The CLI printed the mean of per-cycle medians (422.5 ms) where the site showed the pooled median (380.8 ms)."""
    t = read_tables(good_gpu_result)
    s = run_summary(t, good_gpu_result, validate(t), None)
    board = build_leaderboard(published_statistics(t, "k|h", "s", RAW)).set_index("sweep_point")
    for p in s["sweep_points"]:
        assert p["ttft_p50_pooled_s"]["mean"] == board.loc[p["sweep_point"], "ttft_p50_pooled_s"]


def test_a_rise_in_idle_power_is_flagged_in_the_summary_and_on_the_site(good_gpu_result, tmp_path):
    """A 63 % rise in idle power from before to after went unflagged."""
    import copy

    from gpu_ops.site import build_site
    from gpu_ops.site.data import leaderboard_of_folders

    t = read_tables(good_gpu_result)
    assert run_summary(t, good_gpu_result, validate(t), None)["idle_rise_note"] is None
    risen = copy.deepcopy(t)
    risen.experiment.loc[0, "idle_after_w"] = risen.experiment.idle_before_w.iloc[0] * 1.63
    s = run_summary(risen, good_gpu_result, validate(risen), None)
    assert s["idle_rise_note"].startswith("idle power rose 63%")
    assert "warning: idle power rose 63%" in summary_table(s)
    board, _ = leaderboard_of_folders([good_gpu_result])
    site = build_site(board, {board.partition_key.iloc[0]: risen}, tmp_path / "site")
    (page,) = (site.folder / "detail").glob("*.html")
    assert 'id="idle-rise">idle power rose 63%' in page.read_text()


def test_a_row_without_a_power_timeline_gets_a_note_not_an_empty_chart(good_gpu_result, tmp_path):
    import copy

    from gpu_ops.site import build_site
    from gpu_ops.site.data import leaderboard_of_folders

    board, raw = leaderboard_of_folders([good_gpu_result])
    key = board.partition_key.iloc[0]
    bare = copy.deepcopy(raw[key])
    bare.timeline = bare.timeline.iloc[0:0]
    (page,) = (build_site(board, {key: bare}, tmp_path / "site").folder / "detail").glob("*.html")
    text = page.read_text()
    assert 'id="note-power"' in text and 'id="chart-power"' not in text

"""What each index chart shows, on rows shaped like the H100 campaign's: two models, two backends, batch sizes swept
for one model only. A chart must not average across models or join their frontiers."""

import numpy as np
import pandas as pd
import pytest

from gpu_ops.schema import LEADERBOARD
from gpu_ops.site.charts import index_figures
from gpu_ops.site.data import SiteData

pytest.importorskip("plotly")

# model, backend, hardware, batch size, J/token, tokens/s, E2E s, parameters. Llama-1B on PyTorch at batch 32 and 128
# (128 is the better); Qwen-7B on vLLM at batch 128 only, on one and two GPUs, far costlier per token: averaged into one
# cell across models, batch 128 would look worse than batch 32.
CAMPAIGN = [
    ("synthetic:llama-3.2-1b", "pytorch", "h100", 32, 0.044, 4_000.0, 1.0, 1.24e9),
    ("synthetic:llama-3.2-1b", "pytorch", "h100", 128, 0.028, 12_000.0, 1.6, 1.24e9),
    ("synthetic:qwen2.5-7b", "vllm", "h100", 128, 0.070, 9_000.0, 3.0, 7.6e9),
    ("synthetic:qwen2.5-7b", "vllm", "2x-h100", 128, 0.055, 17_160.0, 2.0, 7.6e9),
]


def campaign_board() -> SiteData:
    rows = []
    for i, (model, backend, hardware, batch, jpt, tps, e2e, _) in enumerate(CAMPAIGN):
        rows.append(
            {
                "experiment_key": f"{model}__{backend}",
                "partition_key": f"e{i}|{hardware}",
                "model": model,
                "backend": backend,
                "hardware": hardware,
                "precision": "bf16",
                "parallelism": "tp2" if hardware.startswith("2x") else "single",
                "gpu_count": 2 if hardware.startswith("2x") else 1,
                "batch_size": batch,
                "sweep_point": f"batch_size={batch}",
                "j_per_token_mean": jpt,
                "j_per_token_ci95": jpt / 50,
                "tokens_per_j_mean": 1 / jpt,
                "tokens_per_s_mean": tps,
                "e2e_mean_s_mean": e2e,
                "tpot_mean_s_mean": e2e / 128,
            }
        )
    board = pd.DataFrame(rows)
    for name in LEADERBOARD.names:
        if name not in board:
            board[name] = np.nan
    board["label"] = board.model + " " + board.backend + " " + board.sweep_point
    board["parameters"] = [r[-1] for r in CAMPAIGN]
    board["id"] = [f"row{i}" for i in range(len(board))]
    return SiteData(board, {})


@pytest.fixture(scope="module")
def figures():
    return index_figures(campaign_board())


def test_heatmap_has_one_panel_per_model_backend_hardware_and_never_averages_across_models(figures):
    heat = figures["chart-heatmap"]["data"]
    assert [t["name"] for t in heat] == ["synthetic:llama-3.2-1b · pytorch · h100"]  # the only group with a sweep
    cells = dict(zip(heat[0]["x"], heat[0]["z"][0]))
    assert cells == {"32": 0.044, "128": 0.028}  # batch 128 better, as measured for that model
    assert cells["128"] < cells["32"]


def test_scatter_sizes_markers_by_parameter_count_on_one_scale(figures):
    sizes = {}
    for trace in figures["chart-scatter"]["data"]:
        for label, size in zip(trace["text"], trace["marker"]["size"]):
            sizes[label] = size
    small = [s for label, s in sizes.items() if "1b" in label]
    large = [s for label, s in sizes.items() if "7b" in label]
    assert max(small) < min(large)


def test_pareto_frontiers_join_one_models_points_only(figures):
    lines = [t for t in figures["chart-pareto"]["data"] if t["mode"] == "lines+markers"]
    assert lines
    for t in lines:
        models = {label.split(" ")[0] for label in t["text"]}
        assert len(models) == 1, t["name"]
    assert {t["name"].split(" · ")[0] for t in lines} == {"synthetic:llama-3.2-1b", "synthetic:qwen2.5-7b"}


def test_hover_numbers_never_use_scientific_notation(figures):
    scatter = figures["chart-scatter"]["data"][0]["hovertemplate"]
    assert ":,.4~r}" in scatter  # 17,160 tok/s, not 1.716e+04


def test_pareto_frontiers_per_hardware_too(figures):
    names = {t["name"] for t in figures["chart-pareto"]["data"] if t["mode"] == "lines+markers"}
    assert {n.split(" · ")[1].removesuffix(" frontier") for n in names} == {"h100", "2x-h100"}


def test_without_any_model_swept_the_heatmap_is_a_note():
    data = campaign_board()
    data.board = data.board[data.board.model != "synthetic:llama-3.2-1b"]
    note = index_figures(data)["chart-heatmap"]
    assert isinstance(note, str) and "more than one batch size" in note


def test_the_table_shows_each_rows_rank_band_or_why_it_is_not_ranked(good_gpu_result, tmp_path):
    """hb's ranking (gpu_ops.ranking) on the site: a rank column after the model, its label or the reason."""
    import json
    import re

    from gpu_ops.site import report_from_folders

    site = report_from_folders([good_gpu_result], tmp_path / "site")
    index = (site.folder / "index.html").read_text()
    data = json.loads(re.search(r'<script id="lem-data" type="application/json">(.*?)</script>', index).group(1))
    assert [c["key"] for c in data["columns"][:2]] == ["model", "rank_j_per_token"]
    assert all(r["rank_label"] or r["not_ranked_reason"] for r in data["rows"])
    js = (site.folder / "assets" / "site.js").read_text()
    assert "not ranked" in js and "r.not_ranked_reason" in js

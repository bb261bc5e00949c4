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


SITE_JS_IN_NODE = """
const fs = require("fs");
const els = {};
const el = id => (els[id] ||= { id, style: {}, innerHTML: "", value: "", hidden: false, dataset: {},
  textContent: id === "lem-data" ? fs.readFileSync(process.argv[2], "utf8") : "",
  querySelectorAll: () => [], add() {} });
global.document = { getElementById: el };
global.location = { hash: "#sort=rank_j_per_token&dir=asc" };
global.history = { replaceState() {} };
global.localStorage = { getItem: () => null, setItem() {} };
global.window = { addEventListener() {} };
global.Option = function () {};
eval(fs.readFileSync(process.argv[1], "utf8"));
process.stdout.write(els.body.innerHTML);
"""
"""Runs the site's table script (site.js) in node on a stand-in page: what it writes into the table's body."""


def test_the_table_shows_the_throughput_fallback_of_rows_without_energy_in_its_order(good_gpu_result, tmp_path):
    """#29: rows whose energy is unmeasured read 'not ranked' with their throughput fallback under it (the label the
    leaderboard stores), sorted by it under every ranked row when the table is sorted by rank."""
    import json
    import re
    import shutil
    import subprocess

    from gpu_ops.leaderboard import build_leaderboard
    from gpu_ops.results import read_tables
    from gpu_ops.site import build_site
    from gpu_ops.stats import published_statistics

    t = read_tables(good_gpu_result)
    raw = {"raw_run_id": "local:r", "raw_storage_id": None, "raw_data_version": "v", "raw_code_version": "c"}
    nan = float("nan")
    parts = [
        published_statistics(t, "valid__pytorch|h", "s", raw).assign(
            n_cycles=5, j_per_token_cv=0.01, window_min_s=60.0, tokens_per_s_mean=1.0
        ),
        *(
            published_statistics(t, f"cpu{i}__pytorch|h", "s", raw).assign(
                energy_status="unmeasured",
                j_per_token_mean=nan,
                tokens_per_j_mean=nan,
                tokens_per_s_mean=tps,
                tokens_per_s_ci95=1.0,  # apart: two bands
            )
            for i, tps in enumerate((10.0, 1000.0))
        ),
    ]
    board = build_leaderboard(pd.concat(parts, ignore_index=True))
    site = build_site(board, {}, tmp_path / "site")
    index = (site.folder / "index.html").read_text()
    data = re.search(r'<script id="lem-data" type="application/json">(.*?)</script>', index).group(1)
    rows = json.loads(data)["rows"]
    unranked = [r for r in rows if r["energy_status"] == "unmeasured"]
    assert unranked and all(r["throughput_fallback_label"].startswith("throughput ") for r in unranked)
    assert all(not r["throughput_fallback_label"] and r["rank_label"] for r in rows if r["energy_status"] == "measured")
    assert json.loads(data)["fallback_note"] == LEADERBOARD["throughput_fallback_rank"].meaning  # its tooltip
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed: the table script is checked in a browser by tests/gpu_ops/site/test_site.py")
    (tmp_path / "data.json").write_text(data)
    body = subprocess.run(
        [node, "-e", SITE_JS_IN_NODE, str(site.folder / "assets" / "site.js"), str(tmp_path / "data.json")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    cells = re.findall(r'<td class=" rank(?: note)?"[^>]*>(.*?)</td>', body)
    expected = [r.rank_label for r in board.itertuples() if r.rank_label]
    expected += [
        f'not ranked <span class="fallback" title="{{}}">{label}</span>'
        for label in board.throughput_fallback_label[board.rank_label == ""]
    ]
    assert [re.sub(r'title="[^"]*"', 'title="{}"', c) for c in cells] == expected
    assert expected[-1].endswith("throughput 2 of 2</span>") and len(cells) == len(board)  # the slower CPU row last

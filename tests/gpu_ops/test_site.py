"""The static leaderboard site in a real headless Chromium (Debian's package, driven by Playwright)."""

import os
import shutil

import pandas as pd
import pytest

from gpu_ops.config import parse_config
from gpu_ops.runner import run_experiment
from gpu_ops.site import build_site, report_from_folders, row_id
from tests.fake_nvml import FakeGpu, FakeNVML

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("LEM_REQUIRE_SERVICES") == "1"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if REQUIRED:
            pytest.fail("Chromium not found at /usr/bin/chromium: apt-get install chromium (the browser tests need it)")
        pytest.skip("Chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_path):
    """Three result folders: a measured sweep (batch 1, 2 through the NVML fake), a CPU run (energy unmeasured)."""
    root = tmp_path_factory.mktemp("site")
    base = {
        "model": "builtin:micro-llama",
        "max_input_tokens": 16,
        "max_output_tokens": 8,
        "min_output_tokens": 8,
        "prompts": {"count": 8},
        "cycles": 3,
        "warmup_requests": 1,
        "cooldown_s": 0,
        "energy": {"idle_baseline_s": 0.5},
    }
    gpu = run_experiment(
        parse_config(dict(base, name="gpu", sweep={"batching.batch_size": [1, 4]})),
        root / "r",
        nvml=FakeNVML([FakeGpu(power=lambda t: 180.0)]),
    ).folder
    cpu = run_experiment(
        parse_config(dict(base, name="cpu", model="builtin:small-llama", energy={"idle_baseline_s": 0})), root / "r"
    ).folder
    return report_from_folders([gpu, cpu], root / "site", dagster_url="http://dagster.example:3000")


def open_page(browser, url):
    page = browser.new_page()
    errors, external = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route(
        "**/*",
        lambda route: (
            (external.append(route.request.url), route.abort())
            if not route.request.url.startswith("file:")
            else route.continue_()
        ),
    )
    page.goto(url)
    page.wait_for_function(
        "!document.getElementById('count') || document.getElementById('count').textContent.length > 0"
    )
    return page, errors, external


def table(page) -> pd.DataFrame:
    cells = page.eval_on_selector_all(
        "#body tr", "rows => rows.map(r => [r.dataset.id, ...[...r.cells].map(c => c.innerText)])"
    )
    heads = page.eval_on_selector_all("#head th", "hs => hs.map(h => h.dataset.key || 'compare')")
    return pd.DataFrame([c[1:] for c in cells], columns=heads, index=[c[0] for c in cells])


def test_leaderboard_sort_filter_and_url_state(browser, site):
    index = (site.folder / "index.html").as_uri()
    page, errors, external = open_page(browser, index)
    t = table(page)
    assert len(t) == 3 and errors == [] and external == []  # no console errors, nothing fetched from the network
    unmeasured = t[t.model.str.contains("small-llama")]
    assert (unmeasured.j_per_token_mean == "unmeasured").all() and (unmeasured.tokens_per_j_mean == "unmeasured").all()
    assert not t.j_per_token_mean.str.fullmatch(r"0(\.0+)?( .*)?").any()  # unmeasured is never shown as 0
    assert t[~t.model.str.contains("small")].j_per_token_mean.str.contains("±").all()  # CI beside the mean
    # sort by throughput: click toggles ascending / descending; unmeasured values stay last
    page.click("th[data-key=tokens_per_s_mean]")
    asc = table(page).tokens_per_s_mean.str.split().str[0].astype(float).tolist()
    page.click("th[data-key=tokens_per_s_mean]")
    desc = table(page).tokens_per_s_mean.str.split().str[0].astype(float).tolist()
    assert asc == sorted(asc) and desc == sorted(desc, reverse=True) and len(asc) == 3
    # filters and search change the rows
    page.select_option("#f-model", "builtin:small-llama")
    assert table(page).model.str.contains("small-llama").all() and len(table(page)) == 1
    page.select_option("#f-model", "")
    page.fill("#q", "batch_size=4")
    assert len(table(page)) == 1 and table(page).sweep_point.iloc[0] == "batch_size=4"
    page.fill("#q", "")
    # select a row for the comparison chart; the whole state lives in the URL
    first = table(page).index[0]
    page.check(f"tr[data-id='{first}'] input.sel")
    page.select_option("#f-weights", "synthetic")
    url = page.url
    assert "sel=" in url and "weights=synthetic" in url and "sort=tokens_per_s_mean" in url
    assert page.evaluate("document.getElementById('chart-compare').data[0].x.length") == 1
    # a shared link restores the view in a fresh page
    page2, errors2, _ = open_page(browser, url)
    assert page2.input_value("#f-weights") == "synthetic"
    assert page2.is_checked(f"tr[data-id='{first}'] input.sel")
    assert table(page2).tokens_per_s_mean.str.split().str[0].astype(float).tolist() == desc
    assert page2.get_attribute("th[data-key=tokens_per_s_mean]", "class").strip().endswith("sorted-desc")
    for chart in ("chart-scatter", "chart-box", "chart-heatmap"):
        assert page2.evaluate(f"document.getElementById('{chart}').data.length") > 0, chart
    assert errors2 == []


def test_detail_page_has_config_provenance_and_charts(browser, site):
    page, errors, external = open_page(browser, (site.folder / "index.html").as_uri())
    page.fill("#q", "batch_size=4")
    page.click("#body tr a")
    page.wait_for_selector("#chart-power .main-svg")
    assert "detail/" in page.url and errors == [] and external == []
    text = page.inner_text("body")
    assert "raw data version" in text and "fingerprint hash" in text and "batching.batch_size" in text
    assert (
        page.eval_on_selector_all("tr.nd td:first-child", "tds => tds.map(t => t.innerText)").count(
            "batching.batch_size"
        )
        == 1
    )
    href = page.get_attribute("a[href*='raw_measurements']", "href")
    assert href.startswith(
        "http://dagster.example:3000/assets/raw_measurements?view=partitions&partition=builtin-micro-llama"
    )
    assert page.query_selector("a[href*='/runs/']") is None  # CLI result folders have no Dagster run to link
    power = page.evaluate("document.getElementById('chart-power')._fullData[0].y.length")
    ttft = page.evaluate("document.getElementById('chart-ttft')._fullData[0].x.length")
    shapes = page.evaluate("document.getElementById('chart-power').layout.shapes.length")
    assert power > 10 and ttft == 8 * 3 and shapes >= 3  # samples; one TTFT per request; windows and phase bands


def test_empty_leaderboard_shows_help(browser, tmp_path):
    from gpu_ops.leaderboard import build_leaderboard

    site = build_site(build_leaderboard(pd.DataFrame()), {}, tmp_path / "empty")
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    assert "No measurements yet" in page.inner_text("#empty-all") and errors == []
    assert table(page).empty


def test_row_ids_are_stable_and_url_safe():
    a = row_id("builtin-tiny-llama__vllm|nvidia-h100", "batch_size=4,precision=bf16")
    assert a == row_id("builtin-tiny-llama__vllm|nvidia-h100", "batch_size=4,precision=bf16")
    assert all(ch.isalnum() or ch == "-" for ch in a)


def test_scaling_chart_has_a_line_per_way_of_splitting_from_one_single_gpu_point():
    from gpu_ops.site.charts import scaling

    row = dict(model="m", backend="pytorch", precision="bf16")
    board = pd.DataFrame(
        [
            dict(
                row, hardware="h100", gpu_count=1, parallelism="single", tokens_per_j_mean=3.0, tokens_per_s_mean=700.0
            ),
            dict(
                row, hardware="2x-h100", gpu_count=2, parallelism="tp2", tokens_per_j_mean=0.9, tokens_per_s_mean=350.0
            ),
            dict(
                row, hardware="4x-h100", gpu_count=4, parallelism="tp4", tokens_per_j_mean=0.5, tokens_per_s_mean=400.0
            ),
            dict(
                row, hardware="2x-h100", gpu_count=2, parallelism="dp2", tokens_per_j_mean=2.8, tokens_per_s_mean=1260.0
            ),
            dict(
                row, hardware="2x-h100", gpu_count=2, parallelism="dp2", tokens_per_j_mean=2.1, tokens_per_s_mean=1300.0
            ),  # worse sweep point
            dict(
                row, hardware="cpu-x", gpu_count=0, parallelism="single", tokens_per_j_mean=None, tokens_per_s_mean=5.0
            ),
        ]
    )
    traces = {t.name: t for t in scaling(board).data}
    assert set(traces) == {"m pytorch bf16 dp", "m pytorch bf16 tp"}
    assert list(traces["m pytorch bf16 tp"].x) == [1, 2, 4] and list(traces["m pytorch bf16 tp"].y) == [3.0, 0.9, 0.5]
    assert list(traces["m pytorch bf16 dp"].x) == [1, 2] and list(traces["m pytorch bf16 dp"].y) == [3.0, 2.8]
    assert "1260 tokens/s = 90% of 2 x one GPU" in traces["m pytorch bf16 dp"].hovertext[1]


def test_a_single_cycle_row_shows_its_missing_ci_as_missing(browser, tmp_path, tiny_model_path):
    """One cycle has no confidence interval: the table, the detail page and the error bars say so, never ±0."""
    import json
    import re

    cfg = {
        "name": "one",
        "model": "builtin:micro-llama",
        "max_input_tokens": 16,
        "max_output_tokens": 8,
        "min_output_tokens": 8,
        "prompts": {"count": 8},
        "cycles": 1,
        "warmup_requests": 1,
        "cooldown_s": 0,
        "energy": {"idle_baseline_s": 0.5},
    }
    folder = run_experiment(parse_config(cfg), tmp_path / "r", nvml=FakeNVML([FakeGpu(power=lambda t: 180.0)])).folder
    site = report_from_folders([folder], tmp_path / "site")
    index = (site.folder / "index.html").read_text()
    data = json.loads(re.search(r'<script id="lem-data" type="application/json">(.*?)</script>', index, re.S).group(1))
    [row] = data["rows"]
    assert row["j_per_token_mean"] > 0 and row["j_per_token_ci95"] is None and row["tokens_per_s_ci95"] is None
    figures = {f["id"]: f["figure"] for f in data["figures"]}
    for chart in ("chart-box", "chart-scatter"):
        bars = [t["error_y"]["array"] for t in figures[chart]["data"] if "error_y" in t]
        assert bars == [[None]], (chart, bars)  # no error bar, not one of height 0
    assert "J/token ± n/a" in (site.folder / "detail" / f"{row['id']}.html").read_text()
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    cells = table(page)
    assert (
        errors == []
        and cells.j_per_token_mean.iloc[0].endswith("± n/a")
        and cells.tokens_per_s_mean.iloc[0].endswith("± n/a")
    )

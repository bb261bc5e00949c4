"""The static leaderboard site in a real headless Chromium (Debian's package, driven by Playwright)."""

import os
import re

import pandas as pd
import pytest

from gpu_ops.config import parse_config
from gpu_ops.runner import run_experiment
from gpu_ops.site import build_site, report_from_folders, row_id
from gpu_ops.site.screenshots import CHROMIUM, FLAGS
from tests.fake_nvml import FakeGpu, FakeNVML

REQUIRED = os.environ.get("LEM_REQUIRE_SERVICES") == "1"


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
def folders(tmp_path_factory, tiny_model_path):
    """Two result folders: a measured sweep (batch 1, 4 through the NVML fake), a CPU run (energy unmeasured)."""
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
    return gpu, cpu


@pytest.fixture(scope="module")
def site(folders, tmp_path_factory):
    """Three rows: two measured sweep points and one CPU row, with a Dagster URL but no Dagster runs (CLI folders)."""
    return report_from_folders(list(folders), tmp_path_factory.mktemp("site") / "site", "http://dagster.example:3000")


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
    heads = page.eval_on_selector_all("#head th", "hs => hs.map(h => h.dataset.key || h.dataset.col)")
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
    # the rank band comes right after the model, then the headline (tokens/J, higher is better), sorted best first
    assert list(t.columns[:4]) == ["model", "rank_j_per_token", "tokens_per_j_mean", "cv"]
    assert page.get_attribute("th[data-key=tokens_per_j_mean]", "class").split()[-1] == "sorted-desc"
    measured = t.tokens_per_j_mean[t.tokens_per_j_mean != "unmeasured"].str.replace(",", "").astype(float).tolist()
    assert measured == sorted(measured, reverse=True) and t.tokens_per_j_mean.iloc[-1] == "unmeasured"
    # a header's first click sorts best first (its `better` direction), the next click reverses; unmeasured last
    page.click("th[data-key=j_per_token_mean]")
    jpt = table(page).j_per_token_mean.str.split().str[0]
    assert jpt.iloc[:2].str.replace(",", "").astype(float).is_monotonic_increasing and jpt.iloc[2] == "unmeasured"
    page.click("th[data-key=tokens_per_s_mean]")
    desc = table(page).tokens_per_s_mean.str.split().str[0].str.replace(",", "").astype(float).tolist()
    page.click("th[data-key=tokens_per_s_mean]")
    asc = table(page).tokens_per_s_mean.str.split().str[0].str.replace(",", "").astype(float).tolist()
    assert asc == sorted(asc) and desc == sorted(desc, reverse=True) and len(asc) == 3 and asc != desc
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
    assert table(page2).tokens_per_s_mean.str.split().str[0].str.replace(",", "").astype(float).tolist() == asc
    assert page2.get_attribute("th[data-key=tokens_per_s_mean]", "class").strip().endswith("sorted-asc")
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
    # the cross-check against each window's own tolerance (a run-level tolerance no longer exists)
    assert re.search(r"counter vs timeline\s+mean [-\d.e]+ %; each window's tolerance [\d.e]+ % to [\d.e]+ %", text)
    assert re.search(r"GPU time\s+[\d.]+ GPU-seconds \(its share of the time its run held the GPUs\)", text)
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
    assert "1,260 tokens/s = 90% of 2 x one GPU" in traces["m pytorch bf16 dp"].hovertext[1]


def test_a_single_cycle_row_shows_its_missing_ci_as_missing(browser, tmp_path, tiny_model_path):
    """One cycle has no confidence interval: the table, the detail page and the error bars say so, never ±0."""
    import json

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
    detail = (site.folder / "detail" / f"{row['id']}.html").read_text()
    assert "J/token ± n/a" in detail and "CV n/a (one cycle)" in detail
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    cells = table(page)
    assert (
        errors == []
        and cells.j_per_token_mean.iloc[0].endswith("± n/a")
        and cells.tokens_per_s_mean.iloc[0].endswith("± n/a")
        and cells.cv.iloc[0] == "n/a"
    )


def test_without_energy_throughput_leads_best_first_and_empty_charts_are_explained(browser, folders, tmp_path):
    """A CPU-only site: output tokens/s is the headline, sorted descending; the charts that need energy are notes."""
    site = report_from_folders([folders[1]], tmp_path / "site")
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    assert errors == [] and "Headline: output tokens/s" in page.inner_text(".sub")
    assert page.get_attribute("th[data-key=tokens_per_s_mean]", "class").split()[-1] == "sorted-desc"
    assert list(table(page).columns[1:3]) == ["rank_j_per_token", "tokens_per_s_mean"]
    notes = page.inner_text("#chart-notes")
    for chart in ("chart-pareto", "chart-scatter", "chart-scaling"):
        assert page.query_selector(f"div#{chart}") is None and page.query_selector(f"#note-{chart}"), chart
    assert notes.count("no energy measured") == 3 and "no model was measured at more than one batch size" in notes
    assert page.is_hidden("#compare") and page.is_visible("#compare-hint")  # no empty, untitled compare chart
    page.check("#body tr input.sel")
    assert page.is_visible("#compare") and "side by side" in page.inner_text("#compare h2")
    assert "LEM_DAGSTER_URL" not in (site.folder / "detail" / f"{table(page).index[0]}.html").read_text()


def test_pareto_chart_joins_each_hardwares_frontier(browser, site):
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    page.wait_for_selector("#chart-pareto .main-svg")
    traces = page.evaluate(
        "document.getElementById('chart-pareto').data.map(t => ({name: t.name, n: t.x.length, mode: t.mode, "
        "visible: t.visible}))"
    )
    shown = [t for t in traces if t["visible"] is not False]
    points = [t for t in shown if t["mode"] == "markers"]
    frontiers = [t for t in shown if t["mode"] == "lines+markers"]
    assert errors == [] and len(points) == len(frontiers) == 1  # one hardware measured (the CPU row has no energy)
    assert points[0]["n"] == 2 and 1 <= frontiers[0]["n"] <= 2 and frontiers[0]["name"].endswith("frontier")
    assert "TPOT" in page.evaluate("document.getElementById('chart-pareto').layout.xaxis.title.text")
    page.click("#chart-pareto .updatemenu-button >> text=E2E latency")
    page.wait_for_function("document.getElementById('chart-pareto').layout.xaxis.title.text.startsWith('E2E')")
    visible = page.evaluate("document.getElementById('chart-pareto').data.map(t => t.visible)")
    assert visible == [False] * len(shown) + [True] * len(shown)


def test_frontier_keeps_the_points_nothing_beats_on_both_axes():
    from gpu_ops.site.charts import frontier

    pts = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5, 4.0], "y": [5.0, 3.0, 1.0, 4.0, 0.5]}, index=list("abcde"))
    assert list(frontier(pts, "x", "y").index) == ["a", "b", "c", "e"]  # d is beaten by b (faster and lower)


def test_row_click_path_reaches_detail_run_and_raw_partition(browser, folders, tmp_path):
    """Leaderboard row -> its detail page -> the Dagster run (full id) and the raw partition, when rows carry a run."""
    from gpu_ops.site.data import leaderboard_of_folders

    board, raw = leaderboard_of_folders(list(folders))
    board["run_id"] = [f"{i:08d}-aaaa-bbbb-cccc-{i:012d}" for i in range(len(board))]
    site = build_site(board, raw, tmp_path / "site", dagster_url="http://dagster.example:3000/")
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    row = board[board.sweep_point == "batch_size=4"].iloc[0]
    assert page.get_attribute(f"tr[data-id='{table(page).index[0]}'] a.run", "href").startswith(
        "http://dagster.example:3000/runs/"
    )
    page.fill("#q", "batch_size=4")
    page.click("#body tr a.detail")
    page.wait_for_selector("#run-link")
    assert page.get_attribute("#run-link", "href") == f"http://dagster.example:3000/runs/{row.run_id}"
    assert row.run_id in page.inner_text("#run-link")  # the full id, not 8 characters that find no run
    assert page.get_attribute("#raw-link", "href").startswith(
        "http://dagster.example:3000/assets/raw_measurements?view=partitions&partition=builtin-micro-llama"
    )
    assert errors == []


def test_embed_widget_shows_one_models_rows_and_detail_pages_offer_the_snippet(browser, site, folders, tmp_path):
    """A page opened from disk offers no snippet (it would point at the reader's disk: a file:///tmp/... iframe); a
    site built with its public address offers one that points there."""
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    page.fill("#q", "batch_size=4")
    page.click("#body tr a.detail")
    page.wait_for_selector("#embed-copy", state="attached")  # the detail page, not the index it was clicked from
    assert page.is_visible("#embed-note") and not page.is_visible("#embed-snippet")
    public = report_from_folders(list(folders), tmp_path / "public", site_url=(tmp_path / "public").as_uri())
    page, errors, _ = open_page(browser, (public.folder / "index.html").as_uri())
    page.fill("#q", "batch_size=4")
    page.click("#body tr a.detail")
    page.wait_for_selector("#embed-copy", state="attached")  # the detail page, not the index it was clicked from
    assert not page.is_visible("#embed-note")
    snippet = page.input_value("#embed-snippet")
    src = snippet.split('src="')[1].split('"')[0]
    assert snippet.startswith("<iframe ") and src.endswith("embed.html?model=builtin%3Amicro-llama")
    embed, errors2, external = open_page(browser, src)
    rows = embed.eval_on_selector_all("#card tbody tr", "trs => trs.map(t => t.innerText)")
    assert len(rows) == 2 and all("batch_size=" in r for r in rows) and "micro-llama" in embed.inner_text("#card h1")
    embed.goto((site.folder / "embed.html").as_uri() + "?model=nope")
    assert "No rows for model" in embed.inner_text("#card") and "builtin:small-llama" in embed.inner_text("#card")
    assert errors == errors2 == external == []


def test_table_fits_with_a_sticky_model_column_and_a_remembered_column_choice(browser, site):
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto((site.folder / "index.html").as_uri())
    fits = "(() => { const w = document.getElementById('table-wrap'); return w.scrollWidth <= w.clientWidth })()"
    assert page.evaluate(fits)  # nothing hidden off to the right at 1600 px
    assert {"avg_power_w_mean", "batch_size", "n_cycles"} <= set(table(page).columns)
    # narrower, the page does not overflow: the table scrolls in its box and the model column stays in view
    for width in (1280, 900):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
    page.eval_on_selector("#table-wrap", "w => { w.scrollLeft = w.scrollWidth }")
    box, model = page.evaluate(
        "[document.getElementById('table-wrap'), document.querySelector('td.first')].map(e => "
        "e.getBoundingClientRect().left)"
    )
    assert page.eval_on_selector("#table-wrap", "w => w.scrollLeft") > 0 and abs(model - box) < 1
    page.click("#chooser summary")
    page.uncheck("#chooser-list input[data-key=avg_power_w_mean]")
    assert "avg_power_w_mean" not in table(page).columns
    page.reload()
    assert "avg_power_w_mean" not in table(page).columns and "batch_size" in table(page).columns  # localStorage
    page.close()


def test_each_row_shows_its_rank_band_or_not_ranked_with_the_reason(browser, site):
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    cells = page.eval_on_selector_all("#body td.rank", "tds => tds.map(t => [t.innerText, t.title])")
    assert len(cells) == 3 and errors == []
    for text, reason in cells:
        words = " ".join(text.split())
        unranked = re.fullmatch(r"not ranked( throughput =?\d+ of \d+)?", words)
        assert re.fullmatch(r"=?\d+", words) or (unranked and reason), (text, reason)
    # the CPU row: not ranked, why, and its throughput fallback under it (#29); a measured row has none
    cpu = [" ".join(t.split()) for t, reason in cells if "energy unmeasured" in reason]
    assert cpu == ["not ranked throughput 1 of 1"]
    assert all("throughput" not in t for t, reason in cells if "energy unmeasured" not in reason)


def test_a_phone_shows_the_index_and_a_detail_page_without_horizontal_overflow(browser, site):
    """At 390 px the page was 485 px wide (the charts' 460 px minimum column)."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto((site.folder / "index.html").as_uri())
    page.wait_for_selector("#body tr")
    overflow = "document.documentElement.scrollWidth - window.innerWidth"
    assert page.evaluate(overflow) <= 0
    page.click("#body tr a.detail")
    page.wait_for_selector("#embed-section, h1")
    assert page.evaluate(overflow) <= 0
    page.close()


def test_cv_column_badges_unstable_rows(browser, folders, tmp_path):
    from gpu_ops.site.data import leaderboard_of_folders
    from gpu_ops.stats import CV_UNSTABLE

    board, raw = leaderboard_of_folders(list(folders))
    noisy = board.index[board.sweep_point == "batch_size=1"][0]
    board["cv"], board["unstable"] = CV_UNSTABLE / 2, False  # the leaderboard's verdicts, which the site shows
    board.loc[noisy, ["cv", "unstable"]] = CV_UNSTABLE * 3, True
    site = build_site(board, raw, tmp_path / "site")
    page, errors, _ = open_page(browser, (site.folder / "index.html").as_uri())
    t = table(page)
    badged = t[t.cv.str.contains("unstable")]
    assert errors == [] and list(badged.sweep_point) == ["batch_size=1"]
    assert float(badged.cv.iloc[0].split()[0]) == pytest.approx(CV_UNSTABLE * 300)  # shown in %
    assert (site.folder / "detail" / f"{badged.index[0]}.html").read_text().count('class="badge">unstable') == 1


def test_site_folder_is_world_readable(site):
    assert site.folder.stat().st_mode & 0o777 == 0o755
    for path in site.folder.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


def test_model_links_go_to_the_hub_only_for_hub_models():
    from gpu_ops.site.data import HUB, model_link

    assert model_link("meta-llama/Llama-3.1-8B")[:2] == (HUB + "meta-llama/Llama-3.1-8B", "hub")
    url, kind, note = model_link("synthetic:llama-3.1-8b")
    assert url == HUB + "meta-llama/Llama-3.1-8B" and kind == "synthetic" and "random weights" in note
    for local, said in (("builtin:tiny-llama", "built-in"), ("/models/llama", "local"), ("./llama", "local")):
        url, kind, note = model_link(local)
        assert url is None and kind == said and "no hub page" in note, local


def test_screenshots_are_built_from_the_committed_gpu_results_without_repeats():
    from gpu_ops.site.data import leaderboard_of_folders
    from gpu_ops.site.screenshots import gpu_result_folders

    folders = gpu_result_folders()
    assert not [f for f in folders if "earlier-run" in f.parts]
    board, _ = leaderboard_of_folders(folders)
    assert {"h200", "2x-h200"} <= set(board.hardware) and (board.gpu_count > 0).all()
    assert board.j_per_token_mean.notna().all()  # real GPU energy on every row the docs show


def _slo_rows(page) -> list[tuple[str, str]]:
    cells = page.eval_on_selector_all(
        "#slo-body tr", "rows => rows.map(r => [r.cells[2].innerText, r.cells[4]?.querySelector('a')?.innerText || ''])"
    )
    return [(verdict, point) for verdict, point in cells]


def _python_pick(board, text: str) -> list[tuple[str, str]]:
    from gpu_ops.slo import parse_slo, slo_pick

    pick = slo_pick(board, parse_slo(text))
    return [(v, "" if v == "none" else str(s)) for v, s in zip(pick.verdict, pick.sweep_point)]


def test_slo_page_picks_as_gpu_ops_slo_does_and_keeps_its_deadlines_in_the_url(browser, site):
    ttft = site.board.ttft_p99_pooled_hi_s.dropna()
    loose, tight = f"ttft_p99={ttft.max() * 2e3:.6g}ms", f"ttft_p99={ttft.min() * 0.5e3:.6g}ms"
    for text in (loose, tight):
        page, errors, external = open_page(browser, (site.folder / "slo.html").as_uri() + "#" + text)
        assert _slo_rows(page) == _python_pick(site.board, text) and errors == [] and external == []
    assert {v for v, _ in _slo_rows(page)} == {"none"}  # nothing meets a deadline under every row's interval
    # moving a slider rewrites the URL; the link restores the same view in a fresh page
    page.check("#on-tpot")
    page.eval_on_selector("#r-tpot", "r => { r.value = Math.log10(250); r.dispatchEvent(new Event('input')); }")
    assert "tpot_p99=250ms" in page.url and "ttft_p99=" in page.url
    again, _, _ = open_page(browser, page.url)
    assert again.is_checked("#on-tpot") and again.input_value("#q-ttft") == "99"
    assert _slo_rows(again) == _slo_rows(page)
    assert again.evaluate("document.getElementById('good-body').innerText").count("slo:") == 1  # no SLO in config


def test_index_shows_carbon_and_cost_as_unknown_with_their_inputs(browser, site):
    page, _, _ = open_page(browser, (site.folder / "index.html").as_uri())
    assert "gco2e_per_mtoken" not in table(page).columns  # unticked at first, so the table fits the screen
    page.click("#chooser summary")
    for key in ("gco2e_per_mtoken", "cost_per_mtoken"):
        page.check(f"#chooser-list input[data-key={key}]")
    t = table(page)
    assert t.gco2e_per_mtoken.str.startswith("unknown").all()  # no inputs given: unknown, never a default
    assert t.gco2e_per_mtoken.str.contains("gCO2e/kWh").all() and t.cost_per_mtoken.str.contains("GPU-hour").all()


def test_report_slo_prints_the_pick_and_opens_slo_html_with_it(folders, tmp_path, capsys):
    from gpu_ops.cli import main

    assert main(["report", *map(str, folders), "--out", str(tmp_path / "site"), "--slo", "ttft_p99=60s"]) == 0
    out = capsys.readouterr().out
    assert "lowest J/token meeting ttft_p99=60s" in out and "slo.html#ttft_p99=60000ms" in out
    assert "builtin:micro-llama" in out  # the measured model has a pick line
    assert (tmp_path / "site" / "slo.html").is_file()


def test_an_older_result_folder_gets_its_detail_page_with_empty_cells_for_what_it_did_not_record(
    good_gpu_result, tmp_path
):
    """A folder in the first published shape (no engine columns, no per-window tolerance) is read as the current
    version (gpu_ops.results.upgrade): its detail page is built, and what it never recorded shows as empty."""
    from tests.gpu_ops.test_results import _old_folder

    site = report_from_folders([_old_folder(good_gpu_result, tmp_path / "old")], tmp_path / "site")
    [detail] = (site.folder / "detail").iterdir()
    cells = re.findall(r"<td>(.*?)</td>", detail.read_text().split("<th>warm engine</th>")[1].split("</table>")[0])
    assert cells and not any(c in ("None", "nan", "<NA>") for c in cells)
    assert cells[-2:] == ["", ""]  # engine, warm engine: not recorded

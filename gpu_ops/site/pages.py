"""The site's pages: the index (the leaderboard table with its data inlined for site.js, and the charts) and one
detail page per row (summary, cycles, provenance with links into Dagster, resolved config, environment).

Self-contained: plotly.js is copied from the installed plotly package and data is inlined into each page, so the
folder works from disk, object storage, a Space or GitHub Pages, with no CDN and no server.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from gpu_ops.conversions import NO_CONVERSIONS, Conversions
from gpu_ops.readable import number
from gpu_ops.results import ResultTables, replace_folder
from gpu_ops.schema import LEADERBOARD, SITE_DETAIL_CYCLES, SITE_EMBED, SITE_HIDDEN, Shown, plain
from gpu_ops.site.answers import NOTE_OF, conversion_notes, detail_sections, slo_body
from gpu_ops.site.api import api_body, write_api
from gpu_ops.site.charts import detail_figures, index_figures
from gpu_ops.site.data import (
    FILTERS,
    columns,
    headline,
    leaderboard_of_folders,
    local_link_warning,
    site_data,
)
from gpu_ops.site.submissions import submissions_body
from gpu_ops.slo import Deadline
from gpu_ops.stats import CI_MISSING, CV_UNSTABLE, fmt_ci, idle_rise_note

STATIC = resources.files("gpu_ops.site") / "static"


@dataclass
class SiteResult:
    folder: Path
    rows: int
    pages: int
    figures: dict  # figure id -> plotly JSON (for Dagster metadata)
    warnings: list[str] = field(default_factory=list)  # for the builder's log (e.g. links that work only here)
    board: pd.DataFrame | None = None  # the leaderboard the site shows


def _script_json(obj) -> str:
    return json.dumps(obj, default=plain, separators=(",", ":")).replace("</", "<\\/")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{root}assets/site.css"><script src="{root}assets/plotly.min.js"></script></head>
<body>{body}</body></html>
"""


HEADLINE_NOTE = {
    "tokens_per_j_mean": "<strong>Headline: tokens per joule</strong> (output tokens per joule of GPU energy, gross; "
    "higher is better), the inverse of J/token.",
    "tokens_per_s_mean": "<strong>Headline: output tokens/s</strong> (higher is better): no row's energy is measured "
    "here, so throughput leads; energy columns read <em>unmeasured</em>, never 0.",
}


def _index_body(
    title: str, n: int, generated_from: str, headline: str, charts: dict[str, dict | str], submissions: bool = False
) -> str:
    """The index page; `charts` maps each chart's element id to its figure, or to a note saying why it is left out."""
    filters = "".join(f'<label>{f} <select id="f-{f}"><option value="">all</option></select></label>' for f in FILTERS)
    empty_all = (
        ""
        if n
        else '<div class="empty" id="empty-all"><strong>No measurements yet.</strong><br>Drop an experiment YAML '
        "into the platform's inbox (storage/inbox), or run <code>llm-energy-measure run</code> and build this site "
        "with <code>llm-energy-measure report RESULTS --out DIR</code>.</div>"
    )
    notes = "".join(f'<li id="note-{k}">{html.escape(v)}</li>' for k, v in charts.items() if isinstance(v, str))
    divs = "".join(f'<div class="chart" id="{k}"></div>' for k, v in charts.items() if not isinstance(v, str))
    return f"""<h1>{html.escape(title)}</h1>
<div class="sub">{HEADLINE_NOTE[headline]} Energy is measured from the GPU energy counter; "unmeasured" means it
could not be read (the reason is in the tooltip), never zero. "±" is the half-width of the 95 % t confidence
interval over cycles. Rows whose cycles vary by more than {CV_UNSTABLE:.0%}
(CV column) carry an <span class="badge">unstable</span> badge. Rows with synthetic weights are flagged.
{html.escape(generated_from)}{' <a href="submissions.html">Submissions</a>' if submissions else ""}
<a id="api-link" href="api/index.html">Data API (JSON)</a>
<a id="slo-link" href="slo.html">Energy at a latency target, J per good token</a></div>
{empty_all}
<div class="filters">{filters}<label>search
<input id="q" type="search" placeholder="model, backend, hardware..."></label>
<details id="chooser"><summary>columns</summary><div id="chooser-list"></div></details>
<span id="count"></span></div>
<div class="empty" id="empty" style="display:none">No rows match these filters.</div>
<div class="table-wrap" id="table-wrap"><table id="board"><thead><tr id="head"></tr></thead><tbody id="body"></tbody>
</table></div>
<section id="compare" hidden><h2>Selected rows side by side</h2><div class="chart" id="chart-compare"></div></section>
<p class="sub" id="compare-hint">Tick rows in the table to compare them side by side.</p>
<div class="charts">{divs}</div>
{f'<ul class="chart-notes" id="chart-notes">{notes}</ul>' if notes else ""}
<script id="lem-data" type="application/json">__DATA__</script>
<script src="assets/site.js"></script>"""


def _flatten(d, prefix="") -> dict[str, object]:
    out = {}
    for k, v in (d or {}).items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _kv(pairs) -> str:
    return (
        '<table class="kv">'
        + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in pairs)
        + "</table>"
    )


def _fmt(v, unit="", scale=1.0, digits=4) -> str:
    v = plain(v)
    return '<span class="unmeasured">unmeasured</span>' if v is None else f"{number(float(v) * scale, digits)}{unit}"


def _cell(row, field: Shown) -> str:
    """A row's cell as `field` shows it: a figure (a column with a stored unit) in the field's unit, else text (empty
    where there is no value, as in a column an older folder did not write)."""
    if not field.column.unit:
        value = plain(row.get(field.name))
        return "" if value is None else html.escape(str(value))
    return _fmt(row.get(field.name), f" {field.unit}" if field.unit else "", field.scale)


EMBED_NEEDS_URL = (
    "This copy of the site has no public address, so an embed made from it would point at this machine. Build the "
    "site with its public address (LEM_SITE_URL on the platform, report --site-url) to get the snippet."
)


def _embed_section(model: str, site_url: str | None) -> str:
    """The embed snippet: written here from the site's public address; without one, made by the page from its own
    address when served over http(s), and never from a file:// address (it would point at the reader's disk)."""
    if site_url:
        src = f"{site_url.rstrip('/')}/embed.html?model={quote(model, safe='')}"
        snippet = f'<iframe src="{src}" width="560" height="320" style="border:0" title="LLM energy"></iframe>'
        fill = ""
    else:
        snippet = ""
        fill = """<script>(() => {
  const box = document.getElementById("embed-snippet");
  if (!/^https?:$/.test(location.protocol)) {
    box.hidden = document.getElementById("embed-copy").hidden = true;
    return;
  }
  document.getElementById("embed-note").hidden = true;
  const src = new URL("../embed.html?model=" + encodeURIComponent(box.dataset.model), location.href).href;
  box.value = `<iframe src="${src}" width="560" height="320" style="border:0" title="LLM energy"></iframe>`;
})();</script>"""
    return f"""<section><h2>Embed this model</h2><p class="sub">A small card of this model's rows for another page:</p>
<p class="sub" id="embed-note"{" hidden" if site_url else ""}>{html.escape(EMBED_NEEDS_URL)}</p>
<textarea id="embed-snippet" readonly rows="2" data-model="{html.escape(model)}">{html.escape(snippet)}</textarea>
<button id="embed-copy" type="button">copy</button></section>{fill}
<script>document.getElementById("embed-copy").onclick = () => {{
  const box = document.getElementById("embed-snippet"); box.select(); navigator.clipboard?.writeText(box.value); }};
</script>"""


def _detail(row, t: ResultTables, figures: list[dict], answers: str = "", site_url: str | None = None) -> str:
    """A row's detail page body; `figures` are its charts (charts.detail_figures)."""
    sp = row.sweep_point
    cyc = t.cycles[t.cycles.sweep_point == sp].sort_values("cycle")
    point = t.sweep_points[t.sweep_points.sweep_point == sp].iloc[0]
    exp = t.experiment.iloc[0]
    # resolved config with non-defaults highlighted
    config = _flatten(json.loads(point.config_json))
    nd = set(_flatten(json.loads(point.non_defaults_json)))
    cfg_rows = "".join(
        f'<tr class="{"nd" if k in nd else ""}"><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>'
        for k, v in sorted(config.items())
    )
    cycle_table = (  # in a scrolling box: on a phone the table scrolls, not the page
        '<div class="table-wrap"><table><tr>'
        + "".join(f"<th>{f.label}</th>" for f in SITE_DETAIL_CYCLES)
        + "</tr>"
        + "".join(
            "<tr>" + "".join(f"<td>{_cell(r, f)}</td>" for f in SITE_DETAIL_CYCLES) + "</tr>" for _, r in cyc.iterrows()
        )
        + "</table></div>"
    )
    links = [
        f'<a id="run-link" href="{html.escape(row.run_url)}">run {html.escape(str(row.dagster_run))}</a>'
        if row.run_url
        else "",
        f'<a id="raw-link" href="{html.escape(row.raw_url)}">raw partition</a>' if row.raw_url else "",
    ]
    provenance = _kv(
        [
            ("partition", html.escape(str(row.partition_key))),
            ("raw run id", html.escape(str(row.raw_run_id))),
            ("raw storage id", html.escape(str(row.raw_storage_id))),
            ("raw data version", html.escape(str(row.raw_data_version))),
            ("raw code version", html.escape(str(row.raw_code_version))),
            ("stats code version", html.escape(str(row.stats_code_version))),
            ("file sha", html.escape(str(row.file_sha)) if pd.notna(row.file_sha) else "unknown"),
            ("experiment hash", html.escape(str(row.experiment_hash))),
            ("sweep point hash", html.escape(str(row.sweep_point_hash))),
            ("fingerprint hash", html.escape(str(row.fingerprint_hash))),
            (
                "Dagster UI",
                (
                    " · ".join(x for x in links if x)
                    or ("no Dagster run (built from result folders)" if row.raw_url else "no Dagster URL given")
                )
                + (
                    ' <span class="note local" id="links-local">local: these links open only on the machine that '
                    "built this site</span>"
                    if row.links_local and row.raw_url
                    else ""
                ),
            ),
        ]
    )
    summary = _kv(
        [
            (
                "energy",
                f"{_fmt(row.j_per_token_mean)} {LEADERBOARD['j_per_token_mean'].unit}"
                + (
                    fmt_ci(plain(row.j_per_token_ci95))
                    if plain(row.j_per_token_mean) is not None
                    else f" ({html.escape(str(row.unmeasured_reason))})"
                ),
            ),
            ("tokens per joule", f"{_fmt(row.tokens_per_j_mean)} tokens/J (higher is better)"),
            ("throughput", f"{_fmt(row.tokens_per_s_mean)} tokens/s"),
            (
                "GPU time",
                f"{plain(row.gpu_seconds):.1f} GPU-seconds (its share of the time its run held the GPUs)"
                if plain(row.gpu_seconds) is not None
                else "not recorded (a CPU run, or measured before GPU time was recorded)",
            ),
            (
                "stability",
                (f"CV {_fmt(row.cv, ' %', 100, 2)}" if plain(row.cv) is not None else f"CV {CI_MISSING} (one cycle)")
                + (' <span class="badge">unstable</span>' if row.unstable else ""),
            ),
            ("TTFT p50", _fmt(row.ttft_p50_pooled_s, " ms", 1000)),
            (
                "idle baseline",
                f"before {_fmt(exp.idle_before_w, ' W')}, after {_fmt(exp.idle_after_w, ' W')}, used "
                f"{_fmt(exp.idle_power_w, ' W')}"
                + (
                    f' <span class="badge" id="idle-rise">{html.escape(note)}</span>'
                    if (note := idle_rise_note(exp.idle_before_w, exp.idle_after_w))
                    else ""
                ),
            ),
            (
                "counter vs timeline",
                f"mean {_fmt(row.cross_check_rel_diff_mean, ' %', 100)}; each window's tolerance "
                f"{_fmt(cyc.cross_check_tolerance.min(), ' %', 100)} to "
                f"{_fmt(cyc.cross_check_tolerance.max(), ' %', 100)}",
            ),
            (
                "weights",
                html.escape(str(row.weights))
                + (
                    " <span class='flag'>synthetic weights: real shapes, random values</span>"
                    if row.weights == "synthetic"
                    else ""
                ),
            ),
        ]
    )
    fp = json.dumps(json.loads(exp.fingerprint_json), indent=1, sort_keys=True)
    model = html.escape(str(row.model))
    if row.model_url:
        model = f'<a id="model-link" href="{html.escape(row.model_url)}">{model}</a>'
    core = ("chart-power", "chart-ttft", "chart-itl")  # the other figures' elements come with their sections
    chart_divs = "".join(f'<div class="chart" id="{f["id"]}"></div>' for f in figures if f["id"] in core)
    power_note = (
        ""
        if any(f["id"] == "chart-power" for f in figures)
        else f'<p class="sub" id="note-power">No power timeline: energy unmeasured '
        f"({html.escape(str(row.unmeasured_reason))}).</p>"
    )
    body = f"""<p><a href="../index.html">← leaderboard</a></p>
<h1>{model} · {html.escape(str(row.backend))} · {html.escape(str(row.hardware))}</h1>
<div class="sub">{html.escape(row.model_note)}</div>
<div class="sub">sweep point <strong>{html.escape(str(sp))}</strong>, {int(row.n_cycles)} cycles,
precision {html.escape(str(row.precision))}</div>
<section><h2>Summary</h2>{summary}</section>
{power_note}<div class="charts">{chart_divs}</div>
{answers}
<section><h2>Cycles</h2>{cycle_table}</section>
<section><h2>Provenance</h2>{provenance}
<p><a id="row-json" href="../api/rows/{row.id}.json">this row as JSON</a> (data API)</p></section>
<section><h2>Resolved config</h2><p class="sub">highlighted: values that differ from the defaults</p>
<table class="kv">{cfg_rows}</table></section>
<section><h2>Environment fingerprint</h2><pre>{html.escape(fp)}</pre></section>
{_embed_section(str(row.model), site_url)}
<script id="lem-figs" type="application/json">{_script_json(figures)}</script>
<script>JSON.parse(document.getElementById("lem-figs").textContent)
  .forEach(f => Plotly.newPlot(f.id, f.figure.data, f.figure.layout, {{responsive: true}}));</script>"""
    return body


def _embed_page(board: pd.DataFrame, lead: str) -> str:
    """embed.html: a card of one model's rows for an iframe on another site; no plotly, styles and data inline."""
    rows = [{k: plain(v) for k, v in r.items()} for r in board[list(SITE_EMBED.names)].to_dict(orient="records")]
    inline = {"rows": rows, "headline": lead, "unstable_cv": CV_UNSTABLE}
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LLM energy</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{(STATIC / 'embed.css').read_text(encoding='utf-8')}</style></head><body>"
        '<div class="card" id="card"></div>'
        f'<script id="lem-embed" type="application/json">{_script_json(inline)}</script>'
        f"<script>{(STATIC / 'embed.js').read_text(encoding='utf-8')}</script></body></html>"
    )


def _world_readable(folder: Path) -> None:
    """The site is published as is (web server, bucket, Pages): folders 0755 and files 0644, not mkdtemp's 0700."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def build_site(
    board: pd.DataFrame,
    raw: dict[str, Path | ResultTables],
    out: Path,
    dagster_url: str | None = None,
    title: str = "LLM energy leaderboard",
    generated_from: str = "",
    submissions: list[dict] | None = None,
    site_url: str | None = None,
    slo: tuple[Deadline, ...] = (),
    history: pd.DataFrame | None = None,
) -> SiteResult:
    """Write the site into `out` (replaced atomically). `raw` maps partition keys to result folders (or tables);
    `dagster_url`: the public address of the Dagster UI its provenance links open (on localhost they are marked
    local, with a warning); `site_url`: the site's own public address, for embed snippets that work elsewhere (links
    inside the site are relative); `submissions`: the platform's submission records, for a submissions page (None:
    no page); `slo`: the deadlines slo.html opens with; `history`: every measurement of each row (schema.HISTORY),
    plotted on its detail page."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "assets").mkdir()
        (tmp / "detail").mkdir()
        from plotly.offline import get_plotlyjs

        (tmp / "assets" / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
        for name in ("site.js", "site.css", "slo.js"):
            (tmp / "assets" / name).write_bytes((STATIC / name).read_bytes())
        data = site_data(board, raw, dagster_url)
        board = data.board
        pages = 0
        for row in board.sort_values("partition_key", kind="stable").itertuples():
            t = data.tables.get(row.partition_key)
            if t is None:
                continue
            answers, extra = detail_sections(row, history)
            body = _detail(row, t, detail_figures(row, t) + extra, answers, site_url)
            page = PAGE.format(title=html.escape(f"{row.model} · {row.sweep_point}"), root="../", body=body)
            (tmp / "detail" / f"{row.id}.html").write_text(page, encoding="utf-8")
            pages += 1
        charts = index_figures(data)
        figs = {k: f for k, f in charts.items() if not isinstance(f, str)}
        lead = headline(board)
        notes = conversion_notes(board)
        rows = [
            {k: plain(v) for k, v in r.items()}
            for r in pd.concat([board.drop(columns=["label"]), notes], axis=1).to_dict(orient="records")
        ]
        inline = {
            "rows": rows,
            "columns": [{**c, "note": NOTE_OF[c["key"]]} if c["key"] in NOTE_OF else c for c in columns(board)],
            "filters": FILTERS,
            "hidden": SITE_HIDDEN.names,
            "ci_missing": CI_MISSING,
            "fallback_note": LEADERBOARD["throughput_fallback_rank"].meaning,
            "default_sort": lead,
            "figures": [{"id": k, "figure": f} for k, f in figs.items()],
        }
        if submissions is not None:
            page = PAGE.format(title="Submissions", root="", body=submissions_body(submissions))
            (tmp / "submissions.html").write_text(page, encoding="utf-8")
        body = _index_body(title, len(board), generated_from, lead, charts, submissions is not None)
        page = PAGE.format(title=html.escape(title), root="", body=body)
        (tmp / "index.html").write_text(page.replace("__DATA__", _script_json(inline)), encoding="utf-8")
        (tmp / "embed.html").write_text(_embed_page(board, lead), encoding="utf-8")
        page = PAGE.format(
            title=html.escape(f"{title}: energy at a latency target"), root="", body=slo_body(board, slo, _script_json)
        )
        (tmp / "slo.html").write_text(page, encoding="utf-8")
        n = write_api(tmp, data, title, generated_from, lead)
        (tmp / "api" / "index.html").write_text(
            PAGE.format(title=html.escape(f"{title}: data API"), root="../", body=api_body(title, n)), encoding="utf-8"
        )
        _world_readable(tmp)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    warning = local_link_warning(dagster_url)
    return SiteResult(out, len(board), pages, figs, [warning] if warning else [], board)


def report_from_folders(
    folders: list[Path],
    out: Path,
    dagster_url: str | None = None,
    slo: tuple[Deadline, ...] = (),
    conversions: Conversions = NO_CONVERSIONS,
    site_url: str | None = None,
) -> SiteResult:
    """`llm-energy-measure report`: the site from result folders written by `run` (no platform)."""
    board, raw = leaderboard_of_folders(folders, conversions)
    return build_site(
        board,
        raw,
        out,
        dagster_url,
        generated_from=f"Built by llm-energy-measure report from {len(folders)} result folder(s).",
        slo=slo,
        site_url=site_url,
    )

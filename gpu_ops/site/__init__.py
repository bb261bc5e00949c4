"""The static leaderboard site: an index page (sortable, filterable table, charts) and one detail page per row.

Self-contained: plotly.js is copied from the installed plotly package, data is inlined into each page, so
the folder works from disk, object storage, a Space or GitHub Pages, with no CDN and no server.
Used by the platform's `leaderboard_site` asset and by `llm-energy-measure report`.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from gpu_ops.charts import BACKEND_COLOURS, _plotly, efficiency_scatter
from gpu_ops.phases import phase_intervals
from gpu_ops.results import ResultTables, read_tables, replace_folder
from gpu_ops.schema import LEADERBOARD, Column
from gpu_ops.stats import CI_MISSING, fmt_ci

STATIC = resources.files("gpu_ops.site") / "static"


def _site_column(c: Column) -> dict:
    """How site.js shows a leaderboard column: its label and unit (seconds in ms), the CI beside a mean, and whether a
    missing value means unmeasured energy."""
    col: dict = dict(key=c.name, label=c.title, type="text" if c.dtype == "str" else "number")
    unit = "ms" if c.unit == "s" else c.unit
    ci = f"{c.name.removesuffix('_mean')}_ci95"
    if c.name.endswith("_mean") and ci in LEADERBOARD:
        col["ci"] = ci
        unit += " (± 95 % CI)"
    if unit and unit != col["label"]:
        col["unit"] = unit
    if c.unit == "s":
        col["scale"] = 1000
    if c.from_counter:
        col["energy"] = True
    return col


COLUMNS = [_site_column(c) for c in LEADERBOARD.where(shown=True)]
"""The leaderboard table's columns: those of schema.LEADERBOARD marked shown, in its order."""
FILTERS = tuple(c["key"] for c in COLUMNS if c["type"] == "text")  # a select each; site.js reads them from the data


@dataclass
class SiteResult:
    folder: Path
    rows: int
    pages: int
    figures: dict  # figure id -> plotly JSON (for Dagster metadata)


def row_id(partition_key: str, sweep_point: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{partition_key}-{sweep_point}".lower()).strip("-")[:60]
    return f"{slug}-{hashlib.sha256(f'{partition_key}/{sweep_point}'.encode()).hexdigest()[:8]}"


def _clean(v):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if math.isnan(v) else float(v)
    return v


def _fig_json(fig) -> dict:
    return json.loads(fig.to_json())


def _script_json(obj) -> str:
    return json.dumps(obj, default=_clean, separators=(",", ":")).replace("</", "<\\/")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{root}assets/site.css"><script src="{root}assets/plotly.min.js"></script></head>
<body>{body}</body></html>
"""


def _index_body(title: str, n: int, generated_from: str) -> str:
    filters = "".join(f'<label>{f} <select id="f-{f}"><option value="">all</option></select></label>'
                      for f in FILTERS)
    empty_all = ("" if n else '<div class="empty" id="empty-all"><strong>No measurements yet.</strong><br>Drop an experiment YAML '
                 "into the platform's inbox (storage/inbox), or run <code>llm-energy-measure run</code> and build this site with "
                 "<code>llm-energy-measure report RESULTS --out DIR</code>.</div>")
    return f"""<h1>{html.escape(title)}</h1>
<div class="sub">Energy per output token, measured from the GPU energy counter; gross energy ranks. "unmeasured" means the energy
could not be read (the reason is in the tooltip), never zero. Rows with synthetic weights are flagged. {html.escape(generated_from)}</div>
{empty_all}
<div class="filters">{filters}<label>search <input id="q" type="search" placeholder="model, backend, hardware..."></label>
<span id="count"></span></div>
<div class="empty" id="empty" style="display:none">No rows match these filters.</div>
<div style="overflow-x:auto"><table><thead><tr id="head"></tr></thead><tbody id="body"></tbody></table></div>
<div class="charts">
<div class="chart" id="chart-compare"></div><div class="chart" id="chart-scatter"></div><div class="chart" id="chart-box"></div>
<div class="chart" id="chart-heatmap"></div><div class="chart" id="chart-scaling"></div></div>
<script id="lem-data" type="application/json">__DATA__</script>
<script src="assets/site.js"></script>"""


def _box_figure(cycles_by_row: dict[str, pd.DataFrame], labels: dict[str, str]):
    go = _plotly()
    fig = go.Figure()
    energy = any(c.j_per_token.notna().any() for c in cycles_by_row.values())
    metric, title = ("j_per_token", "J/token per cycle") if energy else ("tokens_per_s", "tokens/s per cycle (energy unmeasured)")
    from gpu_ops.stats import summarize

    for rid, c in cycles_by_row.items():
        vals = c[metric].dropna()
        if len(vals):
            s = summarize(vals.tolist())
            fig.add_trace(go.Box(y=vals.tolist(), name=labels[rid], boxpoints="all", marker_color="#8c959f", showlegend=False))
            fig.add_trace(go.Scatter(x=[labels[rid]], y=[s["mean"]], mode="markers", marker=dict(symbol="diamond", size=10, color="#cf222e"),
                                     error_y=dict(type="data", array=[s["ci95"]], visible=True), name="mean ± 95 % CI",
                                     showlegend=rid == next(iter(cycles_by_row))))
    fig.update_layout(title=f"Cycle-to-cycle spread: {title}; red: mean ± 95 % t-CI", template="plotly_white",
                      yaxis_title=metric.replace("_", " "))
    return fig


def _heatmap(board: pd.DataFrame):
    go = _plotly()
    measured = board.j_per_token_mean.notna().any()
    metric = "j_per_token_mean" if measured else "tokens_per_s_mean"
    pivot = board.pivot_table(index="precision", columns="batch_size", values=metric, aggfunc="mean")
    fig = go.Figure(go.Heatmap(z=pivot.values.tolist(), x=[str(c) for c in pivot.columns], y=list(pivot.index), colorscale="Viridis",
                               colorbar=dict(title="J/token" if measured else "tok/s"), hoverongaps=False))
    fig.update_layout(title=f"Sensitivity: batch size x precision ({'mean J/token' if measured else 'tokens/s; energy unmeasured'})",
                      xaxis_title="batch size", yaxis_title="precision", template="plotly_white")
    return fig


def _scaling(board: pd.DataFrame):
    """tokens/J against GPU count: one line per model/backend/precision and way of splitting (tensor, data, ...),
    each starting from the same single-GPU point; the hover gives throughput as a share of N x the one-GPU figure."""
    go = _plotly()
    fig = go.Figure()
    gpu = board.astype({"gpu_count": float, "tokens_per_j_mean": float, "tokens_per_s_mean": float})
    gpu = gpu[(gpu.gpu_count > 0) & gpu.tokens_per_j_mean.notna()].astype({"gpu_count": int})
    gpu["split"] = gpu.parallelism.astype(str).str.replace(r"\d+", "", regex=True)  # tp2, tp4 -> one tensor-parallel line
    for key, g in gpu.groupby(["model", "backend", "precision"]):
        best = g.loc[g.groupby(["gpu_count", "split"]).tokens_per_j_mean.idxmax()]  # best sweep point of each
        single = best[best.gpu_count == 1].nlargest(1, "tokens_per_j_mean")
        base_tps = single.tokens_per_s_mean.iloc[0] if len(single) else np.nan
        splits = sorted(set(best.split[best.gpu_count > 1])) or ["single"]
        for split in splits:
            line = pd.concat([single, best[(best.gpu_count > 1) & (best.split == split)]]).sort_values("gpu_count")
            share = line.tokens_per_s_mean / (line.gpu_count * base_tps)
            hover = [f"{r.parallelism} on {r.hardware}<br>{r.tokens_per_j_mean:.3g} tokens/J, {r.tokens_per_s_mean:.4g} tokens/s"
                     + (f" = {s:.0%} of {r.gpu_count} x one GPU" if pd.notna(s) else "") for r, s in zip(line.itertuples(), share)]
            fig.add_trace(go.Scatter(x=line.gpu_count, y=line.tokens_per_j_mean, mode="lines+markers", hovertext=hover, hoverinfo="text",
                                     name=" ".join(map(str, key)) + ("" if split == "single" else f" {split}")))
    fig.update_layout(title="Hardware scaling: efficiency vs GPU count" + ("" if fig.data else " (no GPU measurements yet)"),
                      xaxis_title="GPUs", yaxis_title="tokens/J (best sweep point)", template="plotly_white", xaxis=dict(dtick=1),
                      showlegend=True, legend=dict(orientation="h", y=-0.25))
    return fig


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
    return '<table class="kv">' + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def _fmt(v, unit="", scale=1.0, digits=4) -> str:
    v = _clean(v)
    return '<span class="unmeasured">unmeasured</span>' if v is None else f"{float(v) * scale:.{digits}g}{unit}"


def _detail(row: pd.Series, t: ResultTables, dagster_url: str | None) -> tuple[str, list[dict]]:
    go = _plotly()
    sp = row.sweep_point
    cyc = t.cycles[t.cycles.sweep_point == sp].sort_values("cycle")
    req = t.requests[t.requests.sweep_point == sp] if len(t.requests) else t.requests
    win = t.windows
    point = t.sweep_points[t.sweep_points.sweep_point == sp].iloc[0]
    exp = t.experiment.iloc[0]
    figures = []
    # power timeline with cycle windows and prefill/decode shading
    fig = go.Figure()
    shapes = []
    if len(t.timeline):
        power = t.timeline.groupby("t_s", as_index=False).power_w.sum()
        mine = win[(win.sweep_point == sp) & win.kind.isin(["cycle", "warmup"])]
        lo, hi = (mine.start_s.min() - 1, mine.end_s.max() + 1) if len(mine) else (power.t_s.min(), power.t_s.max())
        power = power[(power.t_s >= lo) & (power.t_s <= hi)]
        fig.add_trace(go.Scatter(x=power.t_s, y=power.power_w, mode="lines", name="power (W)", line=dict(color="#1b1f24", width=1)))
        for _, w in mine.iterrows():
            shapes.append(dict(type="rect", xref="x", yref="paper", x0=w.start_s, x1=w.end_s, y0=0, y1=1, line_width=0,
                               fillcolor="rgba(120,120,120,0.08)"))
        for c, group in req.groupby("cycle"):
            prefill, decode = phase_intervals(group)
            for (a, b), colour in [(s, "rgba(255,140,0,0.25)") for s in prefill] + [(s, "rgba(31,119,180,0.15)") for s in decode]:
                shapes.append(dict(type="rect", xref="x", yref="paper", x0=a, x1=b, y0=0, y1=0.08, line_width=0, fillcolor=colour))
        fig.add_hline(y=_clean(exp.idle_power_w) or 0, line_dash="dot", annotation_text="idle baseline", visible=_clean(exp.idle_power_w) is not None)
    fig.update_layout(title="Power timeline (grey: measured windows; bottom band: orange prefill, blue decode)" if len(t.timeline)
                      else f"No power timeline: energy unmeasured ({row.unmeasured_reason})", shapes=shapes, template="plotly_white",
                      xaxis_title="run clock (s)", yaxis_title="GPU power (W)")
    figures.append({"id": "chart-power", "figure": _fig_json(fig)})
    for cid, col, title in (("chart-ttft", "ttft_s", "TTFT distribution (ms)"), ("chart-itl", "itl_s", "Inter-token latency distribution (ms)")):
        vals = np.concatenate([np.asarray(x, dtype=float) for x in req[col]]) if col == "itl_s" and len(req) else req[col].dropna().to_numpy(dtype=float)
        f = go.Figure(go.Histogram(x=(vals * 1000).tolist(), nbinsx=40, marker_color=BACKEND_COLOURS.get(row.backend)))
        f.update_layout(title=title if len(vals) else f"{title}: not observed (tokens were not streamed)", template="plotly_white",
                        xaxis_title="ms", yaxis_title="count")
        figures.append({"id": cid, "figure": _fig_json(f)})
    # resolved config with non-defaults highlighted
    config = _flatten(json.loads(point.config_json))
    nd = set(_flatten(json.loads(point.non_defaults_json)))
    cfg_rows = "".join(f'<tr class="{"nd" if k in nd else ""}"><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>'
                       for k, v in sorted(config.items()))
    cycle_cols = [("cycle", "cycle", "", 1), ("duration_s", "duration", " s", 1), ("output_tokens", "tokens", "", 1),
                  ("gross_energy_j", "energy", " J", 1), ("j_per_token", "J/token", "", 1), ("tokens_per_s", "tok/s", "", 1),
                  ("avg_power_w", "power", " W", 1), ("ttft_p50_s", "TTFT p50", " ms", 1000), ("cross_check_rel_diff", "counter vs timeline", "", 1),
                  ("too_short", "too short", "", 1)]
    cycle_table = "<table><tr>" + "".join(f"<th>{lbl}</th>" for _, lbl, _, _ in cycle_cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{_fmt(r[c], u, s) if c not in ('cycle', 'too_short') else html.escape(str(r[c]))}</td>" for c, _, u, s in cycle_cols) + "</tr>"
        for _, r in cyc.iterrows()) + "</table>"
    link = ""
    if dagster_url:
        base = dagster_url.rstrip("/")
        link = f'<a href="{base}/assets/raw_measurements?view=partitions&partition={quote(str(row.partition_key))}">raw partition in Dagster</a>'
        if not str(row.raw_run_id).startswith("local:"):  # `report` on CLI result folders: no Dagster run to link
            link += f' · <a href="{base}/runs/{quote(str(row.raw_run_id))}">run {html.escape(str(row.raw_run_id))[:8]}</a>'
    provenance = _kv([("partition", html.escape(str(row.partition_key))), ("raw run id", html.escape(str(row.raw_run_id))),
                      ("raw storage id", html.escape(str(row.raw_storage_id))), ("raw data version", html.escape(str(row.raw_data_version))),
                      ("raw code version", html.escape(str(row.raw_code_version))), ("stats code version", html.escape(str(row.stats_code_version))),
                      ("config hash", html.escape(str(row.config_hash))), ("fingerprint hash", html.escape(str(row.fingerprint_hash))),
                      ("Dagster UI", link or "set the Dagster base URL (LEM_DAGSTER_URL / --dagster-url) for links")])
    summary = _kv([("energy", f"{_fmt(row.j_per_token_mean)} J/token"
                    + (fmt_ci(_clean(row.j_per_token_ci95)) if _clean(row.j_per_token_mean) is not None
                       else f" ({html.escape(str(row.unmeasured_reason))})")),
                   ("throughput", f"{_fmt(row.tokens_per_s_mean)} tokens/s"), ("TTFT p50", _fmt(row.ttft_p50_s_mean, " ms", 1000)),
                   ("idle baseline", f"before {_fmt(exp.idle_before_w, ' W')}, after {_fmt(exp.idle_after_w, ' W')}, used {_fmt(exp.idle_power_w, ' W')}"),
                   ("counter vs timeline", f"mean {_fmt(row.cross_check_rel_diff_mean)} (tolerance {_fmt(exp.cross_check_tolerance)})"),
                   ("weights", html.escape(str(row.weights)) + (" <span class='flag'>synthetic weights: real shapes, random values</span>" if row.weights == "synthetic" else ""))])
    fp = json.dumps(json.loads(exp.fingerprint_json), indent=1, sort_keys=True)
    body = f"""<p><a href="../index.html">← leaderboard</a></p>
<h1>{html.escape(str(row.model))} · {html.escape(str(row.backend))} · {html.escape(str(row.hardware))}</h1>
<div class="sub">sweep point <strong>{html.escape(str(sp))}</strong>, {int(row.n_cycles)} cycles, precision {html.escape(str(row.precision))}</div>
<section><h2>Summary</h2>{summary}</section>
<div class="charts"><div class="chart" id="chart-power"></div><div class="chart" id="chart-ttft"></div><div class="chart" id="chart-itl"></div></div>
<section><h2>Cycles</h2>{cycle_table}</section>
<section><h2>Provenance</h2>{provenance}</section>
<section><h2>Resolved config</h2><p class="sub">highlighted: values that differ from the defaults</p><table class="kv">{cfg_rows}</table></section>
<section><h2>Environment fingerprint</h2><pre>{html.escape(fp)}</pre></section>
<script id="lem-figs" type="application/json">{_script_json(figures)}</script>
<script>JSON.parse(document.getElementById("lem-figs").textContent).forEach(f => Plotly.newPlot(f.id, f.figure.data, f.figure.layout, {{responsive: true}}));</script>"""
    return body, figures


def build_site(board: pd.DataFrame, raw: dict[str, Path | ResultTables], out: Path, dagster_url: str | None = None,
               title: str = "LLM energy leaderboard", generated_from: str = "") -> SiteResult:
    """Write the site into `out` (replaced atomically). `raw` maps partition keys to result folders (or tables)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "assets").mkdir()
        (tmp / "detail").mkdir()
        from plotly.offline import get_plotlyjs

        (tmp / "assets" / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
        for name in ("site.js", "site.css"):
            (tmp / "assets" / name).write_bytes((STATIC / name).read_bytes())
        board = board.copy()
        board["id"] = [row_id(str(p), str(s)) for p, s in zip(board.partition_key, board.sweep_point)]
        board["label"] = (board.model.astype(str) + " " + board.sweep_point.astype(str) + " (" + board.hardware.astype(str) + ", "
                          + board.parallelism.astype(str) + ")")
        board["parameters"] = np.nan
        cycles_by_row, labels = {}, dict(zip(board.id, board.label))
        pages = 0
        for partition, group in board.groupby("partition_key", sort=True):
            src = raw.get(partition)
            if src is None:
                continue
            t = src if isinstance(src, ResultTables) else read_tables(Path(src))
            params = t.sweep_points.get("backend_parameters")
            for _, row in group.iterrows():
                body, _ = _detail(row, t, dagster_url)
                (tmp / "detail" / f"{row.id}.html").write_text(PAGE.format(title=html.escape(f"{row.model} · {row.sweep_point}"), root="../", body=body), encoding="utf-8")
                pages += 1
                cycles_by_row[row.id] = t.cycles[t.cycles.sweep_point == row.sweep_point]
                if params is not None:
                    match = t.sweep_points.loc[t.sweep_points.sweep_point == row.sweep_point, "backend_parameters"]
                    if len(match) and pd.notna(match.iloc[0]):
                        board.loc[board.id == row.id, "parameters"] = float(match.iloc[0])
        figs = {}
        if len(board):
            figs = {"chart-scatter": efficiency_scatter(board, "Energy vs throughput (size: parameters, colour: backend)"),
                    "chart-box": _box_figure(cycles_by_row, labels), "chart-heatmap": _heatmap(board), "chart-scaling": _scaling(board)}
        figures = [{"id": k, "figure": _fig_json(f)} for k, f in figs.items()]
        rows = [{k: _clean(v) for k, v in r.items()} for r in board.drop(columns=["label"]).to_dict(orient="records")]
        data = {"rows": rows, "columns": COLUMNS, "filters": FILTERS, "ci_missing": CI_MISSING,
                "default_sort": "j_per_token_mean" if board.j_per_token_mean.notna().any() else "tokens_per_s_mean",
                "figures": figures}
        page = PAGE.format(title=html.escape(title), root="", body=_index_body(title, len(board), generated_from)).replace("__DATA__", _script_json(data))
        (tmp / "index.html").write_text(page, encoding="utf-8")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteResult(out, len(board), pages, {f["id"]: f["figure"] for f in figures})


def report_from_folders(folders: list[Path], out: Path, dagster_url: str | None = None) -> SiteResult:
    """`llm-energy-measure report`: the site from result folders written by `run` (no platform)."""
    from gpu_ops.errors import UserError
    from gpu_ops.leaderboard import build_leaderboard
    from gpu_ops.stats import published_statistics

    stats, raw = [], {}
    for folder in folders:
        t = read_tables(Path(folder))
        exp = t.experiment.iloc[0]
        key = f"{exp.experiment_key}|{exp.hardware}"
        if key in raw:  # a second run of the same model/backend/hardware (another config): keep both, told apart by folder
            key = f"{key}|{Path(folder).name}"
        if key in raw:
            raise UserError(f"{folder}: passed twice; pass each result folder once")
        raw[key] = t
        stats.append(published_statistics(t, key, "cli", {
            "raw_run_id": f"local:{Path(folder).name}", "raw_storage_id": None,
            "raw_data_version": t.summary.get("content_hash"), "raw_code_version": "cli"}))
    board = build_leaderboard(pd.concat(stats, ignore_index=True) if stats else pd.DataFrame())
    return build_site(board, raw, out, dagster_url, generated_from=f"Built by llm-energy-measure report from {len(folders)} result folder(s).")

"""The site's answers to "what does this model cost me to serve" (issue #32): the energy-at-a-latency-target page
(slo.html: deadline sliders, state in the URL), the J per good token ranking and its Pareto against goodput, and on
each detail page the carbon and cost with their inputs, and the row's measurement history with drift marked.

Kept apart from pages.py so the index and detail pages only call in here.
"""

from __future__ import annotations

import html

import pandas as pd

from gpu_ops.conversions import inputs_text
from gpu_ops.schema import POOLED_QUANTILES, SITE_SLO, SLO_QUANTILES, plain
from gpu_ops.slo import Deadline

SLIDER_MS = {"ttft": (10, 60_000), "itl": (1, 2_000), "tpot": (1, 2_000)}
"""Each deadline slider's range in ms (log scale)."""


def slo_state(deadlines: tuple[Deadline, ...]) -> str:
    """The URL hash of a set of deadlines: `ttft_p99=2000ms&itl_p99=50ms` (what slo.js reads and writes)."""
    return "&".join(f"{d.name}={d.seconds * 1e3:g}ms" for d in deadlines)


def slo_body(board: pd.DataFrame, deadlines: tuple[Deadline, ...], script_json) -> str:
    """slo.html: a slider and a percentile choice per latency; the pick per model × hardware, the J per good token
    ranking and its Pareto against goodput are computed in the page (slo.js) from the rows inlined here."""
    rows = [{k: plain(r.get(k)) for k in SITE_SLO.names} for r in board.to_dict(orient="records")]
    controls = "".join(
        f'<fieldset class="slo" id="slo-{m}"><legend>{m.upper()}</legend>'
        f'<label><input type="checkbox" id="on-{m}"> deadline</label> '
        f'<select id="q-{m}">{"".join(f"<option value={q}>p{q}</option>" for q in SLO_QUANTILES)}</select> '
        f'<input type="range" id="r-{m}" min="{lo}" max="{hi}" step="any"> <output id="v-{m}"></output></fieldset>'
        for m, (lo, hi) in SLIDER_MS.items()
    )
    data = {"rows": rows, "initial": slo_state(deadlines), "sliders": SLIDER_MS, "quantiles": list(POOLED_QUANTILES)}
    return f"""<p><a href="index.html">← leaderboard</a></p>
<h1>Energy at a latency target</h1>
<div class="sub">For each model × hardware: the configuration with the lowest J/token whose pooled latency
percentile meets every deadline set below. A row <strong>meets</strong> a deadline when the whole 95 % interval of
its percentile is at or under it, <strong>fails</strong> when the whole interval is over it, and is
<strong>uncertain</strong> when the interval straddles it (shown, never picked). The state is kept in the URL:
copy the link to share this view. Definitions: docs/metrics.md.</div>
<div class="filters">{controls}</div>
<table id="slo-pick"><thead><tr><th>model</th><th>hardware</th><th>verdict</th><th>backend</th><th>sweep point</th>
<th>J/token ± CI</th><th>percentiles [95 % interval]</th></tr></thead><tbody id="slo-body"></tbody></table>
<h2>J per good token</h2>
<div class="sub">Energy ÷ output tokens of the requests that met the SLO set in the experiment's config (its
<code>slo:</code> block), ranked (lower is better); empty where the config set no SLO.</div>
<table id="good-rank"><thead><tr><th>#</th><th>model</th><th>backend</th><th>hardware</th><th>sweep point</th>
<th>J/good token ± CI</th><th>goodput (req/s)</th></tr></thead><tbody id="good-body"></tbody></table>
<div class="chart" id="chart-good-pareto"></div>
<script id="lem-slo" type="application/json">{script_json(data)}</script>
<script src="assets/slo.js"></script>"""


def conversion_notes(board: pd.DataFrame) -> pd.DataFrame:
    """Per row, the inputs shown beside its carbon and its cost figures (site.js `note` columns)."""
    notes = [inputs_text(str(v)) if isinstance(v, str) and v else "" for v in board.get("conversion_inputs", [])]
    carbon = [", ".join(n.split(", ")[:2]) for n in notes]
    cost = [", ".join(n.split(", ")[2:]) for n in notes]
    return pd.DataFrame({"carbon_inputs": carbon, "cost_inputs": cost}, index=board.index)


NOTE_OF = {"gco2e_per_mtoken": "carbon_inputs", "cost_per_mtoken": "cost_inputs"}
"""The column of inputs shown beside each converted figure in the index table."""


def detail_sections(row, history: pd.DataFrame | None) -> tuple[str, list[dict]]:
    """The detail page's carbon-and-cost section (every figure beside its inputs) and its history section (each
    measurement of this row with its interval, drift marked), and the history chart."""

    def fig(v, ci=None, unit="") -> str:
        if v is None or pd.isna(v):
            return "unknown (an input is not set)"
        return f"{v:.4g}" + ("" if ci is None or pd.isna(ci) else f" ± {ci:.2g}") + f" {unit}"

    money = row.currency if isinstance(row.currency, str) and row.currency else "price units"
    inputs = inputs_text(row.conversion_inputs) if isinstance(row.conversion_inputs, str) else "unknown"
    carbon = (
        f'<table class="kv" id="conversions"><tr><td>carbon</td><td>'
        f"{html.escape(fig(row.gco2e_per_mtoken, row.gco2e_per_mtoken_ci95, 'gCO2e per million tokens'))}</td></tr>"
        f"<tr><td>energy cost</td><td>{html.escape(fig(row.energy_cost_per_mtoken, None, money + ' per Mtoken'))}"
        f"</td></tr><tr><td>GPU-time cost</td><td>"
        f"{html.escape(fig(row.gpu_time_cost_per_mtoken, None, money + ' per Mtoken'))}</td></tr>"
        f"<tr><td>cost</td><td>{html.escape(fig(row.cost_per_mtoken, None, money + ' per Mtoken'))}</td></tr>"
        f"<tr><td>inputs</td><td>{html.escape(inputs)}</td></tr></table>"
    )
    drift = row.drift if "drift" in row._fields else None
    verdict = (
        '<span class="badge" id="drift-badge">drift</span> '
        if drift is True
        else ("no drift " if drift is False else "not judged ")
    )
    detail = row.drift_detail if isinstance(getattr(row, "drift_detail", None), str) else ""
    mine = (
        history[(history.partition_key == row.partition_key) & (history.sweep_point == row.sweep_point)]
        if history is not None and len(history)
        else pd.DataFrame()
    )
    figures = []
    if len(mine) > 1:
        figures.append({"id": "chart-history", "figure": history_figure(mine)})
    section = (
        f"<section><h2>Carbon and cost</h2>{carbon}</section>"
        f"<section><h2>History</h2><p id='drift'>{verdict}{html.escape(detail)}</p>"
        f"<p class='sub'>{len(mine)} measurement(s) kept.</p>"
        + ('<div class="chart" id="chart-history"></div>' if figures else "")
        + "</section>"
    )
    return section, figures


def history_figure(mine: pd.DataFrame) -> dict:
    """One row's headline figure at each measurement with its 95 % interval; drifted measurements marked."""
    mine = mine.sort_values("measured_at")
    colour = ["#d62728" if d is True else "#1f77b4" for d in mine.drift.astype(object)]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": list(mine.measured_at),
                "y": [plain(v) for v in mine["mean"]],
                "error_y": {"type": "data", "array": [plain(v) for v in mine.ci95]},
                "marker": {"color": colour, "size": 9},
                "name": str(mine.figure.iloc[-1]),
            }
        ],
        "layout": {
            "title": {"text": f"{mine.figure.iloc[-1]} at each measurement (red: drift)"},
            "xaxis": {"title": {"text": "measured at (UTC)"}},
            "yaxis": {"title": {"text": str(mine.figure.iloc[-1])}},
            "template": "plotly_white",
        },
    }

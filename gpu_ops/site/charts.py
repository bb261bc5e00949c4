"""The site's plotly figures: on the index, the energy-latency Pareto frontier, the cycle-to-cycle spread, the batch x
precision heatmap and the GPU scaling; on each detail page, the power timeline and the latency distributions. (The
energy-vs-throughput scatter is gpu_ops.plotting's, shared with `compare`.) A chart with nothing to show is a note."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from gpu_ops.phases import phase_intervals
from gpu_ops.plotting import BACKEND_COLOURS, efficiency_scatter, error_bars, load_plotly
from gpu_ops.readable import number
from gpu_ops.results import ResultTables
from gpu_ops.schema import HEADLINE_FIGURES, plain
from gpu_ops.site.data import SiteData
from gpu_ops.stats import summarize

PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#1b7c83", "#6e7781")
"""Hardware colours of the Pareto chart."""


def fig_json(fig) -> dict:
    return json.loads(fig.to_json())


SCATTER_TITLE = "Energy vs throughput<br><sub>size: parameters · colour: backend</sub>"
NO_ENERGY = "no energy measured in these results (e.g. CPU runs, where the GPU counter is absent)"


def index_figures(data: SiteData) -> dict[str, dict | str]:
    """Figure id (its element on the index page) -> plotly JSON, or a note saying why the chart is left out (an
    empty chart explains nothing); none without rows."""
    board = data.board
    if not len(board):
        return {}
    rows = sorted((r for r in board.itertuples() if r.partition_key in data.tables), key=lambda r: r.partition_key)
    measured = board.j_per_token_mean.notna().any()
    front = pareto(board)
    short = board.label if board.model.nunique() > 1 else board.label.str.removeprefix(f"{board.model.iloc[0]} ")
    figs = {
        "chart-pareto": front
        if front.data
        else "Energy–latency Pareto frontier: "
        + (f"{NO_ENERGY}." if not measured else "no latency per token observed (tokens were not streamed)."),
        "chart-scatter": efficiency_scatter(
            board, "Energy vs throughput<br><sub>size: parameters · colour: backend</sub>"
        )
        if measured
        else f"Energy vs throughput: {NO_ENERGY}.",
        "chart-box": box_figure({r.id: data.cycles(r) for r in rows}, dict(zip(board.id, short)))
        if rows
        else "Cycle-to-cycle spread: no raw result tables were given for these rows.",
        "chart-heatmap": heatmap(board)
        if heatmap_groups(board)
        else "Batch size x precision: no model was measured at more than one batch size or precision on one backend "
        "and hardware; sweep either to compare.",
        "chart-scaling": scaling(board)
        if (board.gpu_count.astype(float) > 0).any() and measured
        else f"Hardware scaling (tokens/J against GPU count): {NO_ENERGY} on GPUs.",
    }
    return {k: f if isinstance(f, str) else fig_json(f) for k, f in figs.items()}


PARETO_X = {"tpot_mean_s_mean": "TPOT", "e2e_mean_s_mean": "E2E latency"}
"""The latencies the Pareto chart can put J/token against (its buttons switch between them)."""


def frontier(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats on both x and y (lower is better on both), in order of x."""
    best, keep = np.inf, []
    for i, p in points.sort_values([x, y]).iterrows():
        if p[y] < best:
            best = p[y]
            keep.append(i)
    return points.loc[keep]


FRONTIER_GROUP = ["model", "hardware"]
"""A frontier joins the sweep points of one model on one hardware (its backends compete on it): a line across models
would trade a model's quality for energy without saying so."""


def pareto(board: pd.DataFrame):
    """J/token against a latency, one colour per model x hardware: every sweep point as a dot, each one's frontier
    (nothing both faster and more frugal) joined by a line; buttons pick TPOT or end-to-end latency."""
    go = load_plotly()
    fig = go.Figure()
    buttons = []
    for n, (x, name) in enumerate(PARETO_X.items()):
        first = len(fig.data)
        pts = board.astype({x: float, "j_per_token_mean": float}).dropna(subset=[x, "j_per_token_mean"])
        for i, (key, g) in enumerate(pts.groupby(FRONTIER_GROUP, sort=True)):
            colour, hw = PALETTE[i % len(PALETTE)], group_name(key)
            hover = "%{text}<br>%{x:,.4~r} ms<br>%{y:,.3~r} J/token<extra>" + hw + "</extra>"
            common = dict(legendgroup=hw, visible=n == 0, hovertemplate=hover)
            fig.add_trace(
                go.Scatter(
                    x=(g[x] * 1000).tolist(),
                    y=g.j_per_token_mean.tolist(),
                    text=g.label,
                    mode="markers",
                    name=f"{hw}",
                    marker=dict(color=colour, size=8, opacity=0.45),
                    **common,
                )
            )
            f = frontier(g, x, "j_per_token_mean")
            fig.add_trace(
                go.Scatter(
                    x=(f[x] * 1000).tolist(),
                    y=f.j_per_token_mean.tolist(),
                    text=f.label,
                    mode="lines+markers",
                    name=f"{hw} frontier",
                    line=dict(color=colour, width=2),
                    marker=dict(color=colour, size=11, line=dict(color="#1b1f24", width=1)),
                    **common,
                )
            )
        buttons.append((name, x, first, len(fig.data)))
    fig.update_layout(
        updatemenus=[
            dict(
                type="buttons",
                direction="right",
                x=1,
                xanchor="right",
                y=1.18,
                buttons=[
                    dict(
                        label=name,
                        method="update",
                        args=[
                            {"visible": [lo <= k < hi for k in range(len(fig.data))]},
                            {"xaxis.title.text": f"{name} (ms, mean)"},
                        ],
                    )
                    for name, _, lo, hi in buttons
                ],
            )
        ],
        title="Energy–latency Pareto frontier<br><sub>lower-left is better; a line joins one model's frontier on one "
        "hardware, never across models</sub>",
        xaxis_title=f"{buttons[0][0]} (ms, mean)",
        yaxis_title="J/output token",
        template="plotly_white",
        legend=dict(title="model · hardware"),
    )
    return fig


def box_figure(cycles_by_row: dict[str, pd.DataFrame], labels: dict[str, str]):
    go = load_plotly()
    fig = go.Figure()
    energy = any(c.j_per_token.notna().any() for c in cycles_by_row.values())
    figure = HEADLINE_FIGURES.fields[0 if energy else 1]
    metric, title = figure.name, f"{figure.unit} per cycle" + ("" if energy else " (energy unmeasured)")
    for rid, c in cycles_by_row.items():
        vals = c[metric].dropna()
        if len(vals):
            s = summarize(vals.tolist())
            fig.add_trace(
                go.Box(y=vals.tolist(), name=labels[rid], boxpoints="all", marker_color="#8c959f", showlegend=False)
            )
            fig.add_trace(
                go.Scatter(
                    x=[labels[rid]],
                    y=[s["mean"]],
                    mode="markers",
                    marker=dict(symbol="diamond", size=10, color="#cf222e"),
                    error_y=error_bars([s["mean"]], [s["ci95"]]),
                    name="mean ± 95 % CI",
                    showlegend=rid == next(iter(cycles_by_row)),
                )
            )
    fig.update_layout(
        title=f"Cycle-to-cycle spread<br><sub>{title}; red: mean ± 95 % t-CI</sub>",
        template="plotly_white",
        yaxis_title=metric.replace("_", " "),
    )
    return fig


GROUP = ["model", "backend", "hardware"]
"""Rows are averaged only within one model x backend x hardware: across them a cell would mix different models, and
its mean would say which were measured there, not what the setting does."""


def group_name(key) -> str:
    return " · ".join(map(str, key))


def heatmap_groups(board: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The model x backend x hardware groups that swept batch size or precision (only they have a grid to show)."""
    return [
        (key, g)
        for key, g in board.groupby(GROUP, sort=True)
        if g.batch_size.nunique() > 1 or g.precision.nunique() > 1
    ]


def heatmap(board: pd.DataFrame):
    """Batch size x precision, one panel per model x backend x hardware group that swept either; each cell is the
    mean of that group's rows only, its value written in the cell (each panel has its own colour range)."""
    go = load_plotly()
    from plotly.subplots import make_subplots

    measured = bool(board.j_per_token_mean.notna().any())
    figure = HEADLINE_FIGURES.fields[0 if measured else 1]
    metric, unit = f"{figure.name}_mean", figure.unit
    groups = heatmap_groups(board)
    fig = make_subplots(
        rows=len(groups), cols=1, subplot_titles=[group_name(k) for k, _ in groups], vertical_spacing=0.5 / len(groups)
    )
    for i, (key, g) in enumerate(groups, start=1):
        pivot = g.astype({metric: float}).pivot_table(
            index="precision", columns="batch_size", values=metric, aggfunc="mean"
        )
        fig.add_trace(
            go.Heatmap(
                z=pivot.values.tolist(),
                x=[str(c) for c in pivot.columns],
                y=list(pivot.index),
                text=[["" if pd.isna(v) else number(v) for v in row] for row in pivot.values],
                texttemplate="%{text}",
                hovertemplate="batch %{x}, %{y}: %{text} " + unit + "<extra>" + group_name(key) + "</extra>",
                colorscale="Viridis",
                reversescale=measured,  # lighter is better in both: fewer J/token, more tokens/s
                showscale=False,
                hoverongaps=False,
                name=group_name(key),
            ),
            row=i,
            col=1,
        )
        fig.update_xaxes(title_text="batch size", type="category", row=i, col=1)
        fig.update_yaxes(title_text="precision", type="category", row=i, col=1)
    fig.update_layout(
        title=f"Batch size x precision<br><sub>{f'mean {unit}' if measured else f'{unit} (energy unmeasured)'} "
        "within each model · backend · hardware</sub>",
        template="plotly_white",
        height=max(380, 260 * len(groups)),
    )
    return fig


def scaling(board: pd.DataFrame):
    """tokens/J against GPU count: one line per model/backend/precision and way of splitting (tensor, data, ...),
    each starting from the same single-GPU point; the hover gives throughput as a share of N x the one-GPU figure."""
    go = load_plotly()
    fig = go.Figure()
    gpu = board.astype({"gpu_count": float, "tokens_per_j_mean": float, "tokens_per_s_mean": float})
    gpu = gpu[(gpu.gpu_count > 0) & gpu.tokens_per_j_mean.notna()].astype({"gpu_count": int})
    gpu["split"] = gpu.parallelism.astype(str).str.replace(
        r"\d+", "", regex=True
    )  # tp2, tp4 -> one tensor-parallel line
    for key, g in gpu.groupby(["model", "backend", "precision"]):
        best = g.loc[g.groupby(["gpu_count", "split"]).tokens_per_j_mean.idxmax()]  # best sweep point of each
        single = best[best.gpu_count == 1].nlargest(1, "tokens_per_j_mean")
        base_tps = single.tokens_per_s_mean.iloc[0] if len(single) else np.nan
        splits = sorted(set(best.split[best.gpu_count > 1])) or ["single"]
        for split in splits:
            line = pd.concat([single, best[(best.gpu_count > 1) & (best.split == split)]]).sort_values("gpu_count")
            share = line.tokens_per_s_mean / (line.gpu_count * base_tps)
            hover = [
                f"{r.parallelism} on {r.hardware}<br>{number(r.tokens_per_j_mean)} tokens/J, "
                f"{number(r.tokens_per_s_mean, 4)} tokens/s"
                + (f" = {s:.0%} of {r.gpu_count} x one GPU" if pd.notna(s) else "")
                for r, s in zip(line.itertuples(), share)
            ]
            fig.add_trace(
                go.Scatter(
                    x=line.gpu_count,
                    y=line.tokens_per_j_mean,
                    mode="lines+markers",
                    hovertext=hover,
                    hoverinfo="text",
                    name=" ".join(map(str, key)) + ("" if split == "single" else f" {split}"),
                )
            )
    fig.update_layout(
        title="Hardware scaling<br><sub>tokens/J against GPU count, best sweep point</sub>",
        xaxis_title="GPUs",
        yaxis_title="tokens/J (best sweep point)",
        template="plotly_white",
        xaxis=dict(dtick=1),
        showlegend=True,
        legend=dict(orientation="h", y=-0.25),
    )
    return fig


def detail_figures(row, t: ResultTables) -> list[dict]:
    """A row's power timeline (its windows shaded, prefill and decode marked) and its TTFT and ITL distributions."""
    go = load_plotly()
    sp = row.sweep_point
    req = t.requests[t.requests.sweep_point == sp] if len(t.requests) else t.requests
    win, exp = t.windows, t.experiment.iloc[0]
    fig = go.Figure()
    shapes = []
    if len(t.timeline):
        power = t.timeline.groupby("t_s", as_index=False).power_w.sum()
        mine = win[(win.sweep_point == sp) & win.kind.isin(["cycle", "warmup"])]
        lo, hi = (mine.start_s.min() - 1, mine.end_s.max() + 1) if len(mine) else (power.t_s.min(), power.t_s.max())
        power = power[(power.t_s >= lo) & (power.t_s <= hi)]
        fig.add_trace(
            go.Scatter(
                x=power.t_s, y=power.power_w, mode="lines", name="power (W)", line=dict(color="#1b1f24", width=1)
            )
        )
        for _, w in mine.iterrows():
            shapes.append(
                dict(
                    type="rect",
                    xref="x",
                    yref="paper",
                    x0=w.start_s,
                    x1=w.end_s,
                    y0=0,
                    y1=1,
                    line_width=0,
                    fillcolor="rgba(120,120,120,0.08)",
                )
            )
        for _, group in req.groupby("cycle"):
            prefill, decode = phase_intervals(group)
            for (a, b), colour in [(s, "rgba(255,140,0,0.25)") for s in prefill] + [
                (s, "rgba(31,119,180,0.15)") for s in decode
            ]:
                shapes.append(
                    dict(type="rect", xref="x", yref="paper", x0=a, x1=b, y0=0, y1=0.08, line_width=0, fillcolor=colour)
                )
        fig.add_hline(
            y=plain(exp.idle_power_w) or 0,
            line_dash="dot",
            annotation_text="idle baseline",
            visible=plain(exp.idle_power_w) is not None,
        )
    fig.update_layout(
        title="Power timeline<br><sub>grey: measured windows; bottom band: orange prefill, blue decode</sub>"
        if len(t.timeline)
        else f"No power timeline<br><sub>energy unmeasured: {row.unmeasured_reason}</sub>",
        shapes=shapes,
        template="plotly_white",
        xaxis_title="run clock (s)",
        yaxis_title="GPU power (W)",
    )
    # no timeline (energy unmeasured): no empty chart; the page says why instead
    figures = [{"id": "chart-power", "figure": fig_json(fig)}] if len(t.timeline) else []
    for cid, col, title in (
        ("chart-ttft", "ttft_s", "TTFT distribution (ms)"),
        ("chart-itl", "itl_s", "Inter-token latency distribution (ms)"),
    ):
        vals = (
            np.concatenate([np.asarray(x, dtype=float) for x in req[col]])
            if col == "itl_s" and len(req)
            else req[col].dropna().to_numpy(dtype=float)
        )
        f = go.Figure(go.Histogram(x=(vals * 1000).tolist(), nbinsx=40, marker_color=BACKEND_COLOURS.get(row.backend)))
        f.update_layout(
            title=title if len(vals) else f"{title}<br><sub>not observed: tokens were not streamed</sub>",
            template="plotly_white",
            xaxis_title="ms",
            yaxis_title="count",
        )
        figures.append({"id": cid, "figure": fig_json(f)})
    return figures

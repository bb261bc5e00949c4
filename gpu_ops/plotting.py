"""Plotly pieces shared by `compare` and the leaderboard site (gpu_ops.site.charts): the backend colours and the
energy-vs-throughput scatter. plotly is optional (extra `site`)."""

from __future__ import annotations

import math

import pandas as pd

from gpu_ops.errors import UserError

BACKEND_COLOURS = {"pytorch": "#1f77b4", "vllm": "#d62728", "tensorrt": "#2ca02c"}


def load_plotly():
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise UserError("charts need plotly: pip install 'llm-energy-measure[site]'") from None
    return go


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def error_bars(means, cis) -> dict:
    """Plotly error bars of mean ± 95 % CI with the lower bar clipped at zero: J/token, tokens/s and their kin cannot
    be negative, so an interval that crosses zero is drawn down to zero, never below (make demo once drew a
    throughput CI down to -100 tok/s). No CI (one cycle): no bar, never one of height 0."""
    up = [None if pd.isna(c) else float(c) for c in cis]
    down = [None if c is None or pd.isna(m) else min(c, max(float(m), 0.0)) for m, c in zip(means, up)]
    return dict(type="data", visible=True, symmetric=False, array=up, arrayminus=down)


def efficiency_scatter(points: pd.DataFrame, title: str = "Energy vs throughput"):
    """x = tokens/s, y = J/token (± CI), colour = backend, marker size = model parameters when known.
    Points whose energy is unmeasured are listed under the chart, never drawn at 0."""
    go = load_plotly()
    fig = go.Figure()
    unmeasured = []
    # one scale for every trace: sized within each backend, a 1B model's dot could outgrow a 7B model's
    largest = points.parameters.astype(float).max() if "parameters" in points else float("nan")
    for backend, group in points.groupby("backend", sort=True):
        measured = group[group.j_per_token_mean.map(_num).notna()]
        unmeasured += [
            f"{backend} {r.label}: {r.get('unmeasured_reason') or 'unmeasured'}"
            for _, r in group.drop(measured.index).iterrows()
        ]
        if measured.empty:
            continue
        size = None
        if largest > 0 and measured.parameters.notna().any():
            p = measured.parameters.astype(float)
            size = (8 + 22 * (p / largest) ** 0.5).fillna(8).tolist()  # area ~ parameters; unknown: the smallest
        fig.add_trace(
            go.Scatter(
                x=measured.tokens_per_s_mean,
                y=measured.j_per_token_mean,
                mode="markers",
                name=backend,
                text=measured.label,
                error_y=error_bars(measured.j_per_token_mean, measured.j_per_token_ci95),
                marker=dict(color=BACKEND_COLOURS.get(backend), size=size or 12),
                hovertemplate="%{text}<br>%{x:,.4~r} tok/s<br>%{y:,.3~r} J/token<extra>" + backend + "</extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="throughput (output tokens/s)",
        yaxis_title="energy (J/output token, gross)",
        template="plotly_white",
        legend_title="backend",
    )
    if unmeasured:
        fig.add_annotation(
            text="energy unmeasured: " + "; ".join(unmeasured)[:400],
            xref="paper",
            yref="paper",
            x=0,
            y=-0.25,
            showarrow=False,
            align="left",
            font=dict(size=11),
        )
    return fig

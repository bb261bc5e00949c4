"""`llm-energy-measure compare`: one experiment file, the same request trace, several backends, side by side.

Each backend gets the file with `backend:` replaced and the other backends' blocks removed; a batching
strategy the backend lacks becomes its native one (said on stderr). The trace (prompt token ids, arrival
offsets, token limits) is hashed per run, and the comparison refuses to print if the hashes differ.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd

from gpu_ops.config import parse_config, read_yaml
from gpu_ops.errors import UserError
from gpu_ops.stats import fmt_ci
from gpu_ops.stats import fmt_value as _fmt

BLOCKS = ("pytorch", "vllm", "tensorrt")
WHOLE_BATCH = ("static", "dynamic", "sorted_static", "sorted_dynamic")


def backend_data(data: dict, backend: str, say=lambda m: None) -> dict:
    d = copy.deepcopy(data)
    d["backend"] = backend
    for block in BLOCKS:
        if block != backend:
            d.pop(block, None)
    strategy = (d.get("batching") or {}).get("strategy")
    native_continuous = backend in ("vllm", "tensorrt")
    if strategy is not None and (strategy in WHOLE_BATCH) == native_continuous:
        say(f"{backend}: batching.strategy '{strategy}' replaced by the backend's native strategy")
        d["batching"] = {k: v for k, v in d["batching"].items() if k != "strategy"}
    return d


def compare(config_path: str, backends: list[str], out: Path, say=lambda m: None, nvml=None) -> pd.DataFrame:
    from gpu_ops.runner import run_experiment

    if len(backends) < 2 or len(set(backends)) != len(backends):
        raise UserError("--backends: give two or more different backends, e.g. --backends pytorch,vllm")
    data = read_yaml(config_path)
    if not isinstance(data, dict):
        raise UserError(f"{config_path}: the file must hold a mapping of fields")
    configs = {b: parse_config(backend_data(data, b, say), f"{config_path} (backend {b})") for b in backends}
    rows = []
    for backend, cfg in configs.items():
        say(f"== {backend} ==")
        outcome = run_experiment(cfg, out / "runs", nvml=nvml, progress=say)
        t = outcome.tables
        points = t.summary["sweep_points"]
        traces = dict(zip(t.sweep_points.sweep_point, t.sweep_points.trace_hash))
        params = _parameters(t.sweep_points)
        for p in points:
            rows.append(
                {
                    "backend": backend,
                    "label": p["sweep_point"],
                    "trace_hash": traces.get(p["sweep_point"]),
                    "parameters": params,
                    "result_folder": str(outcome.folder),
                    **{k: v for k, v in p.items() if k != "sweep_point"},
                }
            )
    table = pd.DataFrame(rows)
    for label, group in table.groupby("label"):
        if group.trace_hash.nunique() != 1:
            raise UserError(
                f"sweep point {label}: the backends replayed different request traces "
                f"({dict(zip(group.backend, group.trace_hash))}); their tokenizers differ, so the comparison would not "
                "be like for like"
            )
    return table


def _parameters(sweep_points: pd.DataFrame) -> float | None:
    col = "backend_parameters"
    return float(sweep_points[col].iloc[0]) if col in sweep_points and pd.notna(sweep_points[col].iloc[0]) else None


def render_table(table: pd.DataFrame) -> str:
    from tabulate import tabulate

    rows = []
    for _, r in table.iterrows():
        mean = r.get("j_per_token_mean")
        jpt = _fmt(mean) + ("" if mean is None or mean != mean else fmt_ci(r.get("j_per_token_ci95")))
        rows.append(
            [
                r.backend,
                r.label,
                jpt,
                _fmt(r.get("tokens_per_j_mean")),
                _fmt(r.get("tokens_per_s_mean")),
                _fmt(r.get("ttft_p50_pooled_s"), " ms", 1000),
                _fmt(r.get("ttft_p99_pooled_s"), " ms", 1000),
                _fmt(r.get("tpot_p50_s_mean"), " ms", 1000),
                int(r.n_cycles),
            ]
        )
    return tabulate(
        rows,
        headers=[
            "backend",
            "sweep point",
            "J/token",
            "tokens/J",
            "tok/s",
            "TTFT p50",
            "TTFT p99",
            "TPOT p50",
            "cycles",
        ],
    )


def write_outputs(table: pd.DataFrame, out: Path) -> list[Path]:
    """compare.csv, compare.json and compare.html (plotly, self-contained), each written atomically."""
    from gpu_ops.plotting import efficiency_scatter

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, text: str) -> None:
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.rename(out / name)
        written.append(out / name)

    put("compare.csv", table.to_csv(index=False))
    put("compare.json", json.dumps(table.to_dict(orient="records"), indent=1, default=str))
    fig = efficiency_scatter(table, "Energy vs throughput by backend (same request trace)")
    put("compare.html", fig.to_html(include_plotlyjs=True, full_html=True))
    return written

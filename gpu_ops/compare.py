"""`llm-energy-measure compare`: one experiment file, the same request trace, several backends, side by side.

Each backend gets the file with `backend:` replaced and the other backends' blocks removed; a batching
strategy the backend lacks becomes its native one (said on stderr). Before anything is measured, every backend's
request trace (prompt token ids, arrival offsets, token limits) is computed with its tokenizer alone, no engine, and
the comparison is refused at once if they differ. The backends are then measured one after the other, each engine in
a process of its own (on any device), ended before the next backend loads: its GPU context is gone before that
backend measures its idle baselines, which are its own. This process only measures (NVML, never CUDA). The later
backends' engine processes are started at the outset and import their backends while the first backend's engine
loads; each run waits for them before its first window, so no import runs beside one. The trace each run recorded
is checked again against the one computed beforehand.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd

from gpu_ops.config import ExperimentConfig, parse_config
from gpu_ops.errors import UserError, excerpt
from gpu_ops.stats import fmt_ci
from gpu_ops.stats import fmt_value as _fmt
from gpu_ops.strict_yaml import read_yaml

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


def planned_traces(configs: dict[str, ExperimentConfig]) -> dict[str, dict[str, list]]:
    """backend -> sweep point -> the requests it will replay, computed as measure.py does with the tokenizer every
    backend uses for the model (gpu_ops.models.tokenizer_source), loaded on its own: no engine, no GPU."""
    from gpu_ops.measure import _requests
    from gpu_ops.prompts import build_prompts, load_tokenizer

    out: dict[str, dict[str, list]] = {}
    for backend, cfg in configs.items():
        out[backend] = {}
        for point in cfg.expand():
            tok = load_tokenizer(point.config.model)
            out[backend][point.label] = _requests(build_prompts(point.config, tok, len(tok)), point.config, 0.0)
    return out


def first_difference(a: list, b: list) -> str | None:
    """Where two request traces first differ, in words; None when they are the same."""
    for i, (x, y) in enumerate(zip(a, b)):
        for field, what in (
            ("prompt_token_ids", "prompt token ids"),
            ("arrival_s", "arrival offset"),
            ("max_new_tokens", "max new tokens"),
            ("min_new_tokens", "min new tokens"),
        ):
            mine, theirs = getattr(x, field), getattr(y, field)
            if mine != theirs:
                return f"request {i}: {what} differ, {excerpt(mine)} vs {excerpt(theirs)}"
    return None if len(a) == len(b) else f"{len(a)} vs {len(b)} requests"


def check_same_traces(traces: dict[str, dict[str, list]]) -> None:
    """Refuse the comparison (UserError) when two backends would replay different traces at any sweep point."""
    backends = list(traces)
    first = backends[0]
    for other in backends[1:]:
        for label, requests in traces[first].items():
            diff = first_difference(requests, traces[other].get(label, []))
            if diff is not None:
                raise UserError(
                    f"compare: backends {first} and {other} would replay different request traces at sweep point "
                    f"{label} ({diff}); nothing was measured. Give every backend the same model and tokenizer"
                )


def compare(config_path: str, backends: list[str], out: Path, say=None, nvml=None) -> pd.DataFrame:
    """Measure the file's experiment on each backend over the same request trace. `say` receives progress lines
    (None: silent); `nvml`: an NVML stand-in (tests)."""
    from gpu_ops.engines import EnginePool
    from gpu_ops.measure import trace_hash
    from gpu_ops.validation import blocking_failures, validate

    say = say or _silent
    if len(backends) < 2 or len(set(backends)) != len(backends):
        raise UserError("--backends: give two or more different backends, e.g. --backends pytorch,vllm")
    data = read_yaml(config_path)
    if not isinstance(data, dict):
        raise UserError(f"{config_path}: the file must hold a mapping of fields")
    configs = {b: parse_config(backend_data(data, b, say), f"{config_path} (backend {b})") for b in backends}
    traces = planned_traces(configs)
    check_same_traces(traces)
    planned = {label: trace_hash(requests) for label, requests in traces[backends[0]].items()}
    say(f"request trace checked before measuring: the same on {', '.join(backends)}")
    rows, pool = [], EnginePool(placement="process")
    try:
        outcomes = _measure_each(configs, out / "runs", pool, say, nvml)
    finally:
        pool.close()
    for backend, outcome in outcomes.items():
        t = outcome.tables
        # the same blocking checks `run` and the platform apply: a backend whose result fails them is shown as such
        failed = sorted({f.check for f in blocking_failures(validate(t))})
        points = t.summary["sweep_points"]
        traces = dict(zip(t.sweep_points.sweep_point, t.sweep_points.trace_hash))
        params = _parameters(t.sweep_points)
        for p in points:
            rows.append(
                {
                    **{k: v for k, v in p.items() if k != "sweep_point"},
                    "backend": backend,  # the backend asked for (its folder records the one measured)
                    "label": p["sweep_point"],
                    "trace_hash": traces.get(p["sweep_point"]),
                    "parameters": params,
                    "result_folder": str(outcome.folder),
                    "checks": f"failed: {', '.join(failed)}" if failed else "ok",
                }
            )
    table = pd.DataFrame(rows)
    for label, group in table.groupby("label"):
        if set(group.trace_hash) != {planned.get(label)}:
            replayed = dict(zip(group.backend, group.trace_hash))
            raise UserError(
                f"sweep point {label}: the backends replayed request traces {replayed}, not the {planned.get(label)} "
                "computed before measuring; the comparison would not be like for like"
            )
    return table


def _measure_each(configs: dict[str, ExperimentConfig], out_root: Path, pool, say, nvml) -> dict:
    """backend -> its result folder, measured in turn on engines from `pool`: the later backends' spares import
    while the first backend's engine loads; each backend's engine is evicted (its process ended) when the next
    backend's engine is asked for, before that backend's idle baseline."""
    from gpu_ops.backends.ranked import needs_launch
    from gpu_ops.runner import measuring_environment, run_experiment

    measuring_environment()  # before the spares start: they inherit it, as an engine process a run starts does
    backends = list(configs)
    if not any(needs_launch(c) for c in configs.values()):  # ranks under torchrun would not wait for the imports
        pool.prestart(backends[1:])
    outcomes = {}
    for backend in backends:
        say(f"== {backend} ==")
        outcomes[backend] = run_experiment(configs[backend], out_root, nvml=nvml, progress=say, pool=pool)
    return outcomes


def _silent(message: str) -> None:
    """A `say` that prints nothing (compare -q)."""


def _parameters(sweep_points: pd.DataFrame) -> float | None:
    col = "backend_parameters"
    return float(sweep_points[col].iloc[0]) if col in sweep_points and pd.notna(sweep_points[col].iloc[0]) else None


def check_failures(table: pd.DataFrame) -> dict[str, str]:
    """backend -> its failed blocking checks, for the backends whose result failed any."""
    bad = table[table.checks != "ok"]
    return dict(zip(bad.backend, bad.checks.str.removeprefix("failed: ")))


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
                r.checks,
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
            "checks",
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

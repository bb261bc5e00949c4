r"""Targets stated before a run, and the decision each one makes on the run's data.

A target file (benchmarks/targets/NAME.yaml) names the metric, the statistic, the interval it is judged by and the
rule, and where the run leaves its values:

    metric: paired ratio of output tok/s, ours / vllm bench throughput, each side in a fresh process
    series: {file: result.json, key: ratio}       # a list in a JSON file the run wrote, or
            {file: stdout.log, pattern: 'ratio (\S+)'}  # group 1 of a regex on each line of its output, or
            {table: cycles, column: j_per_token, per: sweep_point}   # a column of its result folder(s)
            {table: cycles, column: cross_check_rel_diff, divide_by: cross_check_tolerance}  # a column over another
    statistic: median                             # median, mean, max, min, max_abs, cv
    interval: {method: bootstrap, level: 0.95, resamples: 10000, seed: 0}    # bootstrap, t (mean only), none
    rule: {bound: lower, op: ">=", threshold: 0.97}   # which end of the interval (lower, upper, value) is compared
    min_values: 10

The ledger records the file's text and hash when a run starts; the report judges the run by that text and prints
met / not met with the interval it rests on. Too few values is neither: "not evaluable".
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

STATISTICS = ("median", "mean", "max", "min", "max_abs", "cv")
METHODS = ("bootstrap", "t", "none")
BOUNDS = ("lower", "upper", "value")
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
KEYS = {"metric", "series", "statistic", "interval", "rule", "min_values", "benchmark", "notes"}
MAX_VALUES = 100_000


class TargetError(ValueError):
    """A target file that does not parse: the message names the field and the fix."""


@dataclass(frozen=True)
class Target:
    metric: str
    series: dict
    statistic: str
    method: str
    level: float
    resamples: int
    seed: int
    bound: str
    op: str
    threshold: float
    min_values: int
    benchmark: str = ""

    def rule_text(self) -> str:
        which = {"lower": "lower bound", "upper": "upper bound", "value": self.statistic}[self.bound]
        return f"{which} {self.op} {self.threshold:g}"


def _need(data: dict, key: str, kind, where: str, choices=None):
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TargetError(f"{where}: {key} is {value!r}; expected {getattr(kind, '__name__', kind)}")
    if choices is not None and value not in choices:
        raise TargetError(f"{where}: {key} {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def parse_target(text: str, where: str) -> Target:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetError(f"{where}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TargetError(f"{where}: expected a mapping with metric, series, statistic, interval, rule")
    unknown = set(data) - KEYS
    if unknown:
        raise TargetError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(KEYS))}")
    series = _need(data, "series", dict, where)
    table_keys = {"table", "column", "per", "divide_by"}
    kinds_ok = set(series) in ({"file", "key"}, {"file", "pattern"}) or {"table", "column"} <= set(series) <= table_keys
    if not kinds_ok or not all(isinstance(v, str) for v in series.values()):
        raise TargetError(
            f"{where}: series is {series!r}; give {{file, key}}, {{file, pattern}} or "
            "{table, column[, per, divide_by]}"
        )
    if "pattern" in series:
        try:
            if re.compile(series["pattern"]).groups < 1:
                raise re.error("no group")
        except re.error as exc:
            raise TargetError(f"{where}: series pattern {series['pattern']!r}: {exc}; give one (group)") from None
    interval = _need(data, "interval", dict, where)
    rule = _need(data, "rule", dict, where)
    statistic = _need(data, "statistic", str, where, STATISTICS)
    method = _need(interval, "method", str, f"{where}: interval", METHODS)
    if method == "t" and statistic != "mean":
        raise TargetError(f"{where}: interval method t is an interval of the mean; use statistic mean or bootstrap")
    bound = _need(rule, "bound", str, f"{where}: rule", BOUNDS)
    if (method == "none") != (bound == "value"):
        raise TargetError(f"{where}: rule bound {bound!r} with interval {method!r}: compare 'value' only without one")
    level = float(interval.get("level", 0.95))
    if not 0.5 <= level < 1:
        raise TargetError(f"{where}: interval level {level}; expected e.g. 0.95")
    return Target(
        metric=_need(data, "metric", str, where),
        series=series,
        statistic=statistic,
        method=method,
        level=level,
        resamples=int(interval.get("resamples", 10_000)),
        seed=int(interval.get("seed", 0)),
        bound=bound,
        op=_need(rule, "op", str, f"{where}: rule", tuple(OPS)),
        threshold=float(_need(rule, "threshold", (int, float), f"{where}: rule")),
        min_values=int(data.get("min_values", 1)),
        benchmark=str(data.get("benchmark", "")),
    )


def load_target(path: Path) -> Target:
    return parse_target(Path(path).read_text(), str(path))


def statistic(name: str, values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    if name == "median":
        return np.median(values, axis=axis)
    if name == "mean":
        return np.mean(values, axis=axis)
    if name == "max":
        return np.max(values, axis=axis)
    if name == "min":
        return np.min(values, axis=axis)
    if name == "max_abs":
        return np.max(np.abs(values), axis=axis)
    return np.std(values, axis=axis, ddof=1) / np.mean(values, axis=axis)  # cv


def bootstrap_interval(values, stat: str = "median", level: float = 0.95, resamples: int = 10_000, seed: int = 0):
    """Percentile bootstrap of `stat`: resample the values with replacement (numpy's default_rng(seed), so the same
    data give the same interval), take the statistic of each resample, and return its (1-level)/2 quantiles."""
    x = np.asarray(values, dtype=float)
    draws = x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))]
    stats = statistic(stat, draws, axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * np.std(x, ddof=1) / math.sqrt(len(x))
    return float(np.mean(x) - half), float(np.mean(x) + half)


@dataclass(frozen=True)
class Verdict:
    target: Target
    n: int
    value: float | None
    low: float | None
    high: float | None
    met: bool | None  # None: not evaluable (too few values)

    @property
    def word(self) -> str:
        return {True: "met", False: "not met", None: "not evaluable"}[self.met]

    def text(self, fmt: str = ".4g") -> str:
        """e.g. `met: median 1.012, 95 % bootstrap CI 0.987-1.059 (rule: lower bound >= 0.97), 12 values`."""
        t = self.target
        if self.value is None:
            return f"{self.word}: {self.n} value(s), the target needs {t.min_values} ({t.rule_text()})"
        interval = (
            f", {round(100 * t.level)} % {t.method} CI {self.low:{fmt}}–{self.high:{fmt}}" if t.method != "none" else ""
        )
        return f"{self.word}: {t.statistic} {self.value:{fmt}}{interval} (rule: {t.rule_text()}), {self.n} values"


def evaluate(target: Target, values) -> Verdict:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < max(target.min_values, 2 if target.method != "none" else 1):
        return Verdict(target, len(x), None, None, None, None)
    value = float(statistic(target.statistic, x))
    low = high = None
    if target.method == "bootstrap":
        low, high = bootstrap_interval(x, target.statistic, target.level, target.resamples, target.seed)
    elif target.method == "t":
        low, high = t_interval(x, target.level)
    compared = {"lower": low, "upper": high, "value": value}[target.bound]
    return Verdict(target, len(x), value, low, high, bool(OPS[target.op](compared, target.threshold)))


def series_values(target: Target, run_dir: Path) -> dict[str, list[float]]:
    """The run's values for this target, by group: a key of its result.json (one group, ""), or a column of the
    result folder(s) it wrote, grouped by the `per` column when the target names one (e.g. each sweep point)."""
    run_dir = Path(run_dir)
    if "file" in target.series:
        path = run_dir / target.series["file"]
        if not path.is_file() or path.stat().st_size > 16 << 20:
            return {"": []}
        if "pattern" in target.series:
            found = re.findall(target.series["pattern"], path.read_text(errors="replace"), re.MULTILINE)
            return {"": [float(g[0] if isinstance(g, tuple) else g) for g in found[:MAX_VALUES]]}
        data = json.loads(path.read_text())
        # under `series` (the convention), else at the top level (engine_reuse.py wrote its ratios there, session 10)
        values = data.get("series", data).get(target.series["key"], []) if isinstance(data, dict) else []
        return {"": [float(v) for v in values[:MAX_VALUES] if isinstance(v, (int, float)) and not isinstance(v, bool)]}
    import pandas as pd

    column, per, over = target.series["column"], target.series.get("per"), target.series.get("divide_by")
    out: dict[str, list[float]] = {}
    for summary in sorted(run_dir.rglob("summary.json")):
        table = summary.parent / f"{target.series['table']}.parquet"
        if table.is_file():
            frame = pd.read_parquet(table, columns=[c for c in (column, per, over) if c])
            values = frame[column] / frame[over] if over else frame[column]
            for key, group in values.groupby(frame[per], sort=True) if per else [("", values)]:
                out.setdefault(str(key), []).extend(float(v) for v in group.dropna())
    return out or {"": []}

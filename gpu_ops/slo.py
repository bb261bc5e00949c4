"""Energy at a latency target: for each model × hardware, the lowest-J/token configuration that meets a user's
deadlines (TTFT, ITL, TPOT or E2E at p50, p90 or p99), judged on the pooled percentiles and their 95 % intervals.

A row meets a deadline when the whole interval of its percentile is at or under it, fails when the whole interval is
over it, and is uncertain when the interval straddles it: more requests would be needed to tell. ML.ENERGY's
leaderboard answers the same question with point percentiles; we keep the interval so a pick is never a coin flip
presented as a fact (docs/metrics.md, "Energy at a latency target").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpu_ops.errors import UserError
from gpu_ops.schema import POOLED_OF, POOLED_QUANTILES

UNITS = {"ms": 1e-3, "s": 1.0, "us": 1e-6}
VERDICTS = ("meets", "uncertain", "fails", "unknown")
"""A row's verdict against a set of deadlines, best first; `unknown`: a percentile the row does not have."""
_TERM = re.compile(r"^(?P<metric>[a-z0-9]+)_p(?P<q>\d+)$")
_VALUE = re.compile(r"^(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>ms|us|s)$")


@dataclass(frozen=True)
class Deadline:
    """One latency deadline: the pooled `quantile`th percentile of `metric` must be at most `seconds`."""

    metric: str  # a key of schema.POOLED_OF: ttft, itl, tpot, e2e
    quantile: int  # one of schema.POOLED_QUANTILES
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.metric}_p{self.quantile}"

    @property
    def column(self) -> str:
        """The leaderboard column of the pooled percentile; `_lo`/`_hi` variants hold its interval."""
        return f"{self.metric}_p{self.quantile}_pooled_s"

    def __str__(self) -> str:
        ms = self.seconds * 1e3
        return f"{self.name}={ms:g}ms" if ms < 1000 else f"{self.name}={self.seconds:g}s"


def parse_slo(text: str, field: str = "--slo") -> tuple[Deadline, ...]:
    """`itl_p99=50ms,ttft_p99=2s` -> deadlines. A bad term is a UserError naming `field`, the term and the fix."""
    allowed = ", ".join(f"{m}_p{q}" for m in POOLED_OF for q in POOLED_QUANTILES)
    out: dict[str, Deadline] = {}
    terms = [t.strip() for t in text.split(",") if t.strip()]
    if not terms:
        raise UserError(f"{field}: empty; give deadlines such as itl_p99=50ms,ttft_p99=2s")
    for term in terms:
        name, eq, value = term.partition("=")
        name, value = name.strip().lower(), value.strip().lower()
        m = _TERM.match(name)
        if not eq or not m or m["metric"] not in POOLED_OF or int(m["q"]) not in POOLED_QUANTILES:
            raise UserError(f"{field}: unknown deadline {term!r}; use NAME=VALUE with NAME one of {allowed}")
        v = _VALUE.match(value)
        if not v:
            raise UserError(
                f"{field}: {name}={value!r} is not a duration; write a positive number with a unit: ms, s or us "
                "(e.g. 50ms, 2s)"
            )
        seconds = float(v["num"]) * UNITS[v["unit"]]
        if seconds <= 0:
            raise UserError(f"{field}: {name} must be above 0, got {value!r}")
        if name in out:
            raise UserError(f"{field}: {name} is given twice; give each deadline once")
        out[name] = Deadline(m["metric"], int(m["q"]), seconds)
    return tuple(out.values())


def deadline_verdicts(board: pd.DataFrame, deadlines: tuple[Deadline, ...]) -> pd.DataFrame:
    """Per row and deadline: 'meets' (interval at or under), 'fails' (interval over), 'uncertain' (straddles) or
    'unknown' (no percentile); one column per deadline name."""
    out = pd.DataFrame(index=board.index)
    for d in deadlines:
        mid = _floats(board, d.column)
        lo, hi = (
            _floats(board, d.column.replace("_pooled_s", "_pooled_lo_s")),
            _floats(board, d.column.replace("_pooled_s", "_pooled_hi_s")),
        )
        lo, hi = lo.fillna(mid), hi.fillna(mid)  # no interval (stored before it): the point percentile alone
        verdict = np.select([mid.isna(), hi <= d.seconds, lo > d.seconds], ["unknown", "meets", "fails"], "uncertain")
        out[d.name] = pd.Series(verdict, index=board.index, dtype=object)
    return out


def row_verdict(verdicts: pd.DataFrame) -> pd.Series:
    """All deadlines together: fails if any fails, else unknown if any is unknown, else uncertain if any is, else
    meets."""
    if verdicts.shape[1] == 0:
        return pd.Series("meets", index=verdicts.index, dtype=object)
    worst = np.select(
        [
            (verdicts == "fails").any(axis=1),
            (verdicts == "unknown").any(axis=1),
            (verdicts == "uncertain").any(axis=1),
        ],
        ["fails", "unknown", "uncertain"],
        "meets",
    )
    return pd.Series(worst, index=verdicts.index, dtype=object)


PICK_COLUMNS = (
    "model",
    "hardware",
    "verdict",
    "backend",
    "sweep_point",
    "partition_key",
    "j_per_token_mean",
    "j_per_token_ci95",
    "tokens_per_s_mean",
    "ranked",
    "not_ranked_reason",
)


def slo_pick(board: pd.DataFrame, deadlines: tuple[Deadline, ...]) -> pd.DataFrame:
    """For each model × hardware, the lowest-J/token measured row that meets every deadline (`verdict` 'meets'),
    and every row with a lower J/token whose verdict is 'uncertain' (it may meet them: shown, never picked silently).
    A model × hardware with no row that meets them gets one row with verdict 'none' and empty figures. J/token is the
    leaderboard's gross cycle-window figure; a row the ranking rules leave unranked (gpu_ops.ranking) can still be
    picked, and carries `ranked` False with its reason, so the answer says how far to trust it."""
    if board.empty:
        return pd.DataFrame(columns=[*PICK_COLUMNS, *(d.name for d in deadlines)])
    per = deadline_verdicts(board, deadlines)
    df = board.assign(verdict=row_verdict(per), **{c: per[c] for c in per})
    df = df[df.j_per_token_mean.notna()].sort_values(["j_per_token_mean", "sweep_point"], kind="stable")
    rows = []
    for model, hardware in (
        board[["model", "hardware"]].drop_duplicates().sort_values(["model", "hardware"]).itertuples(index=False)
    ):
        mine = df[(df.model == model) & (df.hardware == hardware)]
        meets = mine[mine.verdict == "meets"]
        best = meets.iloc[0] if len(meets) else None
        cut = best.j_per_token_mean if best is not None else np.inf
        for _, r in mine[(mine.verdict == "uncertain") & (mine.j_per_token_mean < cut)].iterrows():
            rows.append(r)
        if best is not None:
            rows.append(best)
        elif not len(mine[mine.verdict == "uncertain"]):
            rows.append(pd.Series({"model": model, "hardware": hardware, "verdict": "none"}))
    cols = [*PICK_COLUMNS, *(d.name for d in deadlines)]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols).reset_index(drop=True)


def render_pick(pick: pd.DataFrame, deadlines: tuple[Deadline, ...]) -> str:
    """The pick as a terminal table, with the deadlines it answers."""
    head = f"lowest J/token meeting {', '.join(map(str, deadlines))} (pooled percentiles, 95 % intervals)"
    lines = [head, f"{'model':<28} {'hardware':<16} {'verdict':<10} {'sweep point':<24} {'J/token':>18}"]
    for r in pick.itertuples():
        j = (
            "-"
            if pd.isna(r.j_per_token_mean)
            else f"{r.j_per_token_mean:.4g} ± {'n/a' if pd.isna(r.j_per_token_ci95) else f'{r.j_per_token_ci95:.2g}'}"
        )
        sp = "(no row meets them)" if r.verdict == "none" else str(r.sweep_point)
        note = f"  not ranked: {r.not_ranked_reason}" if r.ranked is False or r.ranked == 0 else ""
        lines.append(f"{str(r.model):<28} {str(r.hardware):<16} {r.verdict:<10} {sp:<24} {j:>18}{note}")
    return "\n".join(lines)


def _floats(board: pd.DataFrame, column: str) -> pd.Series:
    return board[column].astype(float) if column in board else pd.Series(np.nan, index=board.index)

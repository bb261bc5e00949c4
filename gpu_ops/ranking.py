"""Which leaderboard rows deserve a rank, and which ranks their uncertainty allows.

A row enters the leaderboard whatever it measured, but it is ranked only when its headline figure can be trusted
(docs/methodology.md): its energy was measured, over enough cycles, each ranked window long enough, a serving run's
batch full enough, and its J/token steady over its cycles. A row that breaks a rule keeps its figures and says why
(`not_ranked_reason`); it never ranks above a valid one.

Ranks respect uncertainty: rows whose 95 % intervals overlap the band's best row share its rank (a tie, shown "=2").
Rows whose energy is unmeasured (a CPU) get a throughput fallback instead: the same bands by tokens/s among those rows
only, shown beside their reason ("not ranked: energy unmeasured · throughput =1 of 3"); it is not a rank, and such a
row still sorts below every ranked one.
The leaderboard (gpu_ops.leaderboard) calls these once; the CLI, the site, the Dagster metadata and the HF export all
read its columns, so they show the same ranks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from gpu_ops.errors import UserError

ENV_PREFIX = "LEM_RANK_"
"""Each threshold can be set per instance (platform or CLI) by LEM_RANK_<FIELD>, e.g. LEM_RANK_MIN_WINDOW_S=30."""
ENERGY_UNMEASURED = "energy unmeasured"
STEADY, CYCLE_WINDOW = "steady state", "cycle window"
"""rank_basis: what a row's J/token is taken over (docs/metrics.md): a serving run's steady state, or an offline
batch's whole cycle window."""


@dataclass(frozen=True)
class RankingRules:
    """The thresholds a row must meet to be ranked (defaults follow ML.ENERGY's published rules).

    Args:
        min_window_s: shortest ranked window: the steady state of a serving run, else each cycle's window. Shorter
            windows are dominated by the counter's ~100 ms updates and by edge effects.
        min_batch_fill: a serving run's running batch over its steady state / max_num_seqs: below it the engine
            was not loaded as configured, so the J/token is not the configuration's.
        min_cycles: cycles needed for a 95 % interval worth the name (two give a t-quantile of 12.7).
        max_cv: highest coefficient of variation of the ranked J/token over cycles: above it the rank is noise.
    """

    min_window_s: float = 20.0
    min_batch_fill: float = 0.85
    min_cycles: int = 3
    max_cv: float = 0.05

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RankingRules:
        """The defaults, with each LEM_RANK_<FIELD> set in the environment in place of its default."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name not in env:
                continue
            try:
                values[f.name] = (int if f.type in ("int", int) else float)(env[name])
            except ValueError:
                raise UserError(
                    f"{name}={env[name]!r} is not a number; set it to e.g. {getattr(cls, f.name)}"
                ) from None
            if not np.isfinite(values[f.name]) or values[f.name] < 0:
                raise UserError(f"{name}={env[name]!r} must be a finite number >= 0")
        return cls(**values)

    def describe(self) -> str:
        """The rules in one line (stored beside each rank: which thresholds ranked it)."""
        return (
            f"window >= {self.min_window_s:g} s; batch fill >= {self.min_batch_fill:g}; cycles >= {self.min_cycles}; "
            f"J/token CV <= {self.max_cv:.1%}"
        )


def not_ranked_reasons(board: pd.DataFrame, rules: RankingRules) -> pd.Series:
    """Per row, every rule it breaks joined by '; ' (None when it may be ranked). Reads the leaderboard's
    `energy_status`, `n_cycles`, `cv`, `window_min_s`, `batch_fill_mean` and `rank_basis` columns; a missing figure a
    rule needs breaks it (a rule that cannot be checked is not passed)."""

    def reasons(r) -> str | None:
        out = []
        if r.energy_status != "measured":
            out.append(ENERGY_UNMEASURED)
        if pd.isna(r.n_cycles) or r.n_cycles < rules.min_cycles:
            out.append(f"{'?' if pd.isna(r.n_cycles) else int(r.n_cycles)} cycles (< {rules.min_cycles})")
        if r.energy_status == "measured":
            if pd.isna(r.cv):
                out.append("J/token CV unknown")
            elif r.cv > rules.max_cv:
                out.append(f"unstable: J/token CV {r.cv:.1%} (> {rules.max_cv:.1%})")
        if r.rank_basis == STEADY and pd.isna(r.window_min_s):
            out.append("no steady state: the running batch never reached max_num_seqs")
        elif pd.isna(r.window_min_s):
            out.append("window length unknown")
        elif r.window_min_s < rules.min_window_s:
            out.append(f"short window: {r.window_min_s:.3g} s (< {rules.min_window_s:g} s)")
        if r.rank_basis == STEADY and not pd.isna(r.batch_fill_mean) and r.batch_fill_mean < rules.min_batch_fill:
            out.append(f"batch fill {r.batch_fill_mean:.2f} (< {rules.min_batch_fill:g})")
        return "; ".join(out) or None

    return pd.Series([reasons(r) for r in board.itertuples()], index=board.index, dtype=object)


def rank_bands(
    mean: pd.Series, lo: pd.Series, hi: pd.Series, ascending: bool, eligible: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Competition ranks (1 = best) of the eligible rows by `mean`, in bands: walking from the best, a row whose
    interval [lo, hi] overlaps the band leader's shares the leader's rank, else it opens a new band at its own place.
    Bands are anchored at their leader, so a chain of overlaps cannot tie the best row with one far below it. A
    missing bound counts as the mean (no width is claimed). Returns (rank Int64, tied: shares its rank with another
    row), both empty for ineligible rows."""
    rank = pd.Series(pd.NA, index=mean.index, dtype="Int64")
    tied = pd.Series(pd.NA, index=mean.index, dtype="boolean")
    ok = eligible.fillna(False).astype(bool) & mean.notna()
    if not ok.any():
        return rank, tied
    m = mean[ok].astype(float)
    low = lo[ok].astype(float).fillna(m)
    high = hi[ok].astype(float).fillna(m)
    order = m.sort_values(ascending=ascending, kind="stable").index
    leader, band = None, 0
    for place, i in enumerate(order, start=1):
        if leader is None or low[i] > high[leader] or high[i] < low[leader]:
            leader, band = i, place
        rank[i] = band
    counts = rank[ok].value_counts()
    tied[ok] = rank[ok].map(counts).gt(1).astype("boolean")
    return rank, tied


def rank_label(rank, tied) -> str:
    """How a rank is shown: '3', '=3' for a shared band, '' for a row that is not ranked."""
    if rank is None or pd.isna(rank):
        return ""
    return f"={int(rank)}" if tied is True or (not pd.isna(tied) and bool(tied)) else str(int(rank))


FALLBACK = "throughput"
"""What the fallback of a row whose energy is unmeasured orders by (its label's first word)."""


def fallback_label(rank, tied, of: int) -> str:
    """How a throughput fallback is shown: 'throughput =1 of 3' (of: the rows with energy unmeasured and a
    throughput), '' for a row without one."""
    shown = rank_label(rank, tied)
    return f"{FALLBACK} {shown} of {of}" if shown else ""


def throughput_fallback(
    board: pd.DataFrame, mean: pd.Series, lo: pd.Series, hi: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """The fallback of the rows whose energy is unmeasured: rank bands (rank_bands, higher is better) by throughput
    `mean` in [lo, hi], among those rows only (the other rules they break stay in their reason). Returns (rank Int64,
    label as fallback_label shows it), both empty for a row whose energy is measured or that has no throughput."""
    pool = (board.energy_status != "measured") & mean.notna()
    rank, tied = rank_bands(mean, lo, hi, False, pool)
    of = int(rank.notna().sum())
    return rank, pd.Series([fallback_label(r, t, of) for r, t in zip(rank, tied)], index=board.index, dtype=object)


def rank_shown(label, reason, fallback) -> str:
    """A row's rank in one cell, as every view shows it: its band ('=3'), else 'not ranked: <reason>' with its
    throughput fallback beside it when it has one ('not ranked: energy unmeasured · throughput =1 of 3')."""
    if isinstance(label, str) and label:
        return label
    out = f"not ranked: {reason}" if isinstance(reason, str) and reason else "not ranked"
    return f"{out} · {fallback}" if isinstance(fallback, str) and fallback else out

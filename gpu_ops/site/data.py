"""The site's data: which leaderboard columns it shows and how, each row's id and label, the tables behind each row,
and the leaderboard of result folders written by `run`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_ops.results import ResultTables, read_tables
from gpu_ops.schema import LEADERBOARD, Column


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


COLUMNS = [_site_column(c) for c in LEADERBOARD.where(shown=True)]
"""The leaderboard table's columns: those of schema.LEADERBOARD marked shown, in its order."""
FILTERS = tuple(c["key"] for c in COLUMNS if c["type"] == "text")  # a select each; site.js reads them from the data


def row_id(partition_key: str, sweep_point: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{partition_key}-{sweep_point}".lower()).strip("-")[:60]
    return f"{slug}-{hashlib.sha256(f'{partition_key}/{sweep_point}'.encode()).hexdigest()[:8]}"


@dataclass
class SiteData:
    """The leaderboard with each row's id, label and parameter count, and the raw tables behind its rows."""

    board: pd.DataFrame
    tables: dict[str, ResultTables]  # partition key -> its raw tables (rows without them get no detail page)

    def cycles(self, row) -> pd.DataFrame:
        t = self.tables[row.partition_key]
        return t.cycles[t.cycles.sweep_point == row.sweep_point]


def site_data(board: pd.DataFrame, raw: dict[str, Path | ResultTables]) -> SiteData:
    """`raw` maps partition keys to result folders (or their tables)."""
    board = board.copy()
    board["id"] = [row_id(str(p), str(s)) for p, s in zip(board.partition_key, board.sweep_point)]
    board["label"] = (
        board.model.astype(str)
        + " "
        + board.sweep_point.astype(str)
        + " ("
        + board.hardware.astype(str)
        + ", "
        + board.parallelism.astype(str)
        + ")"
    )
    board["parameters"] = np.nan
    tables = {}
    for partition in sorted(set(board.partition_key)):
        src = raw.get(partition)
        if src is None:
            continue
        t = tables[partition] = src if isinstance(src, ResultTables) else read_tables(Path(src))
        if "backend_parameters" in t.sweep_points:
            params = dict(zip(t.sweep_points.sweep_point, t.sweep_points.backend_parameters))
            mine = board.partition_key == partition
            board.loc[mine, "parameters"] = board.loc[mine, "sweep_point"].map(params).astype(float)
    return SiteData(board, tables)


def leaderboard_of_folders(folders: list[Path]) -> tuple[pd.DataFrame, dict[str, ResultTables]]:
    """The leaderboard of result folders written by `run` (no platform), and their tables by partition key; a second
    run of the same model/backend/hardware (another config) is kept, its key told apart by its folder name."""
    from gpu_ops.errors import UserError
    from gpu_ops.leaderboard import build_leaderboard
    from gpu_ops.stats import published_statistics

    stats, raw = [], {}
    for folder in folders:
        t = read_tables(Path(folder))
        exp = t.experiment.iloc[0]
        key = f"{exp.experiment_key}|{exp.hardware}"
        if key in raw:
            key = f"{key}|{Path(folder).name}"
        if key in raw:
            raise UserError(f"{folder}: passed twice; pass each result folder once")
        raw[key] = t
        stats.append(
            published_statistics(
                t,
                key,
                "cli",
                {
                    "raw_run_id": f"local:{Path(folder).name}",
                    "raw_storage_id": None,
                    "raw_data_version": t.summary.get("content_hash"),
                    "raw_code_version": "cli",
                },
            )
        )
    return build_leaderboard(pd.concat(stats, ignore_index=True) if stats else pd.DataFrame()), raw

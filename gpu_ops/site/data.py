"""The site's data: which leaderboard columns it shows and how, each row's id and label, the tables behind each row,
and the leaderboard of result folders written by `run`."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np
import pandas as pd

from gpu_ops.conversions import NO_CONVERSIONS, Conversions
from gpu_ops.models import ARCHITECTURES
from gpu_ops.results import ResultTables, read_tables
from gpu_ops.schema import LEADERBOARD, SITE_HEADLINES, Column

HUB = "https://huggingface.co/"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # org/name, or a legacy bare name (gpt2)


def _site_column(c: Column) -> dict:
    """How site.js shows a leaderboard column: its label and unit (seconds in ms), the CI beside a mean, and whether a
    missing value means unmeasured energy."""
    col: dict = dict(key=c.name, label=c.title, type="text" if c.dtype == "str" else "number")
    unit = "ms" if c.unit == "s" else c.unit
    ci = f"{c.name.removesuffix('_mean')}_ci95"
    if c.name.endswith("_mean") and ci in LEADERBOARD:
        col["ci"] = ci
        unit += " ± CI"  # the page says: 95 % t-CI
    if unit and unit != col["label"]:
        col["unit"] = unit
    if c.unit == "s":
        col["scale"] = 1000
    if c.from_counter:
        col["energy"] = True
    if c.better:
        col["better"] = c.better  # the first click on its header sorts best first
    return col


COLUMNS = [_site_column(c) for c in LEADERBOARD.where(shown=True)]
"""The leaderboard table's columns: those of schema.LEADERBOARD marked shown, in its order."""
FILTERS = tuple(c["key"] for c in COLUMNS if c["type"] == "text")  # a select each; site.js reads them from the data
CV_COLUMN = dict(key="cv", label="CV", type="number", unit="%", scale=100, digits=2, better="lower")
"""The spread between cycles (gpu_ops.stats.headline_cv), beside the headline; above CV_UNSTABLE the row is badged."""


def headline(board: pd.DataFrame) -> str:
    """The column the site ranks by (schema.SITE_HEADLINES): tokens per joule, else tokens/s when no row's energy is
    measured."""
    energy, throughput = SITE_HEADLINES.names
    return energy if board[energy].notna().any() else throughput


RANK_COLUMN = dict(key="rank_j_per_token", label="rank", type="number", better="lower", rank=True)
"""The J/token rank band as gpu_ops.ranking shows it ('3', '=3'); an unranked row reads 'not ranked', its reason in the
tooltip, and a row whose energy is unmeasured its throughput fallback under it ('throughput =1 of 3'). It sorts by the
band; unranked rows follow in the leaderboard's order (those without energy by their fallback)."""


def columns(board: pd.DataFrame) -> list[dict]:
    """The table's columns for this board: the model, its rank, then the headline metric and its CV, then the rest."""
    key = headline(board)
    first = [c for c in COLUMNS if c["key"] == "model"]
    head = [dict(c, headline=True) for c in COLUMNS if c["key"] == key]
    rest = [c for c in COLUMNS if c["key"] not in ("model", key, RANK_COLUMN["key"])]
    return first + [RANK_COLUMN] + head + [CV_COLUMN] + rest


def row_id(partition_key: str, sweep_point: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{partition_key}-{sweep_point}".lower()).strip("-")[:60]
    return f"{slug}-{hashlib.sha256(f'{partition_key}/{sweep_point}'.encode()).hexdigest()[:8]}"


def model_link(spec: str) -> tuple[str | None, str, str]:
    """Where a model's page is (None: there is none), what kind of model it is and a sentence about it: hub ids link
    to the Hugging Face hub, `synthetic:` models to the hub model whose shapes they copy; builtin and local models say
    so, never a dead link."""
    if spec.startswith("builtin:"):
        return None, "built-in", "built-in test model (random weights), no hub page"
    if spec.startswith("synthetic:"):
        arch = ARCHITECTURES / f"{spec.removeprefix('synthetic:')}.json"
        source = json.loads(arch.read_text()).get("_source", "").split(" ")[0] if arch.is_file() else ""
        if HUB_ID.fullmatch(source):
            return HUB + source, "synthetic", f"random weights with the shapes of {source}"
        return None, "synthetic", "random weights, no hub page"
    if spec.startswith((".", "/", "~")):
        return None, "local", "a local model folder, no hub page"
    if HUB_ID.fullmatch(spec):
        return HUB + spec, "hub", "on the Hugging Face hub"
    return None, "unknown", "not a hub id, no hub page"


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def is_local_url(url: str | None) -> bool:
    """Whether a URL names this machine only (a link to it dies anywhere else)."""
    host = (urlparse(url).hostname or "") if url else ""
    return host in LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def local_link_warning(dagster_url: str | None) -> str | None:
    """The warning a site built against a Dagster UI on localhost prints: its run/raw links work only here."""
    if not is_local_url(dagster_url):
        return None
    return (
        f"the Dagster URL {dagster_url} names this machine only: the site's run and raw links are marked local and "
        "will not open elsewhere; set LEM_DAGSTER_PUBLIC_URL (report: --dagster-url) to the address readers can reach"
    )


def provenance_links(partition_key: str, run_id, dagster_url: str | None) -> tuple[str | None, str | None]:
    """(the Dagster run that measured a row, its raw partition's asset page): None where no UI or no run is known
    (result folders from `run` have no Dagster run)."""
    if not dagster_url:
        return None, None
    base = dagster_url.rstrip("/")
    raw = f"{base}/assets/raw_measurements?view=partitions&partition={quote(str(partition_key), safe='')}"
    run = f"{base}/runs/{quote(str(run_id), safe='')}" if isinstance(run_id, str) and run_id else None
    return run, raw


@dataclass
class SiteData:
    """The leaderboard with each row's id, label and parameter count, and the raw tables behind its rows."""

    board: pd.DataFrame
    tables: dict[str, ResultTables]  # partition key -> its raw tables (rows without them get no detail page)

    def cycles(self, row) -> pd.DataFrame:
        t = self.tables[row.partition_key]
        return t.cycles[t.cycles.sweep_point == row.sweep_point]


def _set_columns(board: pd.DataFrame, names: tuple[str, ...], values: list[tuple]) -> None:
    """Per-row tuples as columns `names` of `board` (also for a board without rows); None stays None, never NaN."""
    for i, name in enumerate(names):
        board[name] = pd.Series([v[i] for v in values], index=board.index, dtype=object)


def site_data(board: pd.DataFrame, raw: dict[str, Path | ResultTables], dagster_url: str | None = None) -> SiteData:
    """`raw` maps partition keys to result folders (or their tables); `dagster_url` gives rows their run links."""
    board = board.copy()
    board["unstable"] = board.unstable.fillna(False).astype(bool)  # the leaderboard's verdict; one cycle: no badge
    _set_columns(board, ("model_url", "model_kind", "model_note"), [model_link(str(m)) for m in board.model])
    # the Dagster run behind a row: its `run_id` where the leaderboard carries one, else the run that stored its raw
    # partition; result folders from `run` ("local:<folder>") have none
    stored_by = board.raw_run_id.where(~board.raw_run_id.astype(str).str.startswith("local:"))
    board["dagster_run"] = board.run_id if "run_id" in board else stored_by
    links = [provenance_links(p, r, dagster_url) for p, r in zip(board.partition_key, board.dagster_run)]
    _set_columns(board, ("run_url", "raw_url"), links)
    board["links_local"] = is_local_url(dagster_url)  # site.js and the detail page mark such links "local"
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


def leaderboard_of_folders(
    folders: list[Path], conversions: Conversions = NO_CONVERSIONS
) -> tuple[pd.DataFrame, dict[str, ResultTables]]:
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
    return build_leaderboard(
        pd.concat(stats, ignore_index=True) if stats else pd.DataFrame(), conversions=conversions
    ), raw

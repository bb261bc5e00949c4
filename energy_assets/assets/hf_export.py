"""The HuggingFace dataset folder: one Parquet file per table and a dataset card, byte-identical for the same inputs.

Determinism: rows sorted by fixed keys, Arrow schema metadata stripped (it embeds the pandas version), fixed
Parquet writer options, and no wall-clock times except those measured (started_at, finished_at).
Tables stay in Arrow from the raw result folders to the written file: no pandas round trip for the big ones.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_ops.errors import UserError
from gpu_ops.results import file_sha256, read_arrow_table, read_summary, replace_folder
from gpu_ops.schema import (
    DATASET_PROVENANCE,
    LEADERBOARD,
    PARTITION_KEY,
    PUBLISHED_STATISTICS,
    RESULT_TABLES,
    Column,
    Table,
    plain,
)

# dataset config -> (table in a raw result folder, sort keys); leaderboard/statistics/provenance come from assets
RAW_TABLES = {
    "experiments": ("experiment", ["partition_key"]),
    "sweep_points": ("sweep_points", ["partition_key", "sweep_point"]),
    "cycles": ("cycles", ["partition_key", "sweep_point", "cycle"]),
    "requests": ("requests", ["partition_key", "sweep_point", "cycle", "request_id"]),
    "windows": ("windows", ["partition_key", "start_s", "name"]),
    "power_timelines": ("timeline", ["partition_key", "t_s", "device"]),
}
CONFIGS = ("leaderboard", "statistics", "provenance", *RAW_TABLES)
SCHEMAS: dict[str, Table] = {
    "leaderboard": LEADERBOARD,
    "statistics": PUBLISHED_STATISTICS,
    "provenance": DATASET_PROVENANCE,
    **{c: RESULT_TABLES[t] for c, (t, _) in RAW_TABLES.items()},
}
"""Each dataset config's columns (gpu_ops.schema); the raw tables gain `partition_key` in front."""
CARD_LICENSE = "cc-by-4.0"


@dataclass
class SnapshotFile:
    path: str  # relative to the folder
    rows: int | None
    bytes: int
    sha256: str


@dataclass
class Snapshot:
    folder: Path
    files: list[SnapshotFile]
    content_hash: str

    def metadata_table(self) -> str:
        lines = ["| file | rows | bytes | sha256 |", "|---|---|---|---|"]
        lines += [
            f"| {f.path} | {'' if f.rows is None else f.rows} | {f.bytes} | {f.sha256[:12]} |" for f in self.files
        ]
        return "\n".join(lines)


def _write_parquet(table: pa.Table, path: Path) -> None:
    table = table.replace_schema_metadata(None)
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        row_group_size=256 * 1024,
        data_page_version="2.0",
        version="2.6",
    )


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    keys = [k for k in keys if k in table.column_names]
    return table.sort_by([(k, "ascending") for k in keys]) if keys and table.num_rows else table


def _from_pandas(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False).replace_schema_metadata(None)


def _with_partition(table: pa.Table, partition: str) -> pa.Table:
    col = pa.array([partition] * table.num_rows, pa.string())
    if "partition_key" in table.column_names:
        return table.set_column(table.column_names.index("partition_key"), "partition_key", col)
    return table.add_column(0, "partition_key", col)


def build_snapshot(
    raw_folders: dict[str, Path], leaderboard: pd.DataFrame, statistics: pd.DataFrame, out: Path
) -> Snapshot:
    """Write the dataset folder `out` (replaced atomically) from raw result folders by partition key and the two asset
    frames."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "data").mkdir()
        rows: dict[str, int] = {}
        schemas: dict[str, pa.Schema] = {}
        summaries = {p: read_summary(f) for p, f in sorted(raw_folders.items())}
        for config, (table, keys) in RAW_TABLES.items():
            parts = [
                _with_partition(read_arrow_table(raw_folders[p], table, summaries[p]).replace_schema_metadata(None), p)
                for p in sorted(raw_folders)
            ]
            parts = [t for t in parts if t.num_columns > 1 or t.num_rows]
            merged = (
                _sorted(pa.concat_tables(parts, promote_options="permissive"), keys)
                if parts
                else pa.table({"partition_key": pa.array([], pa.string())})
            )
            _write_parquet(merged, tmp / "data" / f"{config}.parquet")
            rows[config], schemas[config] = merged.num_rows, merged.schema
        prov = _provenance(leaderboard, summaries)
        for config, frame, keys in (
            ("leaderboard", leaderboard, ["partition_key", "sweep_point"]),
            ("statistics", statistics, ["partition_key", "sweep_point"]),
            ("provenance", prov, ["partition_key"]),
        ):
            t = _sorted(_from_pandas(frame), keys)
            _write_parquet(t, tmp / "data" / f"{config}.parquet")
            rows[config], schemas[config] = t.num_rows, t.schema
        undocumented = sorted({f"{c}.{n}" for c, s in schemas.items() for n in s.names if describe(c, n) is None})
        if undocumented:
            raise UserError(
                f"columns without a unit/meaning in gpu_ops/schema.py: {', '.join(undocumented)}; document "
                "them there before publishing"
            )
        (tmp / "README.md").write_text(dataset_card(rows, schemas, leaderboard), encoding="utf-8")
        files = []
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            config = rel.removeprefix("data/").removesuffix(".parquet")
            files.append(
                SnapshotFile(
                    rel, rows.get(config) if rel.startswith("data/") else None, path.stat().st_size, file_sha256(path)
                )
            )
        content = hashlib.sha256("\n".join(f"{f.path} {f.sha256}" for f in files).encode()).hexdigest()
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(out, files, content)


def _provenance(leaderboard: pd.DataFrame, summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per partition: how to find its raw run in Dagster and its result folder's content hash."""
    rows = []
    lb = leaderboard.drop_duplicates("partition_key").set_index("partition_key") if len(leaderboard) else pd.DataFrame()
    for p, summary in summaries.items():
        row = dict.fromkeys(DATASET_PROVENANCE.names)
        if p in lb.index:
            row.update({c: plain(lb.at[p, c]) for c in DATASET_PROVENANCE.names if c in lb.columns})
        row.update(
            partition_key=p,
            experiment_key=summary.get("experiment_key"),
            hardware=summary.get("hardware"),
            content_hash=summary.get("content_hash"),
        )
        rows.append(DATASET_PROVENANCE.record(**row))
    return DATASET_PROVENANCE.frame(rows)


def describe(config: str, column: str) -> Column | None:
    """A dataset column's definition (unit, meaning) from gpu_ops.schema, or None when it has none."""
    return PARTITION_KEY if column == PARTITION_KEY.name else SCHEMAS[config].describe(column)


def _size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
    ):
        if n < limit:
            return name
    return "10M<n<100M"


CARD_INTRO = """# LLM inference energy measurements

Energy per token, throughput and latency of LLM inference, measured by
[llm-energy-measure](https://github.com/) on named backends, hardware and configurations. Every number
can be traced back to the raw samples and the Dagster run that produced it.

> Rows whose `weights` is `synthetic` ran a real architecture with random weights: the FLOPs and bytes
> moved are the real model's, the generated text is meaningless. They are flagged in the leaderboard.
> Energy that could not be measured (e.g. on a machine without a GPU energy counter) is empty with a
> reason (`energy_status = unmeasured`), never 0.
"""

METHODOLOGY = """## Methodology

- **Energy**: GPU energy is read from the NVML total-energy counter at the edges of each measured window,
  after a device synchronisation, summed over exactly the GPUs the run used (by UUID). A power timeline is
  sampled at >= 10 Hz (default 50 Hz) in a background thread for shape, phase attribution (prefill/decode)
  and a cross-check against the counter; windows whose two estimates differ by more than the tolerance fail
  a blocking check and are never published. Windows shorter than 10 counter updates (~1 s) are flagged.
- **Idle baseline**: idle power is measured before and after the run; *net* energy subtracts
  idle power x duration from the *gross* (counter) energy. Rankings use gross energy.
- **Cycles**: each sweep point is measured for several cycles after a warm-up window (which holds model
  loading and compilation, reported separately). Statistics per sweep point: mean, sample standard
  deviation, 95 % confidence interval from the exact Student t quantile with n-1 degrees of freedom, and
  the coefficient of variation. A sweep point needs at least 3 cycles to be published.
- **Traffic**: requests arrive open loop (offline all at once, constant rate, or Poisson/Gamma with
  burstiness); a request is sent at its arrival time whether or not earlier ones finished, and idle time
  between arrivals stays inside the measured window.
- **Checks** (blocking, before a result is stored: one that fails is never stored, summarised or published):
  every derived figure (J/token, tokens/s, net energy, latencies, idle power, CIs) recomputed from the raw
  readings; model, backend, hardware and experiment key consistent with the config and the environment
  fingerprint; finite, positive durations and energies; one window per cycle; measured energy backed by a power
  timeline; energy present or explicitly unmeasured; net energy >= 0; energy within power limit x duration (an
  unknown limit fails); windows long enough; counter and timeline agree; no foreign process on the GPU; one
  model/backend/hardware per partition. A row is ranked only when it meets the ranking rules (its energy
  measured in every cycle, >= 3 cycles, ranked windows >= 20 s, a serving run's batch fill >= 0.85, J/token CV
  <= 5 %; the thresholds in `ranking_rules`); otherwise `not_ranked_reason` says why. Rows whose 95 % intervals
  overlap share a rank band (`rank_label` `=2`). A row whose energy is unmeasured gets a throughput fallback
  instead (`throughput_fallback_rank`, shown `throughput =1 of 3`): the same bands by tokens/s among those rows
  only; it is not a rank, and such a row never ranks above a ranked one.
"""

DEFINITIONS = """## Metric definitions (vLLM's)

Per request, on the run's monotonic clock, with *sent* = the request's arrival time:

- TTFT = first token time - sent
- ITL = the gaps between consecutive output tokens (empty when the backend did not stream tokens)
- TPOT = (E2E - TTFT) / (output tokens - 1), for requests with more than one output token
- E2E = last token time - sent; queue = time the engine scheduled the request - sent

Per cycle: tokens/s = output tokens / window duration; J/token = gross energy / output tokens;
tokens/J = output tokens / gross energy; goodput = requests meeting every SLO / duration.
"""

TRACE = """## Tracing a number back to its run

1. A `leaderboard` row names its `partition_key` (`model__backend|hardware`), `raw_run_id`,
   `raw_storage_id` and `raw_data_version`.
2. In the Dagster UI, open asset `raw_measurements`, partition `partition_key`: the materialization with that
   run id and data version holds the raw samples, the power timeline and the physics checks' results.
3. In this dataset, filter any table by `partition_key`: `cycles` (one row per measured window), `requests`
   (one row per request, with every inter-token gap), `windows` (idle, warm-up and cycle windows) and
   `power_timelines` (every power sample). `provenance.content_hash` is the hash of the raw result folder.
"""


def _yaml_configs(rows: dict[str, int]) -> list[dict]:
    return [
        {
            "config_name": c,
            "data_files": [{"split": "train", "path": f"data/{c}.parquet"}],
            **({"default": True} if c == "leaderboard" else {}),
        }
        for c in CONFIGS
    ]


def dataset_card(rows: dict[str, int], schemas: dict[str, pa.Schema], leaderboard: pd.DataFrame) -> str:
    import yaml

    header = {
        "license": CARD_LICENSE,
        "pretty_name": "LLM inference energy measurements (llm-energy-measure)",
        "tags": ["energy", "llm", "inference", "benchmark", "green-ai", "lineage"],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(max(rows.values() or [0]))],
        "configs": _yaml_configs(rows),
    }
    parts = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", CARD_INTRO]
    n = len(leaderboard)
    if n:
        parts.append(
            f"This snapshot: {n} leaderboard rows from {leaderboard.partition_key.nunique()} partitions; backends "
            f"{', '.join(sorted(leaderboard.backend.astype(str).unique()))}; hardware "
            f"{', '.join(sorted(leaderboard.hardware.astype(str).unique()))}; "
            f"{int((leaderboard.energy_status == 'measured').sum())} rows with measured energy.\n"
        )
    else:
        parts.append("This snapshot holds no measurements yet.\n")
    parts += [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'board = load_dataset("<this repo>", "leaderboard", split="train")',
        'requests = load_dataset("<this repo>", "requests", split="train")',
        "```",
        "",
        "The leaderboard with each column typed as defined (units as stored: seconds, joules, watts; unmeasured values "
        "missing, never 0), from this repo, a local copy of it, or the leaderboard site's data API:",
        "",
        "```python",
        "from gpu_ops import read_leaderboard  # pip install llm-energy-measure",
        "",
        'df = read_leaderboard("<this repo>")',
        "```",
        "",
        "## Tables",
        "",
    ]
    parts += [f"- `{c}`: {rows[c]} rows" for c in CONFIGS]
    parts += ["", METHODOLOGY, DEFINITIONS, TRACE, "## Schema", ""]
    for c in CONFIGS:
        parts += [f"### {c}", "", "| column | type | unit | meaning |", "|---|---|---|---|"]
        for field in schemas[c]:
            col = describe(c, field.name)
            parts.append(f"| `{field.name}` | {field.type} | {col.unit} | {col.meaning.replace('|', '/')} |")
        parts.append("")
    return "\n".join(parts)

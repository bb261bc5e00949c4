"""Result folders: Parquet tables + summary.json, written atomically (temp folder, then rename).

A result folder is self-describing (schema version, resolved config, environment fingerprint) and is
exactly what the platform's results inbox accepts from a standalone CLI run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_ops.config import Parallelism
from gpu_ops.errors import UserError

SCHEMA_VERSION = 1
TABLES = ("experiment", "sweep_points", "cycles", "requests", "windows", "timeline")
MAX_SUMMARY_BYTES = 16 << 20
MAX_TABLE_BYTES = 2 << 30

REQUIRED_COLUMNS = {
    "experiment": {"name", "model", "backend", "hardware", "weights", "config_hash", "schema_version"},
    "cycles": {"sweep_point", "cycle", "model", "backend", "hardware", "weights", "duration_s", "output_tokens",
               "energy_status", "gross_energy_j", "net_energy_j", "j_per_token", "tokens_per_s", "avg_power_w",
               "cross_check_rel_diff", "too_short", "foreign_processes", "power_limit_w"},
    "requests": {"sweep_point", "cycle", "request_id", "prompt_tokens", "output_tokens", "ttft_s", "e2e_s"},
    "windows": {"kind", "name", "duration_s", "gpu_energy_status", "gpu_energy_j"},
    "timeline": {"t_s", "device", "power_w"},
    "sweep_points": {"sweep_point", "config_json", "config_hash"},
}


def experiment_slug(model_slug: str, backend: str) -> str:
    """The `experiment` partition key: `model__backend`."""
    return f"{model_slug}__{backend}"


@dataclass
class ResultTables:
    experiment: pd.DataFrame
    sweep_points: pd.DataFrame
    cycles: pd.DataFrame
    requests: pd.DataFrame
    windows: pd.DataFrame
    timeline: pd.DataFrame
    summary: dict = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    @property
    def identity(self) -> dict:
        row = self.experiment.iloc[0]
        return {k: row[k] for k in ("name", "model", "backend", "hardware", "weights", "config_hash")}

    @property
    def partition(self) -> tuple[str, str]:
        row = self.experiment.iloc[0]
        return str(row["experiment_key"]), str(row["hardware"])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parquet_bytes(df: pd.DataFrame, small: bool = False) -> bytes:
    """Fixed writer options, so identical frames give identical bytes. `small` tables (one row per sweep point) skip compression and dictionaries:
    decoding them dominates when thousands are read at once, and they gain nothing from either."""
    buf = pa.BufferOutputStream()
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    if small:
        pq.write_table(table, buf, compression="none", use_dictionary=False, write_statistics=False)
    else:
        pq.write_table(table, buf, compression="zstd", use_dictionary=True, write_statistics=True)
    return buf.getvalue().to_pybytes()


def _serialised(tables: ResultTables) -> dict[str, tuple[bytes, dict]]:
    """Each table's Parquet bytes and its {rows, sha256} entry of summary.json."""
    out = {}
    for name in TABLES:
        data = parquet_bytes(tables.table(name))
        out[name] = (data, {"rows": len(tables.table(name)), "sha256": hashlib.sha256(data).hexdigest()})
    return out


def _content_hash(files: dict[str, dict]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def tables_digest(tables: ResultTables) -> str:
    """Content hash of the tables as `write_tables` writes them: the data version."""
    return _content_hash({name: entry for name, (_, entry) in _serialised(tables).items()})


def write_tables(tables: ResultTables, folder: Path) -> str:
    """Write tables + summary into `folder` (which must not exist yet) atomically; returns the content hash."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        files = {}
        for name, (data, entry) in _serialised(tables).items():
            (tmp / f"{name}.parquet").write_bytes(data)
            files[name] = entry
        content_hash = _content_hash(files)
        summary = dict(tables.summary, schema_version=SCHEMA_VERSION, tables=files, content_hash=content_hash)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tables.summary = summary
    return content_hash


def write_file_atomic(target: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one: write beside it, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_folder(tmp: Path, target: Path) -> None:
    """Put a fully written folder `tmp` at `target`, replacing what was there, with two renames (readers see the
    old folder or the new one, never a mix)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def read_summary(folder: Path) -> dict:
    """summary.json of a result folder (possibly from another machine: untrusted), size- and version-checked."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise UserError(f"{folder}: no summary.json; not a result folder written by llm-energy-measure")
    if summary_path.stat().st_size > MAX_SUMMARY_BYTES:
        raise UserError(f"{folder}/summary.json: larger than {MAX_SUMMARY_BYTES >> 20} MiB")
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{folder}/summary.json: not valid JSON ({exc})") from None
    if summary.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{folder}: schema_version {summary.get('schema_version')!r}, expected {SCHEMA_VERSION}; re-run with this version")
    return summary


def read_arrow_table(folder: Path, name: str, summary: dict) -> pa.Table:
    """One table of a result folder as Arrow, after its size and its checksum in summary.json are checked."""
    folder = Path(folder)
    path = folder / f"{name}.parquet"
    if not path.is_file():
        raise UserError(f"{folder}: missing table {name}.parquet")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise UserError(f"{folder}/{name}.parquet: larger than {MAX_TABLE_BYTES >> 30} GiB")
    expected = summary.get("tables", {}).get(name, {}).get("sha256")
    if expected and expected != file_sha256(path):
        raise UserError(f"{folder}/{name}.parquet: checksum differs from summary.json; the folder is damaged or was edited")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise UserError(f"{folder}/{name}.parquet: unreadable Parquet ({exc})") from None
    missing = REQUIRED_COLUMNS.get(name, set()) - set(table.column_names)
    if missing:
        raise UserError(f"{folder}/{name}.parquet: missing columns {sorted(missing)}")
    return table


def read_tables(folder: Path) -> ResultTables:
    """Read and schema-check a result folder (possibly from another machine: untrusted)."""
    folder = Path(folder)
    summary = read_summary(folder)
    frames = {name: read_arrow_table(folder, name, summary).to_pandas() for name in TABLES}
    if len(frames["experiment"]) != 1:
        raise UserError(f"{folder}/experiment.parquet: must hold exactly one row")
    cycles = frames["cycles"]
    if len(cycles) and "parallelism" not in cycles:  # folders written before the column: every sweep point shared the config's block
        block = json.loads(frames["experiment"].config_json.iloc[0]).get("parallelism") or {}
        cycles["parallelism"] = Parallelism(**block).label
    return ResultTables(**frames, summary=summary)

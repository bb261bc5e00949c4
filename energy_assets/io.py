"""IO managers on UPath: a local folder by default, object storage by URL (LEM_IO_URL).

Raw measurements are stored as a result folder: the files the engine wrote, copied as they are (never encoded
again, so the content hash in their summary.json is the data version); statistics and the leaderboard as one
Parquet file. Local writes go to a temp path and are renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from gpu_ops.environment import validate_slug
from gpu_ops.results import ResultFolder, ResultTables, copy_folder, parquet_bytes, read_tables, write_file_atomic


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def local_asset_dir(base: UPath, asset: str) -> Path | None:
    """Where an asset's partitions lie on this machine's disk; None when the IO base is object storage."""
    return Path((base / asset).path) if _is_local(base) else None


class ConfinedPartitions(dg.UPathIOManager):
    """A partition key becomes folder names under the asset's folder: each part must be a valid slug (never `.`,
    `..` or a separator), so no key can name a path outside it."""

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        for part in partition.split("/"):
            validate_slug(part, f"partition key {partition!r} of {context.asset_key.to_user_string()}")
        return super().get_path_for_partition(context, path, partition)


class ResultTablesIOManager(ConfinedPartitions):
    extension = ""

    def dump_to_path(self, context: dg.OutputContext, obj: ResultFolder, path: UPath) -> None:
        if _is_local(path):
            copy_folder(obj.folder, Path(path.path))
            return
        names = sorted(p.name for p in obj.folder.iterdir())  # object storage: the tables first, summary.json last
        for name in [n for n in names if n != "summary.json"] + ["summary.json"]:
            (path / name).write_bytes((obj.folder / name).read_bytes())

    def load_partitions(self, context: dg.InputContext):
        """With `AssetIn(metadata={"as_folders": True})` an unpartitioned reader gets {partition key: result folder}
        for the partitions that exist, and reads only what it needs (the dataset export streams them in Arrow)."""
        if context.has_partition_key or not (context.definition_metadata or {}).get("as_folders"):
            return super().load_partitions(context)
        paths = self._get_paths_for_partitions(context)
        found = {}
        for key in context.asset_partition_keys:
            path = paths[key]
            if _is_local(path):
                if (Path(path.path) / "summary.json").is_file():
                    found[str(key)] = Path(path.path)
            elif (path / "summary.json").exists():
                found[str(key)] = _local_copy(path)
        return found

    def load_from_path(self, context: dg.InputContext, path: UPath) -> ResultTables:
        if _is_local(path):
            return read_tables(Path(path.path))
        with tempfile.TemporaryDirectory() as tmp:
            for p in path.iterdir():
                (Path(tmp) / p.name).write_bytes(p.read_bytes())
            return read_tables(Path(tmp))


class ParquetIOManager(ConfinedPartitions):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        data = parquet_bytes(obj, small=True)
        if _is_local(path):
            write_file_atomic(Path(path.path), data)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as fh:
            return pq.read_table(fh).to_pandas()

    def load_partitions(self, context: dg.InputContext):
        """An unpartitioned reader of all partitions (the leaderboard) gets them as one frame, concatenated in
        Arrow (per-file pandas conversion dominated at 10k partitions); a partition reading its own upstream
        partition gets that frame."""
        if context.has_partition_key:
            return super().load_partitions(context)
        paths = self._get_paths_for_partitions(context)
        columns = (context.definition_metadata or {}).get("columns")  # AssetIn(metadata={"columns": [...]})
        return concat_parquet([paths[key] for key in context.asset_partition_keys], columns)


def _local_copy(path: UPath) -> Path:
    """A result folder on object storage, copied once into a local cache keyed by its summary's content hash."""
    import hashlib
    import json
    import shutil

    summary = (path / "summary.json").read_bytes()
    digest = json.loads(summary).get("content_hash") or hashlib.sha256(summary).hexdigest()[:16]
    local = Path(tempfile.gettempdir()) / "lem-folder-cache" / digest
    if not (local / "summary.json").is_file():
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".copy-", dir=local.parent))
        for p in path.iterdir():
            (tmp / p.name).write_bytes(p.read_bytes())
        try:
            os.rename(tmp, local)
        except OSError:  # another reader copied it first
            shutil.rmtree(tmp, ignore_errors=True)
    return local


def concat_parquet(paths: list[UPath], columns: list[str] | None = None) -> pd.DataFrame:
    """Read the files that exist (missing partitions are allowed), only `columns` when given, into one frame."""
    tables = []
    for path in paths:
        try:
            # local files through Arrow's native reader: a Python file object costs ~5x per file
            f = pq.ParquetFile(path.path if _is_local(path) else path.open("rb"))
        except FileNotFoundError:
            continue
        available = set(f.schema_arrow.names)  # a property that rebuilds the schema on every access
        names = [c for c in columns if c in available] if columns else None
        tables.append(f.read(columns=names, use_threads=False))
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="default").to_pandas()

"""IO managers on UPath: a local folder by default, object storage by URL (LEM_IO_URL).

Raw measurements are stored as a result folder (the same layout the engine writes); statistics and the
leaderboard as one Parquet file. Local writes go to a temp path and are renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from gpu_ops.results import ResultTables, _parquet_bytes, read_tables, write_tables


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


class ResultTablesIOManager(dg.UPathIOManager):
    extension = ""

    def dump_to_path(self, context: dg.OutputContext, obj: ResultTables, path: UPath) -> None:
        if _is_local(path):
            write_tables(obj, Path(path.path))
            return
        with tempfile.TemporaryDirectory() as tmp:  # object storage: files first, summary.json last
            local = Path(tmp) / "r"
            write_tables(obj, local)
            names = sorted(p.name for p in local.iterdir())
            for name in [n for n in names if n != "summary.json"] + ["summary.json"]:
                (path / name).write_bytes((local / name).read_bytes())

    def load_from_path(self, context: dg.InputContext, path: UPath) -> ResultTables:
        if _is_local(path):
            return read_tables(Path(path.path))
        with tempfile.TemporaryDirectory() as tmp:
            for p in path.iterdir():
                (Path(tmp) / p.name).write_bytes(p.read_bytes())
            return read_tables(Path(tmp))


class ParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        data = _parquet_bytes(obj)
        if _is_local(path):
            target = Path(path.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pd.DataFrame:
        with path.open("rb") as fh:
            return pq.read_table(fh).to_pandas()

    def load_partitions(self, context: dg.InputContext):
        """An unpartitioned reader of all partitions (the leaderboard) always gets {partition: frame},
        also when only one partition exists; a partition reading its own upstream gets the frame."""
        if context.has_partition_key:
            return super().load_partitions(context)
        paths = self._get_paths_for_partitions(context)
        frames = {key: self._load_partition_from_path(context, key, paths[key], None) for key in context.asset_partition_keys}
        return {key: frame for key, frame in frames.items() if frame is not None}


"""IO managers on a non-local UPath (fsspec's in-memory filesystem stands in for object storage)."""

import dagster as dg
import pandas as pd
from upath import UPath

from energy_assets.io import ParquetIOManager, ResultTablesIOManager
from gpu_ops.results import TABLES, read_tables, tables_digest
from tests.energy_assets.conftest import fake_gpu_result


def test_result_tables_and_parquet_roundtrip_on_object_storage(tmp_path):
    base = UPath("memory://lem-test/assets")
    tables = read_tables(fake_gpu_result(tmp_path))
    io = ResultTablesIOManager(base_path=base)
    key = dg.AssetKey("raw_measurements")
    io.dump_to_path(dg.build_output_context(asset_key=key), tables, base / "raw" / "x")
    names = sorted(p.name for p in (base / "raw" / "x").iterdir())
    assert names == sorted(["summary.json", *(f"{name}.parquet" for name in TABLES)])
    back = io.load_from_path(dg.build_input_context(asset_key=key), base / "raw" / "x")
    assert tables_digest(back) == tables_digest(tables)

    pq_io = ParquetIOManager(base_path=base)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    pq_io.dump_to_path(dg.build_output_context(asset_key=dg.AssetKey("s")), frame, base / "s.parquet")
    pd.testing.assert_frame_equal(pq_io.load_from_path(dg.build_input_context(asset_key=dg.AssetKey("s")), base / "s.parquet"), frame)

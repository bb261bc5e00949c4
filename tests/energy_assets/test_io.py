"""IO managers on a non-local UPath (fsspec's in-memory filesystem stands in for object storage)."""

import dagster as dg
import pandas as pd
from upath import UPath

from energy_assets.io import ParquetIOManager, ResultTablesIOManager
from gpu_ops.results import TABLES, ResultFolder


def test_result_folders_are_stored_as_they_are_and_parquet_roundtrips_on_object_storage(good_gpu_result, tmp_path):
    """The measured folder's files are stored byte for byte (encoded once, by the runner), locally and remotely."""
    result = ResultFolder.read(good_gpu_result)
    written = {p.name: p.read_bytes() for p in result.folder.iterdir()}
    assert sorted(written) == sorted(["summary.json", *(f"{name}.parquet" for name in TABLES)])
    key = dg.AssetKey("raw_measurements")
    for base in (UPath("memory://lem-test/assets"), UPath(tmp_path / "assets")):
        io = ResultTablesIOManager(base_path=base)
        io.dump_to_path(dg.build_output_context(asset_key=key), result, base / "raw" / "x")
        assert {p.name: p.read_bytes() for p in (base / "raw" / "x").iterdir()} == written
        back = io.load_from_path(dg.build_input_context(asset_key=key), base / "raw" / "x")
        assert back.summary["content_hash"] == result.content_hash

    pq_io = ParquetIOManager(base_path=base)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    pq_io.dump_to_path(dg.build_output_context(asset_key=dg.AssetKey("s")), frame, base / "s.parquet")
    pd.testing.assert_frame_equal(
        pq_io.load_from_path(dg.build_input_context(asset_key=dg.AssetKey("s")), base / "s.parquet"), frame
    )

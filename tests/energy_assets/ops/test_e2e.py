"""Webserver and daemon as subprocesses; a partition launched through GraphQL (the UI's path); the
automation sensor builds statistics and the leaderboard; provenance read back."""

import time

import dagster as dg
import pandas as pd
import pytest

from energy_assets.ops.local import Platform, prepare_home
from energy_assets.resources import StorageResource
from tests.energy_assets.conftest import HW, experiment_config

pytestmark = pytest.mark.slow


def test_launch_through_graphql_and_trace_leaderboard_back(tmp_path, monkeypatch):
    home, storage_dir = prepare_home(tmp_path / "home", "sqlite"), tmp_path / "storage"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LEM_STORAGE", str(storage_dir))
    storage = StorageResource(base_path=str(storage_dir))
    storage.register_experiment("builtin-tiny-llama__pytorch", HW, experiment_config("tiny", "builtin:tiny-llama"))
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("experiment", ["builtin-tiny-llama__pytorch"])
    instance.add_dynamic_partitions("hardware", [HW])
    with Platform(home, storage_dir) as platform:
        run_id = platform.launch_partition("builtin-tiny-llama__pytorch", HW)
        assert platform.wait_run(run_id) == "SUCCESS"
        run = instance.get_run_by_id(run_id)
        assert run.tags["dagster/partition"] == f"builtin-tiny-llama__pytorch|{HW}"
        deadline = time.monotonic() + 240
        while (
            time.monotonic() < deadline
            and instance.get_latest_materialization_event(dg.AssetKey("leaderboard")) is None
        ):
            time.sleep(2)
        ev = instance.get_latest_materialization_event(dg.AssetKey("leaderboard"))
        assert ev is not None, "the automation sensor did not build the leaderboard"
        # after a leaderboard update whose checks passed: the dataset snapshot, its (dry-run) publish and the site
        downstream = [dg.AssetKey(k) for k in ("hf_dataset_snapshot", "hf_dataset_publish", "leaderboard_site")]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(
            instance.get_latest_materialization_event(k) is None for k in downstream
        ):
            time.sleep(2)
        missing = [k.to_user_string() for k in downstream if instance.get_latest_materialization_event(k) is None]
        assert not missing, f"automation did not materialize {missing}"
        # publishing waited for the leaderboard's checks: each one ran on the leaderboard the site was built from
        # (after `make demo` all three read "Not Evaluated" and the site was built anyway)
        from energy_assets.assets.checks import LEADERBOARD_CHECKS

        board = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("leaderboard")), limit=1)
        keys = [spec.key for check in LEADERBOARD_CHECKS for spec in check.check_specs]
        executions = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
        for key in keys:
            evaluation = executions[key].evaluation
            assert evaluation is not None and evaluation.passed, key.name
            assert evaluation.target_materialization_data.storage_id == board.records[0].storage_id, key.name
        publish = instance.get_latest_materialization_event(
            dg.AssetKey("hf_dataset_publish")
        ).asset_materialization.metadata
        assert publish["mode"].value == "dry-run" and publish["committed"].value is False
    assert (storage_dir / "site" / "index.html").is_file() and (storage_dir / "hf_dataset" / "README.md").is_file()
    lb = pd.read_parquet(storage_dir / "assets" / "leaderboard.parquet")
    assert len(lb) == 1
    row = lb.iloc[0]
    assert row.raw_run_id == run_id and row.partition_key == f"builtin-tiny-llama__pytorch|{HW}"
    raw = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_measurements"), asset_partitions=[row.partition_key]), limit=1
    ).records[0]
    assert raw.storage_id == row.raw_storage_id and raw.run_id == run_id
    stats_runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": row.partition_key}))
    assert len(stats_runs) >= 2  # the measure run, and the automation run that computed statistics

"""raw_measurements on the engine server (gpu_ops.serve): two Dagster runs of a partition, one warm engine."""

import os
import threading
from pathlib import Path

import dagster as dg
import pytest

from energy_assets.assets.raw import raw_measurements
from energy_assets.resources import GpuResource
from tests.energy_assets.conftest import HW, add_partitions, experiment_config


@pytest.fixture
def server(tmp_path):
    from gpu_ops.serve import EngineServer

    srv = EngineServer(Path(f"/tmp/lem-raw-{os.getpid()}-{tmp_path.name[-12:]}.sock"), tmp_path / "cache")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.close()


def test_raw_measurements_reuse_the_servers_engine_across_runs(server, storage, resources, instance, monkeypatch):
    from gpu_ops.serve import SERVER_ENV, status

    key = "builtin-tiny-llama__pytorch"
    storage.register_experiment(key, HW, experiment_config("tiny", "builtin:tiny-llama"))
    add_partitions(instance, [key], [HW])
    monkeypatch.setenv(SERVER_ENV, str(server.path))  # what the worker and the local platform set for their runs
    assert GpuResource().server() == str(server.path)
    runs = [
        dg.materialize([raw_measurements], partition_key=f"{key}|{HW}", instance=instance, resources=resources)
        for _ in range(2)
    ]
    tables = [r.output_for_node("raw_measurements").tables for r in runs]
    assert not tables[0].cycles.engine_reused.any() and tables[1].cycles.engine_reused.all()
    (engine,) = status(server.path)["engines"]
    assert set(tables[0].cycles.engine_id) == set(tables[1].cycles.engine_id) == {engine["engine_id"]}
    meta = instance.get_latest_materialization_event(dg.AssetKey("raw_measurements")).asset_materialization.metadata
    assert meta["engines"].value == f"{engine['engine_id']}: warm (reused)"
    fields = {r.data["field"]: r.data["value"] for r in meta["environment"].value.records}
    assert '"synthetic_weights":"unused"' in fields["caches"] and engine["engine_id"] in fields["engines"]

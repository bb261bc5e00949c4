"""The platform on the real PostgreSQL at 127.0.0.1:5432, in a database of its own per test run."""

import dagster as dg
import pytest

from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.raw import raw_measurements
from energy_assets.assets.stats import cycle_statistics
from tests.energy_assets.conftest import HW, add_partitions, experiment_config

pytestmark = pytest.mark.services


def test_materialize_on_postgres_instance(tmp_path, pg_database, storage, resources):
    overrides = {"storage": {"postgres": {"postgres_url": pg_database}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        storage.register_experiment("builtin-tiny-llama__pytorch", HW, experiment_config("tiny", "builtin:tiny-llama"))
        add_partitions(instance, ["builtin-tiny-llama__pytorch"], [HW])
        key = f"builtin-tiny-llama__pytorch|{HW}"
        assert dg.materialize(
            [raw_measurements, cycle_statistics], partition_key=key, instance=instance, resources=resources
        ).success
        res = dg.materialize(
            [raw_measurements, cycle_statistics, leaderboard],
            selection=["leaderboard"],
            instance=instance,
            resources=resources,
        )
        assert res.success
        row = res.output_for_node("leaderboard").iloc[0]
        rec = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_measurements"), asset_partitions=[key]), limit=1
        ).records[0]
        assert (row.raw_run_id, row.raw_storage_id) == (rec.run_id, rec.storage_id)
    import psycopg2

    with psycopg2.connect(pg_database.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] == 2  # both runs landed in PostgreSQL

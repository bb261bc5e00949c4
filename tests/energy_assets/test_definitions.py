import dagster as dg

from energy_assets.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_measurements",
        "cycle_statistics",
        "leaderboard",
        "hf_dataset_snapshot",
        "hf_dataset_publish",
        "leaderboard_site",
    }
    assert graph.get(dg.AssetKey("hf_dataset_snapshot")).parent_keys == {
        dg.AssetKey(k) for k in ("leaderboard", "cycle_statistics", "raw_measurements")
    }
    assert graph.get(dg.AssetKey("hf_dataset_publish")).parent_keys == {dg.AssetKey("hf_dataset_snapshot")}
    assert graph.get(dg.AssetKey("cycle_statistics")).parent_keys == {dg.AssetKey("raw_measurements")}
    assert graph.get(dg.AssetKey("leaderboard")).parent_keys == {dg.AssetKey("cycle_statistics")}
    assert {s.name for s in defs.sensors} >= {"experiment_inbox", "results_inbox", "keep_statistics_current"}
    assert defs.resolve_job_def("measure") is not None
    assert {s.name for s in defs.sensors} >= {
        "notify_run_failure",
        "notify_check_failure",
        "notify_leaderboard",
        "notify_hf_publish",
    }
    assert defs.resolve_job_def("moderate_submission") is not None
    assert defs.resolve_job_def("submit_experiment") is not None
    checks = {c.name for c in graph.asset_check_keys}
    assert {
        "energy_present",
        "counter_timeline_agree",
        "enough_cycles",
        "every_row_has_provenance",
        "card_matches_files",
    } <= checks


def test_platform_loads_without_the_fleet_extra():
    """The GPU image carries no dagster-celery: the code location must load without it (Celery is imported only when
    LEM_EXECUTOR=celery), and asking for the Celery executor then names what is missing."""
    import subprocess
    import sys

    block = "import sys; sys.modules['dagster_celery'] = None; "
    ok = subprocess.run(
        [sys.executable, "-c", block + "import energy_assets.definitions as d; print(len(d.defs.sensors))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    celery = subprocess.run(
        [sys.executable, "-c", block + "import energy_assets.definitions"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "LEM_EXECUTOR": "celery"},
    )
    assert celery.returncode != 0 and "dagster_celery" in celery.stderr


def test_table_assets_carry_their_column_schema_with_units():
    """The UI lists every column of the raw tables, the statistics and the leaderboard from gpu_ops.schema."""
    from gpu_ops.schema import CYCLES, LEADERBOARD, PUBLISHED_STATISTICS, RESULT_TABLES

    graph = defs.resolve_asset_graph()
    for key, table in (
        ("raw_measurements", CYCLES),
        ("cycle_statistics", PUBLISHED_STATISTICS),
        ("leaderboard", LEADERBOARD),
    ):
        metadata = graph.get(dg.AssetKey(key)).metadata
        schema = metadata["dagster/column_schema"]
        columns = {c.name: c for c in schema.columns}
        assert list(columns) == list(table.names), key
        assert all(columns[c.name].tags.get("unit", "") == c.unit for c in table.columns), key
    assert columns["j_per_token_mean"].tags == {"unit": "J/token", "better": "lower"}
    raw = graph.get(dg.AssetKey("raw_measurements")).metadata
    assert {k for k in raw if k.endswith("_columns")} == {f"{n}_columns" for n in RESULT_TABLES if n != "cycles"}


def test_every_asset_has_owners_tags_and_kinds_and_every_check_a_description():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners and node.tags and node.kinds, key.to_user_string()
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        assert spec.description, check_key.name


def test_metadata_numbers_are_rounded_and_top_rows_are_a_typed_table():
    import pandas as pd

    from energy_assets.tables import rows_table, significant
    from gpu_ops.schema import LEADERBOARD, View

    assert significant(0.4611739049854989) == 0.4612 and significant(1454.26) == 1454.0 and significant(None) is None
    frame = pd.DataFrame({"sweep_point": ["a"], "j_per_token_mean": [0.123456789], "unstable": [pd.NA]})
    table = rows_table(frame, View("some_rows", LEADERBOARD, *frame.columns)).value
    assert table.records[0].data == {"sweep_point": "a", "j_per_token_mean": 0.1235, "unstable": None}
    assert {c.name: c.tags.get("unit") for c in table.schema.columns}["j_per_token_mean"] == "J/token"


def test_automation_runs_go_ahead_of_queued_measurements():
    sensor = next(s for s in defs.sensors if s.name == "keep_statistics_current")
    assert int(sensor.run_tags["dagster/priority"]) > 0  # measure runs carry the default priority, 0

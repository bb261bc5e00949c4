"""One schema: the tables a run writes, the statistics and the leaderboard have exactly the columns and types
gpu_ops/schema.py defines, and the engine's own records (WindowMeasurement, EngineStep) agree with it."""

import dataclasses
import typing

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_ops.backends.base import EngineStep
from gpu_ops.config import parse_config
from gpu_ops.energy.meter import WindowMeasurement
from gpu_ops.leaderboard import build_leaderboard
from gpu_ops.results import TABLES, read_tables
from gpu_ops.runner import run_experiment
from gpu_ops.schema import (
    ENGINE_STEP,
    LEADERBOARD,
    LEADERBOARD_PROVENANCE,
    RESULT_TABLES,
    STATISTICS,
    TIMELINE,
    WINDOW_READINGS,
    Column,
    Table,
)
from gpu_ops.stats import sweep_point_statistics

ARROW = {
    "str": (pa.large_string(), pa.string()),
    "float": (pa.float64(),),
    "int": (pa.int64(),),
    "int?": (pa.int64(),),
    "bool": (pa.bool_(),),
    "bool?": (pa.bool_(),),
    "list[float]": ("list<double>",),
}


def stored_types(folder, name: str) -> dict[str, str]:
    return {f.name: f.type for f in pq.read_schema(folder / f"{name}.parquet")}


def assert_stored_as_schema(folder, name: str) -> None:
    table, stored = RESULT_TABLES[name], stored_types(folder, name)
    fixed = [n for n in stored if not (table.free_prefix and n.startswith(table.free_prefix))]
    assert fixed == list(table.names), f"{name}: the columns written differ from gpu_ops/schema.py"
    for col in table.columns:
        t = stored[col.name]
        expected = ARROW[col.dtype]
        ok = (pa.types.is_list(t) and t.value_type == pa.float64()) if col.dtype == "list[float]" else t in expected
        assert ok, f"{name}.{col.name} is stored as {t}, the schema says {col.dtype}"


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, tiny_model_path):
    """A run on the CPU: energy unmeasured, so many columns hold no value at all (they must keep their types)."""
    cfg = parse_config(
        {
            "name": "schema",
            "model": "builtin:micro-llama",
            "device": "cpu",
            "max_input_tokens": 16,
            "max_output_tokens": 4,
            "min_output_tokens": 4,
            "prompts": {"count": 2},
            "cycles": 2,
            "warmup_requests": 1,
            "cooldown_s": 0,
            "energy": {"idle_baseline_s": 0},
            "sweep": {"batching.batch_size": [1, 2]},
        }
    )
    return run_experiment(cfg, tmp_path_factory.mktemp("schema"))


@pytest.mark.parametrize("name", TABLES)
def test_a_gpu_run_writes_exactly_the_schema(good_gpu_result, name):
    assert_stored_as_schema(good_gpu_result, name)


@pytest.mark.parametrize("name", TABLES)
def test_a_cpu_run_writes_exactly_the_schema_even_where_nothing_was_measured(cpu_run, name):
    """Unmeasured columns are typed and empty, not of Arrow's null type: tables from every machine share one schema."""
    assert_stored_as_schema(cpu_run.folder, name)


def test_statistics_and_leaderboard_have_the_schema_columns(good_gpu_result, cpu_run):
    frames = []
    for folder in (good_gpu_result, cpu_run.folder):
        t = read_tables(folder)
        st = sweep_point_statistics(t.cycles)
        assert list(st.columns) == list(STATISTICS.names)
        assert st.gpu_count.tolist() == t.cycles.groupby("sweep_point").gpu_count.first().tolist()
        frames.append(
            st.assign(
                experiment_key=t.experiment.experiment_key.iloc[0],
                partition_key="p",
                raw_run_id="r",
                raw_storage_id=1,
                raw_data_version="v",
                raw_code_version="c",
                stats_code_version="s",
                fingerprint_hash="f",
            )
        )
    board = build_leaderboard(pd.concat(frames, ignore_index=True))
    assert list(board.columns) == list(LEADERBOARD.names) and len(board) == 3
    assert sorted(board.gpu_count) == [0, 0, 1]  # carried from the cycles: the CPU run used none
    assert list(build_leaderboard(pd.DataFrame()).columns) == list(LEADERBOARD.names)
    assert set(LEADERBOARD_PROVENANCE.names) <= set(board.columns)


def test_the_meter_and_backend_records_agree_with_the_schema():
    """WindowMeasurement is stored flat as WINDOW_READINGS, EngineStep as ENGINE_STEP: same fields, same order, and
    types that fit the stored ones."""
    assert [f.name for f in dataclasses.fields(WindowMeasurement)] == list(WINDOW_READINGS.names)
    hints = typing.get_type_hints(EngineStep)
    assert list(hints) == list(ENGINE_STEP.names)
    assert all({"int": int, "float": float}[ENGINE_STEP[n].dtype] is t for n, t in hints.items())


def test_a_record_refuses_a_missing_or_unknown_column_and_the_frame_a_missing_value():
    values = dict(t_s=1.0, device="gpu0", power_w=80.0, temp_c=None, sm_clock_mhz=None, throttle_reasons=0)
    TIMELINE.record(**values)
    with pytest.raises(TypeError, match="power_w"):
        TIMELINE.record(**{k: v for k, v in values.items() if k != "power_w"})
    with pytest.raises(TypeError, match="watts"):
        TIMELINE.record(**values, watts=1.0)
    with pytest.raises(ValueError, match=r"timeline.throttle_reasons: missing in row 1; a int column needs a value"):
        TIMELINE.frame([TIMELINE.record(**values), TIMELINE.record(**{**values, "throttle_reasons": None})])
    with pytest.raises(ValueError, match=r"columns differ from gpu_ops/schema.py: missing \['throttle_reasons'\]"):
        TIMELINE.conform(pd.DataFrame([{k: v for k, v in values.items() if k != "throttle_reasons"}]))


def test_every_column_is_documented_once_per_table():
    tables = [v for v in vars(__import__("gpu_ops.schema", fromlist=["x"])).values() if isinstance(v, Table)]
    assert len(tables) > 15
    for table in tables:
        for col in table.columns:
            assert col.meaning and col.dtype in ARROW, f"{table.name}.{col.name}"
            assert not col.summarised or col.dtype == "float", f"{col.name}: only numbers are summarised"
    with pytest.raises(ValueError, match=r"table t: columns \['a'\] appear twice"):
        Table("t", Column("a", "str", "", "x"), Column("a", "float", "", "y"))


def test_every_view_label_and_unit_resolves_to_a_column_of_its_table():
    """Every reader's selection of columns (a Dagster preview, a notification, a page's table, the run summary) is a
    View in gpu_ops/schema.py: each of its names, labels and units belongs to a column of the table it views, so
    renaming a column is a change to that one file. Every View the module defines is checked, new ones included."""
    import gpu_ops.schema as schema

    views = {name: v for name, v in vars(schema).items() if isinstance(v, schema.View)}
    assert {
        "LEADERBOARD_TOP_ROWS",
        "STATISTICS_PREVIEW",
        "NOTIFIED_ROW",
        "DEMO_LEADERBOARD",
        "SITE_EMBED",
        "SITE_SLO",
        "SITE_DETAIL_CYCLES",
        "RUN_SUMMARY_FIGURES",
        "HEADLINE_FIGURES",
    } <= set(views)
    for name, view in views.items():
        assert isinstance(view.table, schema.Table) and len(view) > 0, name
        for shown in view:
            assert view.table[shown.name] is shown.column, (name, shown.name)
            assert shown.label and isinstance(shown.unit, str) and shown.scale > 0, (name, shown)
    both = set(schema.SITE_EMBED.names) & set(schema.SITE_SLO.names)
    assert set(schema.SITE_ROW_KEY) <= both  # the site's data name a row one way
    with pytest.raises(ValueError, match="not a column of table cycles"):
        schema.View("typo", schema.CYCLES, "j_per_tokn")
    default = schema.View("v", schema.CYCLES, "j_per_token", ("ttft_p50_s", "", "ms", 1000.0))
    assert [(f.label, f.unit, f.scale) for f in default] == [("energy", "J/token", 1.0), ("TTFT p50", "ms", 1000.0)]

"""campaign.json's wall time by kind: every second of a pass between its first run's start and its last run's end is
counted once, under the kind that spent it (energy_assets.ops.evidence.campaign_timing)."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from energy_assets.ops.evidence import campaign_timing
from gpu_ops.timing import OTHER, Span, SpanRecorder


def _record(run_id, partition, start, end, status="SUCCESS"):
    run = SimpleNamespace(run_id=run_id, tags={"dagster/partition": partition}, status=SimpleNamespace(value=status))
    return SimpleNamespace(dagster_run=run, start_time=start, end_time=end)


class _Instance:
    def __init__(self, records):
        self.records = records

    def get_run_records(self, filters):
        assert filters.job_name == "measure"
        return self.records


def _partition(storage, key, start, end, spans: list[Span], engines: list | None = None):
    experiment, hardware = key.split("|")
    folder = storage / "assets" / "raw_measurements" / experiment / hardware
    folder.mkdir(parents=True)
    cycles = [s for s in spans if s.kind == "cycle"]
    pd.DataFrame({"kind": ["cycle"] * len(cycles), "duration_s": [s.end - s.start for s in cycles]}).to_parquet(
        folder / "windows.parquet"
    )
    rec = SpanRecorder()
    rec.spans = spans
    wall = {"start": start, "end": end, "spans": rec.as_list()}
    summary = {"wall_time": wall, **({"fingerprint": {"engines": engines}} if engines is not None else {})}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_a_pass_is_broken_down_by_kind_and_the_kinds_sum_to_its_wall_time(tmp_path):
    # run a: starts at 100, measures 105-150 (engine 105-125 with 8 s compile, cycles 130-140 and 141-149), ends 153;
    # run b starts 160 (a 7 s queue gap), measures 164-190 on a warm engine, ends 191
    _partition(
        tmp_path,
        "a|h100",
        105.0,
        150.0,
        [
            Span("engine_start", 105.0, 125.0, "p", {"compile": 8.0}),
            Span("cycle", 130.0, 140.0, "p"),
            Span("cycle", 141.0, 149.0, "p"),
        ],
        engines=[{"engine_id": "e-1", "engine_start_s": 18.5, "engine_reused": False}],
    )
    _partition(tmp_path, "b|h100", 164.0, 190.0, [Span("idle_baseline", 164.0, 167.0), Span("cycle", 168.0, 188.0)])
    instance = _Instance([_record("r2", "b|h100", 160.0, 191.0), _record("r1", "a|h100", 100.0, 153.0)])
    t = campaign_timing(instance, tmp_path)
    kinds = t["wall_seconds_by_kind"]
    assert t["wall_s"] == 91.0 and sum(kinds.values()) == pytest.approx(91.0)
    assert kinds["cycle"] == pytest.approx(38.0) and t["share_in_windows"] == pytest.approx(38.0 / 91.0)
    assert kinds["process_start"] == pytest.approx(5.0 + 4.0) and kinds["queue_gap"] == pytest.approx(7.0)
    assert kinds["bookkeeping"] == pytest.approx(3.0 + 1.0)
    assert kinds["compile"] == pytest.approx(8.0) and kinds["engine_start"] == pytest.approx(12.0)
    assert kinds["idle_baseline"] == pytest.approx(3.0)
    assert kinds[OTHER] == pytest.approx(5.0 + 1.0 + 1.0 + 1.0 + 2.0)  # the measurements' unrecorded seconds
    by_run = {r["run_id"]: r for r in t["runs"]}
    assert sum(by_run["r1"]["seconds_by_kind"].values()) == pytest.approx(53.0)
    # each run's own engine start, from its engines' records (the span above also holds the previous engine's stop)
    assert by_run["r1"]["engine_start_s"] == pytest.approx(18.5) and by_run["r2"]["engine_start_s"] is None


def test_a_failed_run_counts_as_other_not_as_measured_time(tmp_path):
    _partition(tmp_path, "a|h100", 11.0, 19.0, [Span("cycle", 12.0, 18.0)])
    t = campaign_timing(_Instance([_record("r1", "a|h100", 10.0, 20.0, status="FAILURE")]), tmp_path)
    assert t["wall_seconds_by_kind"][OTHER] == pytest.approx(10.0) and t["wall_seconds_by_kind"]["cycle"] == 0.0

"""raw -> stats -> leaderboard materialised for real on CPU with the builtin models."""

import shutil

import dagster as dg
import pandas as pd
import pytest

from energy_assets.assets.checks import every_row_has_provenance, no_mixed_backends, synthetic_weights_flagged
from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.raw import FILE_SHA_TAG, SOURCE_TAG, UPLOAD_TAG, raw_measurements
from energy_assets.assets.stats import cycle_statistics
from energy_assets.tables import significant
from gpu_ops import rederive
from gpu_ops.leaderboard import PROVENANCE, build_leaderboard
from gpu_ops.stats import CV_UNSTABLE
from tests.energy_assets.conftest import HW, add_partitions, experiment_config

ASSETS = [
    raw_measurements,
    cycle_statistics,
    leaderboard,
    every_row_has_provenance,
    no_mixed_backends,
    synthetic_weights_flagged,
]


def materialize_partition(instance, resources, key, tags=None, raise_on_error=True):
    return dg.materialize(
        [raw_measurements, cycle_statistics],
        partition_key=key,
        instance=instance,
        resources=resources,
        tags=tags or {},
        raise_on_error=raise_on_error,
    )


def checks_of(result, blocking_only=True):
    """check name -> passed; the warn-level CV check depends on this machine's noise, so it is left out by default."""
    out = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    if blocking_only:
        out.pop("cv_under_threshold", None)
    return out


def test_two_partitions_to_leaderboard_with_provenance(storage, resources, instance, monkeypatch):
    storage.register_experiment("builtin-tiny-llama__pytorch", HW, experiment_config("tiny", "builtin:tiny-llama"))
    storage.register_experiment("builtin-small-llama__pytorch", HW, experiment_config("small", "builtin:small-llama"))
    add_partitions(instance, ["builtin-tiny-llama__pytorch", "builtin-small-llama__pytorch"], [HW])
    rederived = []  # the raw checks re-derive every figure: once per partition, by raw_measurements only
    monkeypatch.setattr(
        rederive, "derived_problems", lambda t, real=rederive.derived_problems: rederived.append(1) or real(t)
    )
    runs = {}
    shas = {"builtin-tiny-llama__pytorch": "ab" * 8, "builtin-small-llama__pytorch": "cd" * 8}  # as the inbox tags
    for exp in ("builtin-tiny-llama__pytorch", "builtin-small-llama__pytorch"):
        res = materialize_partition(instance, resources, f"{exp}|{HW}", tags={FILE_SHA_TAG: shas[exp]})
        assert res.success
        assert all(checks_of(res).values()), checks_of(res)
        runs[exp] = res.run_id
    assert len(rederived) == 2
    lb_res = dg.materialize(ASSETS, selection=["leaderboard"], instance=instance, resources=resources)
    assert lb_res.success
    lb = lb_res.output_for_node("leaderboard")
    assert len(lb) == 2 and set(lb.experiment_key) == set(runs)
    assert lb[list(PROVENANCE)].notna().all().all()
    for row in lb.itertuples():
        assert row.raw_run_id == runs[row.experiment_key]  # trace a number back to the run that measured it
        assert row.partition_key == f"{row.experiment_key}|{HW}"
        mat = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_measurements"), asset_partitions=[row.partition_key]),
            limit=1,
        ).records[0]
        assert row.raw_storage_id == mat.storage_id
        assert row.raw_data_version == mat.event_log_entry.asset_materialization.tags["dagster/data_version"]
    # CPU: energy is unmeasured, shown as such, never as zero
    assert (
        (lb.energy_status == "unmeasured").all()
        and lb.j_per_token_mean.isna().all()
        and lb.rank_j_per_token.isna().all()
    )
    # stored and shown, not ranked in any view, with the reason (docs/methodology.md)
    assert lb.rank_throughput.isna().all() and not lb.ranked.any() and (lb["flag"] == "synthetic weights").all()
    assert lb.not_ranked_reason.str.startswith("energy unmeasured").all()
    meta = instance.get_latest_materialization_event(dg.AssetKey("leaderboard")).asset_materialization.metadata
    assert "not ranked: energy unmeasured" in meta["top"].value and meta["dagster/row_count"].value == 2
    # ordered by a throughput fallback among the rows without energy, shown beside the reason (#29)
    assert lb.throughput_fallback_rank.notna().all() and lb.throughput_fallback_rank.is_monotonic_increasing
    assert all(f" · {label}" in meta["top"].value for label in lb.throughput_fallback_label)
    for row in lb.itertuples():  # one click from the leaderboard to the run (full id) and to the raw partition
        assert f"(/runs/{row.raw_run_id})" in meta["top"].value and len(row.raw_run_id) == 36
        assert f"partition={row.partition_key.replace('|', '%7C')})" in meta["top"].value
        assert row.file_sha == shas[row.experiment_key] and row.cv > 0 and row.unstable == (row.cv > CV_UNSTABLE)
    top = meta["top_rows"].value
    assert {r.data["raw_run_id"] for r in top.records} == set(runs.values())
    raw = instance.get_latest_materialization_event(dg.AssetKey("raw_measurements")).asset_materialization.metadata
    assert raw["config"].value.startswith("```yaml\n") and "model: builtin:" in raw["config"].value
    assert "\nmax_output_tokens: 8\n" in raw["config"].value and "\ncooldown_s: " in raw["config_resolved"].value
    fields = {r.data["field"] for r in raw["environment"].value.records}
    assert {"fingerprint_hash", "experiment_hash"} <= fields and "config_hash" not in fields  # the hash, by its name
    identity = raw["config_identity"].value
    assert all(f"`{name}`" in identity for name in ("file_sha", "experiment_hash", "sweep_point_hash"))
    assert raw["file_sha"].value in shas.values() and raw["file_sha"].value in identity
    stats = instance.get_latest_materialization_event(dg.AssetKey("cycle_statistics")).asset_materialization.metadata
    assert f"/runs/{runs['builtin-small-llama__pytorch']})" in stats["raw_run"].value


def test_energy_checks_on_cpu_say_skipped_and_name_the_partition(storage, resources, instance):
    storage.register_experiment("builtin-tiny-llama__pytorch", HW, experiment_config("tiny", "builtin:tiny-llama"))
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], [HW])
    res = materialize_partition(instance, resources, f"builtin-tiny-llama__pytorch|{HW}")
    described = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.description
        for e in res.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert described["counter_timeline_agree"].startswith(
        f"builtin-tiny-llama__pytorch|{HW}: skipped: energy unmeasured"
    )
    assert described["energy_present"].startswith(f"builtin-tiny-llama__pytorch|{HW}: ")
    assert "sweep point default" in described["cv_under_threshold"]


def test_uploaded_gpu_result_is_ingested_and_ranked(good_gpu_result, storage, resources, instance):
    shutil.copytree(good_gpu_result, storage.upload_dir("builtin-tiny-llama__pytorch", "h100-80gb-hbm3") / "upload1")
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], ["h100-80gb-hbm3"])
    res = materialize_partition(
        instance,
        resources,
        "builtin-tiny-llama__pytorch|h100-80gb-hbm3",
        tags={SOURCE_TAG: "upload", UPLOAD_TAG: "upload1"},
    )
    assert res.success and all(checks_of(res).values())
    st = res.output_for_node("cycle_statistics")
    assert st.energy_status.iloc[0] == "measured" and st.j_per_token_mean.iloc[0] > 0
    mat = instance.get_latest_materialization_event(dg.AssetKey("raw_measurements")).asset_materialization
    assert mat.metadata["source"].value == "upload" and "power_timeline" in mat.metadata
    worst = st.cross_check_rel_diff_mean.abs().max()  # plotted across materializations: a quantity that changes
    plotted = mat.metadata["counter_vs_timeline_worst"].value
    assert plotted == significant(plotted) and plotted >= worst * 0.999  # no cycle better than their mean


def test_blocking_check_failure_stops_statistics(good_gpu_result, storage, resources, instance):
    from gpu_ops.results import read_tables, write_tables

    t = read_tables(good_gpu_result)
    t.cycles.loc[0, "cross_check_rel_diff"] = 0.5  # counter and timeline disagree: a bad number
    dest = storage.upload_dir("builtin-tiny-llama__pytorch", "h100-80gb-hbm3") / "bad"
    write_tables(t, dest)
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], ["h100-80gb-hbm3"])
    res = materialize_partition(
        instance,
        resources,
        "builtin-tiny-llama__pytorch|h100-80gb-hbm3",
        tags={SOURCE_TAG: "upload", UPLOAD_TAG: "bad"},
        raise_on_error=False,
    )
    assert checks_of(res)["counter_timeline_agree"] is False
    assert not res.success
    assert instance.get_latest_materialization_event(dg.AssetKey("cycle_statistics")) is None  # never summarised


def test_wrong_hardware_partition_refused(storage, resources, instance):
    storage.register_experiment(
        "builtin-tiny-llama__pytorch",
        "h100-80gb-hbm3",
        experiment_config("tiny", "builtin:tiny-llama", hardware=["h100-80gb-hbm3"]),
    )
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], ["h100-80gb-hbm3"])
    res = dg.materialize(
        [raw_measurements],
        partition_key="builtin-tiny-llama__pytorch|h100-80gb-hbm3",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not res.success
    error = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
    err = error.message + (error.cause.message if error.cause else "")
    assert "partition asks for 'h100-80gb-hbm3'" in err and "upload a result folder" in err


def test_leaderboard_checks_fail_on_crafted_rows():
    rows = pd.DataFrame(
        [
            {
                "experiment_key": "m__pytorch",
                "hardware": "h",
                "sweep_point": "a",
                "model": "m",
                "backend": "vllm",
                "weights": "synthetic",
                "partition_key": "m__pytorch|h",
                "raw_run_id": None,
                "raw_storage_id": 1,
                "raw_data_version": "v",
                "raw_code_version": "c",
                "stats_code_version": "s",
                "config_hash": "x",
                "fingerprint_hash": "f",
                "j_per_token_mean": 0.1,
                "tokens_per_s_mean": 10.0,
                "batch_size": 1,
                "n_cycles": 3,
            }
        ]
    )
    lb = build_leaderboard(rows)
    provenance, backends = every_row_has_provenance(lb), no_mixed_backends(lb)
    assert provenance.passed is False and "m__pytorch|h / a" in provenance.description  # names the row at fault
    assert backends.passed is False and "m__pytorch|h / a" in backends.description
    assert synthetic_weights_flagged(lb).passed is True and lb["flag"].iloc[0] == "synthetic weights"
    lb.loc[0, "flag"] = ""
    unflagged = synthetic_weights_flagged(lb)
    assert unflagged.passed is False and "m__pytorch|h / a" in unflagged.description
    empty = build_leaderboard(pd.DataFrame())
    assert every_row_has_provenance(empty).passed and empty.empty


def test_too_few_cycles_never_reach_storage(storage, resources, instance):
    """enough_cycles gates before the statistics are stored: the leaderboard reads every stored partition."""
    key = f"builtin-tiny-llama__pytorch|{HW}"
    storage.register_experiment(
        "builtin-tiny-llama__pytorch", HW, experiment_config("tiny", "builtin:tiny-llama", cycles=2)
    )
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], [HW])
    res = materialize_partition(instance, resources, key, raise_on_error=False)
    assert not res.success and checks_of(res)["enough_cycles"] is False
    error = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
    assert (
        "1 sweep point(s) with fewer than 3 cycles (default); nothing was stored. Set cycles: 3"
        in error.message + str(error.cause)
    )
    assert instance.get_latest_materialization_event(dg.AssetKey("cycle_statistics")) is None
    assert not (storage.io_base() / "cycle_statistics").exists()
    lb = dg.materialize(ASSETS, selection=["leaderboard"], instance=instance, resources=resources).output_for_node(
        "leaderboard"
    )
    assert lb.empty


def test_leaderboard_markdown_shows_a_missing_ci_as_missing():
    from energy_assets.assets.leaderboard import top_markdown

    row = {
        **dict.fromkeys(PROVENANCE, "p"),
        "raw_storage_id": 1,
        "experiment_key": "m__pytorch",
        "hardware": "h",
        "sweep_point": "a",
        "model": "m",
        "backend": "pytorch",
        "weights": "real",
        "n_cycles": 1,
        "batch_size": 1,
        "energy_status": "measured",
        "j_per_token_mean": 0.25,
        "j_per_token_ci95": float("nan"),
        "tokens_per_s_mean": 10.0,
        "ttft_p50_pooled_s": 0.01,
    }
    text = top_markdown(build_leaderboard(pd.DataFrame([row])))
    assert "| 0.25 ± n/a |" in text and "± 0 " not in text


def test_a_re_measurement_outside_the_stored_interval_is_drift_with_history_slo_pick_and_conversions(
    good_gpu_result, storage, resources, instance
):
    from gpu_ops.schema import HISTORY

    key = "builtin-tiny-llama__pytorch|h100-80gb-hbm3"
    shutil.copytree(good_gpu_result, storage.upload_dir("builtin-tiny-llama__pytorch", "h100-80gb-hbm3") / "upload1")
    add_partitions(instance, ["builtin-tiny-llama__pytorch"], ["h100-80gb-hbm3"])
    # an earlier measurement of the same sweep point from another run, far from what this one measures
    earlier = HISTORY.record(
        partition_key=key,
        sweep_point="default",
        measured_at="2026-01-01T00:00:00+00:00",
        raw_run_id="earlier-run",
        figure="j_per_token",
        mean=1e3,
        ci95=1.0,
        drift=None,
    )
    storage.write_history(key, HISTORY.frame([earlier]))
    (storage.root / "conversions.yaml").write_text("instance: {grid_gco2e_per_kwh: 400, pue: 1.25}\n")
    res = materialize_partition(instance, resources, key, tags={SOURCE_TAG: "upload", UPLOAD_TAG: "upload1"})
    st = res.output_for_node("cycle_statistics")
    assert st.drift.tolist() == [True] and st.drift_previous_run_id.tolist() == ["earlier-run"]
    history = storage.history(key)
    assert history.raw_run_id.tolist() == ["earlier-run", st.raw_run_id.iloc[0]]
    board_run = dg.materialize(ASSETS, selection=["leaderboard"], instance=instance, resources=resources)
    board = board_run.output_for_node("leaderboard")
    assert "drift" in board.flag.iloc[0] and bool(board.drift.iloc[0]) is True
    assert board.gco2e_per_mtoken.iloc[0] == pytest.approx(board.j_per_token_mean.iloc[0] / 3.6 * 1.25 * 400)
    assert board.cost_per_mtoken.isna().all()  # no price set: unknown, never a default
    meta = board_run.asset_materializations_for_node("leaderboard")[0].metadata
    assert "ttft_p99=2s" in meta["slo"].value and "| verdict |" in meta["slo_pick"].value and meta["drift"].value == 1

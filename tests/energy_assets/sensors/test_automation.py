"""Sensors (experiment inbox, results inbox) and cron schedules, evaluated against a real instance."""

import datetime

import dagster as dg
import pytest
import yaml

from energy_assets.assets.raw import EXPERIMENT_HASH_TAG, FILE_SHA_TAG, SOURCE_TAG, SUBMITTER_TAG, UPLOAD_TAG
from energy_assets.resources import GpuResource
from energy_assets.sensors.automation import build_schedules, experiment_inbox, results_inbox
from gpu_ops.config import file_sha, load_config
from gpu_ops.results import read_tables, write_tables
from tests.energy_assets.conftest import (
    HW,
    SUBMITTER,
    add_partitions,
    experiment_config,
    experiment_yaml,
    moderate,
    register_submitter,
    signed_copy,
)


def evaluate(sensor, instance, cursor=None, **resources):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(ctx)
    for req in result.dynamic_partitions_requests or []:  # what the daemon would apply
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def test_experiment_inbox_good_changed_and_bad_files(storage, instance):
    inbox = storage.inbox_dir
    (inbox / "tiny.yaml").write_text(experiment_yaml("tiny", "builtin:tiny-llama"))
    (inbox / "small.yaml").write_text(experiment_yaml("small", "builtin:small-llama", hardware=["h100-80gb-hbm3", HW]))
    (inbox / "broken.yaml").write_text("name: broken\nmodel: builtin:tiny-llama\nbatching: {batch_sise: 4}\n")
    gpu = GpuResource()
    r1 = evaluate(experiment_inbox, instance, storage=storage, gpu=gpu)
    keys = sorted(r.partition_key for r in r1.run_requests)
    assert keys == sorted(
        [
            "builtin-small-llama__pytorch|h100-80gb-hbm3",
            f"builtin-small-llama__pytorch|{HW}",
            f"builtin-tiny-llama__pytorch|{HW}",
        ]
    )
    assert all(r.tags[SOURCE_TAG] == "measure" for r in r1.run_requests)
    tiny = next(r for r in r1.run_requests if r.partition_key.startswith("builtin-tiny"))  # its identity, on the run
    assert tiny.tags[FILE_SHA_TAG] == file_sha((inbox / "tiny.yaml").read_bytes())
    assert tiny.tags[EXPERIMENT_HASH_TAG] == experiment_config("tiny", "builtin:tiny-llama").config_hash()
    assert set(instance.get_dynamic_partitions("experiment")) == {
        "builtin-tiny-llama__pytorch",
        "builtin-small-llama__pytorch",
    }
    assert set(instance.get_dynamic_partitions("hardware")) == {HW, "h100-80gb-hbm3"}
    # the bad file is reported and kept (nothing lost); the good ones were registered
    assert "did you mean 'batch_size'" in (inbox / "broken.yaml.rejected.txt").read_text()
    assert (inbox / "broken.yaml").exists()
    assert storage.load_experiment("builtin-tiny-llama__pytorch", HW) == load_config(inbox / "tiny.yaml")  # as parsed

    r2 = evaluate(experiment_inbox, instance, cursor=r1.cursor, storage=storage, gpu=gpu)
    assert r2.run_requests == [] and r2.skip_reason  # unchanged: nothing new

    (inbox / "tiny.yaml").write_text(experiment_yaml("tiny", "builtin:tiny-llama", cycles=4))
    (inbox / "broken.yaml").write_text(experiment_yaml("broken", "builtin:tiny-llama", backend="tensorrt"))
    r3 = evaluate(experiment_inbox, instance, cursor=r2.cursor, storage=storage, gpu=gpu)
    assert [r.partition_key for r in r3.run_requests] == [
        f"builtin-tiny-llama__tensorrt|{HW}",
        f"builtin-tiny-llama__pytorch|{HW}",
    ]
    assert r3.run_requests[1].run_key not in {r.run_key for r in r1.run_requests}  # changed content: a new run
    assert not (inbox / "broken.yaml.rejected.txt").exists()  # fixed: the rejection note is gone
    assert storage.load_experiment("builtin-tiny-llama__pytorch", HW).cycles == 4


def test_results_inbox_holds_good_for_moderation_and_quarantines_bad(
    good_gpu_result, tmp_path, storage, instance, monkeypatch
):
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    signed_copy(good_gpu_result, storage.results_inbox_dir / "good", register_submitter(storage, tmp_path))
    t = read_tables(good_gpu_result)
    t.cycles.loc[1, "avg_power_w"] = 5000.0  # above the 700 W limit: physically impossible
    write_tables(t, storage.results_inbox_dir / "bad")
    (storage.results_inbox_dir / "garbage").mkdir()
    (storage.results_inbox_dir / "garbage" / "summary.json").write_text("{not json")

    held = evaluate(results_inbox, instance, storage=storage)
    [record] = storage.submissions()
    assert held.run_requests == [] and record["status"] == "pending" and (storage.pending_dir / record["name"]).is_dir()
    assert moderate(storage, instance, record["name"]).success
    res = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage)
    assert len(res.run_requests) == 1
    req = res.run_requests[0]
    assert req.tags[SUBMITTER_TAG] == SUBMITTER
    assert evaluate(results_inbox, instance, cursor=res.cursor, storage=storage).run_requests == []  # requested once
    assert req.partition_key == "builtin-tiny-llama__pytorch|h100-80gb-hbm3" and req.tags[SOURCE_TAG] == "upload"
    uploaded = storage.latest_upload("builtin-tiny-llama__pytorch", "h100-80gb-hbm3", req.tags[UPLOAD_TAG])
    assert uploaded is not None
    assert req.tags[EXPERIMENT_HASH_TAG] == read_tables(uploaded).experiment.config_hash.iloc[0]  # its identity
    assert "power_within_limit" in (storage.quarantine_dir / "bad" / "REASON.txt").read_text()
    assert "not valid JSON" in (storage.quarantine_dir / "garbage" / "REASON.txt").read_text()
    assert list(storage.results_inbox_dir.iterdir()) == []


def test_schedule_block_becomes_cron_schedule(storage, instance, monkeypatch):
    tiny_weekly = experiment_config(
        "tiny", "builtin:tiny-llama", schedule={"interval": "weekly", "at": "02:30", "days": ["sun", "wed"]}
    )
    storage.register_experiment("builtin-tiny-llama__pytorch", HW, tiny_weekly)
    storage.register_experiment("builtin-tiny-llama__pytorch", "h200", tiny_weekly)
    storage.register_experiment("builtin-small-llama__pytorch", HW, experiment_config("small", "builtin:small-llama"))
    # the registered definitions are configs the inbox parsed: reading them parses no YAML
    parsed_again = lambda *a: pytest.fail("a registered config was parsed again")  # noqa: E731
    for where in ("gpu_ops.strict_yaml", "gpu_ops.config"):  # the reader and the config's own name for it
        monkeypatch.setattr(f"{where}.parse_yaml", parsed_again)
    schedules = build_schedules(storage)
    assert [(s.name, s.cron_schedule) for s in schedules] == [
        (f"remeasure_builtin_tiny_llama__pytorch__{HW.replace('-', '_')}", "30 2 * * 0,3"),
        ("remeasure_builtin_tiny_llama__pytorch__h200", "30 2 * * 0,3"),
    ]
    add_partitions(instance, ["builtin-tiny-llama__pytorch", "builtin-small-llama__pytorch"], [HW, "h200"])
    for key in (f"builtin-tiny-llama__pytorch|{HW}", f"builtin-small-llama__pytorch|{HW}"):
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_measurements", partition=key))
    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.datetime(2026, 11, 29, 2, 30))
    requests = list(schedules[0](ctx))
    assert [r.partition_key for r in requests] == [f"builtin-tiny-llama__pytorch|{HW}"]
    assert requests[0].tags["lem/estimate_method"].startswith("roofline: CPU (fallback) profile")  # no history yet
    assert list(schedules[1](ctx)) == []  # the h200 partition was never measured: nothing to re-measure


def test_one_model_on_one_and_two_gpus_from_two_files_and_one_file_per_partition(storage, instance):
    """A scaling study: the 1-GPU and 2-GPU configs of one model/backend are separate partitions with their own
    files; a second file for an already defined partition is refused with the fix, until the first one leaves."""
    inbox, gpu, exp = storage.inbox_dir, GpuResource(), "builtin-tiny-llama__pytorch"
    (inbox / "tp1.yaml").write_text(experiment_yaml("tp1", "builtin:tiny-llama", hardware=["h200"]))
    (inbox / "dp2.yaml").write_text(
        experiment_yaml("dp2", "builtin:tiny-llama", hardware=["2x-h200"], gpus=[0, 1], parallelism={"data": 2})
    )
    (inbox / "tp2.yaml").write_text(
        experiment_yaml("tp2", "builtin:tiny-llama", hardware=["2x-h200"], gpus=[0, 1], parallelism={"tensor": 2})
    )
    r1 = evaluate(experiment_inbox, instance, storage=storage, gpu=gpu)
    assert [(r.partition_key, r.tags["lem/experiment_file"]) for r in r1.run_requests] == [
        (f"{exp}|2x-h200", "dp2.yaml"),
        (f"{exp}|h200", "tp1.yaml"),
    ]
    assert storage.load_experiment(exp, "h200").parallelism.label == "single"
    assert (
        storage.load_experiment(exp, "2x-h200").parallelism.label == "dp2"
        and storage.experiment_source(exp, "2x-h200") == "dp2.yaml"
    )
    reason = (inbox / "tp2.yaml.rejected.txt").read_text()
    assert f"partition {exp}|2x-h200 is defined by dp2.yaml" in reason and "sweep points of one file" in reason

    r2 = evaluate(experiment_inbox, instance, cursor=r1.cursor, storage=storage, gpu=gpu)
    assert (
        r2.run_requests == [] and r2.skip_reason.skip_message == "no new or changed experiment files"
    )  # reported once

    (inbox / "dp2.yaml").unlink()
    r3 = evaluate(experiment_inbox, instance, cursor=r2.cursor, storage=storage, gpu=gpu)
    assert [(r.partition_key, r.tags["lem/experiment_file"]) for r in r3.run_requests] == [
        (f"{exp}|2x-h200", "tp2.yaml")
    ]
    assert (
        storage.load_experiment(exp, "2x-h200").parallelism.label == "tp2"
        and not (inbox / "tp2.yaml.rejected.txt").exists()
    )


def test_a_copy_in_progress_waits_until_it_has_settled(good_gpu_result, tmp_path, storage, instance, monkeypatch):
    """rsync writes summary.json before the tables: such a folder is left alone while it changes, ingested once it
    has been unchanged for LEM_INBOX_SETTLE_S, and quarantined (naming what is missing) only if it stays incomplete."""
    import shutil
    import time

    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "1")
    signed = signed_copy(good_gpu_result, tmp_path / "signed", register_submitter(storage, tmp_path))
    copying = storage.results_inbox_dir / "copying"
    copying.mkdir()
    shutil.copy(signed / "summary.json", copying)
    r1 = evaluate(results_inbox, instance, storage=storage)
    assert r1.run_requests == [] and "waiting until it has been unchanged for 1 s" in r1.skip_reason.skip_message
    from gpu_ops.results import TABLES

    for name in [f"{table}.parquet" for table in TABLES] + ["signature.json"]:
        shutil.copy(signed / name, copying)
    assert "copying: changed" in evaluate(results_inbox, instance, storage=storage).skip_reason.skip_message
    time.sleep(1.1)
    evaluate(results_inbox, instance, storage=storage)
    assert [(r["name"].rsplit("-", 1)[0], r["status"]) for r in storage.submissions()] == [("copying", "pending")]
    assert list(storage.quarantine_dir.iterdir()) == []

    abandoned = storage.results_inbox_dir / "abandoned"
    abandoned.mkdir()
    shutil.copy(good_gpu_result / "summary.json", abandoned)
    time.sleep(1.1)
    assert evaluate(results_inbox, instance, storage=storage).run_requests == []
    assert (
        "experiment.parquet: missing; copy the whole result folder"
        in (storage.quarantine_dir / "abandoned" / "REASON.txt").read_text()
    )


def test_an_unexpected_error_quarantines_one_folder_and_keeps_the_others_requests(
    good_gpu_result, tmp_path, storage, instance, monkeypatch
):
    """Whatever goes wrong with one item (here an error no check foresaw) quarantines that item; folders before and
    after it in the same tick keep their run requests."""

    import energy_assets.sensors.automation as automation

    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    key = register_submitter(storage, tmp_path)
    from benchmarks.inbox_load import make_uploads

    make_uploads(
        good_gpu_result, tmp_path / "distinct", 3, key, SUBMITTER
    )  # three results (one content is one submission)
    for i, name in enumerate(("a-first", "b-boom", "c-last")):
        (tmp_path / "distinct" / f"upload-{i:04d}").rename(storage.results_inbox_dir / name)
    real = automation.read_tables

    def read(folder):
        if folder.name == "b-boom":
            raise RuntimeError("decoder exploded")
        return real(folder)

    monkeypatch.setattr(automation, "read_tables", read)
    evaluate(results_inbox, instance, storage=storage)
    assert sorted(r["name"].rsplit("-", 1)[0] for r in storage.submissions()) == ["a-first", "c-last"]
    reason = (storage.quarantine_dir / "b-boom" / "REASON.txt").read_text()
    assert (
        "result folder b-boom could not be read (RuntimeError: decoder exploded)" in reason
        and "drop a fresh copy" in reason
    )

    (storage.inbox_dir / "a.yaml").write_text(experiment_yaml("a", "builtin:tiny-llama"))
    (storage.inbox_dir / "b.yaml").write_text(experiment_yaml("b", "builtin:small-llama"))
    real_resolve = automation.resolve_model
    monkeypatch.setattr(
        automation,
        "resolve_model",
        lambda spec, build: (
            real_resolve(spec, build) if "tiny" in spec else (_ for _ in ()).throw(KeyError("registry down"))
        ),
    )
    r = evaluate(experiment_inbox, instance, storage=storage, gpu=GpuResource())
    assert [q.tags["lem/experiment_file"] for q in r.run_requests] == ["a.yaml"]
    assert (
        "b.yaml could not be read (KeyError: 'registry down')"
        in (storage.inbox_dir / "b.yaml.rejected.txt").read_text()
    )


def test_queued_runs_carry_their_estimate(storage, instance):
    """Each run the inbox queues is tagged with its predicted energy and time: from the stored raw partitions of
    that hardware when there are some, else from the profile's roofline, else the reason there is none."""
    import shutil
    from pathlib import Path

    from energy_assets.io import local_asset_dir

    measured = Path(__file__).resolve().parents[3] / "docs/benchmarks/raw/multigpu"
    stored = local_asset_dir(storage.io_base(), "raw_measurements") / "synthetic-llama-3.1-8b__pytorch" / "h200"
    shutil.copytree(measured / "llama8b-tp1__h200__20261127T092532Z-fb348794", stored)
    config = read_tables(stored).sweep_points.iloc[0].config_json
    data = yaml.safe_load(config)
    (storage.inbox_dir / "llama8b.yaml").write_text(yaml.safe_dump({**data, "hardware": ["h200", "l4", "rtx-9999"]}))
    result = evaluate(experiment_inbox, instance, storage=storage, gpu=GpuResource())
    tags = {r.partition_key.split("|")[1]: r.tags for r in result.run_requests}
    assert tags["h200"]["lem/estimate_method"].startswith("history: 1 nearest result on h200")
    assert tags["l4"]["lem/estimate_method"].startswith("history: 1 nearest result on h200, scaled")
    assert float(tags["l4"]["lem/estimate_wh"]) > 0 and float(tags["h200"]["lem/estimate_s"]) > 0
    low, high = map(float, tags["h200"]["lem/estimate_wh_range"].split("-"))
    assert low <= float(tags["h200"]["lem/estimate_wh"]) <= high
    assert tags["rtx-9999"]["lem/estimate_method"].startswith("none: hardware 'rtx-9999'")
    assert "lem/estimate_wh" not in tags["rtx-9999"]  # never a made-up figure


def test_statistics_follow_each_stored_partition_and_the_leaderboard_waits_for_them(instance):
    """On the H200 a campaign's statistics waited for the whole GPU queue: with unpartitioned raw checks, the partition
    being measured held every other partition's statistics back. With partitioned ones the leaderboard, which reads
    all partitions, must not be requested in the same tick as a partition's statistics: it would miss its rows and
    count them as handled (`make demo` once ranked one partition of two)."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    from energy_assets.definitions import defs
    from energy_assets.partitions import partition_key
    from gpu_ops.validation import RAW_CHECK_DESCRIPTIONS

    raw, stats, board = (dg.AssetKey(k) for k in ("raw_measurements", "cycle_statistics", "leaderboard"))
    stats_checks = [c.name for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key == stats]
    experiments = ["builtin-tiny-llama__pytorch", "builtin-small-llama__pytorch", "builtin-tiny-llama__vllm"]
    add_partitions(instance, experiments, [HW])
    pa, pb, pc = (str(partition_key(e, HW)) for e in experiments)

    def stored(key, partition, passed=True, checks=RAW_CHECK_DESCRIPTIONS):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
        ).records[0]
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        for name in checks:  # as a run evaluates them: against the materialization it just stored
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=name,
                    passed=passed,
                    partition=partition,
                    target_materialization_data=target,
                )
            )

    cursor, requested_checks = None, set()

    def tick():
        nonlocal cursor, requested_checks
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        requested_checks = {s.key for s in result._requested_subsets if isinstance(s.key, dg.AssetCheckKey)}
        return {str(p) for p in result.get_requested_partitions(stats)}, result.get_num_requested(board)

    assert tick() == (set(), 0)  # the sensor's first tick, before anything is stored
    stored(raw, pa)
    stored(raw, pb, passed=False)  # b's latest evaluation failed: as while its measurement is in flight
    assert tick() == ({pa}, 0)  # a's statistics go ahead of b's queue
    stored(stats, pa, checks=stats_checks)
    stored(raw, pc)  # stored before the next tick too
    assert tick() == ({pc}, 0)  # a's statistics are new, but the leaderboard waits for c's, requested now
    stored(stats, pc, checks=stats_checks)
    assert tick() == (set(), 1)  # then ranks both
    # with its checks in the same tick (so in its run): a leaderboard is never published unchecked
    assert {k.name for k in requested_checks if k.asset_key == board} == {
        "every_row_has_provenance",
        "no_mixed_backends",
        "synthetic_weights_flagged",
    }


def test_platform_runs_wait_while_a_measurement_runs_on_the_same_host():
    """In the CPU demo the leaderboard, site and dataset runs ran during the tiny-llama measurement, on the same cores.
    With the instance's run queue (dagster.yaml) a queued automation run waits for the measurement on its host and
    starts once that ends; a measurement on a Celery worker elsewhere holds nothing here."""
    from pathlib import Path

    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    from energy_assets.sensors.automation import automation, measure_job

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="energy_assets.definitions"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "__ASSET_JOB")

    queue = yaml.safe_load((Path(__file__).resolve().parents[3] / "dagster.yaml").read_text())["run_coordinator"]
    with dg.instance_for_test(overrides={"run_coordinator": queue}) as instance:
        measuring = create_run_for_test(
            instance,
            job_name="measure",
            status=DagsterRunStatus.STARTED,
            tags={**measure_job.tags, "dagster/partition/hardware": "cpu-x"},
        )
        platform = create_run_for_test(
            instance,
            job_name="__ASSET_JOB",
            status=DagsterRunStatus.QUEUED,
            tags=dict(automation.run_tags),
            remote_job_origin=origin,
        )
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

        def dequeued() -> list[str]:
            return [r.run_id for r in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)]

        assert dequeued() == []  # the measurement holds its host
        instance.report_run_canceled(measuring)
        assert dequeued() == [platform.run_id]

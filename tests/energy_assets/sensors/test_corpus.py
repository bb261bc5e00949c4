"""The hostile-input corpus (tests/corpus.py) against the real sensors and the real raw asset: every bad upload and
every bad experiment file is refused with a message naming its field, leaves nothing behind (no upload, no
registered experiment, no partition, nothing stored), and never stops a good one placed after it."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG, raw_measurements
from energy_assets.io import ResultTablesIOManager
from energy_assets.partitions import partition_key
from energy_assets.resources import GpuResource, safe_name
from energy_assets.sensors.automation import experiment_inbox, results_inbox
from gpu_ops.errors import UserError
from tests.corpus import GOOD_CONFIG, build_bad_configs, build_bad_uploads
from tests.energy_assets.conftest import HW, add_partitions, moderate, register_submitter, signed_copy
from tests.energy_assets.sensors.test_automation import evaluate

EXPERIMENT, HARDWARE = "builtin-tiny-llama__pytorch", "h100-80gb-hbm3"  # the good result's partition
RAW = dg.AssetKey("raw_measurements")


def files_under(root: Path) -> dict[Path, bytes]:
    return (
        {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}
    )


def test_bad_uploads_are_quarantined_and_a_good_one_after_them_is_ingested(
    good_gpu_result, tmp_path, storage, resources, instance, monkeypatch
):
    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    inbox = storage.results_inbox_dir
    cases = build_bad_uploads(good_gpu_result, inbox)
    assert len(cases) >= 40
    signed_copy(good_gpu_result, inbox / "zz-good", register_submitter(storage, tmp_path))  # after every bad one

    held = evaluate(results_inbox, instance, storage=storage)
    for _ in range(20):  # as the daemon would: on a loaded machine the folders may take more than one tick's budget
        if not any(inbox.iterdir()):
            break
        held = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage)
    [record] = storage.submissions()
    assert moderate(storage, instance, record["name"]).success
    res = evaluate(results_inbox, instance, cursor=held.cursor, storage=storage)

    [request] = res.run_requests
    assert request.partition_key == f"{EXPERIMENT}|{HARDWARE}" and request.tags[UPLOAD_TAG].startswith("zz-good-")
    for case in cases:
        reason = (storage.quarantine_dir / safe_name(case.name) / "REASON.txt").read_text()
        assert case.expect in reason, f"{case.name}: {reason}"
        assert len(reason) < 4000, f"{case.name}: the message quotes too much"
    assert list(inbox.iterdir()) == []
    # nothing of the bad ones anywhere: no upload, no partition, nothing stored
    assert [p.parent.relative_to(storage.uploads_dir) for p in storage.uploads_dir.rglob("summary.json")] == [
        Path(EXPERIMENT, HARDWARE, request.tags[UPLOAD_TAG])
    ]
    assert instance.get_dynamic_partitions("experiment") == [EXPERIMENT]
    assert instance.get_dynamic_partitions("hardware") == [HARDWARE]
    assert files_under(Path(storage.io_base().path)) == {}

    run = dg.materialize(
        [raw_measurements],
        partition_key=request.partition_key,
        instance=instance,
        resources=resources,
        tags=request.tags,
    )
    assert run.success
    assert (Path(storage.io_base().path) / "raw_measurements" / EXPERIMENT / HARDWARE / "summary.json").is_file()


def test_the_raw_asset_refuses_bad_uploads_and_stores_nothing(good_gpu_result, tmp_path, storage, resources, instance):
    """The second guard: folders put straight into uploads/ (never through the inbox) fail their run, naming each
    failed check, are moved to quarantine, and nothing lands in the raw asset's storage."""
    names = {
        "j-per-token-divided-by-10": "derived_values_match_raw",
        "energy-3x-power-limit": "power_within_limit",
        "checksums-removed": "tables.experiment.sha256",
        "hardware-dotdot": "not a valid partition slug",
    }
    build_bad_uploads(good_gpu_result, storage.upload_dir(EXPERIMENT, HARDWARE), only=set(names))
    add_partitions(instance, [EXPERIMENT], [HARDWARE])
    for name, expect in names.items():
        res = dg.materialize(
            [raw_measurements],
            partition_key=f"{EXPERIMENT}|{HARDWARE}",
            instance=instance,
            resources=resources,
            tags={SOURCE_TAG: "upload", UPLOAD_TAG: name},
            raise_on_error=False,
        )
        assert not res.success
        error = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0].event_specific_data.error
        message = error.message + (error.cause.message if error.cause else "")
        assert expect in message and "Nothing was stored; the " in message, message
        assert expect in (storage.quarantine_dir / name / "REASON.txt").read_text()
    assert instance.get_latest_materialization_event(RAW) is None
    assert files_under(Path(storage.io_base().path)) == {}
    assert list(storage.upload_dir(EXPERIMENT, HARDWARE).iterdir()) == []


def test_dot_and_dotdot_hardware_cannot_touch_another_partition(
    good_gpu_result, storage, resources, instance, monkeypatch
):
    """The data-destruction bug: a result whose hardware was `..` rmtree'd every raw partition, `.` every hardware
    partition of its experiment, and both became Dagster partitions."""
    shutil.copytree(good_gpu_result, storage.upload_dir(EXPERIMENT, HARDWARE) / "good")
    add_partitions(instance, [EXPERIMENT], [HARDWARE])
    assert dg.materialize(
        [raw_measurements],
        partition_key=f"{EXPERIMENT}|{HARDWARE}",
        instance=instance,
        resources=resources,
        tags={SOURCE_TAG: "upload", UPLOAD_TAG: "good"},
    ).success
    stored_before = files_under(Path(storage.io_base().path))
    uploads_before = files_under(storage.uploads_dir)
    assert stored_before

    monkeypatch.setenv("LEM_INBOX_SETTLE_S", "0")
    crafted = build_bad_uploads(
        good_gpu_result, storage.results_inbox_dir, only={"hardware-dotdot", "hardware-dot", "experiment-key-dotdot"}
    )
    res = evaluate(results_inbox, instance, storage=storage)
    assert res.run_requests == []
    for case in crafted:
        assert "not a valid partition slug" in (storage.quarantine_dir / case.name / "REASON.txt").read_text()
    assert files_under(Path(storage.io_base().path)) == stored_before  # byte for byte
    assert files_under(storage.uploads_dir) == uploads_before
    assert instance.get_dynamic_partitions("hardware") == [HARDWARE]
    assert instance.get_dynamic_partitions("experiment") == [EXPERIMENT]
    assert [r.partition_key for r in instance.fetch_materializations(RAW, limit=10).records] == [
        f"{EXPERIMENT}|{HARDWARE}"
    ]

    # no other door turns such a key into a path either
    io = ResultTablesIOManager(base_path=storage.io_base())
    context = dg.build_output_context(asset_key=RAW)
    for experiment, hardware in ((EXPERIMENT, ".."), (EXPERIMENT, "."), ("..", HARDWARE), (".", HARDWARE)):
        with pytest.raises(UserError, match="not a valid partition slug"):
            storage.upload_dir(experiment, hardware)
        with pytest.raises(UserError, match="not a valid partition slug"):
            storage.experiment_file(experiment, hardware)
        with pytest.raises(UserError, match="not a valid partition slug"):
            partition_key(experiment, hardware)
        with pytest.raises(UserError, match="not a valid partition slug"):
            io.get_path_for_partition(context, storage.io_base() / "raw_measurements", f"{experiment}/{hardware}")
    with pytest.raises(UserError, match="not a valid partition slug"):
        storage.latest_upload(EXPERIMENT, HARDWARE, "../../..")


def test_bad_experiment_files_are_refused_and_a_good_one_after_them_registers(storage, instance, monkeypatch):
    monkeypatch.setenv("LEM_INBOX_BATCH", "100")  # every file in one tick: batching is test_load's subject
    inbox = storage.inbox_dir
    cases = build_bad_configs(inbox)
    assert len(cases) >= 35
    (inbox / "zz-good.yaml").write_text(GOOD_CONFIG)  # sorted after every bad one

    r1 = evaluate(experiment_inbox, instance, storage=storage, gpu=GpuResource())

    assert [(r.tags["lem/experiment_file"], r.partition_key) for r in r1.run_requests] == [
        ("zz-good.yaml", f"builtin-tiny-llama__pytorch|{HW}")
    ]
    for case in cases:
        note = (inbox / (case.name + ".rejected.txt")).read_text()
        assert case.expect in note, f"{case.name}: {note}"
        assert len(note) < 2000, f"{case.name}: the message quotes too much"
        assert (inbox / case.name).is_symlink() or (inbox / case.name).exists()  # left in place, nothing lost
    registered = sorted(
        p.relative_to(storage.experiments_dir) for p in storage.experiments_dir.rglob("*") if p.is_file()
    )
    assert registered == [
        Path("builtin-tiny-llama__pytorch", f"{HW}.json"),
        Path("builtin-tiny-llama__pytorch", f"{HW}.origin"),
        Path("builtin-tiny-llama__pytorch", f"{HW}.source"),
    ]
    assert instance.get_dynamic_partitions("experiment") == ["builtin-tiny-llama__pytorch"]
    assert instance.get_dynamic_partitions("hardware") == [HW]

    r2 = evaluate(experiment_inbox, instance, cursor=r1.cursor, storage=storage, gpu=GpuResource())
    assert (
        r2.run_requests == [] and r2.skip_reason.skip_message == "no new or changed experiment files"
    )  # reported once

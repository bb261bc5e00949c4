"""The notification sensors evaluated against a real instance and a loopback webhook receiver: a failed run, a failed
blocking check, new leaderboard entries and a new #1, a dataset commit; a receiver that is down stops nothing."""

import dagster as dg
import pandas as pd
import pytest

from energy_assets.assets.raw import SOURCE_TAG, UPLOAD_TAG, raw_measurements
from energy_assets.sensors.notifications import (
    notify_check_failure,
    notify_hf_publish,
    notify_leaderboard,
    notify_run_failure,
)
from gpu_ops.results import read_tables, write_tables
from gpu_ops.schema import NOTIFIED_ROW
from tests.energy_assets.conftest import add_partitions, moderate
from tests.gpu_ops.test_notify import Receiver, _free_port

EXPERIMENT, HARDWARE = "builtin-tiny-llama__pytorch", "h100-80gb-hbm3"


@pytest.fixture
def receiver(storage):
    """A receiver subscribed (JSON) to every event through the instance's notify file in storage."""
    with Receiver() as rx:
        storage.root.mkdir(parents=True, exist_ok=True)
        (storage.root / "notify.yaml").write_text(
            f"notify:\n  webhooks:\n    - url: {rx.url()}\n  retries: {{attempts: 2, backoff_s: 0.1, total_s: 5}}\n"
        )
        yield rx


def _events(rx) -> list[str]:
    return [b["event"] for b in rx.bodies]


def test_a_failed_run_is_posted_with_its_error(storage, instance, receiver):
    result = moderate(storage, instance, "no-such-folder")
    assert not result.success
    failure = next(e for e in instance.all_logs(result.run_id) if e.dagster_event and e.dagster_event.is_run_failure)
    context = dg.build_run_status_sensor_context(
        sensor_name="notify_run_failure",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"storage": storage},
    ).for_run_failure()
    notify_run_failure(context)
    [body] = receiver.bodies
    assert body["event"] == "run_failure" and body["job"] == "moderate_submission" and body["run_id"] == result.run_id
    assert "'no-such-folder' is not pending moderation" in body["error"]


def test_a_failed_blocking_check_is_posted_once(good_gpu_result, storage, resources, instance, receiver):
    cursor = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    notify_check_failure(cursor)  # the first tick only starts watching
    tables = read_tables(good_gpu_result)
    tables.cycles.loc[1, "avg_power_w"] = 5000.0  # physically impossible: power_within_limit fails
    write_tables(tables, storage.upload_dir(EXPERIMENT, HARDWARE) / "bad")
    add_partitions(instance, [EXPERIMENT], [HARDWARE])
    run = dg.materialize(
        [raw_measurements],
        partition_key=f"{EXPERIMENT}|{HARDWARE}",
        instance=instance,
        resources=resources,
        tags={SOURCE_TAG: "upload", UPLOAD_TAG: "bad"},
        raise_on_error=False,
    )
    assert not run.success
    context = dg.build_sensor_context(instance=instance, cursor=cursor.cursor, resources={"storage": storage})
    notify_check_failure(context)
    failed = {
        e.asset_check_evaluation_data.check_name
        for e in run.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    }
    assert "power_within_limit" in failed and len(failed) < len(list(raw_measurements.check_specs))
    # one post per failed evaluation; the checks that passed in the same run are not news
    assert _events(receiver) == ["check_failure"] * len(failed) and {b["check"] for b in receiver.bodies} == failed
    body = receiver.bodies[0]
    assert (body["asset"], body["partition"], body["run_id"]) == (
        "raw_measurements",
        f"{EXPERIMENT}|{HARDWARE}",
        run.run_id,
    )
    notify_check_failure(
        dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"storage": storage})
    )
    assert len(receiver.bodies) == len(failed)  # posted once


def _board(storage, instance, rows):
    """A leaderboard materialization: its file where parquet_io_manager keeps it, and the event."""
    frame = pd.DataFrame(
        [(*r, *(None,) * (len(NOTIFIED_ROW) - len(r))) for r in rows],  # raw run and drift: unset unless given
        columns=list(NOTIFIED_ROW.names),
    )
    path = storage.io_base() / "leaderboard.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    instance.report_runless_asset_event(dg.AssetMaterialization("leaderboard"))


def test_new_entries_and_a_new_leader_per_hardware_are_posted(storage, instance, receiver):
    def tick(cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
        notify_leaderboard(ctx)
        return ctx.cursor

    cursor = tick(None)  # an empty instance: every entry to come is new
    a = ("tiny|h100", "bs4", "tiny", "h100", 0.5, 100.0, "local")
    b = ("small|h100", "bs4", "small", "h100", 0.8, 80.0, "alice-lab")
    _board(storage, instance, [a, b])
    cursor = tick(cursor)
    assert _events(receiver) == ["leaderboard_entry", "new_leader"]
    assert (
        receiver.bodies[0]["count"] == 2
        and "small bs4 on h100: 0.8 J/token (from alice-lab)" in receiver.bodies[0]["entries"]
    )
    assert receiver.bodies[1]["hardware"] == "h100" and receiver.bodies[1]["leader"].startswith("tiny bs4")

    assert tick(cursor) == cursor and len(receiver.bodies) == 2  # no new materialization: nothing sent
    c = ("big|h100", "bs8", "big", "h100", 0.3, 150.0, "bob")
    _board(storage, instance, [(*a[:4], 0.9, *a[5:]), b])  # a re-measured row: not new, and no longer #1
    cursor = tick(cursor)
    assert _events(receiver)[2:] == ["new_leader"] and receiver.bodies[2]["leader"].startswith("small")
    _board(storage, instance, [(*a[:4], 0.9, *a[5:]), b, c])
    tick(cursor)
    assert _events(receiver)[3:] == ["leaderboard_entry", "new_leader"]
    assert receiver.bodies[4]["leader"].startswith("big bs8") and receiver.bodies[4]["previous"] == "small|h100#bs4"


def test_a_dataset_commit_is_posted_and_a_dead_receiver_stops_nothing(storage, instance, receiver):
    """Evaluated as the daemon does (evaluate_tick: Dagster's direct call of an asset sensor drops its resources)."""
    ctx = dg.build_sensor_context(instance=instance, resources={"storage": storage})
    instance.report_runless_asset_event(
        dg.AssetMaterialization("hf_dataset_publish", metadata={"committed": False, "reason": "unchanged"})
    )
    notify_hf_publish.evaluate_tick(ctx)
    assert receiver.bodies == []
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "hf_dataset_publish",
            metadata={"committed": True, "repo_id": "org/energy", "commit": "abc123", "tag": "snapshot-1"},
        )
    )
    ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor, resources={"storage": storage})
    notify_hf_publish.evaluate_tick(ctx)
    [body] = receiver.bodies
    assert (body["event"], body["repo_id"], body["commit"]) == ("hf_publish", "org/energy", "abc123")

    (storage.root / "notify.yaml").write_text(
        f"notify:\n  webhooks:\n    - url: http://127.0.0.1:{_free_port()}/secret\n"
        "  retries: {attempts: 2, backoff_s: 0.1, total_s: 2}\n"
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization("hf_dataset_publish", metadata={"committed": True, "repo_id": "org/energy"})
    )
    ctx = dg.build_sensor_context(instance=instance, cursor=ctx.cursor, resources={"storage": storage})
    result = notify_hf_publish.evaluate_tick(ctx)
    assert "0/1 receiver(s) notified" in result.skip_message


def test_a_drifted_re_measurement_is_posted_once(storage, instance, receiver):
    def tick(cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage})
        notify_leaderboard(ctx)
        return ctx.cursor

    row = ("tiny|h100", "bs4", "tiny", "h100", 0.5, 100.0, "local", "run-1", None, "first measurement")
    _board(storage, instance, [row])
    cursor = tick(None)
    cursor = tick(cursor)
    drifted = (*row[:4], 0.7, *row[5:7], "run-2", True, "j_per_token 0.5 ± 0.01 -> 0.7 ± 0.01 J/token: outside")
    _board(storage, instance, [drifted])
    cursor = tick(cursor)
    assert "drift" in _events(receiver)
    body = receiver.bodies[_events(receiver).index("drift")]
    assert body["raw_run_id"] == "run-2" and "outside" in body["detail"]
    _board(storage, instance, [drifted])  # the same drifted run again: not news
    tick(cursor)
    assert _events(receiver).count("drift") == 1

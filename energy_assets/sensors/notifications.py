"""Notification sensors: a webhook POST on a failed run, a failed blocking check, a new leaderboard entry, a new #1
on a hardware profile, and a dataset commit to the HuggingFace Hub. The receivers are the instance's `notify:` block
(gpu_ops.notify). A sensor only reads the event log and posts: a receiver that is down costs a tick at most
`retries.total_s` and never fails a run.
"""

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from energy_assets.assets.checks import LEADERBOARD_CHECKS
from energy_assets.assets.leaderboard import leaderboard
from energy_assets.assets.publish import hf_dataset_publish, hf_dataset_snapshot
from energy_assets.assets.raw import raw_measurements
from energy_assets.assets.stats import cycle_statistics
from energy_assets.dagster_private import failed_check_records, last_check_record_id
from energy_assets.resources import StorageResource
from gpu_ops.errors import excerpt
from gpu_ops.notify import NotifyConfig, load_notify_config, notify
from gpu_ops.readable import number
from gpu_ops.schema import NOTIFIED_ROW

MAX_LISTED = 10  # entries named in one leaderboard notification; the rest are counted


def notify_config_path(storage: StorageResource) -> Path:
    return Path(os.environ.get("LEM_NOTIFY_CONFIG") or storage.root / "notify.yaml")


def send(context, storage: StorageResource, event: str, title: str, fields: dict) -> str:
    """Post one event to its subscribers and log each outcome (receivers by masked URL); returns a line for the tick."""
    try:
        config: NotifyConfig = load_notify_config(notify_config_path(storage))
    except Exception as exc:  # a broken file is reported, and the platform goes on
        context.log.error(f"notifications: {excerpt(str(exc), bare=True)}")
        return f"{event}: not sent, the notify config is invalid"
    deliveries = notify(config, event, title, fields, dict(os.environ))
    for d in deliveries:
        if d.delivered:
            context.log.info(f"notified {d.receiver} of {event} ({d.attempts} attempt(s))")
        else:
            context.log.warning(f"could not notify {d.receiver} of {event} after {d.attempts} attempt(s): {d.error}")
    return f"{event}: {sum(d.delivered for d in deliveries)}/{len(deliveries)} receiver(s) notified"


@dg.run_failure_sensor(
    name="notify_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Webhook POST for every failed run (with the failed step's error).",
)
def notify_run_failure(context: dg.RunFailureSensorContext, storage: StorageResource):
    run = context.dagster_run
    steps = context.get_step_failure_events()
    error = steps[0].event_specific_data.error if steps and steps[0].event_specific_data else None
    message = (
        (error.cause.message if error and error.cause else error.message) if error else context.failure_event.message
    )
    send(
        context,
        storage,
        "run_failure",
        f"run {run.run_id[:8]} of {run.job_name} failed",
        {
            "run_id": run.run_id,
            "job": run.job_name,
            "partition": run.tags.get("dagster/partition"),
            "source": run.tags.get("lem/source"),
            "error": message.strip(),
        },
    )


BLOCKING_CHECKS = [
    spec.key
    for definition in (raw_measurements, cycle_statistics, hf_dataset_snapshot, *LEADERBOARD_CHECKS)
    for spec in definition.check_specs
    if spec.blocking
]


def _run_partition(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The partition a run worked on (a failed check's record may not carry it)."""
    run = instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition") if run else None


@dg.sensor(
    name="notify_check_failure",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Webhook POST for every failed evaluation of a blocking asset check.",
)
def notify_check_failure(context: dg.SensorEvaluationContext, storage: StorageResource):
    after: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    sent = []
    for key in BLOCKING_CHECKS:
        name = key.to_user_string()
        if name not in after:  # newly watched: what failed before is not news
            after[name] = last_check_record_id(context.instance, key)
            continue
        for record in failed_check_records(context.instance, key, after[name]):
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            sent.append(
                send(
                    context,
                    storage,
                    "check_failure",
                    f"blocking check {key.name} failed on {key.asset_key.to_user_string()}",
                    {
                        "asset": key.asset_key.to_user_string(),
                        "check": key.name,
                        "partition": record.partition or _run_partition(context.instance, record.run_id),
                        "run_id": record.run_id,
                        "description": getattr(evaluation, "description", None),
                    },
                )
            )
            after[name] = record.id
    context.update_cursor(json.dumps(after, sort_keys=True))
    return dg.SkipReason("; ".join(sent) or "no failed blocking checks")


def _leaderboard_state(frame: pd.DataFrame) -> tuple[dict[str, dict], dict[str, str]]:
    """The rows by identity (partition and sweep point) and each hardware profile's #1 by J/token (measured rows)."""
    rows = {f"{r['partition_key']}#{r['sweep_point']}": r for r in frame.to_dict(orient="records")}
    measured = frame[frame.j_per_token_mean.notna()]
    best = measured.sort_values("j_per_token_mean", kind="stable").groupby("hardware", sort=True).head(1)
    leaders = {r["hardware"]: f"{r['partition_key']}#{r['sweep_point']}" for r in best.to_dict(orient="records")}
    return rows, leaders


def _drifted(frame: pd.DataFrame) -> list[str]:
    """The rows marked as drifted, as `partition#sweep point@raw run` (a new re-measurement that drifts is news)."""
    if "drift" not in frame:
        return []
    mine = frame[frame.drift.astype("boolean").fillna(False)]
    return [f"{r['partition_key']}#{r['sweep_point']}@{r['raw_run_id']}" for r in mine.to_dict(orient="records")]


def _describe(row: dict) -> str:
    jpt = row["j_per_token_mean"]
    energy = "unmeasured" if pd.isna(jpt) else f"{number(jpt, 4)} {NOTIFIED_ROW['j_per_token_mean'].unit}"
    return f"{row['experiment_key']} {row['sweep_point']} on {row['hardware']}: {energy} (from {row['submitter']})"


@dg.sensor(
    name="notify_leaderboard",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Webhook POSTs when a leaderboard materialization adds entries, changes a hardware profile's #1 "
    "(by J/token) or marks a re-measured row as drifted.",
)
def notify_leaderboard(context: dg.SensorEvaluationContext, storage: StorageResource):
    state = json.loads(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(leaderboard.key, limit=1, ascending=False).records
    if not records or (state is not None and records[0].storage_id <= state["after"]):
        if state is None:  # nothing yet: every entry to come is new
            context.update_cursor(json.dumps({"after": 0, "rows": [], "leaders": {}}))
        return dg.SkipReason("no new leaderboard")
    path = storage.io_base() / f"{leaderboard.key.path[-1]}.parquet"  # where parquet_io_manager stores it
    with path.open("rb") as fh:
        stored = pq.read_schema(fh).names
        fh.seek(0)
        frame = pq.read_table(fh, columns=[c for c in NOTIFIED_ROW.names if c in stored]).to_pandas()  # older: no drift
    rows, leaders = _leaderboard_state(frame)
    sent = []
    if state is not None:  # None: switched on with a leaderboard already there; it is the baseline, not news
        new = [rows[k] for k in rows if k not in set(state["rows"])]
        if new:
            listed = "; ".join(_describe(r) for r in new[:MAX_LISTED])
            more = f"; and {len(new) - MAX_LISTED} more" if len(new) > MAX_LISTED else ""
            sent.append(
                send(
                    context,
                    storage,
                    "leaderboard_entry",
                    f"{len(new)} new leaderboard entr{'y' if len(new) == 1 else 'ies'}",
                    {"entries": listed + more, "count": len(new)},
                )
            )
        for hardware, key in sorted(leaders.items()):
            if state["leaders"].get(hardware) != key:
                sent.append(
                    send(
                        context,
                        storage,
                        "new_leader",
                        f"new #1 on {hardware}",
                        {
                            "hardware": hardware,
                            "leader": _describe(rows[key]),
                            "previous": state["leaders"].get(hardware),
                        },
                    )
                )
    drifted = _drifted(frame)
    if state is not None:
        new_drift = [k for k in drifted if k not in set(state.get("drifted", []))]
        for key in new_drift[:MAX_LISTED]:
            row = rows[key.rsplit("@", 1)[0]]
            sent.append(
                send(
                    context,
                    storage,
                    "drift",
                    f"drift: {row['experiment_key']} {row['sweep_point']} on {row['hardware']}",
                    {"entry": _describe(row), "detail": row.get("drift_detail"), "raw_run_id": row.get("raw_run_id")},
                )
            )
    context.update_cursor(
        json.dumps(
            {"after": records[0].storage_id, "rows": sorted(rows), "leaders": leaders, "drifted": sorted(drifted)}
        )
    )
    return dg.SkipReason("; ".join(sent) or "leaderboard read: nothing new")


@dg.asset_sensor(
    asset_key=hf_dataset_publish.key,
    name="notify_hf_publish",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Webhook POST when the dataset is committed to the HuggingFace Hub.",
)
def notify_hf_publish(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, storage: StorageResource):
    metadata = {k: v.value for k, v in asset_event.asset_materialization.metadata.items()}
    if not metadata.get("committed"):
        return dg.SkipReason("publish run made no commit (unchanged, dry run or switched off)")
    fields = {k: metadata.get(k) for k in ("repo_id", "commit", "tag", "url", "content_hash") if k in metadata}
    return dg.SkipReason(send(context, storage, "hf_publish", f"dataset published to {fields.get('repo_id')}", fields))

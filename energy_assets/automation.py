"""Sensors and schedules (they replace the old daemon): experiment inbox, results inbox, cron re-measurement,
and the automation-condition sensor that keeps statistics and the leaderboard up to date."""


import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import dagster as dg

from energy_assets.fleet import measure_executor
from energy_assets.partitions import experiment_partitions, hardware_partitions, measurement_partitions, partition_key
from energy_assets.raw import SOURCE_TAG, UPLOAD_TAG
from energy_assets.resources import GpuResource, StorageResource
from gpu_ops.config import load_config
from gpu_ops.environment import validate_slug
from gpu_ops.errors import UserError
from gpu_ops.models import resolve_model
from gpu_ops.results import experiment_slug, read_tables
from gpu_ops.validation import blocking_failures, validate

measure_job = dg.define_asset_job(
    "measure", selection=dg.AssetSelection.assets("raw_measurements"), partitions_def=measurement_partitions,
    executor_def=measure_executor(),
    description="Measure (or ingest) one experiment x hardware partition. At most one run per hardware value runs at a time (dagster.yaml).",
)

automation = dg.AutomationConditionSensorDefinition(
    "keep_statistics_current", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=15,
)


def _adds(keys: dict[str, set[str]], context) -> list:
    out = []
    for pdef, name in ((experiment_partitions, "experiment"), (hardware_partitions, "hardware")):
        new = sorted(k for k in keys[name] if not context.instance.has_dynamic_partition(pdef.name, k))
        if new:
            out.append(pdef.build_add_request(new))
    return out


def _rejection_note(path: Path) -> Path:
    return path.with_name(path.name + ".rejected.txt")


@dg.sensor(job=measure_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Experiment YAMLs dropped into storage/inbox: validated, registered as partitions, measured.")
def experiment_inbox(context: dg.SensorEvaluationContext, storage: StorageResource, gpu: GpuResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests, keys, problems = [], {"experiment": set(), "hardware": set()}, []
    paths = sorted(storage.inbox_dir.glob("*.y*ml"))
    present = {p.name for p in paths}

    def reject(path: Path, message: str) -> None:
        """The file stays in place with a .rejected.txt beside it; each reason is reported once."""
        reason_file = _rejection_note(path)
        if not reason_file.is_file() or reason_file.read_text() != f"{message}\n":
            problems.append(f"{path.name}: {message}")
            context.log.error(f"experiment inbox: skipped {path.name}: {message}")
            reason_file.write_text(f"{message}\n")

    for path in paths:
        text = path.read_bytes()
        digest = hashlib.sha256(text).hexdigest()[:16]
        if seen.get(path.name) == digest:
            continue
        try:
            cfg = load_config(path)
            experiment = validate_slug(experiment_slug(resolve_model(cfg.model, build=False).slug, cfg.backend), "experiment")
            hardware = [validate_slug(h, "hardware") for h in (cfg.hardware or [gpu.local_profile(cfg.gpus)])]
        except UserError as exc:
            reject(path, str(exc))
            seen[path.name] = digest  # an invalid file is reported once per content; fixing it re-triggers
            continue
        conflict = next(((hw, owner) for hw in hardware if (owner := storage.experiment_source(experiment, hw)) not in (None, path.name)
                         and owner in present), None)
        if conflict:  # not marked seen: it registers once the other file leaves the inbox
            hw, other = conflict
            reject(path, f"partition {experiment}|{hw} is defined by {other}; one file defines a partition. To measure both "
                         f"configurations there, make them sweep points of one file (e.g. sweep: {{parallelism: [{{tensor: 2}}, "
                         f"{{data: 2}}]}}), or remove {other} from the inbox to let this file replace it")
            continue
        seen[path.name] = digest
        _rejection_note(path).unlink(missing_ok=True)
        for hw in hardware:
            storage.register_experiment(experiment, hw, text.decode(), source=path.name)
            keys["experiment"].add(experiment)
            keys["hardware"].add(hw)
            requests.append(dg.RunRequest(run_key=f"{path.name}:{digest}:{hw}", partition_key=partition_key(experiment, hw),
                                          tags={SOURCE_TAG: "measure", "lem/experiment_file": path.name, "lem/config_sha": digest}))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=_adds(keys, context), cursor=json.dumps(seen, sort_keys=True),
                           skip_reason=None if requests else dg.SkipReason("; ".join(problems) or "no new or changed experiment files"))


def _quarantine(storage: StorageResource, folder, reason: str) -> None:
    dest = storage.quarantine_dir / folder.name
    n = 1
    while dest.exists():
        dest = storage.quarantine_dir / f"{folder.name}.{n}"
        n += 1
    shutil.move(str(folder), dest)
    (dest / "REASON.txt").write_text(reason + "\n")


@dg.sensor(job=measure_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Result folders from standalone CLI runs: validated and ingested into their partition, or quarantined with a reason.")
def results_inbox(context: dg.SensorEvaluationContext, storage: StorageResource):
    requests, keys, notes = [], {"experiment": set(), "hardware": set()}, []
    for folder in sorted(p for p in storage.results_inbox_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (folder / "summary.json").is_file():
            continue  # still being copied: writers put summary.json last
        try:
            tables = read_tables(folder)
            experiment, hardware = tables.partition
            validate_slug(experiment, "experiment")
            validate_slug(hardware, "hardware")
            failed = blocking_failures(validate(tables))
            if failed:
                raise UserError("physics checks failed: " + "; ".join(f"{f.check}: {f.message}" for f in failed))
        except UserError as exc:
            _quarantine(storage, folder, str(exc))
            notes.append(f"quarantined {folder.name}: {exc}")
            context.log.warning(f"results inbox: quarantined {folder.name}: {exc}")
            continue
        dest_dir = storage.upload_dir(experiment, hardware)
        dest_dir.mkdir(parents=True, exist_ok=True)
        name = f"{folder.name}-{tables.summary['content_hash'][:8]}"
        dest = dest_dir / name
        if dest.exists():
            shutil.rmtree(folder)  # the same result uploaded twice
            continue
        os.rename(folder, dest)
        keys["experiment"].add(experiment)
        keys["hardware"].add(hardware)
        requests.append(dg.RunRequest(run_key=f"upload:{experiment}:{hardware}:{name}", partition_key=partition_key(experiment, hardware),
                                      tags={SOURCE_TAG: "upload", UPLOAD_TAG: name}))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=_adds(keys, context),
                           skip_reason=None if requests else dg.SkipReason("; ".join(notes) or "no new result folders"))


def _remeasure_schedule(experiment: str, hardware: str, schedule) -> dg.ScheduleDefinition:
    key = partition_key(experiment, hardware)

    @dg.schedule(name=f"remeasure_{re.sub(r'[^A-Za-z0-9_]', '_', f'{experiment}__{hardware}')}", cron_schedule=schedule.cron(),
                 job=measure_job, default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Re-measure {experiment} on {hardware} ({schedule.interval} at {schedule.at}).")
    def remeasure(context: dg.ScheduleEvaluationContext):
        if str(key) in context.instance.get_materialized_partitions(dg.AssetKey("raw_measurements")):
            yield dg.RunRequest(run_key=f"{key}@{context.scheduled_execution_time}", partition_key=key,
                                tags={SOURCE_TAG: "measure", "lem/trigger": "schedule"})

    return remeasure


def build_schedules(storage: StorageResource) -> list[dg.ScheduleDefinition]:
    """One cron schedule per registered partition definition with a `schedule:` block; it re-measures that partition
    if it was measured before. Read at code load: reload the code location after adding one."""
    schedules = []
    for experiment, hardware, path in storage.registered_experiments():
        try:
            cfg = load_config(path)
        except UserError:
            continue
        if cfg.schedule is not None:
            schedules.append(_remeasure_schedule(experiment, hardware, cfg.schedule))
    return schedules

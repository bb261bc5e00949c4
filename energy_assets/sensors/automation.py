"""Sensors and schedules (they replace the old daemon): experiment inbox, results inbox, cron re-measurement,
and the automation-condition sensor that keeps statistics and the leaderboard up to date."""

import datetime
import itertools
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from energy_assets.assets.raw import EXPERIMENT_HASH_TAG, FILE_SHA_TAG, SOURCE_TAG, SUBMITTER_TAG, UPLOAD_TAG
from energy_assets.fleet.executor import measure_executor
from energy_assets.fleet.fleet import host_tags, measure_tags
from energy_assets.io import local_asset_dir
from energy_assets.partitions import experiment_partitions, hardware_partitions, measurement_partitions, partition_key
from energy_assets.resources import GpuResource, StorageResource, printable, safe_name
from energy_assets.sensors.moderation import approved_not_requested, duplicate_reason, hold_for_moderation
from gpu_ops.config import ExperimentConfig, Schedule, file_sha, parse_config
from gpu_ops.environment import validate_slug
from gpu_ops.errors import ConfigError, UserError, excerpt
from gpu_ops.estimate import Measured, estimate, read_history
from gpu_ops.models import resolve_model
from gpu_ops.results import read_tables, write_file_atomic
from gpu_ops.signing import KeyRegistry, verify_folder
from gpu_ops.strict_yaml import MAX_CONFIG_BYTES, parse_yaml, read_config_bytes
from gpu_ops.validation import blocking_failures, failure_message, validate

measure_job = dg.define_asset_job(
    "measure",
    selection=dg.AssetSelection.assets("raw_measurements"),
    partitions_def=measurement_partitions,
    executor_def=measure_executor(),
    tags=measure_tags(),
    description="Measure (or ingest) one experiment x hardware partition. At most one run per hardware value runs at a "
    "time, and none beside another run on this host (dagster.yaml).",
)

# how often the inboxes and the automation tick (Dagster evaluates a sensor at most this often); the test suite and
# short demos set less
SENSOR_INTERVAL_S = int(os.environ.get("LEM_SENSOR_INTERVAL_S", "15"))

automation = dg.AutomationConditionSensorDefinition(
    "keep_statistics_current",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    # ahead of queued measurements: a partition's statistics and the leaderboard follow it as soon as it is stored,
    # not after the whole campaign (they take seconds; a campaign's queue takes as long as its GPU runs)
    # and on this host: they wait while a measurement runs here (fleet.HOST_TAG)
    run_tags={"dagster/priority": "1", **host_tags()},
    use_user_code_server=True,  # the leaderboard's condition is Python (energy_assets.assets.leaderboard)
)


_DIMENSIONS = ((experiment_partitions, "experiment"), (hardware_partitions, "hardware"))


def _adds(keys: dict[str, set[str]], context) -> list:
    out = []
    for pdef, name in _DIMENSIONS:
        new = sorted(k for k in keys[name] if not context.instance.has_dynamic_partition(pdef.name, k))
        if new:
            out.append(pdef.build_add_request(new))
    return out


def _missing_keys(context, experiment: str, hardware: str) -> list[tuple[str, str]]:
    """(dimension, key) of a partition's keys the instance does not have yet."""
    return [
        (dim, key)
        for (pdef, dim), key in zip(_DIMENSIONS, (experiment, hardware))
        if not context.instance.has_dynamic_partition(pdef.name, key)
    ]


LAUNCHED_BY_TAG = "lem/launched_by"  # who launched the experiment from the Launchpad, where the run said
ESTIMATE_TAG_CHARS = 200  # a tag is a label in the runs list, not a report


def platform_history(storage: StorageResource) -> list[Measured]:
    """The measured sweep points of the stored raw partitions (checked when they were ingested): an estimate's
    history. Empty when the assets live on object storage."""
    root = local_asset_dir(storage.io_base(), "raw_measurements")
    return read_history([root], checked=True)[0] if root is not None and root.is_dir() else []


def estimate_tags(cfg, hardware: str, history: list[Measured]) -> dict[str, str]:
    """A queued run's predicted energy and wall time (every sweep point, gpu_ops.estimate) as run tags, so the queue
    shows what each run will cost; a run that cannot be estimated still runs, its tag saying why."""
    try:
        points = estimate(cfg, hardware, history)
    except UserError as exc:
        return {"lem/estimate_method": f"none: {printable(str(exc))}"[:ESTIMATE_TAG_CHARS]}
    energy = {}
    if all(p.energy_j is not None for p in points):  # on a CPU a run measures no energy: no figure is made up
        wh = [sum(getattr(p.energy_j, k) for p in points) / 3600 for k in ("low", "mid", "high")]
        energy = {"lem/estimate_wh": f"{wh[1]:.3g}", "lem/estimate_wh_range": f"{wh[0]:.3g}-{wh[2]:.3g}"}
    return {
        **energy,
        "lem/estimate_s": f"{sum(p.wall_s.mid for p in points):.3g}",
        "lem/estimate_method": "; ".join(sorted({p.method for p in points}))[:ESTIMATE_TAG_CHARS],
    }


RELOAD_TIMEOUT_S = 45.0  # a code location loads in seconds; a sensor evaluation may take 60
INBOX_SETTLE_S = 30.0  # default of LEM_INBOX_SETTLE_S
TICK_BUDGET_S = 30.0  # a tick stops taking new items after this long; the rest wait for the next tick
INBOX_BATCH = 25  # default of LEM_INBOX_BATCH: new items one tick takes (~0.4 s each for an upload on 2 busy cores)


def inbox_batch() -> int:
    """How many new items one sensor tick takes: a backlog of hundreds is read in bounded ticks, each well under
    Dagster's sensor timeout (60 s), the rest left where they are (inbox files, or the cursor) for the next tick."""
    return max(1, int(os.environ.get("LEM_INBOX_BATCH", INBOX_BATCH)))


def _rejection_note(path: Path) -> Path:
    return path.with_name(path.name + ".rejected.txt")


def _reason(exc: Exception, what: str) -> str:
    """A refusal's message: a UserError names the field and the fix itself; anything else is unexpected input."""
    if isinstance(exc, UserError):
        return printable(str(exc))
    return (
        f"{what} could not be read ({type(exc).__name__}: {excerpt(str(exc), bare=True)}); it is not what "
        "llm-energy-measure writes: check it and drop a fresh copy"
    )


def _note_differs(note: Path, message: str) -> bool:
    """Whether the rejection note beside a file does not already say `message` (read only if a small regular file)."""
    try:
        st = os.lstat(note)
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(st.st_mode) or st.st_size > 2 * MAX_CONFIG_BYTES:
        return True
    return note.read_bytes() != f"{message}\n".encode()


def _entry_state(path: Path) -> str:
    """What identifies an inbox entry that cannot be read as a file (a link, a pipe, a folder): its type, size, time."""
    try:
        st = os.lstat(path)
    except OSError:
        return "gone"
    return f"unreadable:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}"


def _read_experiment(path: Path) -> bytes:
    """An inbox file's bytes: the file itself (a link could point anywhere), with a name we can report and store."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{printable(path.name)}: not a regular file (a link, folder, pipe or device); put the "
            "YAML file itself into the inbox"
        )
    if printable(path.name) != path.name or not path.name.isprintable():
        raise ConfigError(
            f"{printable(path.name)}: the file name is not printable UTF-8; rename it, e.g. to {safe_name(path.name)}"
        )
    return read_config_bytes(path)


class PartitionTaken(UserError):
    """Another file in the inbox defines one of this file's partitions: it waits until that file leaves the inbox."""


@dataclass(frozen=True)
class InboxExperiment:
    """An experiment file that passed every check: what registering it defines and queues."""

    name: str  # its file name in the inbox
    file_sha: str
    cfg: ExperimentConfig
    experiment: str
    hardware: list[str]


def inbox_names(inbox: Path) -> set[str]:
    """The experiment files in the inbox."""
    return {p.name for p in inbox.glob("*.y*ml")}


def check_experiment(
    text: bytes, name: str, storage: StorageResource, gpu: GpuResource, present: set[str]
) -> InboxExperiment:
    """Everything an experiment file passes before anything of it is registered, wherever it comes from (a file in the
    inbox, the Launchpad's form): the CLI's validation with its messages, a model that resolves, partition slugs, and
    no other file in the inbox (`present`) defining one of its partitions (PartitionTaken)."""
    cfg = parse_config(parse_yaml(text, name), name)
    resolve_model(cfg.model, build=False)  # an unknown model is refused here, not when it is measured
    experiment = validate_slug(cfg.experiment_key(), "experiment")
    hardware = [validate_slug(h, "hardware") for h in (cfg.hardware or [gpu.local_profile(cfg.gpus)])]
    for hw in hardware:
        other = storage.experiment_source(experiment, hw)
        if other not in (None, name) and other in present:
            raise PartitionTaken(
                f"partition {experiment}|{hw} is defined by {other}; one file defines a partition. To measure both "
                f"configurations there, make them sweep points of one file (e.g. sweep: {{parallelism: [{{tensor: 2}}, "
                f"{{data: 2}}]}}), or remove {other} from the inbox to let this file replace it"
            )
    return InboxExperiment(name, file_sha(text), cfg, experiment, hardware)


def queue_experiment(storage: StorageResource, item: InboxExperiment, history: list[Measured]) -> list[dg.RunRequest]:
    """Register the file's config as the definition of each of its partitions, with who launched it and when, and the
    run requests that measure them."""
    launch = storage.launch(item.file_sha) or {"file": item.name, "file_sha": item.file_sha, "via": "inbox"}
    origin = {**launch, "registered_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    launched = {LAUNCHED_BY_TAG: launch["launched_by"]} if launch.get("launched_by") else {}
    requests = []
    for hw in item.hardware:
        storage.register_experiment(item.experiment, hw, item.cfg, source=item.name, origin=origin)
        requests.append(
            dg.RunRequest(
                run_key=f"{item.name}:{item.file_sha}:{hw}",
                partition_key=partition_key(item.experiment, hw),
                tags={
                    SOURCE_TAG: "measure",
                    "lem/experiment_file": item.name,
                    FILE_SHA_TAG: item.file_sha,
                    EXPERIMENT_HASH_TAG: item.cfg.config_hash(),
                    **launched,
                    **estimate_tags(item.cfg, hw, history),
                },
            )
        )
    return requests


def _registered_schedule(storage: StorageResource, experiment: str, hardware: str) -> Schedule | None:
    try:
        return storage.load_experiment(experiment, hardware).schedule
    except (UserError, ValueError):  # not registered, or not a config this version reads
        return None


@dg.sensor(
    job=measure_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Experiment YAMLs dropped into storage/inbox (or launched with submit_experiment): validated, "
    "registered as partitions, measured.",
)
def experiment_inbox(context: dg.SensorEvaluationContext, storage: StorageResource, gpu: GpuResource):
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests, keys, problems = [], {"experiment": set(), "hardware": set()}, []
    paths = sorted(storage.inbox_dir.glob("*.y*ml"))
    present = {p.name for p in paths}

    def reject(path: Path, message: str) -> None:
        """The file stays in place with a .rejected.txt beside it; each reason is reported once."""
        note = _rejection_note(path)
        message = printable(message)
        if _note_differs(note, message):
            problems.append(f"{printable(path.name)}: {message}")
            context.log.error(f"experiment inbox: skipped {printable(path.name)}: {message}")
            try:
                write_file_atomic(note, f"{message}\n".encode())
            except OSError as exc:
                context.log.error(f"experiment inbox: could not write {printable(note.name)}: {exc}")

    deadline, batch, taken = time.monotonic() + TICK_BUDGET_S, inbox_batch(), 0
    history: list[Measured] | None = None
    schedules_changed = False
    for path in paths:
        if time.monotonic() > deadline or taken >= batch:
            problems.append(f"{taken} files this tick (LEM_INBOX_BATCH {batch}); the rest are read on the next tick")
            break
        digest = None
        try:  # one bad file, whatever it holds, is refused on its own: the others still run
            text = _read_experiment(path)
            digest = file_sha(text)
            if seen.get(path.name) == digest:
                continue
            taken += 1
            item = check_experiment(text, path.name, storage, gpu, present)
        except PartitionTaken as exc:  # not marked seen: it registers once the other file leaves the inbox
            reject(path, str(exc))
            continue
        except Exception as exc:
            digest = digest or _entry_state(path)  # unreadable: reported once per state of the entry
            if seen.get(path.name) != digest:
                reject(path, _reason(exc, printable(path.name)))
            seen[path.name] = digest  # an invalid file is reported once per content; fixing it re-triggers
            continue
        history = platform_history(storage) if history is None else history  # read once per tick, when needed
        before = [_registered_schedule(storage, item.experiment, hw) for hw in item.hardware]
        try:
            requests += queue_experiment(storage, item, history)
        except OSError as exc:  # not marked seen: retried on the next tick
            problems.append(f"{path.name}: could not be registered ({exc}); retried on the next tick")
            context.log.error(problems[-1])
            continue
        schedules_changed |= any(b != item.cfg.schedule for b in before)
        seen[path.name] = digest
        _rejection_note(path).unlink(missing_ok=True)
        keys["experiment"].add(item.experiment)
        keys["hardware"].update(item.hardware)
    if schedules_changed:
        reload_code_location(context)
    seen = {name: d for name, d in seen.items() if name in present}  # files that left the inbox are forgotten
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=_adds(keys, context),
        cursor=json.dumps(seen, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason("; ".join(problems) or "no new or changed experiment files"),
    )


def inbox_settle_s() -> float:
    return float(os.environ.get("LEM_INBOX_SETTLE_S", INBOX_SETTLE_S))


TEMP_SUFFIXES = (".tmp", ".part", ".partial", "~")  # what copy tools and editors name a file they are writing


def temporary_name(name: str) -> bool:
    """A name a writer gives an entry while it is being written (hidden, or with a temp suffix)."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def _unsettled(entry: Path, settle_s: float) -> str | None:
    """Why an inbox entry may still be being copied (something in it changed less than `settle_s` ago), or None.
    rsync and cp write summary.json before the tables and may keep the source's modification times, so the
    change time (which no copy tool can set) of the folder and of each entry is what counts."""
    if settle_s <= 0:
        return None
    stats = [os.lstat(entry)]
    if stat.S_ISDIR(stats[0].st_mode):
        with os.scandir(entry) as it:  # a result folder has 7 entries: the first 1000 tell enough
            stats += [e.stat(follow_symlinks=False) for e in itertools.islice(it, 1000)]
    age = time.time() - max(max(st.st_mtime, st.st_ctime) for st in stats)
    if age < settle_s:
        return (
            f"changed {max(age, 0):.0f} s ago: waiting until it has been unchanged for {settle_s:.0f} s "
            "(LEM_INBOX_SETTLE_S)"
        )
    return None


def _accept(folder: Path, registry: KeyRegistry) -> tuple[str, str, str, dict, str]:
    """Check one settled result folder, its content first, then its signature: (experiment, hardware, upload name,
    signature record, experiment_hash), or raise why not."""
    if printable(folder.name) != folder.name or not folder.name.isprintable():
        raise UserError(
            f"{printable(folder.name)}: the folder name is not printable UTF-8; rename it, e.g. to "
            f"{safe_name(folder.name)}, and copy it again"
        )
    tables = read_tables(folder)
    experiment, hardware = (validate_slug(v, what) for v, what in zip(tables.partition, ("experiment", "hardware")))
    failed = blocking_failures(validate(tables))
    if failed:
        raise UserError(failure_message(failed))
    signature = verify_folder(folder, tables.summary["content_hash"], registry)
    name = f"{safe_name(folder.name)}-{tables.summary['content_hash'][:8]}"
    return experiment, hardware, name, signature, str(tables.experiment.config_hash.iloc[0])


@dg.sensor(
    job=measure_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Result folders from standalone CLI runs: validated and signature-checked, then held in pending/ for "
    "a moderator (or quarantined with a reason); approved ones are ingested into their partition.",
)
def results_inbox(context: dg.SensorEvaluationContext, storage: StorageResource):
    requested: set[str] = set(json.loads(context.cursor)) if context.cursor else set()
    notes: list[str] = []
    try:  # the administrator's file: if it cannot be read, uploads wait (they are not refused for our mistake)
        registry = KeyRegistry.load(storage.submitters_file)
    except Exception as exc:
        registry = None
        notes.append(f"submitter registry unreadable, uploads wait: {_reason(exc, str(storage.submitters_file))}")
        context.log.error(notes[-1])
    if registry is not None:
        _hold_signed_uploads(context, storage, registry, notes)
    requests, new_keys, batch = [], {"experiment": set(), "hardware": set()}, inbox_batch()
    approved = approved_not_requested(storage, requested)  # approved by a moderator (moderate_submission)
    if len(approved) > batch:
        notes.append(f"{batch} of {len(approved)} approved uploads requested this tick (LEM_INBOX_BATCH)")
    for record in approved[:batch]:
        experiment, hardware, name = record["experiment"], record["hardware"], record["name"]
        try:
            missing = _missing_keys(context, experiment, hardware)
        except Exception as exc:  # the instance: tried again next tick
            notes.append(f"{name}: not requested this tick ({type(exc).__name__}: {excerpt(str(exc), bare=True)})")
            break
        for dim, key in missing:
            new_keys[dim].add(key)
        requested.add(name)
        requests.append(
            dg.RunRequest(
                run_key=f"upload:{experiment}:{hardware}:{name}",
                partition_key=partition_key(experiment, hardware),
                tags={
                    SOURCE_TAG: "upload",
                    UPLOAD_TAG: name,
                    SUBMITTER_TAG: record["submitter"],
                    **({EXPERIMENT_HASH_TAG: record["experiment_hash"]} if record.get("experiment_hash") else {}),
                },
            )
        )
    adds = [pdef.build_add_request(sorted(new_keys[dim])) for pdef, dim in _DIMENSIONS if new_keys[dim]]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=adds,
        cursor=json.dumps(sorted(requested)),
        skip_reason=None if requests else dg.SkipReason("; ".join(notes) or "no new result folders"),
    )


def _hold_signed_uploads(context, storage: StorageResource, registry: KeyRegistry, notes: list[str]) -> None:
    """Each settled inbox folder goes to pending/ (valid, signed by a registered submitter) or to quarantine/."""
    settle_s, deadline, batch, taken = inbox_settle_s(), time.monotonic() + TICK_BUDGET_S, inbox_batch(), 0
    for entry in sorted(storage.results_inbox_dir.iterdir()):
        if time.monotonic() > deadline or taken >= batch:
            notes.append(f"{taken} folders this tick (LEM_INBOX_BATCH {batch}); the rest are read on the next tick")
            break
        shown = printable(entry.name)
        try:  # whatever one entry holds, it is held or quarantined on its own: it never stops the others
            waiting = _unsettled(entry, settle_s)
            if waiting:
                notes.append(f"{shown}: {waiting}")
                continue
            taken += 1  # a settled entry: checked now, then held or quarantined
            if temporary_name(entry.name):  # a writer renames its temp folder into place when complete: this one
                raise UserError(  # was left behind (an interrupted copy), or was named so by mistake
                    f"{shown}: a hidden or temporary name (starting with '.' or ending in {', '.join(TEMP_SUFFIXES)}) "
                    f"unchanged for {settle_s:.0f} s: an interrupted copy, or a name the inbox does not take; copy "
                    "the result folder again under its own name"
                )
            experiment, hardware, name, signature, experiment_hash = _accept(entry, registry)
        except Exception as exc:
            reason = _reason(exc, f"result folder {shown}")
            try:
                where = storage.quarantine(entry, reason)
            except Exception as move_exc:  # left in place; it is tried again next tick, the others go on
                context.log.error(f"results inbox: could not quarantine {shown} ({move_exc}); reason: {reason}")
                continue
            notes.append(f"quarantined {shown}: {reason}")
            context.log.warning(f"results inbox: quarantined {shown} as {where.name}: {reason}")
            continue
        try:  # the file system: on failure the folder stays in the inbox for the next tick
            earlier = hold_for_moderation(storage, entry, name, (experiment, hardware), signature, experiment_hash)
        except Exception as exc:
            notes.append(f"{shown}: not moved this tick ({type(exc).__name__}: {excerpt(str(exc), bare=True)})")
            context.log.error(f"results inbox: {notes[-1]}")
            break
        if earlier is not None:
            notes.append(f"quarantined {shown}: {duplicate_reason(earlier)}")
        else:
            notes.append(f"{shown}: signed by {signature['submitter']}, pending moderation as {name}")
        context.log.info(f"results inbox: {notes[-1]}")


def _remeasure_schedule(storage: StorageResource, experiment: str, hardware: str, cfg) -> dg.ScheduleDefinition:
    key = partition_key(experiment, hardware)

    @dg.schedule(
        name=f"remeasure_{re.sub(r'[^A-Za-z0-9_]', '_', f'{experiment}__{hardware}')}",
        cron_schedule=cfg.schedule.cron(),
        job=measure_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Re-measure {experiment} on {hardware} ({cfg.schedule.interval} at {cfg.schedule.at}).",
    )
    def remeasure(context: dg.ScheduleEvaluationContext):
        if str(key) in context.instance.get_materialized_partitions(dg.AssetKey("raw_measurements")):
            yield dg.RunRequest(
                run_key=f"{key}@{context.scheduled_execution_time}",
                partition_key=key,
                tags={
                    SOURCE_TAG: "measure",
                    "lem/trigger": "schedule",
                    **estimate_tags(cfg, hardware, platform_history(storage)),
                },
            )

    return remeasure


def build_schedules(storage: StorageResource) -> list[dg.ScheduleDefinition]:
    """One cron schedule per registered partition definition with a `schedule:` block; it re-measures that partition
    if it was measured before. Read at code load: the daemon reloads the code every minute, and the experiment inbox
    has the webserver reload it when a registration changes a schedule (reload_code_location)."""
    schedules = []
    for experiment, hardware, _ in storage.registered_experiments():
        try:
            cfg = storage.load_experiment(experiment, hardware)
        except ValueError:  # not a config this version can read (pydantic's ValidationError is a ValueError)
            continue
        if cfg.schedule is not None:
            schedules.append(_remeasure_schedule(storage, experiment, hardware, cfg))
    return schedules


RELOAD_MUTATION = """mutation ($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename ... on WorkspaceLocationEntry { loadStatus } ... on PythonError { message } } }"""


def reload_code_location(context: dg.SensorEvaluationContext) -> None:
    """Have the webserver at LEM_DAGSTER_URL reload this code location, so a schedule that was registered, changed or
    removed shows in the UI (to turn on or off, with its next tick) without a reload by hand. The daemon needs none: it
    reloads its code every minute. Without LEM_DAGSTER_URL, or if the webserver does not answer, the log says so."""
    url, origin = os.environ.get("LEM_DAGSTER_URL"), context.code_location_origin
    if not url or origin is None:
        context.log.warning("a schedule changed: reload the code location in the UI to show it (set LEM_DAGSTER_URL)")
        return
    import requests

    try:
        r = requests.post(
            f"{url.rstrip('/')}/graphql",
            json={"query": RELOAD_MUTATION, "variables": {"name": origin.location_name}},
            timeout=RELOAD_TIMEOUT_S,
        )
        answer = r.json()["data"]["reloadRepositoryLocation"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        context.log.warning(f"a schedule changed, and the webserver at {url} could not reload the code location: {exc}")
        return
    context.log.info(f"a schedule changed: the webserver reloaded code location {origin.location_name} ({answer})")

"""`raw_measurements`: one partition = one experiment file's sweep, for one model/backend, on one hardware profile.

The asset either measures on this worker (its hardware must match the partition) or ingests a result
folder uploaded for that partition. Its blocking checks run before anything is stored: a result that fails
them never lands in the asset's storage (so statistics, the leaderboard, the dataset export and the site never
see it); it is kept in quarantine/ for inspection and the run fails naming each failed check.
"""

import base64
import json
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

from energy_assets.lineage import OWNERS
from energy_assets.partitions import measurement_partitions, split
from energy_assets.resources import GpuResource, StorageResource
from energy_assets.tables import schema_metadata, significant
from gpu_ops.errors import UserError
from gpu_ops.rederive import config_of
from gpu_ops.results import SIGNATURE_FILE, ResultFolder, ResultTables, file_sha256
from gpu_ops.runner import run_experiment
from gpu_ops.schema import CYCLES, RESULT_TABLES
from gpu_ops.serve import run_on_server
from gpu_ops.signing import read_signature
from gpu_ops.validation import RAW_CHECK_DESCRIPTIONS, blocking_failures, failure_message, validate

RAW_CODE_VERSION = "raw-v1"  # bump when the measurement method changes: downstream shows stale
SOURCE_TAG = "lem/source"  # "measure" (default) or "upload"
UPLOAD_TAG = "lem/upload"  # folder name under uploads/<experiment>/<hardware>/
SUBMITTER_TAG = "lem/submitter"  # who signed an approved upload (shown in the run list)
LOCAL_SUBMITTER = "local"  # the submitter of the platform's own measurements
UNSIGNED_SUBMITTER = "unsigned"  # a folder an operator put into uploads/ directly, not through the inbox
FILE_SHA_TAG = "lem/file_sha"  # sha256 of the experiment file's bytes (docs/platform.md, "One config identity")
EXPERIMENT_HASH_TAG = "lem/experiment_hash"  # hash of the whole resolved experiment
FILE_SHA_TAGS = (FILE_SHA_TAG, "lem/config_sha")  # runs submitted before the rename carry the second


def power_timeline_svg(tables: ResultTables, width: int = 640, height: int = 160) -> str | None:
    """A small SVG of the summed power timeline with cycle windows shaded: shown in the asset metadata."""
    tl = tables.timeline
    if tl.empty:
        return None
    p = tl.groupby("t_s", as_index=False).power_w.sum()
    t0, t1 = float(p.t_s.min()), float(p.t_s.max())
    pmax = float(p.power_w.max()) or 1.0

    def x(t):
        return (t - t0) / max(t1 - t0, 1e-9) * width

    def y(w):
        return height - w / pmax * (height - 10)

    shades = "".join(
        f'<rect x="{x(r.window_start_s):.1f}" width="{max(x(r.window_end_s) - x(r.window_start_s), 1):.1f}" y="0" '
        f'height="{height}" fill="#dbeafe"/>'
        for r in tables.cycles.itertuples()
    )
    pts = " ".join(f"{x(t):.1f},{y(w):.1f}" for t, w in zip(p.t_s, p.power_w))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{shades}'
        f'<polyline fill="none" stroke="#b91c1c" stroke-width="1.5" points="{pts}"/>'
        f'<text x="4" y="12" font-size="11">{pmax:.0f} W peak, {t1 - t0:.0f} s; shaded: measured cycles</text></svg>'
    )


def _measure(
    context, storage: StorageResource, gpu: GpuResource, experiment: str, hardware: str, work: Path
) -> ResultFolder:
    """Measure the partition on this worker; the result folder is written into `work` (on the storage's disk, so a
    refused one moves into quarantine/ as it is)."""
    cfg = storage.load_experiment(experiment, hardware)
    expected = cfg.experiment_key()
    if expected != experiment:
        raise UserError(f"registered file for '{experiment}' describes '{expected}'; re-register it through the inbox")
    with gpu.selected():
        local = gpu.local_profile(cfg.gpus)
        if local != hardware:
            raise UserError(
                f"this worker is '{local}' but the partition asks for '{hardware}': run it on a worker of that "
                f"profile, or upload a result folder measured there into the results inbox"
            )
        run = dict(
            progress=context.log.info,
            folder_name=f"{experiment}__{hardware}__{context.run.run_id[:8]}",
            file_sha=next((context.run.tags[t] for t in FILE_SHA_TAGS if context.run.tags.get(t)), None),
        )
        server = gpu.server()
        if server:  # the worker's warm engines: no process start, no engine start when the engine is unchanged
            context.log.info(f"measuring on the engine server {server}")
            return run_on_server(Path(server), cfg, work, visible_devices=gpu.visible_devices, **run)
        return run_experiment(cfg, work, **run)


@dg.asset(
    partitions_def=measurement_partitions,
    io_manager_key="tables_io_manager",
    code_version=RAW_CODE_VERSION,
    group_name="measurement",
    kinds={"pytorch", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            name, asset="raw_measurements", blocking=True, description=text, partitions_def=measurement_partitions
        )
        for name, text in RAW_CHECK_DESCRIPTIONS.items()
    ],
    description="Per-request, per-cycle, per-window tables and the power timeline of one experiment on one hardware "
    "profile.",
    metadata=schema_metadata(CYCLES, *(t for t in RESULT_TABLES.values() if t is not CYCLES)),
    owners=OWNERS,
    tags={"stage": "measurement"},
)
def raw_measurements(context: dg.AssetExecutionContext, storage: StorageResource, gpu: GpuResource):
    experiment, hardware = split(context.partition_key)
    source = context.run.tags.get(SOURCE_TAG, "measure")
    definition = None  # the inbox file that defined a measured partition
    # the folder a measurement writes lives until the IO manager has stored it (after the Output below)
    with tempfile.TemporaryDirectory(prefix="lem-run-", dir=storage.work_dir) as work:
        if source == "upload":
            name = context.run.tags.get(UPLOAD_TAG)
            folder = storage.latest_upload(experiment, hardware, name)
            if folder is None:  # e.g. removed from under its queued run: nothing is stored, the run can be retried
                where = storage.upload_dir(experiment, hardware)
                raise UserError(
                    f"no uploaded result folder{' ' + name if name else ''} for {experiment}|{hardware} under "
                    f"{where}; nothing was stored. To retry, put it back at {where / (name or '<folder>')} and "
                    "re-execute this run"
                )
            context.log.info(f"ingesting uploaded result {folder}")
            try:
                result = ResultFolder.read(folder)
                submitter = _signer(result)
            except UserError as exc:  # accepted by the inbox, edited since
                raise UserError(
                    f"{exc}. Nothing was stored; the folder is kept for inspection in "
                    f"{storage.quarantine(folder, str(exc))}"
                ) from None
        else:
            result = _measure(context, storage, gpu, experiment, hardware, Path(work))
            definition, submitter = storage.experiment_source(experiment, hardware), LOCAL_SUBMITTER
        tables = result.tables
        got = tables.partition
        findings = validate(tables)
        failed = blocking_failures(findings)
        if failed or got != (experiment, hardware):
            reason = (
                failure_message(failed)
                if failed
                else f"the result belongs to partition {got[0]}|{got[1]}, not {experiment}|{hardware}"
            )
            kept = storage.quarantine(result.folder, reason)  # the uploaded folder, or the measured one, as it is
            yield from _check_results(findings, context.partition_key)  # failed evaluations; nothing materialized
            raise UserError(f"{reason}. Nothing was stored; the result is kept for inspection in {kept}")
        file_sha = next((context.run.tags[t] for t in FILE_SHA_TAGS if context.run.tags.get(t)), None)
        yield dg.Output(
            result,
            metadata=_metadata(tables, source, definition, file_sha, submitter),
            data_version=dg.DataVersion(result.content_hash),
        )
    yield from _check_results(findings, context.partition_key)


def _signer(result: ResultFolder) -> str:
    """Who an uploaded result came from. The inbox lets only approved, signed folders into uploads/, and their
    signature must still cover what is there; a folder an operator put into uploads/ by hand is "unsigned"."""
    if not (result.folder / SIGNATURE_FILE).exists():
        return UNSIGNED_SUBMITTER
    signature = read_signature(result.folder)
    if (signature["content_hash"], signature["summary_sha256"]) != (
        result.content_hash,
        file_sha256(result.folder / "summary.json"),
    ):
        raise UserError(
            f"{result.folder}: its tables or summary.json differ from what {signature['submitter']} signed; the "
            "folder changed after it was approved"
        )
    return signature["submitter"]


def wall_time_table(wall: dict) -> dg.MetadataValue:
    """The measurement's wall time by kind (gpu_ops.timing.KINDS and `other`; they sum to the wall time): where the
    GPU time went besides the measured cycle windows."""
    rows = [
        dg.TableRecord({"kind": kind, "seconds": round(seconds, 3), "share": round(seconds / wall["wall_s"], 4)})
        for kind, seconds in wall["seconds"].items()
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("kind", "string", description="what the time went to (docs/metrics.md, 'Wall time')"),
            dg.TableColumn("seconds", "float", description="seconds of the measurement's wall time"),
            dg.TableColumn("share", "float", description="share of the measurement's wall time"),
        ]
    )
    return dg.MetadataValue.table(rows, schema=schema)


def environment_table(fingerprint: dict) -> dg.MetadataValue:
    """The environment fingerprint as a two-column table (nested values as compact JSON): readable in the UI. Its
    `config_hash` is the experiment's and is shown by that name."""
    rows = [
        dg.TableRecord(
            {
                "field": "experiment_hash" if k == "config_hash" else k,
                "value": v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(",", ":")),
            }
        )
        for k, v in sorted(fingerprint.items())
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("field", "string", description="fingerprint field"),
            dg.TableColumn("value", "string", description="its value (GPU and host ids hashed)"),
        ]
    )
    return dg.MetadataValue.table(rows, schema=schema)


def config_markdown(values: dict, note: str) -> dg.MetadataValue:
    """Config values as YAML in a code block. A config holds no secrets: credentials are never config fields (tokens
    come from the worker's environment)."""
    text = yaml.safe_dump(values, sort_keys=False).rstrip()
    return dg.MetadataValue.md(f"```yaml\n# {note}\n{text}\n```")


UNKNOWN_FILE = "unknown (an uploaded result, or a run started by hand)"


def identity_markdown(file_sha: str | None, exp, sweep_points: pd.DataFrame) -> dg.MetadataValue:
    """The three config hashes, named (docs/platform.md, "One config identity")."""
    lines = [
        f"- `file_sha` (the experiment file's bytes): `{file_sha or UNKNOWN_FILE}`",
        f"- `experiment_hash` (the whole resolved experiment): `{exp.config_hash}`",
        *(
            f"- `sweep_point_hash` of `{p.sweep_point}`: `{p.config_hash}`"
            for p in sweep_points.sort_values("sweep_point").itertuples()
        ),
    ]
    return dg.MetadataValue.md("\n".join(lines))


def _metadata(tables: ResultTables, source: str, definition: str | None, file_sha: str | None, submitter: str) -> dict:
    """What the UI shows of a stored raw partition: sizes, energy totals, the config and its three hashes, the
    environment, the power timeline. Only quantities that change are numbers (Dagster plots those)."""
    exp = tables.experiment.iloc[0]
    config = config_of(exp.config_json, "experiment.config_json")
    c = tables.cycles
    measured = (c.energy_status == "measured").all()
    metadata = {
        "source": source,
        "submitter": submitter,
        "experiment_file": definition or "none (uploaded, or registered without an inbox file)",
        "dagster/row_count": len(c),
        "rows": f"{len(tables.requests)} requests, {len(c)} cycles, {len(tables.timeline)} power samples",
        "sweep_points": dg.MetadataValue.text(str(int(c.sweep_point.nunique()))),
        "parallelism": ",".join(sorted(set(c.parallelism))),
        "energy_status": "measured" if measured else "unmeasured",
        **(
            {"gross_energy_j_total": dg.MetadataValue.float(significant(float(c.gross_energy_j.sum())))}
            if measured
            else {}
        ),
        **(
            {
                "counter_vs_timeline_worst": dg.MetadataValue.float(
                    significant(float(c.cross_check_rel_diff.abs().max()))
                )
            }
            if measured and c.cross_check_rel_diff.notna().any()
            else {}
        ),
        **(
            {"idle_power_w": dg.MetadataValue.float(significant(float(exp.idle_power_w)))}
            if pd.notna(exp.idle_power_w)
            else {}
        ),
        "output_tokens_total": int(c.output_tokens.sum()),
        "file_sha": file_sha or UNKNOWN_FILE,
        "experiment_hash": str(exp.config_hash),
        "config_identity": identity_markdown(file_sha, exp, tables.sweep_points),
        # the UI shows Markdown under 1000 characters in place: the fields that differ from the defaults fit there
        "config": config_markdown(config.non_defaults(), "resolved config: the fields that differ from the defaults"),
        "config_resolved": config_markdown(config.model_dump(mode="json"), "resolved config: every field"),
        "engines": engines_text(c),
        "fingerprint_hash": str(exp.fingerprint_hash),
        "environment": environment_table(json.loads(exp.fingerprint_json)),
        "data_version": tables.summary["content_hash"],
        "model": str(exp.model),
        "backend": str(exp.backend),
        "weights": str(exp.weights),
    }
    wall = tables.summary.get("wall_time")
    if isinstance(wall, dict) and wall.get("wall_s"):
        metadata["wall_time_s"] = dg.MetadataValue.float(significant(float(wall["wall_s"])))
        metadata["cycle_window_share"] = dg.MetadataValue.float(significant(wall["seconds"]["cycle"] / wall["wall_s"]))
        metadata["wall_time_by_kind"] = wall_time_table(wall)
    gpu_s = tables.sweep_points.get("gpu_seconds")
    if gpu_s is not None and gpu_s.notna().any():
        metadata["gpu_seconds_total"] = dg.MetadataValue.float(significant(float(gpu_s.sum())))
    svg = power_timeline_svg(tables)
    if svg:
        metadata["power_timeline"] = dg.MetadataValue.md(
            f"![power timeline](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"
        )
    return metadata


def engines_text(cycles: pd.DataFrame) -> str:
    """The engines the cycles ran on: each id, warm or started (and in how many seconds)."""
    if cycles.engine_id.isna().all():
        return "not recorded"
    parts = []
    for engine, g in cycles.groupby("engine_id", sort=False):
        start = g.engine_start_s.iloc[0]
        parts.append(
            f"{engine}: " + ("warm (reused)" if g.engine_reused.fillna(False).all() else f"started in {start:.1f} s")
        )
    return "; ".join(parts)


def _check_results(findings, partition: str) -> list[dg.AssetCheckResult]:
    """One result per check; its description names the partition (a message names the sweep points it concerns)."""
    return [
        dg.AssetCheckResult(
            check_name=f.check,
            passed=f.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{partition}: {f.message}",
            metadata={
                "partition": partition,
                **({"status": "skipped"} if f.skipped else {}),
                **{k: significant(v) for k, v in f.metadata.items() if v is not None},
            },
        )
        for f in findings
    ]

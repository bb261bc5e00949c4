"""`cycle_statistics`: per sweep point mean/std/t-CI/CV of every metric, with the provenance of the raw
partition it was computed from (Dagster records only one input pointer for a partitioned upstream)."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from energy_assets.assets.raw import FILE_SHA_TAGS, RAW_CODE_VERSION
from energy_assets.lineage import OWNERS, partition_link, run_link
from energy_assets.partitions import measurement_partitions
from energy_assets.resources import StorageResource
from energy_assets.tables import rows_table, schema_metadata, significant
from gpu_ops.drift import extend_history, history_rows, previous_statistics, with_drift
from gpu_ops.errors import UserError
from gpu_ops.results import ResultTables
from gpu_ops.schema import PUBLISHED_STATISTICS, STATISTICS_PREVIEW
from gpu_ops.stats import CV_UNSTABLE, UNRECORDED_SUBMITTER, headline_cv, published_statistics

# v6: J per good token, drift; v5: steady state, window_min_s; v4: pooled latencies, submitter; v3: file_sha
STATS_CODE_VERSION = "stats-v6"
MIN_CYCLES = 3
RAW_KEY = dg.AssetKey("raw_measurements")


def raw_run_file_sha(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The experiment file's sha256 its run was tagged with (None: an upload, or a run started by hand)."""
    run = instance.get_run_by_id(run_id)
    tags = run.tags if run else {}
    return next((tags[t] for t in FILE_SHA_TAGS if tags.get(t)), None)


def raw_provenance(instance: dg.DagsterInstance, partition: str) -> tuple[dict, str]:
    """Run id, storage id and data version of the raw materialization these statistics read, and its submitter."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW_KEY, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        raise UserError(f"no materialization of raw_measurements for partition {partition}")
    rec = records[0]
    mat = rec.event_log_entry.asset_materialization
    submitter = mat.metadata.get("submitter") if mat else None
    return {
        "raw_run_id": rec.run_id,
        "raw_storage_id": rec.storage_id,
        "raw_data_version": mat.tags.get("dagster/data_version") if mat and mat.tags else None,
        "raw_code_version": (mat.tags or {}).get("dagster/code_version", RAW_CODE_VERSION) if mat else RAW_CODE_VERSION,
    }, submitter.value if submitter is not None else UNRECORDED_SUBMITTER


@dg.asset(
    partitions_def=measurement_partitions,
    io_manager_key="parquet_io_manager",
    code_version=STATS_CODE_VERSION,
    group_name="measurement",
    kinds={"pandas", "parquet"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    check_specs=[
        dg.AssetCheckSpec(
            "enough_cycles",
            asset="cycle_statistics",
            blocking=True,
            description=f"every sweep point has >= {MIN_CYCLES} cycles",
        ),
        dg.AssetCheckSpec(
            "cv_under_threshold",
            asset="cycle_statistics",
            description=f"coefficient of variation of J/token (or tok/s when unmeasured) <= {CV_UNSTABLE:.0%} in "
            "every sweep point; a point above it is flagged unstable on the leaderboard",
        ),
    ],
    description="Mean, sample std, 95 % Student-t CI and CV per sweep point, with raw provenance.",
    metadata=schema_metadata(PUBLISHED_STATISTICS),
    owners=OWNERS,
    tags={"stage": "statistics"},
)
def cycle_statistics(context: dg.AssetExecutionContext, storage: StorageResource, raw_measurements: ResultTables):
    # the raw partition passed its blocking checks before it was stored (raw_measurements): they are not run again
    partition = context.partition_key
    raw, submitter = raw_provenance(context.instance, partition)
    st = published_statistics(
        raw_measurements,
        partition,
        STATS_CODE_VERSION,
        raw,
        raw_run_file_sha(context.instance, raw["raw_run_id"]),
        submitter,
    )
    short = st[st.n_cycles < MIN_CYCLES]
    enough = dg.AssetCheckResult(
        check_name="enough_cycles",
        passed=short.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"partition": partition, "fewest_cycles": dg.MetadataValue.text(str(int(st.n_cycles.min())))},
        description=(
            f"{partition}: {len(short)} sweep point(s) with fewer than {MIN_CYCLES} cycles "
            f"({', '.join(short.sweep_point.astype(str))})"
            if len(short)
            else f"{partition}: every sweep point has {MIN_CYCLES} or more cycles"
        ),
    )
    if not short.empty:  # gate before storing: the leaderboard reads every stored partition
        yield enough
        raise UserError(
            f"{enough.description}; nothing was stored. Set cycles: {MIN_CYCLES} or more in the experiment "
            f"file and measure again"
        )
    history = storage.history(partition)
    st = with_drift(st, previous_statistics(history, raw["raw_run_id"]))
    storage.write_history(partition, extend_history(history, history_rows(st, datetime.now(UTC).isoformat())))
    drifted = st[st.drift.fillna(False).astype(bool)]
    cv = headline_cv(st)
    yield dg.Output(
        st,
        metadata={
            "dagster/row_count": len(st),
            "raw_run": dg.MetadataValue.md(f"{run_link(raw['raw_run_id'])} (run `{raw['raw_run_id']}`)"),
            "raw_partition": dg.MetadataValue.md(partition_link(partition)),
            "raw_data_version": str(raw["raw_data_version"]),
            "preview": rows_table(st, STATISTICS_PREVIEW),
            # plotted across materializations: quantities that change from one measurement to the next
            "tokens_per_s_best": dg.MetadataValue.float(significant(float(st.tokens_per_s_mean.max()))),
            **(
                {"j_per_token_best": dg.MetadataValue.float(significant(float(st.j_per_token_mean.min())))}
                if st.j_per_token_mean.notna().any()
                else {}
            ),
            **({"worst_cv": dg.MetadataValue.float(significant(float(cv.max())))} if cv.notna().any() else {}),
            "drift": dg.MetadataValue.md(
                "\n".join(f"- **drift** {p}: {d}" for p, d in zip(drifted.sweep_point, drifted.drift_detail))
                or "no drift: " + "; ".join(f"{p}: {d}" for p, d in zip(st.sweep_point, st.drift_detail))
            ),
        },
        data_version=dg.DataVersion(f"{st.raw_data_version.iloc[0]}-{STATS_CODE_VERSION}"),
    )
    yield enough
    yield cv_check(partition, st.sweep_point, cv)


def cv_check(partition: str, points: pd.Series, cv: pd.Series) -> dg.AssetCheckResult:
    """The worst sweep point's CV against CV_UNSTABLE, naming the partition and the sweep point."""
    if cv.isna().all():
        return dg.AssetCheckResult(
            check_name="cv_under_threshold",
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{partition}: no CV (single cycle per sweep point)",
            metadata={"partition": partition},
        )
    i = int(cv.fillna(-1.0).to_numpy().argmax())
    worst, point = float(cv.iloc[i]), str(points.iloc[i])
    unstable = [str(p) for p, c in zip(points, cv) if c > CV_UNSTABLE]
    return dg.AssetCheckResult(
        check_name="cv_under_threshold",
        passed=not unstable,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{partition}, sweep point {point}: worst CV {worst:.1%} (threshold {CV_UNSTABLE:.0%})"
        + (f"; unstable: {', '.join(unstable)}" if unstable else ""),
        metadata={
            "partition": partition,
            "sweep_point": point,
            "worst_cv": dg.MetadataValue.float(significant(worst)),
            "threshold": dg.MetadataValue.text(f"{CV_UNSTABLE:.0%}"),
        },
    )

"""`cycle_statistics`: per sweep point mean/std/t-CI/CV of every metric, with the provenance of the raw
partition it was computed from (Dagster records only one input pointer for a partitioned upstream)."""

import dagster as dg

from energy_assets.partitions import measurement_partitions
from energy_assets.raw import RAW_CODE_VERSION
from energy_assets.tables import schema_metadata
from gpu_ops.errors import UserError
from gpu_ops.results import ResultTables
from gpu_ops.schema import PUBLISHED_STATISTICS
from gpu_ops.stats import UNRECORDED_SUBMITTER, published_statistics

STATS_CODE_VERSION = "stats-v2"  # v2: every sweep point's statistics carry gpu_count and the schema's types
MIN_CYCLES = 3
CV_WARN = 0.10
RAW_KEY = dg.AssetKey("raw_measurements")


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
            description=f"coefficient of variation of J/token (or tok/s when unmeasured) <= {CV_WARN:.0%}",
        ),
    ],
    description="Mean, sample std, 95 % Student-t CI and CV per sweep point, with raw provenance.",
    metadata=schema_metadata(PUBLISHED_STATISTICS),
)
def cycle_statistics(context: dg.AssetExecutionContext, raw_measurements: ResultTables):
    # the raw partition passed its blocking checks before it was stored (raw_measurements): they are not run again
    raw, submitter = raw_provenance(context.instance, context.partition_key)
    st = published_statistics(raw_measurements, context.partition_key, STATS_CODE_VERSION, raw, submitter)
    short = st[st.n_cycles < MIN_CYCLES]
    enough = dg.AssetCheckResult(
        check_name="enough_cycles",
        passed=short.empty,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"min_cycles": int(st.n_cycles.min())},
        description=(
            f"{len(short)} sweep point(s) with fewer than {MIN_CYCLES} cycles "
            f"({', '.join(short.sweep_point.astype(str))})"
            if len(short)
            else "all sweep points have enough cycles"
        ),
    )
    if not short.empty:  # gate before storing: the leaderboard reads every stored partition
        yield enough
        raise UserError(
            f"{enough.description}; nothing was stored. Set cycles: {MIN_CYCLES} or more in the experiment "
            f"file and measure again"
        )
    yield dg.Output(
        st,
        metadata={
            "sweep_points": len(st),
            "min_cycles": int(st.n_cycles.min()),
            "raw_run_id": st.raw_run_id.iloc[0],
            "raw_data_version": st.raw_data_version.iloc[0],
            "preview": dg.MetadataValue.md(
                st[
                    ["sweep_point", "n_cycles", "tokens_per_s_mean", "j_per_token_mean", "j_per_token_ci95"]
                ].to_markdown(index=False)
            ),
        },
        data_version=dg.DataVersion(f"{st.raw_data_version.iloc[0]}-{STATS_CODE_VERSION}"),
    )
    yield enough
    cv = st.j_per_token_cv.where(st.j_per_token_cv.notna(), st.tokens_per_s_cv).astype(float)
    worst = float(cv.max()) if cv.notna().any() else None
    yield dg.AssetCheckResult(
        check_name="cv_under_threshold",
        passed=worst is None or worst <= CV_WARN,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"worst CV {worst:.1%} (threshold {CV_WARN:.0%})" if worst is not None else "no CV (single cycle)",
        metadata={"worst_cv": worst},
    )

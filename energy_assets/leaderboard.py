"""`leaderboard`: one row per sweep point and hardware over every partition, ranked views, provenance per row."""

import dagster as dg
import pandas as pd

from energy_assets.tables import schema_metadata
from gpu_ops.leaderboard import FROM_STATISTICS, build_leaderboard
from gpu_ops.schema import LEADERBOARD
from gpu_ops.stats import fmt_ci

LEADERBOARD_CODE_VERSION = "leaderboard-v2"


def top_markdown(df: pd.DataFrame, n: int = 10) -> str:
    if df.empty:
        return "_No measurements yet: drop an experiment YAML into the inbox._"
    view = df.head(n)

    def energy(v, ci):
        return "unmeasured" if pd.isna(v) else f"{v:.4g}{fmt_ci(None if pd.isna(ci) else ci)}"

    rows = [
        "| # | experiment | hardware | sweep point | J/token | tok/s | TTFT p50 ms | weights | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in view.itertuples():
        rank = "" if pd.isna(r.rank_j_per_token) else int(r.rank_j_per_token)
        rows.append(
            f"| {rank} | {r.experiment_key} | {r.hardware} | {r.sweep_point} | "
            f"{energy(r.j_per_token_mean, r.j_per_token_ci95)} | {r.tokens_per_s_mean:.1f} | "
            f"{r.ttft_p50_s_mean * 1000:.1f} | {r.weights} | {str(r.raw_run_id)[:8]} |"
        )
    return "\n".join(rows)


@dg.asset(
    ins={
        "cycle_statistics": dg.AssetIn(
            partition_mapping=dg.AllPartitionMapping(),
            metadata={"allow_missing_partitions": True, "columns": list(FROM_STATISTICS)},
        )
    },
    io_manager_key="parquet_io_manager",
    code_version=LEADERBOARD_CODE_VERSION,
    group_name="leaderboard",
    kinds={"pandas", "parquet"},
    automation_condition=dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed(),
    description="Every sweep point on every hardware profile, ranked by J/token, tokens/J, throughput and TTFT; each "
    "row carries its provenance.",
    metadata=schema_metadata(LEADERBOARD),
)
def leaderboard(context: dg.AssetExecutionContext, cycle_statistics: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    df = build_leaderboard(cycle_statistics)
    return dg.Output(
        df,
        metadata={
            "rows": len(df),
            "partitions": int(df.partition_key.nunique()) if len(df) else 0,
            "measured_rows": int((df.energy_status == "measured").sum()) if len(df) else 0,
            "synthetic_weight_rows": int((df.weights == "synthetic").sum()) if len(df) else 0,
            "top": dg.MetadataValue.md(top_markdown(df)),
        },
    )

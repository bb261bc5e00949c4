"""`leaderboard`: one row per sweep point and hardware over every partition, ranked views, provenance per row."""

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from energy_assets.lineage import OWNERS, partition_link, run_link
from energy_assets.resources import StorageResource
from energy_assets.tables import rows_table, schema_metadata, significant
from gpu_ops.conversions import load_conversions
from gpu_ops.leaderboard import READ_FROM_STATISTICS, build_leaderboard
from gpu_ops.ranking import rank_shown
from gpu_ops.readable import number
from gpu_ops.schema import LEADERBOARD, LEADERBOARD_TOP_MARKDOWN, LEADERBOARD_TOP_ROWS
from gpu_ops.slo import Deadline, parse_slo, slo_pick

# v6: throughput fallback of rows whose energy is unmeasured (throughput_fallback_rank/_label), sorted by it;
# v5: SLO pick, J per good token rank, carbon and cost, drift; v4: ranking rules, rank bands, steady state;
# v3: CV, hashes, submitter
LEADERBOARD_CODE_VERSION = "leaderboard-v6"


class NoDependencyRequestedThisTick(dg.AutomationCondition):
    """True unless a partition of a dependency is requested in this same tick.

    The leaderboard (unpartitioned) reads every partition's statistics. Requested beside another partition's
    statistics, it would run as a separate run, miss their rows, and count their update as handled (`make demo` once
    ranked one partition of two). Dagster's `will_be_requested` sees only dependencies that can share the run, which
    differently partitioned statistics cannot, so this reads the tick's requests directly. Needs the automation
    sensor on the user-code server (energy_assets.sensors.automation)."""

    @property
    def name(self) -> str:
        return "no_dependency_requested_this_tick"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        parents = context.asset_graph.get(context.key).parent_entity_keys
        requested = any(
            not context.request_subsets_by_key[k].is_empty for k in parents & context.request_subsets_by_key.keys()
        )
        return dg.AutomationResult(context, context.get_empty_subset() if requested else context.candidate_subset)


# Missing partitions do not hold the leaderboard back: one failed partition must not hide the others.
AFTER_STATISTICS = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
    & NoDependencyRequestedThisTick()
)


INLINE_MARKDOWN = 950
"""The Dagster UI shows Markdown metadata under 1000 characters in place, longer behind a "[Show Markdown]" click."""


def top_markdown(df: pd.DataFrame, n: int = 10) -> str:
    """The top rows, each with its raw partition and run as links (a table value cannot hold a link), as many whole
    rows as the UI shows in place; `top_rows` holds all `n`. The links are relative (the UI reads them), so more rows
    fit. A row's rank is its band (gpu_ops.ranking), or why it is not ranked, with the throughput fallback of a row
    whose energy is unmeasured beside it (gpu_ops.ranking.rank_shown)."""
    if df.empty:
        return "_No measurements yet: drop an experiment YAML into the inbox._"

    def figure(v, ci, missing: str, unit: str = "") -> str:
        return missing if pd.isna(v) else f"{number(v)}{unit} ± {'n/a' if pd.isna(ci) else number(ci)}"

    head = [
        "| " + " | ".join(f.label for f in LEADERBOARD_TOP_MARKDOWN) + " |",
        "|---" * len(LEADERBOARD_TOP_MARKDOWN) + "|",
    ]
    rows: list[str] = []
    for r in df.head(n).itertuples():
        rank = rank_shown(r.rank_label, r.not_ranked_reason, r.throughput_fallback_label)
        flag = " **unstable**" if pd.notna(r.unstable) and bool(r.unstable) else ""
        cv = ("n/a" if pd.isna(r.cv) else f"{r.cv:.1%}") + flag
        line = (
            f"| {rank} | {partition_link(r.partition_key, base='')} | {r.sweep_point} | "
            f"{figure(r.ranked_j_per_token_mean, r.ranked_j_per_token_ci95, 'unmeasured')} | "
            f"{figure(r.tokens_per_s_mean, r.tokens_per_s_ci95, 'n/a')} | {cv} | {r.weights} | "
            f"{run_link(r.raw_run_id, base='')} |"
        )
        left = len(df) - len(rows) - 1
        note = f"\n\n_{left} more rows in `top_rows` (full run ids)._" if left else ""
        if rows and len("\n".join([*head, *rows, line]) + note) > INLINE_MARKDOWN:
            break  # a whole row or none: past this the UI hides the table behind a click
        rows.append(line)
    left = len(df) - len(rows)
    return "\n".join([*head, *rows]) + (f"\n\n_{left} more rows in `top_rows` (full run ids)._" if left else "")


DEFAULT_SLO = "ttft_p99=2s,itl_p99=50ms"
"""The deadlines the leaderboard's `slo_pick` metadata and the site's slo.html open with; LEM_SLO replaces them."""


def leaderboard_slo() -> tuple[Deadline, ...]:
    """The instance's deadlines (LEM_SLO, e.g. `itl_p99=50ms,ttft_p99=2s`; a bad value fails naming LEM_SLO)."""
    return parse_slo(os.environ.get("LEM_SLO") or DEFAULT_SLO, "LEM_SLO")


def conversions_file(storage: StorageResource) -> Path:
    """The carbon and cost inputs (gpu_ops.conversions): LEM_CONVERSIONS, else `conversions.yaml` in storage; a
    missing file leaves every input unknown."""
    return Path(os.environ.get("LEM_CONVERSIONS") or storage.root / "conversions.yaml")


def slo_markdown(df: pd.DataFrame, deadlines: tuple[Deadline, ...]) -> str:
    """The SLO pick per model × hardware as a Markdown table: verdict, sweep point, J/token, the deadlines' verdicts."""
    pick = slo_pick(df, deadlines)
    names = [d.name for d in deadlines]
    rows = [
        f"Lowest J/token meeting {', '.join(map(str, deadlines))} (pooled percentiles, 95 % intervals; "
        "uncertain = the interval straddles a deadline):",
        "",
        "| model | hardware | verdict | sweep point | J/token | " + " | ".join(names) + " |",
        "|---" * (5 + len(names)) + "|",
    ]
    for r in pick.to_dict(orient="records"):
        j = "" if pd.isna(r["j_per_token_mean"]) else f"{r['j_per_token_mean']:.4g}"
        cells = [str(r.get(n) or "") for n in names]
        rows.append(
            f"| {r['model']} | {r['hardware']} | {r['verdict']} | {r['sweep_point'] or ''} | {j} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(rows)


@dg.asset(
    ins={
        "cycle_statistics": dg.AssetIn(
            partition_mapping=dg.AllPartitionMapping(),
            metadata={"allow_missing_partitions": True, "columns": list(READ_FROM_STATISTICS)},
        )
    },
    io_manager_key="parquet_io_manager",
    code_version=LEADERBOARD_CODE_VERSION,
    group_name="leaderboard",
    kinds={"pandas", "parquet"},
    automation_condition=AFTER_STATISTICS,
    description="Every sweep point on every hardware profile, ranked in bands (overlapping 95 % intervals tie) by "
    "J/token (a serving run's steady state), tokens/J, throughput and TTFT; a row that breaks a ranking rule "
    "(gpu_ops.ranking; LEM_RANK_* per instance) is kept unranked with its reason; one whose energy is unmeasured "
    "gets a throughput fallback beside it (bands by tokens/s among those rows, never an energy rank). Each row "
    "carries its provenance.",
    metadata=schema_metadata(LEADERBOARD),
    owners=OWNERS,
    tags={"stage": "leaderboard"},
)
def leaderboard(
    context: dg.AssetExecutionContext, storage: StorageResource, cycle_statistics: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    conversions = conversions_file(storage)
    df = build_leaderboard(cycle_statistics, conversions=load_conversions(conversions))
    deadlines = leaderboard_slo()
    return dg.Output(
        df,
        metadata={
            "dagster/row_count": len(df),
            "rows": f"{df.partition_key.nunique()} partitions; {(df.energy_status == 'measured').sum()} rows measured, "
            f"{(df.weights == 'synthetic').sum()} on synthetic weights, {df.ranked.sum()} ranked "
            f"({df.ranking_rules.iloc[0] if len(df) else 'no rows'})",
            "top": dg.MetadataValue.md(top_markdown(df)),
            "top_rows": rows_table(df, LEADERBOARD_TOP_ROWS),
            "slo": dg.MetadataValue.text(", ".join(map(str, deadlines))),
            "slo_pick": dg.MetadataValue.md(slo_markdown(df, deadlines)),
            "drift": dg.MetadataValue.int(int(df.drift.fillna(False).astype(bool).sum())),
            "conversions": dg.MetadataValue.text(
                f"{conversions}" if conversions.is_file() else f"{conversions} (absent: carbon and cost unknown)"
            ),
            **(
                {"best_j_per_token": dg.MetadataValue.float(significant(float(df.ranked_j_per_token_mean[0])))}
                if len(df) and df.ranked.iloc[0]
                else {}
            ),
        },
    )

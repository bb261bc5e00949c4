"""Blocks of issue #32's evidence: energy at a latency target, built from the platform's GPU campaign (session 7's
three partitions on the H200, as its instance stored them), through the same code as `report --slo`."""

from __future__ import annotations

import pandas as pd

from benchmarks.report.blocks import Blocks
from benchmarks.report.fmt import g, table
from benchmarks.report.raw import Raw
from benchmarks.report.sessions import INSTANCE7

blocks = Blocks()
VIEWS = ("ttft_p50=2s,tpot_p99=10ms", "ttft_p99=6s,tpot_p99=50ms")
"""The deadlines of the two views shown (an interactive one and a batch one); chosen before reading the rows."""


def campaign_board(raw: Raw) -> pd.DataFrame:
    """The leaderboard of the campaign's stored partitions (gpu_ops.leaderboard, no conversions)."""
    from gpu_ops.leaderboard import build_leaderboard
    from gpu_ops.stats import published_statistics

    stats = []
    for name, t in raw.folders(INSTANCE7):
        key = "|".join(name.split("/")[-2:])
        prov = {"raw_run_id": name, "raw_storage_id": None, "raw_data_version": None, "raw_code_version": "report"}
        stats.append(published_statistics(t, key, "report", prov))
    return build_leaderboard(pd.concat(stats, ignore_index=True))


def _ms(r, col: str) -> str:
    mid, lo, hi = (r.get(f"{col}{end}_s") for end in ("", "_lo", "_hi"))
    return "–" if pd.isna(mid) else f"{g(mid * 1e3, 3)} [{g(lo * 1e3, 3)}, {g(hi * 1e3, 3)}]"


@blocks("slo-view")
def slo_view(raw: Raw) -> str:
    from gpu_ops.slo import deadline_verdicts, parse_slo, row_verdict, slo_pick

    board = campaign_board(raw)
    out = []
    for text in VIEWS:
        deadlines = parse_slo(text)
        verdicts = deadline_verdicts(board, deadlines)
        every = board.assign(verdict=row_verdict(verdicts)).sort_values(["model", "j_per_token_mean"], kind="stable")
        picked = {(p["model"], p["sweep_point"]) for p in slo_pick(board, deadlines).to_dict(orient="records")}
        cols = [d.column.removesuffix("_s") for d in deadlines]
        rows = [
            (
                r["model"],
                r["backend"],
                r["sweep_point"],
                g(r["j_per_token_mean"], 4),
                *(_ms(r, c) for c in cols),
                r["verdict"],
                "**pick**" if (r["model"], r["sweep_point"]) in picked and r["verdict"] == "meets" else "",
                "yes" if r["ranked"] else f"no: {r['not_ranked_reason']}",
            )
            for r in every.to_dict(orient="records")
        ]
        header = ["model", "backend", "sweep point", "J/token", *(f"{d.name} ms [95 % CI]" for d in deadlines)]
        out.append(f"**Deadlines {', '.join(map(str, deadlines))}** (hardware: h200)\n\n")
        out.append(table([*header, "verdict", "", "ranked (gpu_ops.ranking)"], rows) + "\n\n")
    return "".join(out).rstrip("\n")

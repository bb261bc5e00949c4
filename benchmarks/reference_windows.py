"""Per-window table of result folders (or .tgz archives of them) against the reference-workload targets (issue #15):
counter vs timeline per window (goal <= 0.5 % at >= 20 s, <= 1 % at >= 5 s), the gap from the last token to the window
end (goal < 5 ms), J/token CV across cycles (goal <= 1 % gross), the idle power before and after, and the meter's
counter step and cross-check rule.

    python benchmarks/reference_windows.py docs/benchmarks/raw/session7/reference-pytorch.tgz ...
"""

from __future__ import annotations

import argparse
import statistics
import tarfile
import tempfile
from pathlib import Path

import pandas as pd


def folders(path: Path, tmp: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p.parent for p in path.rglob("summary.json"))
    with tarfile.open(path) as tar:
        tar.extractall(tmp / path.stem, filter="data")
    return sorted(p.parent for p in (tmp / path.stem).rglob("summary.json"))


def goal(rel: float, seconds: float) -> str:
    limit = 0.005 if seconds >= 20 else 0.01 if seconds >= 5 else None
    return "-" if limit is None else ("ok" if abs(rel) <= limit else f"over {limit:.1%}")


def window_rows(t) -> list[dict]:
    """One row per cycle window of result tables `t` (gpu_ops.results.ResultTables): its figures beside the power
    and clock samples inside it. Shared with benchmarks.report, which prints the same rows in docs/benchmarks."""
    cycle_windows = t.windows[t.windows.kind == "cycle"].set_index(["sweep_point", "cycle"])
    rows = []
    for _, c in t.cycles.iterrows():
        w = cycle_windows.loc[(c.sweep_point, c.cycle)]
        inside = t.timeline[(t.timeline.t_s >= w.start_s) & (t.timeline.t_s <= w.end_s)]
        power, clock = inside.power_w, inside.sm_clock_mhz.dropna()
        rows.append(
            {
                "point": c.sweep_point, "cycle": int(c.cycle), "window_s": c.duration_s, "tok_s": c.tokens_per_s,
                "counter_j": c.gross_energy_j, "counter_pm_j": c.energy_uncertainty_j,
                "timeline_j": c.timeline_energy_j, "diff": c.cross_check_rel_diff, "tolerance": c.cross_check_tolerance,
                "goal": goal(c.cross_check_rel_diff, c.duration_s), "j_per_token": c.j_per_token,
                "net_j_per_token": c.net_j_per_token, "avg_w": c.avg_power_w, "tail_ms": c.window_tail_s * 1e3,
                "power_sd_w": power.std(), "power_min_w": power.min(), "power_max_w": power.max(),
                "sm_clock_min_mhz": c.sm_clock_min_mhz, "below_1900": (clock < 1900).mean(),
                "throttle_reasons": int(c.throttle_reasons),
            }
        )  # fmt: skip
    return rows


def point_figures(group: pd.DataFrame) -> dict:
    """A sweep point's cycles (rows of cycles.parquet): the reference targets' figures."""
    jpt, net, tps = group.j_per_token, group.net_j_per_token, group.tokens_per_s
    return {
        "cycles": len(group), "j_per_token": jpt.mean(), "cv_gross": statistics.stdev(jpt) / jpt.mean(),
        "cv_net": statistics.stdev(net) / net.mean(), "tok_s_cv": statistics.stdev(tps) / tps.mean(),
        "sm_clock": (group.sm_clock_min_mhz.min(), group.sm_clock_max_mhz.max()),
        "temp_c": (group.temp_min_c.min(), group.temp_max_c.max()),
        "worst_diff": group.cross_check_rel_diff.abs().max(), "tail_max_ms": group.window_tail_s.max() * 1e3,
    }  # fmt: skip


def report(folder: Path) -> None:
    from gpu_ops.results import read_tables

    t = read_tables(folder)
    summary, windows, meter = t.summary, t.windows, t.summary.get("meter", {})
    print(f"\n## {folder.name}: {summary['model']} on {summary['backend']} / {summary['hardware']}")
    print(
        f"counter step {meter.get('counter_step_s')} s, sampler {meter.get('sample_hz')} Hz, cross-check rule: "
        f"z {meter.get('cross_check_z')}, edges {meter.get('cross_check_edges')}"
    )
    for kind in ("idle_before", "idle_after"):
        w = windows[windows.kind == kind]
        if len(w):
            print(f"{kind}: {w.avg_power_w.iloc[0]:.2f} W over {w.duration_s.iloc[0]:.1f} s")
    print(f"idle power used for net energy: {summary.get('idle_power_w')}")
    settle = {k: v for k, v in meter.items() if "settle" in k}
    if settle:
        print(f"settle: {settle}")
    print(
        "point cycle window_s tok/s counter_J ±J timeline_J diff tolerance goal J/token net_J/token avg_W tail_ms "
        "power_sd_W power_min-max_W sm_clock_min_MHz share_of_samples_below_1900MHz throttle_reasons"
    )
    rows = window_rows(t)
    for point, group in t.cycles.groupby("sweep_point", sort=False):
        for r in (r for r in rows if r["point"] == point):
            print(
                f"{r['point']} {r['cycle']} {r['window_s']:.2f} {r['tok_s']:.1f} {r['counter_j']:.1f} "
                f"{r['counter_pm_j']:.1f} {r['timeline_j']:.1f} {r['diff']:+.2%} {r['tolerance']:.2%} {r['goal']} "
                f"{r['j_per_token']:.5f} {r['net_j_per_token']:.5f} {r['avg_w']:.1f} {r['tail_ms']:.2f} "
                f"{r['power_sd_w']:.1f} {r['power_min_w']:.0f}-{r['power_max_w']:.0f} {r['sm_clock_min_mhz']:.0f} "
                f"{r['below_1900']:.3f} {r['throttle_reasons']:#x}"
            )
        p = point_figures(group)
        print(
            f"{point}: {p['cycles']} cycles; J/token mean {p['j_per_token']:.5f} CV {p['cv_gross']:.2%} gross, "
            f"{p['cv_net']:.2%} net; tok/s CV {p['tok_s_cv']:.2%}; SM clock {p['sm_clock'][0]:.0f}-"
            f"{p['sm_clock'][1]:.0f} MHz; temperature {p['temp_c'][0]:.0f}-{p['temp_c'][1]:.0f} C; "
            f"worst |diff| {p['worst_diff']:.2%}; window tail max {p['tail_max_ms']:.2f} ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths:
            for folder in folders(path, Path(tmp)):
                report(folder)


if __name__ == "__main__":
    main()

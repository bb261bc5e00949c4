"""Per-window table of result folders (or .tgz archives of them) against the reference-workload targets (issue #15):
counter vs timeline per window (goal <= 0.5 % at >= 20 s, <= 1 % at >= 5 s), the gap from the last token to the window
end (goal < 5 ms), J/token CV across cycles (goal <= 1 % gross), the idle power before and after, and the meter's
counter step and cross-check rule.

    python benchmarks/reference_windows.py docs/benchmarks/raw/session7/reference-pytorch.tgz ...
"""

from __future__ import annotations

import argparse
import json
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


def report(folder: Path) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    cycles = pd.read_parquet(folder / "cycles.parquet")
    windows = pd.read_parquet(folder / "windows.parquet")
    timeline = pd.read_parquet(folder / "timeline.parquet", columns=["t_s", "power_w", "sm_clock_mhz"])
    cycle_windows = windows[windows.kind == "cycle"].set_index(["sweep_point", "cycle"])
    meter = summary.get("meter", {})
    print(f"\n## {folder.name}: {summary['model']} on {summary['backend']} / {summary['hardware']}")
    print(
        f"counter step {meter.get('counter_step_s')} s, sampler {meter.get('sample_hz')} Hz, cross-check rule: "
        f"z {meter.get('cross_check_z')}, edges {meter.get('cross_check_edges')}"
    )
    for kind in ("idle_before", "idle_after"):
        w = windows[windows.kind == kind]
        if len(w):
            print(f"{kind}: {w.avg_power_w.iloc[0]:.2f} W over {w.duration_s.iloc[0]:.1f} s")
    idle = summary.get("idle_power_w")
    print(f"idle power used for net energy: {idle}")
    settle = {k: v for k, v in meter.items() if "settle" in k}
    if settle:
        print(f"settle: {settle}")
    cols = (
        "point cycle window_s tok/s counter_J ±J timeline_J diff tolerance goal J/token net_J/token avg_W tail_ms "
        "power_sd_W power_min-max_W sm_clock_min_MHz share_of_samples_below_1900MHz throttle_reasons"
    )
    print(cols)
    for point, group in cycles.groupby("sweep_point", sort=False):
        for _, c in group.iterrows():
            w = cycle_windows.loc[(point, c.cycle)]
            inside = timeline[(timeline.t_s >= w.start_s) & (timeline.t_s <= w.end_s)]
            power, clock = inside.power_w, inside.sm_clock_mhz.dropna()
            print(
                f"{point} {int(c.cycle)} {c.duration_s:.2f} {c.tokens_per_s:.1f} {c.gross_energy_j:.1f} "
                f"{c.energy_uncertainty_j:.1f} {c.timeline_energy_j:.1f} {c.cross_check_rel_diff:+.2%} "
                f"{c.cross_check_tolerance:.2%} {goal(c.cross_check_rel_diff, c.duration_s)} {c.j_per_token:.5f} "
                f"{c.net_j_per_token:.5f} {c.avg_power_w:.1f} {c.window_tail_s * 1e3:.2f} {power.std():.1f} "
                f"{power.min():.0f}-{power.max():.0f} {c.sm_clock_min_mhz:.0f} {(clock < 1900).mean():.3f} "
                f"{c.throttle_reasons:#x}"
            )
        jpt, net, tps = group.j_per_token, group.net_j_per_token, group.tokens_per_s
        print(
            f"{point}: {len(group)} cycles; J/token mean {jpt.mean():.5f} CV {statistics.stdev(jpt) / jpt.mean():.2%} "
            f"gross, {statistics.stdev(net) / net.mean():.2%} net; tok/s CV {statistics.stdev(tps) / tps.mean():.2%}; "
            f"SM clock {group.sm_clock_min_mhz.min():.0f}-{group.sm_clock_max_mhz.max():.0f} MHz; "
            f"temperature {group.temp_min_c.min():.0f}-{group.temp_max_c.max():.0f} C; "
            f"worst |diff| {group.cross_check_rel_diff.abs().max():.2%}; "
            f"window tail max {group.window_tail_s.max() * 1e3:.2f} ms"
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

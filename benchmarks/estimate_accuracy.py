"""How good are the estimates? Leave-one-out over the committed GPU result folders: each measured sweep point is
predicted (gpu_ops.estimate, one cycle) from all the others, and compared with its measured mean cycle.

    python benchmarks/estimate_accuracy.py                       # docs/benchmarks/raw and the ledger's runs
    python benchmarks/estimate_accuracy.py --history results/    # any folders of result folders (repeat it)
    python benchmarks/estimate_accuracy.py --json result.json    # also each point's errors, for the ledger's target

Prints one line per point (predicted middle and range, measured, error) and the median absolute error of energy and
time. Folders failing a blocking check are left out and listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from gpu_ops.estimate import estimate_cycle, read_history

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs/benchmarks/raw", REPO / "docs/benchmarks/runs")  # the committed GPU results and the ledger's


def shown(path: Path) -> str:
    return path.resolve().relative_to(REPO).as_posix() if path.resolve().is_relative_to(REPO) else str(path)


def under(folder: Path, roots: list[Path]) -> str:
    """A result folder's path relative to the history root that holds it."""
    root = next(r for r in roots if folder.resolve().is_relative_to(r.resolve()))
    return folder.resolve().relative_to(root.resolve()).as_posix()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history", action="append", type=Path, help="a folder of result folders (default: DOCS)")
    ap.add_argument("--json", type=Path, help="write every point's errors here (series abs_energy_error, ...)")
    args = ap.parse_args()
    roots = args.history or [d for d in DOCS if d.is_dir()]
    points, skipped = read_history(roots)
    for note in skipped:
        print(f"left out: {note}")
    print(f"{len(points)} measured sweep points under {', '.join(map(shown, roots))}\n")
    names = [f"{under(Path(m.folder), roots)} / {m.sweep_point}" for m in points]
    width = max(map(len, names), default=10)
    print(
        f"{'result folder / sweep point':<{width}} {'hardware':<15} {'energy J pred (range)':>28} {'meas':>7} "
        f"{'err':>7} {'time s pred (range)':>22} {'meas':>6} {'err':>7}  method"
    )
    errors_e, errors_t, inside, rows = [], [], 0, []
    for i, m in enumerate(points):
        others = points[:i] + points[i + 1 :]
        c = estimate_cycle(m.workload, m.hardware, others)
        e_meas = statistics.fmean(e for _, e in m.cycles)
        t_meas = statistics.fmean(d for d, _ in m.cycles)
        err_e = (c.energy_j.mid - e_meas) / e_meas
        err_t = (c.duration_s.mid - t_meas) / t_meas
        errors_e.append(abs(err_e))
        errors_t.append(abs(err_t))
        inside += c.energy_j.low <= e_meas <= c.energy_j.high
        rows.append({"point": names[i], "hardware": m.hardware, "energy_error": err_e, "time_error": err_t,
                     "inside": c.energy_j.low <= e_meas <= c.energy_j.high, "method": c.method})  # fmt: skip
        e_pred = f"{c.energy_j.mid:.0f} ({c.energy_j.low:.0f}-{c.energy_j.high:.0f})"
        t_pred = f"{c.duration_s.mid:.2f} ({c.duration_s.low:.2f}-{c.duration_s.high:.2f})"
        print(
            f"{names[i]:<{width}} {m.hardware:<15} {e_pred:>28} {e_meas:>7.0f} {err_e:>+7.1%} {t_pred:>22} "
            f"{t_meas:>6.2f} {err_t:>+7.1%}  {c.method}"
        )
    print(
        f"\nmedian absolute error over {len(points)} points: energy {statistics.median(errors_e):.1%}, "
        f"time {statistics.median(errors_t):.1%} (worst: energy {max(errors_e):.1%}, time {max(errors_t):.1%}); "
        f"measured energy inside the predicted range: {inside} of {len(points)}"
    )
    if args.json:
        series = {"abs_energy_error": errors_e, "abs_time_error": errors_t}
        args.json.write_text(json.dumps({"series": series, "points": rows}, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()

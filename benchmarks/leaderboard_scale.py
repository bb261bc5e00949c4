"""Leaderboard rebuild time for N synthetic partitions x 5 cycles, the way the asset does it: read every
partition's statistics Parquet file through the IO manager's reader, then rank. Prints time per size and the
10k/1k ratio (linear scaling gives ~10). Goal: <= 30 s for 10k on 2 cores.

    python benchmarks/leaderboard_scale.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from upath import UPath

from energy_assets.assets.stats import STATS_CODE_VERSION
from energy_assets.io import concat_parquet
from gpu_ops.leaderboard import READ_FROM_STATISTICS, build_leaderboard
from gpu_ops.results import ResultTables, parquet_bytes
from gpu_ops.schema import SUMMARISED
from gpu_ops.stats import published_statistics


def synthetic_tables(i: int, rng: np.random.Generator) -> ResultTables:
    exp, hw = f"model-{i % 997}__pytorch", f"hw-{i // 997}"
    cycles = pd.DataFrame(
        {
            "sweep_point": "batch_size=8",
            "cycle": range(5),
            "model": f"model-{i % 997}",
            "backend": "pytorch",
            "hardware": hw,
            "weights": "synthetic",
            "precision": "bf16",
            "batch_size": 8,
            "config_hash": "c" * 16,
            "parallelism": "single",
            "gpu_count": 1,
            "energy_status": "measured",
            "unmeasured_reason": None,
            **{m.name: rng.normal(100, 5, 5) for m in SUMMARISED},
        }
    )
    experiment = pd.DataFrame(
        [
            {
                "name": f"e{i}",
                "experiment_key": exp,
                "hardware": hw,
                "fingerprint_hash": "f" * 12,
                "config_hash": "c" * 16,
            }
        ]
    )
    empty = pd.DataFrame()
    return ResultTables(
        experiment=experiment, sweep_points=empty, cycles=cycles, requests=empty, windows=empty, timeline=empty
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            t0 = time.perf_counter()
            for i in range(n):  # what cycle_statistics writes per partition
                t = synthetic_tables(i, rng)
                key = f"{t.experiment.experiment_key[0]}|{t.experiment.hardware[0]}"
                prov = {
                    "raw_run_id": f"run-{i}",
                    "raw_storage_id": i,
                    "raw_data_version": "d" * 16,
                    "raw_code_version": "raw-v1",
                }
                (folder / f"{i}.parquet").write_bytes(
                    parquet_bytes(published_statistics(t, key, STATS_CODE_VERSION, prov), small=True)
                )
            prep = time.perf_counter() - t0
            t0 = time.perf_counter()
            lb = build_leaderboard(
                concat_parquet([UPath(p) for p in sorted(folder.glob("*.parquet"))], list(READ_FROM_STATISTICS))
            )
            times[n] = time.perf_counter() - t0
            assert len(lb) == n and lb.rank_j_per_token.notna().all()
            print(
                f"{n:>6} partitions x 5 cycles: rebuild {times[n]:.2f} s (statistics prepared in {prep:.1f} s)",
                flush=True,
            )
    if len(times) > 1:
        a, b = sorted(times)[0], sorted(times)[-1]
        print(f"ratio {b}/{a}: {times[b] / times[a]:.2f} (linear: {b / a:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

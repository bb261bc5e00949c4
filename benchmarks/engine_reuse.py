"""How long an engine takes to become ready (loaded and warmed up, able to run a measured cycle) three ways, per
backend, on the engine pool (gpu_ops.engines), each engine in a process of its own:

- cold: a new engine process with empty caches (a fresh cache folder per round): weights, engine init, compilation;
- reused: the same engine asked for again with an unchanged identity (what a second sweep point or run pays);
- warm cache: a second engine process on the caches the cold start filled (what the next worker start pays);
- warm worker: on that worker, the next engine after an eviction, started in the spare process the worker imported
  while it waited (gpu_ops.engines.EnginePool.refill; what an engine change on a running worker pays). The spare's
  import seconds are printed beside it: they are paid while no window runs, not removed.

"Ready" includes the warm-up (where PyTorch compiles); the engine-start part of it is printed beside it.

Each round starts from a fresh cache folder, so the cold start is cold every time; the ratio warm cache / cold is
paired within its round. Targets: vLLM's median ratio <= 0.25, warm cache / cold
(benchmarks/targets/engine-warm-start.yaml) and warm worker / cold (engine-warm-worker.yaml).

    python benchmarks/engine_reuse.py --backends vllm,pytorch --rounds 3 --out DIR

`--core-start forkserver` sets LEM_VLLM_CORE_START for the engines it starts (vLLM's engine core forked from a
forkserver that imported vLLM while the engine process waited, gpu_ops.backends.vllm_core; default spawn).

Prints one line per start and round, then the medians; writes DIR/result.json (with the core start it ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {
    "vllm": {
        "backend": "vllm",
        "batching": {"batch_size": 64},
        "vllm": {"gpu_memory_utilization": 0.3, "max_model_len": 512},
    },
    "pytorch": {  # compiled: the inductor and Triton caches are what a warm start saves
        "backend": "pytorch",
        "batching": {"strategy": "static", "batch_size": 16},
        "pytorch": {"static_cache": True, "torch_compile": True},
    },
}


def config(backend: str, model: str, device: str):
    from gpu_ops.config import parse_config

    return parse_config(
        {
            "name": f"engine-reuse-{backend}",
            "model": model,
            "precision": "bf16",
            "device": device,
            "max_input_tokens": 128,
            "max_output_tokens": 64,
            "min_output_tokens": 64,
            "prompts": {"source": "random", "count": 64, "random": {"input_len": 128}},
            "warmup_requests": 64,
            **CONFIGS[backend],
        }
    )


def ready(pool, cfg) -> tuple[float, float, object]:
    """Seconds from asking the pool for an engine to the end of its warm-up (the measured cycles could start), and
    the part of them the pool took to hand the engine out (process, imports, weights, engine init)."""
    from gpu_ops.measure import _requests
    from gpu_ops.prompts import build_prompts

    t0 = time.perf_counter()
    engine = pool.acquire(cfg, placement="process")
    engine.backend.load(cfg)
    acquired = time.perf_counter() - t0
    prompts = build_prompts(cfg, engine.backend.tokenizer, engine.backend.vocab_size)
    engine.backend.warmup(_requests(prompts[: cfg.warmup_count()], cfg, 0.0))
    engine.warmed_up(cfg)
    total = time.perf_counter() - t0
    core = engine.backend.info.get("engine_core_start", "")
    print(
        f"  ready in {total:.1f} s (engine start {acquired:.1f} s; reused {engine.reused}; spare "
        f"{engine.prestarted}; engine core {core or 'n/a'})",
        flush=True,
    )
    return total, acquired, engine


def one_round(backend: str, cfg, cache: Path) -> dict:
    from gpu_ops.engines import EnginePool

    shutil.rmtree(cache, ignore_errors=True)
    with EnginePool(cache) as pool:
        cold_s, cold_start_s, engine = ready(pool, cfg)
        cold_caches = dict(engine.caches)
        reused_s, reused_start_s, again = ready(pool, cfg)
        assert again is engine and again.reused, "the pool started a second engine for an unchanged identity"
    with EnginePool(cache) as pool:  # a new engine process on the caches the cold start filled
        warm_s, warm_start_s, engine = ready(pool, cfg)
        warm_caches = dict(engine.caches)
        # the warm worker: its spare process imported while it waited (as the engine server refills after a run);
        # the engine is then evicted (what an identity change does) and the next one starts in the spare
        pool.refill()
        spare_wait_s = pool.quiesce()
        spare_import_s = next(iter(pool.spares.values())).import_s
        pool.evict(engine)
        worker_s, worker_start_s, engine = ready(pool, cfg)
        assert engine.prestarted, "the pool did not start the engine in its spare process"
    return {
        "cold_s": cold_s,
        "reused_s": reused_s,
        "warm_cache_s": warm_s,
        "cold_start_s": cold_start_s,
        "reused_start_s": reused_start_s,
        "warm_cache_start_s": warm_start_s,
        "warm_worker_s": worker_s,
        "warm_worker_start_s": worker_start_s,
        "spare_import_s": spare_import_s,
        "spare_wait_s": spare_wait_s,
        "ratio": warm_s / cold_s,
        "worker_ratio": worker_s / cold_s,
        "cold_caches": cold_caches,
        "warm_caches": warm_caches,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="vllm,pytorch")
    ap.add_argument("--model", default="synthetic:llama-3.2-1b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core-start", choices=("spawn", "forkserver"), default="spawn", help="vLLM's engine core start")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["LEM_VLLM_CORE_START"] = args.core_start  # the engine processes inherit it
    result: dict = {"model": args.model, "rounds": args.rounds, "core_start": args.core_start}
    # the caches live outside the raw folder: session 10's pack compressed them while the run held them
    caches = Path(tempfile.mkdtemp(prefix="lem-engine-reuse-"))
    for backend in args.backends.split(","):
        cfg = config(backend, args.model, args.device)
        rounds = []
        for r in range(args.rounds):
            got = one_round(backend, cfg, caches / f"cache-{backend}")
            rounds.append(got)
            print(
                f"{backend} round {r} ready: cold {got['cold_s']:.1f} s reused {got['reused_s']:.2f} s warm-cache "
                f"{got['warm_cache_s']:.1f} s ratio {got['ratio']:.3f}; of which engine start: cold "
                f"{got['cold_start_s']:.1f} s reused {got['reused_start_s']:.3f} s warm-cache "
                f"{got['warm_cache_start_s']:.1f} s; warm worker (spare process) {got['warm_worker_s']:.1f} s ratio "
                f"{got['worker_ratio']:.3f}, its start {got['warm_worker_start_s']:.1f} s, the spare's import "
                f"{got['spare_import_s']:.1f} s; caches cold {got['cold_caches']} warm {got['warm_caches']}",
                flush=True,
            )
        keys = ("cold_s", "reused_s", "warm_cache_s", "ratio", "warm_worker_s", "worker_ratio")
        med = {k: statistics.median(g[k] for g in rounds) for k in keys}
        print(
            f"{backend} median: cold {med['cold_s']:.1f} s, reused {med['reused_s']:.2f} s, warm cache "
            f"{med['warm_cache_s']:.1f} s, warm cache / cold {med['ratio']:.3f} "
            f"(range {min(g['ratio'] for g in rounds):.3f}-{max(g['ratio'] for g in rounds):.3f}), warm worker "
            f"{med['warm_worker_s']:.1f} s, warm worker / cold {med['worker_ratio']:.3f} "
            f"(range {min(g['worker_ratio'] for g in rounds):.3f}-{max(g['worker_ratio'] for g in rounds):.3f})",
            flush=True,
        )
        result[backend] = rounds
        series = result.setdefault("series", {})  # what the targets read
        series[f"{backend}_warm_cache_ratio"] = [g["ratio"] for g in rounds]
        series[f"{backend}_warm_worker_ratio"] = [g["worker_ratio"] for g in rounds]
        shutil.rmtree(caches / f"cache-{backend}", ignore_errors=True)
    shutil.rmtree(caches, ignore_errors=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

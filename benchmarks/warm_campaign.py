"""Issue #26's GPU evidence in one command (the warm-campaign stage of benchmarks/plan.yaml): the platform campaign
twice on one worker, then `compare` on the same machine, and the figures their targets judge.

    python -m benchmarks.warm_campaign --out RUN_DIR [--passes 2] [--campaign examples/campaign-gpu]
    python -m benchmarks.warm_campaign --out RUN_DIR --passes 0     # `compare` alone, on cold caches

1. `python -m energy_assets.ops.demo --campaign examples/campaign-gpu --exit --passes 2 --evidence RUN_DIR/evidence`:
   pass 1 starts every engine with empty caches (a fresh cache folder), pass 2 finds the worker warm; each pass
   writes evidence/pass-N/campaign.json with its wall time by kind and its share inside cycle windows.
2. `llm-energy-measure compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm`: its vLLM engine has
   the campaign's engine arguments, so it starts from the compile cache pass 1 filled, in a process compare started
   at its outset (it imported vLLM while PyTorch's engine loaded; compare_spare_wait_s: what compare waited for that).
3. RUN_DIR/result.json: `series` (what benchmarks/targets/warm-*.yaml judge) and the figures behind them:
   share_pass1, share_pass2 (cycle windows / wall time), vllm_start_warm_over_cold (compare's vLLM engine start over
   pass 1's: each engine's own start, from asking for it to its engine loaded, with weights and compile; not
   the eviction of the engine before it nor the stop after a run: energy_assets.ops.evidence.started_engine_s), and
   compare_exit_code. Each is also printed, one line each.

Exits non-zero when the campaign or compare failed (the result.json is written anyway, with what exists).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from energy_assets.ops.evidence import started_engine_s
from energy_assets.ops.local import engine_cache_root

REPO = Path(__file__).resolve().parents[1]


def vllm_run(campaign: dict) -> dict | None:
    """The campaign's vLLM measurement run (its partition's experiment key names the backend)."""
    return next((r for r in campaign.get("runs", []) if "__vllm|" in (r.get("partition") or "")), None)


def compare_summaries(compare_out: Path) -> dict[str, dict]:
    """backend -> compare's result folder summary for it."""
    out = {}
    for summary in sorted((compare_out / "runs").glob("*/summary.json")):
        data = json.loads(summary.read_text())
        out[data.get("backend")] = data
    return out


def compare_starts(compare_out: Path) -> dict:
    """compare's vLLM engine start (started_engine_s), whether it started in a process compare started at its outset
    (engine_prestarted), and the seconds any run of compare waited for such a process's imports (engine_start spans
    labelled `spare`: the part of the imports the engine start before it did not cover)."""
    runs = compare_summaries(compare_out)
    vllm = runs.get("vllm")
    engines = ((vllm or {}).get("fingerprint") or {}).get("engines") or []
    waits = [
        s["end"] - s["start"]
        for data in runs.values()
        for s in (data.get("wall_time") or {}).get("spans", [])
        if s.get("kind") == "engine_start" and s.get("label") == "spare"
    ]
    return {
        "vllm_start_s": started_engine_s(vllm) if vllm is not None else None,
        "vllm_prestarted": any(e.get("engine_prestarted") for e in engines) if engines else None,
        "spare_wait_s": sum(waits) if runs else None,
    }


def figures(evidence: Path, compare_out: Path, passes: int, compare_code: int | None) -> dict:
    """What the targets judge, from the files the campaign and compare left."""
    out: dict = {"passes": {}}
    for n in range(1, passes + 1):
        path = evidence / f"pass-{n}" / "campaign.json" if passes > 1 else evidence / "campaign.json"
        campaign = json.loads(path.read_text()) if path.is_file() else {}
        run = vllm_run(campaign)
        out["passes"][n] = {
            "wall_s": campaign.get("wall_s"),
            "windows_s": campaign.get("windows_s"),
            "share_in_windows": campaign.get("share_in_windows"),
            "wall_seconds_by_kind": campaign.get("wall_seconds_by_kind"),
            "vllm_engine_start_s": (run or {}).get("engine_start_s"),
        }
    cold = out["passes"].get(1, {}).get("vllm_engine_start_s")
    starts = compare_starts(compare_out)
    warm = starts["vllm_start_s"]
    # compare's start finds warm caches only after a pass filled them: with --passes 0 it is a cold start too
    out["vllm_start_cold_s"], out["vllm_start_compare_s"] = cold, warm
    out["compare_vllm_prestarted"], out["compare_spare_wait_s"] = starts["vllm_prestarted"], starts["spare_wait_s"]
    ratio = warm / cold if warm is not None and cold else None
    series = {f"share_pass{n}": [p["share_in_windows"]] for n, p in out["passes"].items() if p["share_in_windows"]}
    series["vllm_start_warm_over_cold"] = [ratio] if ratio is not None else []
    series["compare_exit_code"] = [compare_code] if compare_code is not None else []
    out["series"] = series
    return out


def write_result(out: Path, result: dict, demo_code: int, work: Path) -> dict:
    """RUN_DIR/result.json, replaced whole (temp file and rename)."""
    result.update(campaign_exit_code=demo_code, work=str(work))
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.replace(out / "result.json")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.warm_campaign", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the run's raw folder ({run_dir} under the ledger)")
    ap.add_argument("--passes", type=int, default=2, help="campaign passes before compare (0: compare alone)")
    ap.add_argument("--campaign", type=Path, default=REPO / "examples" / "campaign-gpu")
    ap.add_argument("--compare", type=Path, default=REPO / "examples" / "compare" / "pytorch-vllm-gpu.yaml")
    ap.add_argument("--backends", default="pytorch,vllm")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds each campaign pass may take")
    ap.add_argument(
        "--work", type=Path, help="Dagster home, storage and caches (default: a fresh temporary folder: cold caches)"
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="lem-warm-campaign-"))
    # one engine cache folder for the campaign's worker and for compare: compare's vLLM start finds pass 1's compile
    # cache. The platform's engine server keeps its caches in its storage (engine_cache_root), whatever
    # LEM_CACHE_DIR says, so compare is pointed there; LEM_CACHE_DIR keeps the models out of the user's cache.
    storage = work / "storage"
    env = dict(os.environ, LEM_CACHE_DIR=str(work / "cache"), LEM_ENGINE_CACHE_DIR=str(engine_cache_root(storage)))
    evidence, compare_out = args.out / "evidence", args.out / "compare"
    demo_code = 0
    if args.passes > 0:
        demo = [sys.executable, "-m", "energy_assets.ops.demo", "--campaign", str(args.campaign), "--exit"]
        demo += ["--passes", str(args.passes), "--evidence", str(evidence), "--timeout", str(args.timeout)]
        demo += ["--home", str(work / "home"), "--storage", str(storage), "--port", "0"]
        print("$ " + " ".join(demo), flush=True)
        demo_code = subprocess.run(demo, cwd=REPO, env=env).returncode
        print(f"campaign exit {demo_code}", flush=True)
    write_result(args.out, figures(evidence, compare_out, args.passes, None), demo_code, work)  # kept if compare is cut
    compare = [sys.executable, "-m", "gpu_ops.cli", "compare", str(args.compare), "--backends", args.backends]
    compare += ["--out", str(compare_out)]
    print("$ " + " ".join(compare), flush=True)
    compare_code = subprocess.run(compare, cwd=REPO, env=env).returncode
    print(f"compare exit {compare_code}", flush=True)
    result = write_result(args.out, figures(evidence, compare_out, args.passes, compare_code), demo_code, work)
    for n, p in result["passes"].items():
        print(f"pass {n}: wall {p['wall_s']} s, cycle windows {p['windows_s']} s, share {p['share_in_windows']}")
        print(f"pass {n}: wall seconds by kind {json.dumps(p['wall_seconds_by_kind'], sort_keys=True)}")
    ratio = next(iter(result["series"]["vllm_start_warm_over_cold"]), None)
    print(
        f"vLLM engine start: cold (pass 1) {result['vllm_start_cold_s']} s, compare's "
        f"({'warm cache' if args.passes else 'cold, no pass before it'}) {result['vllm_start_compare_s']} s, "
        f"ratio {ratio}; compare's vLLM process started at its outset: "
        f"{result['compare_vllm_prestarted']}, compare's runs waited {result['compare_spare_wait_s']} s for its imports"
    )
    return 0 if demo_code == 0 and compare_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

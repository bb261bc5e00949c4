"""Our CLI's vLLM throughput against `vllm bench throughput`, each side in its own fresh process, alternating rounds.

Each round starts two processes, one after the other, in alternating order:
- ours: `llm-energy-measure run` on an experiment file written here (one cycle of all prompts; tokens / the meter's
  window), exactly as a user runs it;
- theirs: vLLM's throughput benchmark (`vllm.benchmarks.throughput.main` with its own argument parser: the code of
  `vllm bench throughput`, which the CPU build's console script cannot start) with the same engine arguments our
  backend resolves for that file (model folder, tokenizer, dtype, load format, max_num_seqs, max_model_len, memory
  share, seed); output tokens / its elapsed time.
The workload is the same on both sides: N random prompts of L tokens, exactly O output tokens (ignore_eos),
temperature 1.0 / top_p 1.0 (vLLM's benchmark's sampling), the prefix cache off on both sides: every process meets its
prompts once. A priming round per side (not counted) fills the compile caches first.

Reported: each round's ratio ours/theirs, their median and its percentile-bootstrap 95 % CI (benchmarks.decision; the
target benchmarks/targets/parity-*.yaml asks for a lower bound >= 0.97). Everything lands in --out: result.json
(series ratio, ours, theirs), our experiment file, each child's log and result.

    python -m benchmarks.vllm_parity --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 --output-len 128 \\
        --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 10 --out {run_dir}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.decision import bootstrap_interval

REPO = Path(__file__).resolve().parents[1]


def experiment(args) -> dict:
    """Our side's experiment file: one cycle of every prompt, no warm-up beyond vLLM's own engine start."""
    return {
        "name": f"parity-{args.max_num_seqs}",
        "model": args.model,
        "backend": "vllm",
        "precision": args.dtype,
        "seed": 0,
        "max_input_tokens": args.input_len,
        "max_output_tokens": args.output_len,
        "min_output_tokens": args.output_len,
        "prompts": {"source": "random", "count": args.prompts, "random": {"input_len": args.input_len}},
        "decoder": {"do_sample": True, "temperature": 1.0, "top_p": 1.0},  # vLLM bench's sampling
        "batching": {"batch_size": args.max_num_seqs},
        "cycles": 1,
        "warmup_requests": args.warmup,
        "cooldown_s": 0,
        "energy": {"idle_baseline_s": 0},
        "vllm": {
            "gpu_memory_utilization": args.gpu_memory_utilization,
            "enforce_eager": args.enforce_eager,
            "max_model_len": args.max_model_len,
            "enable_prefix_caching": False,
        },
    }


def bench_args(cfg_path: Path, json_out: Path, warmup: int) -> list[str]:
    """`vllm bench throughput`'s arguments for the engine our backend starts for this experiment file."""
    from gpu_ops.backends.vllm import engine_kwargs
    from gpu_ops.config import load_config
    from gpu_ops.models import resolve_model

    cfg = load_config(cfg_path)
    kw = engine_kwargs(cfg, resolve_model(cfg.model))
    out = [
        "--backend", "vllm",
        "--model", kw["model"],
        "--tokenizer", kw["tokenizer"],
        "--dtype", kw["dtype"],
        "--seed", str(kw["seed"]),
        "--max-num-seqs", str(kw["max_num_seqs"]),
        "--max-model-len", str(kw["max_model_len"]),
        "--gpu-memory-utilization", str(kw["gpu_memory_utilization"]),
        "--dataset-name", "random",
        "--random-input-len", str(cfg.prompts.random.input_len),
        "--random-output-len", str(cfg.max_output_tokens),
        "--num-prompts", str(cfg.prompts.count),
        "--no-enable-prefix-caching",
        "--output-json", str(json_out),
    ]  # fmt: skip
    if "load_format" in kw:
        out += ["--load-format", kw["load_format"]]
    if kw.get("enforce_eager"):
        out.append("--enforce-eager")
    if warmup:
        out += ["--num-warmups", str(warmup)]
    return out


def theirs_main(cfg_path: Path, json_out: Path, warmup: int) -> int:
    """In the child process: vLLM's own benchmark, started as its console script would start it."""
    from vllm.benchmarks import throughput

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older releases
        from vllm.utils import FlexibleArgumentParser

    from gpu_ops.backends.vllm import engine_core_start

    engine_core_start()  # as our backend does: the comparison is of the measured path, not of the start method
    parser = FlexibleArgumentParser()
    throughput.add_cli_args(parser)
    args = bench_args(cfg_path, json_out, warmup)
    print("vllm bench throughput " + " ".join(args), flush=True)
    throughput.main(parser.parse_args(args))
    return 0


def child(cmd: list[str], log: Path, timeout_s: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - t0


def ours_round(cfg_path: Path, out: Path, name: str, timeout_s: float) -> dict:
    import pandas as pd

    folder = out / "ours" / name
    cmd = [sys.executable, "-m", "gpu_ops.cli", "run", str(cfg_path), "--out", str(folder), "-q"]
    code, wall = child(cmd, out / "logs" / f"{name}-ours.log", timeout_s)
    summaries = sorted(folder.rglob("summary.json"))
    if not summaries:  # the folder is written when the run ends: none means it did not finish
        return {"exit_code": code, "wall_s": wall, "tok_s": None}
    # a blocking check that fails (e.g. the counter-vs-timeline cross-check) exits non-zero after writing the folder:
    # its throughput stands, and the exit code is kept beside it
    cycles = pd.read_parquet(summaries[0].parent / "cycles.parquet")
    return {
        "exit_code": code,
        "wall_s": wall,
        "tok_s": float(cycles.output_tokens.sum() / cycles.duration_s.sum()),
        "result": summaries[0].parent.relative_to(out).as_posix(),
    }


def theirs_round(cfg_path: Path, out: Path, name: str, args, timeout_s: float) -> dict:
    result = out / "theirs" / f"{name}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.vllm_parity", "theirs", "--config", str(cfg_path), "--json", str(result)]
    cmd += ["--warmup", str(args.warmup)]
    code, wall = child(cmd, out / "logs" / f"{name}-theirs.log", timeout_s)
    if code != 0 or not result.is_file():
        return {"exit_code": code, "wall_s": wall, "tok_s": None}
    data = json.loads(result.read_text())
    # ignore_eos: every request returns exactly output_len tokens (vLLM's JSON gives only the total with the prompts)
    tok_s = data["num_requests"] * args.output_len / data["elapsed_time"]
    return {"exit_code": code, "wall_s": wall, "tok_s": tok_s, "elapsed_s": data["elapsed_time"]}


def orchestrate(args) -> int:
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    cfg_path = out / "ours.yaml"
    cfg_path.write_text(yaml.safe_dump(experiment(args), sort_keys=False))
    rounds = []
    names = (["prime"] if args.prime else []) + [f"round-{i:02d}" for i in range(args.rounds)]
    for i, name in enumerate(names):
        first = "ours" if i % 2 == 0 else "theirs"
        got = {"round": name, "first": first}
        for side in (first, "theirs" if first == "ours" else "ours"):
            got[side] = (
                ours_round(cfg_path, out, name, args.child_timeout)
                if side == "ours"
                else theirs_round(cfg_path, out, name, args, args.child_timeout)
            )
        a, b = got["ours"]["tok_s"], got["theirs"]["tok_s"]
        got["ratio"] = a / b if a and b else None
        rounds.append(got)
        ratio = f"{got['ratio']:.4f}" if got["ratio"] else "-"
        print(
            f"{name} ({first} first): ours {a or float('nan'):9.1f} tok/s (exit {got['ours']['exit_code']}, "
            f"{got['ours']['wall_s']:.0f} s)  theirs {b or float('nan'):9.1f} tok/s (exit "
            f"{got['theirs']['exit_code']}, {got['theirs']['wall_s']:.0f} s)  ratio {ratio}",
            flush=True,
        )
        counted = [r for r in rounds if r["round"] != "prime"]
        write_result(out, args, counted)
    return summarise(args, [r for r in rounds if r["round"] != "prime"])


def write_result(out: Path, args, rounds: list[dict]) -> None:
    """result.json after every round, so a stopped run keeps the rounds it finished."""
    ok = [r for r in rounds if r["ratio"]]
    result = {
        "benchmark": "vllm_parity",
        "workload": {k: getattr(args, k) for k in ("model", "dtype", "prompts", "input_len", "output_len",
                                                    "max_num_seqs", "max_model_len", "enforce_eager", "warmup")},
        "series": {
            "ratio": [r["ratio"] for r in ok],
            "ours": [r["ours"]["tok_s"] for r in ok],
            "theirs": [r["theirs"]["tok_s"] for r in ok],
        },
        "rounds": rounds,
    }  # fmt: skip
    tmp = out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.replace(out / "result.json")


def summarise(args, rounds: list[dict]) -> int:
    ratios = [r["ratio"] for r in rounds if r["ratio"]]
    print(
        f"\nworkload: {args.model} {args.dtype}, {args.prompts} prompts x {args.input_len} in / {args.output_len} out, "
        f"max_num_seqs {args.max_num_seqs}, eager={args.enforce_eager}, prefix cache off on both sides"
    )
    if len(ratios) < 2:
        print(f"{len(ratios)} complete round(s) of {len(rounds)}: no interval")
        return 1
    lo, hi = bootstrap_interval(ratios)
    print(
        f"median tok/s: ours {statistics.median(r['ours']['tok_s'] for r in rounds if r['ratio']):.1f}, theirs "
        f"{statistics.median(r['theirs']['tok_s'] for r in rounds if r['ratio']):.1f}"
    )
    print(
        f"paired ratio ours/theirs over {len(ratios)} rounds: median {statistics.median(ratios):.4f}, 95 % bootstrap "
        f"CI {lo:.4f}-{hi:.4f}, min {min(ratios):.4f}, max {max(ratios):.4f} (the verdict is the target's: "
        "benchmarks/targets/parity-*.yaml, judged by python -m benchmarks.report)"
    )
    return 0


def main() -> int:
    if sys.argv[1:2] == ["theirs"]:
        ap = argparse.ArgumentParser(prog="python -m benchmarks.vllm_parity theirs")
        ap.add_argument("theirs")
        ap.add_argument("--config", type=Path, required=True)
        ap.add_argument("--json", type=Path, required=True)
        ap.add_argument("--warmup", type=int, default=0)
        a = ap.parse_args()
        return theirs_main(a.config, a.json, a.warmup)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:small-llama")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=1024)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--gpu-memory-utilization", type=float, default=None)
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=0, help="warm-up requests on both sides (vLLM's --num-warmups)")
    ap.add_argument("--prime", action=argparse.BooleanOptionalAction, default=True, help="an uncounted first round")
    ap.add_argument("--child-timeout", type=float, default=600.0, help="seconds per side per round")
    ap.add_argument("--out", default=os.environ.get("LEM_RUN_DIR"), help="output folder (default: the ledger's)")
    args = ap.parse_args()
    if not args.out:
        ap.error("--out: give an output folder, or run through the ledger (benchmarks.ledger run ... --out {run_dir})")
    if args.rounds < 1:
        ap.error("--rounds: at least 1 (the target needs 10)")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

"""Our vLLM measurement path against vLLM's own `bench throughput` timing, paired rounds on one engine.

Both sides get the same engine (started once, with the engine arguments our config resolves to), the same
token-id prompts, and the same SamplingParams: vLLM's benchmark samples at temperature 1.0, top_p 1.0, ignoring EOS,
so our config asks for exactly that (printed side by side below).
- ours: one cycle as `llm-energy-measure run` measures it (gpu_ops.measure.run_cycle: prefix cache emptied, the
  meter's window around `backend.run`, records and engine metrics after the window); tokens / window length.
- theirs: vLLM's `_run_vllm_requests` (the code `vllm bench throughput` times: perf_counter around `LLM.generate`).
Rounds alternate, and which side goes first alternates too. Reported: each round's paired ratio ours/theirs, their
median and spread, and where our time goes per cycle (the wait before the window, the window's tail after the last
token was delivered, the frontend's lag behind the engine's last token, the collection after the window).

    python benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --max-num-seqs 256 --rounds 8
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time


def config(args):
    from gpu_ops.config import parse_config

    return parse_config(
        {
            "name": "parity",
            "model": args.model,
            "backend": "vllm",
            "precision": args.dtype,
            "seed": 0,
            "max_input_tokens": args.input_len,
            "max_output_tokens": args.output_len,
            "min_output_tokens": args.output_len,
            "prompts": {"source": "random", "count": args.prompts, "random": {"input_len": args.input_len}},
            "decoder": {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0},  # vLLM bench's sampling
            "batching": {"batch_size": args.max_num_seqs},
            "cycles": 1,
            "warmup_requests": args.prompts,
            "cooldown_s": args.cooldown,
            "energy": {"idle_baseline_s": 0},
            "vllm": {
                "gpu_memory_utilization": args.gpu_memory_utilization,
                "enforce_eager": args.enforce_eager,
                "max_model_len": args.max_model_len,
            },
        }
    )


def sample_requests(prompts: list[list[int]], output_len: int) -> list:
    try:
        from vllm.benchmarks.datasets import SampleRequest
    except ImportError:
        from vllm.benchmarks.datasets.datasets import SampleRequest
    return [
        SampleRequest(prompt={"prompt_token_ids": ids}, prompt_len=len(ids), expected_output_len=output_len)
        for ids in prompts
    ]


def theirs(llm, requests) -> float:
    """vLLM's own timed path of `bench throughput` on our engine: returns its elapsed seconds. Its prefix cache is
    emptied first, outside its timer, as ours is before each cycle: `vllm bench` on a fresh engine meets its prompts
    once, while on a shared engine the same prompts would otherwise be served from the cache (prefill skipped)."""
    from vllm.benchmarks import throughput as T

    llm.reset_prefix_cache()
    params = inspect.signature(T._run_vllm_requests).parameters
    kw = {
        k: v
        for k, v in dict(
            n=1, disable_detokenize=False, do_profile=False, prequeue_requests=False, enable_lora=False
        ).items()
        if k in params
    }
    elapsed, _ = T._run_vllm_requests(llm, requests, **kw)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:small-llama")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-num-seqs", type=int, default=32)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--cooldown", type=float, default=0.0, help="cooldown_s of our cycles (the CLI default is 1.0)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=None)
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False)
    args = ap.parse_args()

    from gpu_ops.backends.pytorch import resolve_device
    from gpu_ops.backends.vllm import VllmBackend
    from gpu_ops.energy import build_meter
    from gpu_ops.measure import _requests, run_cycle, trace_hash
    from gpu_ops.prompts import build_prompts

    cfg = config(args)
    backend = VllmBackend()
    t = time.perf_counter()
    backend.load(cfg)
    print(f"engine started in {time.perf_counter() - t:.1f} s: {backend.version()}", flush=True)
    prompts = build_prompts(cfg, backend.tokenizer, backend.vocab_size)
    reqs = sample_requests(prompts, args.output_len)
    from vllm import SamplingParams

    their_params = SamplingParams(
        n=1, temperature=1.0, top_p=1.0, ignore_eos=True, max_tokens=args.output_len, detokenize=True
    )
    print(
        f"ours:   {backend._sampling()}\ntheirs: {their_params}\ntrace {trace_hash(_requests(prompts, cfg, 0.0))}: "
        f"{len(prompts)} prompts, {sum(map(len, prompts))} prompt tokens",
        flush=True,
    )
    backend.warmup(_requests(prompts, cfg, 0.0))
    theirs(backend.llm, reqs)  # both sides warm
    use_cuda = not cfg.device == "cpu" and resolve_device(cfg).startswith("cuda")
    rows = []
    with build_meter(cfg, use_cuda, sync=backend.sync) as meter:
        for i in range(args.rounds):
            order = ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")
            got = {}
            for side in order:
                if side == "ours":
                    c = run_cycle(backend, meter, cfg, prompts, "parity", i)
                    req, w = c.requests, c.window
                    got["ours"] = req.output_tokens.sum() / w.duration_s
                    got["tail_ms"] = 1000 * (w.end_s - req.delivered_s.max())
                    got["lag_ms"] = 1000 * (req.delivered_s.max() - req.last_token_s.max())
                    got["setup_ms"], got["collect_ms"] = 1000 * c.setup_s, 1000 * c.collect_s
                    got["window_s"] = w.duration_s
                else:
                    got["theirs"] = len(reqs) * args.output_len / theirs(backend.llm, reqs)
            got["ratio"] = got["ours"] / got["theirs"]
            rows.append(got)
            print(
                f"round {i} ({order[0]} first): ours {got['ours']:9.1f} tok/s  theirs {got['theirs']:9.1f} tok/s  "
                f"ratio {got['ratio']:.4f} | window {got['window_s']:.3f} s, tail {got['tail_ms']:.2f} ms after "
                f"delivery, frontend lag {got['lag_ms']:.1f} ms, setup {got['setup_ms']:.1f} ms, collect "
                f"{got['collect_ms']:.1f} ms",
                flush=True,
            )
    backend.close()
    ratios = sorted(r["ratio"] for r in rows)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    med = statistics.median(ratios)
    print(
        f"\nworkload: {args.model} {args.dtype}, {args.prompts} prompts x {args.input_len} in / {args.output_len} out, "
        f"max_num_seqs {args.max_num_seqs}, eager={args.enforce_eager}, our cooldown {args.cooldown} s"
    )
    print(
        f"median tok/s: ours {statistics.median(r['ours'] for r in rows):.1f}, theirs "
        f"{statistics.median(r['theirs'] for r in rows):.1f}"
    )
    print(
        f"paired ratio ours/theirs over {len(rows)} rounds: median {med:.4f}, IQR {q[0]:.4f}-{q[2]:.4f}, "
        f"min {ratios[0]:.4f}, max {ratios[-1]:.4f} (goal >= 0.97): {'PASS' if med >= 0.97 else 'FAIL'}"
    )
    print(
        f"median window tail after the last delivered token: {statistics.median(r['tail_ms'] for r in rows):.2f} ms "
        "(goal < 5 ms)"
    )
    return 0 if med >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Why vLLM's engine start hung under our first runner on the H200: three ways to start the same engine with
vLLM's default multiprocessing (the EngineCore is forked from this process), each in a fresh process with a timeout.

- clean: nothing else happened in the parent before the engine starts (what `vllm bench` does).
- cuinit: the parent first asked `torch.cuda.is_available()` the default way, which runs cuInit; a forked child
  inherits a CUDA driver state it cannot use (our runner did this to choose the device).
- nvml-thread: a thread in the parent reads NVML power and energy at 50 Hz while the engine forks (our sampler
  thread did this); a fork while that thread is inside NVML leaves NVML's lock held in the child.

    python benchmarks/vllm_fork_hang.py --model synthetic:llama-3.2-1b --timeout 90
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CHILD = r"""
import os, sys, threading, time
mode, model, tokenizer = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "cuinit":
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"
    import torch
    print("torch.cuda.is_available() (cuInit):", torch.cuda.is_available(), flush=True)
if mode == "nvml-thread":
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    def sample():
        while True:
            pynvml.nvmlDeviceGetPowerUsage(h)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            time.sleep(0.02)
    threading.Thread(target=sample, daemon=True).start()
    print("NVML sampling thread running", flush=True)
from vllm import LLM, SamplingParams
t = time.perf_counter()
llm = LLM(model=model, tokenizer=tokenizer, load_format="dummy", dtype="bfloat16", gpu_memory_utilization=0.25,
          max_model_len=256, enforce_eager=True)
print(f"ENGINE STARTED in {time.perf_counter() - t:.1f} s", flush=True)
out = llm.generate([{"prompt_token_ids": [5] * 16}], SamplingParams(max_tokens=4, ignore_eos=True))
print("GENERATED", len(out[0].outputs[0].token_ids), "tokens", flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="synthetic:llama-3.2-1b")
    ap.add_argument("--modes", default="clean,cuinit,nvml-thread")
    ap.add_argument("--timeout", type=float, default=90)
    args = ap.parse_args()
    from gpu_ops.backends.vllm import synthetic_folder
    from gpu_ops.models import resolve_model

    source = resolve_model(args.model)
    folder = str(synthetic_folder(source)) if source.kind == "synthetic" else str(source.path)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTORCH_NVML_BASED_CUDA_CHECK", "VLLM_WORKER_MULTIPROC_METHOD")
    }
    modes = args.modes.split(",")
    results = {}
    # the clean start alone first; the suspects together (a hung engine holds no compute; the test costs one timeout)
    for group in ([m for m in modes if m == "clean"], [m for m in modes if m != "clean"]):
        results.update(run_group(group, folder, env, args.timeout))
    for mode, (verdict, out) in results.items():
        tail = "\n    ".join(out.strip().splitlines()[-6:])
        print(f"== {mode}: {verdict}\n    {tail}\n", flush=True)
    return 0


def run_group(modes: list[str], folder: str, env: dict, timeout: float) -> dict:
    procs = {
        mode: (
            subprocess.Popen(
                [sys.executable, "-c", CHILD, mode, folder, folder],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            ),
            time.monotonic(),
        )
        for mode in modes
    }
    results = {}
    for mode, (p, started) in procs.items():
        try:
            out, _ = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
            results[mode] = ("started" if "ENGINE STARTED" in out else f"failed (exit {p.returncode})", out)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            out, _ = p.communicate()
            results[mode] = (f"HUNG: no engine after {timeout:.0f} s, killed", out)
    return results


if __name__ == "__main__":
    sys.exit(main())

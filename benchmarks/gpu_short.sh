#!/usr/bin/env bash
# Kept as the record of how sessions 1-5 ran (docs/benchmarks §1-§10); new evidence runs through the ledger
# and the session plan: benchmarks/plan.yaml, benchmarks/gpu_session.sh.
# The last stretch of this session's device time in one bounded call (docs/benchmarks/README.md): counter period,
# vLLM parity at max_num_seqs 256 (prefix caches emptied on both sides), meter overhead on compiled PyTorch and on vLLM.
# vLLM engine cores are spawned, or forked from a thread-free engine host (gpu_ops.backends.vllm.engine_core_start).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LEM_CACHE_DIR=/tmp/lemcache VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_WORKER_MULTIPROC_METHOD=spawn NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
O=${OUT:-/tmp/lem-out}; mkdir -p "$O"
{ nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv
  python3 -c "import torch, vllm, transformers; print('torch', torch.__version__, 'vllm', vllm.__version__, 'transformers', transformers.__version__)"; } > "$O/device.txt" 2>&1
t() { local name=$1 limit=$2; shift 2; local t0=$(date +%s); timeout "$limit" "$@" > "$O/$name.log" 2>&1; echo "$name rc=$? $(( $(date +%s) - t0 )) s" >> "$O/progress.txt"; }
t counter_step 40 python3 benchmarks/counter_step.py --seconds 3
t vllm_parity_256 150 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 \
  --output-len 128 --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 6
t meter_overhead_compiled 100 python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 \
  --prompts 64 --rounds 10 --compiled
t meter_overhead_vllm 90 python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b --batch-size 256 \
  --prompts 512 --tokens 128 --rounds 10
cat "$O/progress.txt"; for f in "$O"/*.log; do echo "== $f"; grep -v "INFO\|WARNING\|it/s\]\|Processed prompts\|Rendering" "$f" | tail -8 | cut -c1-220; done

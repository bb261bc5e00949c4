#!/usr/bin/env bash
# This session's GPU evidence on one 2 x H200 device machine, as two lanes that run side by side (one per GPU),
# then the runs that need both GPUs. Everything runs in the background (setsid) so it outlives a device call;
# later calls only watch and collect. Needs the carried wheels in /tmp/site (benchmarks/README: device_carry.py).
#
#   bash benchmarks/gpu_session.sh start      # start both lanes, return
#   bash benchmarks/gpu_session.sh wait 560   # print progress until done or 560 s passed
#   bash benchmarks/gpu_session.sh pack       # one tarball of every log and result folder into $OUT
#
# Lane A (GPU 0): counter step period, meter overhead (compiled PyTorch), the PyTorch reference workload, the
#   token-hook cost, bs1 roofline, then the Dagster platform campaign (make demo-gpu) on GPU 0.
# Lane B (GPU 1): the vLLM engine-start diagnosis, the vLLM example through the CLI, parity with vLLM's benchmark
#   (max_num_seqs 256 and 64), the meter on vLLM, vLLM features, compare, phase validation, show-tokens,
#   the vLLM reference workload.
# Lane C (both, after A and B): vLLM tensor / pipeline / data parallel on Llama-3.1-8B shapes, and the two-GPU
#   partition added to the running platform's campaign.
set -uo pipefail
R=${LEM_SESSION_DIR:-/tmp/lem-session}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LEM_CACHE_DIR=/tmp/lemcache VLLM_USE_FLASHINFER_SAMPLER=0
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH=/tmp/site/bin:$PATH
lem() { python3 -m gpu_ops.cli "$@"; }

stage() {  # stage NAME COMMAND...: runs it with its log, records wall time and exit code, never stops the lane
  local name=$1; shift
  echo "$(date +%T) start $name" >> "$R/progress"
  local t0=$(date +%s)
  ( "$@" ) > "$R/logs/$name.log" 2>&1
  local rc=$?
  echo "$(date +%T) done  $name rc=$rc $(( $(date +%s) - t0 )) s" >> "$R/progress"
}

lane_a() {
  export CUDA_VISIBLE_DEVICES=0
  stage a1-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -c "import torch, vllm, transformers, dagster; print(torch.__version__, vllm.__version__, transformers.__version__, dagster.__version__)";
    python3 -m gpu_ops.cli list-hardware; python3 -m gpu_ops.cli list-backends'
  stage a2-counter-step python3 benchmarks/counter_step.py --seconds 3
  stage a3-meter-overhead-compiled python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --prompts 64 --rounds 10 --compiled
  stage a4-reference-pytorch lem run examples/reference/steady-h200.yaml --out "$R/results/reference"
  stage a5-token-hook python3 benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 --prompts 128 --rounds 6
  stage a6-roofline-bs1 python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b --only pytorch-compiled-bs1,vllm-bs1 --out "$R/results/roofline"
  stage a7-platform-campaign env LEM_VISIBLE_DEVICES=0,1 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --campaign examples/campaign-gpu --exit --timeout 900 --evidence "$R/platform"
  touch "$R/lane_a.done"
}

lane_b() {
  export CUDA_VISIBLE_DEVICES=1
  stage b1-fork-hang python3 benchmarks/vllm_fork_hang.py --model synthetic:llama-3.2-1b --timeout 90
  stage b2-vllm-cli lem run examples/vllm-gpu.yaml --out "$R/results/vllm-cli"
  stage b3-parity-256 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 --output-len 128 \
    --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 8
  stage b4-parity-64 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 --output-len 128 \
    --max-num-seqs 64 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 6
  stage b5-meter-overhead-vllm python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b --batch-size 256 \
    --prompts 1024 --tokens 128 --rounds 10
  for f in streaming-poisson prefix-cache ngram-speculative kv-pressure phases; do
    stage "b6-$f" lem run "examples/vllm-features/$f.yaml" --out "$R/results/vllm-features"
  done
  stage b7-compare lem compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm --out "$R/results/compare"
  stage b8-show-tokens-off lem run examples/vllm-features/streaming-poisson.yaml --out "$R/results/show-tokens-off" -q
  stage b8-show-tokens-on lem run examples/vllm-features/streaming-poisson.yaml --out "$R/results/show-tokens-on" --show-tokens
  stage b9-reference-vllm lem run examples/reference/steady-h200-vllm.yaml --out "$R/results/reference"
  touch "$R/lane_b.done"
}

lane_c() {
  while [ ! -e "$R/lane_a.done" ] || [ ! -e "$R/lane_b.done" ]; do sleep 5; done
  unset CUDA_VISIBLE_DEVICES
  for n in tp2 pp2 dp2; do
    stage "c1-vllm-8b-$n" lem run "examples/multigpu/llama-8b-vllm-$n.yaml" --out "$R/results/multigpu"
  done
  mkdir -p "$R/campaign-2gpu" && cp examples/multigpu/llama-8b-vllm-tp2.yaml "$R/campaign-2gpu/"
  stage c2-platform-2gpu env LEM_VISIBLE_DEVICES=0,1 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --campaign "$R/campaign-2gpu" --exit --timeout 600 --evidence "$R/platform-2gpu"
  touch "$R/all.done"
}

case "${1:-}" in
  start)
    rm -rf "$R"; mkdir -p "$R/logs" "$R/results"
    setsid bash "$0" lane_a > "$R/logs/lane_a.out" 2>&1 < /dev/null &
    setsid bash "$0" lane_b > "$R/logs/lane_b.out" 2>&1 < /dev/null &
    setsid bash "$0" lane_c > "$R/logs/lane_c.out" 2>&1 < /dev/null &
    sleep 2; cat "$R/progress" 2>/dev/null; echo "lanes started" ;;
  lane_a) lane_a ;;
  lane_b) lane_b ;;
  lane_c) lane_c ;;
  wait)
    end=$(( $(date +%s) + ${2:-540} ))
    seen=0
    while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$R/all.done" ]; do
      n=$(wc -l < "$R/progress"); if [ "$n" -gt "$seen" ]; then tail -n +$((seen + 1)) "$R/progress"; seen=$n; fi
      sleep 5
    done
    tail -n +$((seen + 1)) "$R/progress"; [ -e "$R/all.done" ] && echo "ALL DONE" || echo "still running" ;;
  pack)  # the device returns files of at most 16 MiB: larger tarballs come back in 15 MiB pieces (cat them back together)
    tar czf "$OUT/logs.tgz" -C "$R" logs progress
    tar czf "$OUT/results.tgz" -C "$R" results
    tar czf "$OUT/platform.tgz" -C "$R" platform platform-2gpu storage/assets/raw_measurements storage/experiments 2>/dev/null
    for f in "$OUT"/results.tgz "$OUT"/platform.tgz; do
      if [ "$(stat -c %s "$f")" -gt 15728640 ]; then split -b 15m -d "$f" "$f.part"; rm "$f"; fi
    done
    ls -la "$OUT"; cat "$R/progress" ;;
  *) echo "usage: $0 start | wait [seconds] | pack" >&2; exit 2 ;;
esac

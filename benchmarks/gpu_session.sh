#!/usr/bin/env bash
# This session's GPU evidence on one H200, in priority order, in the background (setsid) so it outlives a device call;
# later calls only watch and collect. Needs the carried wheels in /tmp/site (docs/benchmarks/README.md, "How to run").
#
#   bash benchmarks/gpu_session.sh start      # start, return (the next session with device time: session8-start)
#   bash benchmarks/gpu_session.sh wait 560   # print progress until done or 560 s passed
#   bash benchmarks/gpu_session.sh pack       # tarballs of every log and result folder into $OUT
#
# Order: device and counter period; the vLLM engine-start diagnosis; vLLM through the CLI; parity with vLLM's own
# benchmark (max_num_seqs 256 and 64); meter overhead (compiled PyTorch, vLLM); the reference workloads (PyTorch,
# vLLM); vLLM features; compare; bs1 roofline; the token-hook cost; --show-tokens; the Dagster platform campaign.
# Two-GPU runs (vLLM tp2/pp2/dp2) need the nvidia-h200-x2 kind: `bash benchmarks/gpu_session.sh multigpu`.
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

session() {
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -c "import torch, vllm, transformers, dagster; print(\"torch\", torch.__version__, \"vllm\", vllm.__version__, \"transformers\", transformers.__version__, \"dagster\", dagster.__version__)";
    python3 -m gpu_ops.cli list-hardware; python3 -m gpu_ops.cli list-backends'
  stage 02-counter-step python3 benchmarks/counter_step.py --seconds 3
  stage 03-fork-hang python3 benchmarks/vllm_fork_hang.py --model synthetic:llama-3.2-1b --timeout 45
  stage 04-vllm-cli lem run examples/vllm-gpu.yaml --out "$R/results/vllm-cli"
  stage 05-parity-256 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 --output-len 128 \
    --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 6
  stage 06-parity-64 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 512 --input-len 128 --output-len 128 \
    --max-num-seqs 64 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 4
  stage 07-meter-overhead-compiled python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 \
    --prompts 64 --rounds 10 --compiled
  stage 08-meter-overhead-vllm python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b --batch-size 256 \
    --prompts 512 --tokens 128 --rounds 10
  stage 09-reference-pytorch lem run examples/reference/steady-h200.yaml --out "$R/results/reference"
  stage 10-reference-vllm lem run examples/reference/steady-h200-vllm.yaml --out "$R/results/reference"
  for f in streaming-poisson prefix-cache ngram-speculative kv-pressure phases; do
    stage "11-$f" lem run "examples/vllm-features/$f.yaml" --out "$R/results/vllm-features"
  done
  stage 12-compare lem compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm --out "$R/results/compare"
  stage 13-roofline-bs1 python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b --only pytorch-compiled-bs1,vllm-bs1 \
    --out "$R/results/roofline"
  stage 14-token-hook python3 benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 --prompts 64 --rounds 4
  stage 15-show-tokens lem run examples/vllm-features/streaming-poisson.yaml --out "$R/results/show-tokens" --show-tokens
  stage 16-platform-campaign python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" --port 3000 \
    --campaign examples/campaign-gpu --exit --timeout 900 --evidence "$R/platform"
  touch "$R/all.done"
}

session2() {  # the same evidence, reordered after the first pass used most of the device time (docs/benchmarks)
  stage 05b-parity-256 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 --input-len 128 \
    --output-len 128 --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 6
  stage 07-meter-overhead-compiled python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 \
    --prompts 64 --rounds 10 --compiled
  stage 08-meter-overhead-vllm python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b --batch-size 256 \
    --prompts 512 --tokens 128 --rounds 10
  stage 16-platform-campaign python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" --port 3000 \
    --campaign examples/campaign-gpu --exit --timeout 900 --evidence "$R/platform"
  stage 09-reference-pytorch lem run examples/reference/steady-h200.yaml --out "$R/results/reference"
  for f in streaming-poisson prefix-cache kv-pressure phases ngram-speculative; do
    stage "11-$f" lem run "examples/vllm-features/$f.yaml" --out "$R/results/vllm-features"
  done
  stage 10-reference-vllm lem run examples/reference/steady-h200-vllm.yaml --out "$R/results/reference"
  stage 12-compare lem compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm --out "$R/results/compare"
  stage 13-roofline-bs1 python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b --only pytorch-compiled-bs1,vllm-bs1 \
    --out "$R/results/roofline"
  touch "$R/all.done"
}

session3() {  # session 6: the platform campaign first (never run on a GPU before), then vLLM's evidence, then the meter's
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -c "import torch, vllm, transformers, dagster; print(\"torch\", torch.__version__, \"vllm\", vllm.__version__, \"transformers\", transformers.__version__, \"dagster\", dagster.__version__)";
    python3 -m gpu_ops.cli list-hardware; python3 -m gpu_ops.cli list-backends'
  stage 02-counter-step python3 benchmarks/counter_step.py --seconds 3
  stage 16-platform-campaign timeout 540 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --port 3000 --campaign examples/campaign-gpu --exit --timeout 500 --evidence "$R/platform"
  stage 04-vllm-cli timeout 150 python3 -m gpu_ops.cli run examples/vllm-gpu.yaml --out "$R/results/vllm-cli"
  for f in streaming-poisson prefix-cache ngram-speculative kv-pressure phases; do
    stage "11-$f" timeout 150 python3 -m gpu_ops.cli run "examples/vllm-features/$f.yaml" --out "$R/results/vllm-features"
  done
  stage 12-compare timeout 240 python3 -m gpu_ops.cli compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm \
    --out "$R/results/compare"
  stage 13-roofline-bs1 timeout 200 python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b \
    --only pytorch-compiled-bs1,vllm-bs1 --out "$R/results/roofline"
  stage 05c-parity-256 timeout 300 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 \
    --input-len 128 --output-len 128 --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 10
  stage 09-reference-pytorch timeout 400 python3 -m gpu_ops.cli run examples/reference/steady-h200.yaml --out "$R/results/reference"
  stage 10-reference-vllm timeout 400 python3 -m gpu_ops.cli run examples/reference/steady-h200-vllm.yaml --out "$R/results/reference"
  stage 07-meter-overhead-compiled python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 \
    --tokens 128 --prompts 64 --rounds 12 --compiled
  stage 08-meter-overhead-vllm python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b \
    --batch-size 256 --prompts 512 --tokens 128 --rounds 12
  stage 14-token-hook python3 benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 --prompts 64 --rounds 4
  touch "$R/all.done"
}

session4() {  # session 6, second machine: the platform campaign with the cross-check rule fixed, then what time allows
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -m gpu_ops.cli list-hardware'
  stage 16-platform-campaign python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --port 3000 --campaign examples/campaign-gpu --exit --timeout 900 --evidence "$R/platform"
  stage 04-vllm-cli timeout 300 python3 -m gpu_ops.cli run examples/vllm-gpu.yaml --out "$R/results/vllm-cli"
  stage 09-reference-pytorch timeout 400 python3 -m gpu_ops.cli run examples/reference/steady-h200.yaml --out "$R/results/reference"
  touch "$R/all.done"
}

after_campaign() {  # what #20 and #13 still need, in that order (--show-tokens ran in session 7)
  stage 11-phases timeout 240 python3 -m gpu_ops.cli run examples/vllm-features/phases.yaml --out "$R/results/vllm-features"
  stage 17-attention-kernels timeout 300 python3 -m gpu_ops.cli run examples/attention-kernels.yaml --out "$R/results/attention"
  stage 18-attention-kernels-vllm timeout 240 python3 -m gpu_ops.cli run examples/attention-kernels-vllm.yaml \
    --out "$R/results/attention"
  stage 05d-parity-256 timeout 300 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 1024 \
    --input-len 128 --output-len 128 --max-num-seqs 256 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 10
  for f in kv-pressure prefix-cache ngram-speculative; do
    stage "11-$f" timeout 200 python3 -m gpu_ops.cli run "examples/vllm-features/$f.yaml" --out "$R/results/vllm-features"
  done
  stage 12-compare timeout 300 python3 -m gpu_ops.cli compare examples/compare/pytorch-vllm-gpu.yaml --backends pytorch,vllm \
    --out "$R/results/compare"
  stage 13-roofline-bs1 timeout 240 python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b \
    --only pytorch-compiled-bs1,vllm-bs1 --out "$R/results/roofline"
  stage 06d-parity-64 timeout 240 python3 benchmarks/vllm_parity.py --model synthetic:llama-3.2-1b --prompts 512 \
    --input-len 128 --output-len 128 --max-num-seqs 64 --max-model-len 512 --gpu-memory-utilization 0.5 --rounds 10
  stage 07c-meter-overhead-compiled-control timeout 300 python3 benchmarks/meter_overhead.py \
    --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --prompts 96 --rounds 12 --compiled --control
  stage 08c-meter-overhead-vllm-control timeout 300 python3 benchmarks/meter_overhead.py --backend vllm \
    --model synthetic:llama-3.2-1b --batch-size 256 --prompts 1024 --tokens 128 --rounds 10 --control
}

session5() {  # session 7: what closes #15, #16 and #20 first (one machine, 30 min), then #13's remaining evidence
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -c "import torch, vllm, transformers, dagster; print(\"torch\", torch.__version__, \"vllm\", vllm.__version__, \"transformers\", transformers.__version__, \"dagster\", dagster.__version__)";
    python3 -m gpu_ops.cli list-hardware'
  stage 09-reference-pytorch timeout 330 python3 -m gpu_ops.cli run examples/reference/steady-h200.yaml --out "$R/results/reference"
  stage 07-meter-overhead-compiled timeout 240 python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b \
    --batch-size 16 --tokens 128 --prompts 96 --rounds 12 --compiled
  stage 14-token-hook timeout 200 python3 benchmarks/token_hook.py --model synthetic:llama-3.2-1b --batch-size 16 \
    --prompts 96 --rounds 6 --display
  stage 16-platform-campaign timeout 720 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --port 3000 --campaign examples/campaign-gpu --exit --timeout 660 --evidence "$R/platform"
  stage 10-reference-vllm timeout 330 python3 -m gpu_ops.cli run examples/reference/steady-h200-vllm.yaml --out "$R/results/reference"
  stage 08-meter-overhead-vllm timeout 240 python3 benchmarks/meter_overhead.py --backend vllm --model synthetic:llama-3.2-1b \
    --batch-size 256 --prompts 1024 --tokens 128 --rounds 10
  after_campaign
  touch "$R/all.done"
}

session6() {  # next session: the platform campaign first, with room for statistics, leaderboard, site and snapshot
  # after its ~11 min of GPU runs (session 7 stopped it at 660 s, just after its last raw partition), then #20, #13
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -m gpu_ops.cli list-hardware'
  stage 16-platform-campaign timeout 1150 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --port 3000 --campaign examples/campaign-gpu --exit --timeout 1100 --evidence "$R/platform"
  after_campaign
  touch "$R/all.done"
}

session8() {  # the next session with device time: #20's evidence first (closest to done), #13's, then the
  # campaign with session 8's automation (statistics after each partition), which no device time was left to run
  stage 01-device bash -c 'nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv;
    python3 -m gpu_ops.cli list-hardware'
  after_campaign
  stage 16-platform-campaign timeout 1150 python3 -m energy_assets.demo --home "$R/dagster_home" --storage "$R/storage" \
    --port 3000 --campaign examples/campaign-gpu --exit --timeout 1100 --evidence "$R/platform"
  touch "$R/all.done"
}

multigpu() {  # on nvidia-h200-x2: vLLM tensor / pipeline / data parallel, and their one-GPU baseline
  stage 21-vllm-8b-tp1 lem run examples/multigpu/llama-8b-vllm-tp1.yaml --out "$R/results/multigpu"
  for n in tp2 pp2 dp2; do
    stage "21-vllm-8b-$n" lem run "examples/multigpu/llama-8b-vllm-$n.yaml" --out "$R/results/multigpu"
  done
  touch "$R/all.done"
}

case "${1:-}" in
  start|multigpu-start|session2-start|session3-start|session4-start|session5-start|session6-start|session8-start)
    [ "$1" = session2-start ] || rm -rf "$R"
    mkdir -p "$R/logs" "$R/results"; rm -f "$R/all.done"
    what=session; [ "$1" = multigpu-start ] && what=multigpu; [ "$1" = session2-start ] && what=session2
    [ "$1" = session3-start ] && what=session3
    [ "$1" = session4-start ] && what=session4
    [ "$1" = session5-start ] && what=session5
    [ "$1" = session6-start ] && what=session6
    [ "$1" = session8-start ] && what=session8
    setsid bash "$0" "$what" > "$R/logs/$what.out" 2>&1 < /dev/null &
    sleep 2; cat "$R/progress" 2>/dev/null; echo "$what started" ;;
  session) session ;;
  session2) session2 ;;
  session3) session3 ;;
  session4) session4 ;;
  session5) session5 ;;
  session6) session6 ;;
  session8) session8 ;;
  multigpu) multigpu ;;
  wait)
    end=$(( $(date +%s) + ${2:-540} ))
    seen=0
    while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$R/all.done" ]; do
      n=$(wc -l < "$R/progress"); if [ "$n" -gt "$seen" ]; then tail -n +$((seen + 1)) "$R/progress"; seen=$n; fi
      sleep 5
    done
    tail -n +$((seen + 1)) "$R/progress"; [ -e "$R/all.done" ] && echo "ALL DONE" || echo "still running"
    [ -n "${3:-}" ] && bash "$0" pack > /dev/null ;;  # `wait N pack`: what is there so far comes back with this call
  pack)  # the device returns files of at most 16 MiB: larger tarballs come back in 15 MiB pieces (cat them back together)
    tar czf "$OUT/logs.tgz" -C "$R" logs progress
    tar czf "$OUT/results.tgz" -C "$R" results
    tar czf "$OUT/platform.tgz" -C "$R" platform storage dagster_home 2>/dev/null
    for f in "$OUT"/results.tgz "$OUT"/platform.tgz; do
      if [ "$(stat -c %s "$f")" -gt 15728640 ]; then split -b 15m -d "$f" "$f.part"; rm "$f"; fi
    done
    ls -la "$OUT"; cat "$R/progress" ;;
  *) echo "usage: $0 start | multigpu-start | wait [seconds] | pack" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A GPU session of the evidence plan (benchmarks/plan.yaml, docs/benchmarks/README.md "GPU session plan"): every open
# stage in priority order, each through the run ledger with its target, in the background (setsid) so it outlives a
# device call; later calls only watch and pack. Needs the carried wheels in /tmp/site (vllm 0.25.0, dagster 1.13.27:
# docs/benchmarks/README.md) and LEM_GIT_COMMIT (the commit the tree was copied from; the copy has no .git).
#
#   LEM_GIT_COMMIT=<sha> bash benchmarks/gpu_session.sh start [BUDGET_S] [--only a,b | --from id]
#   bash benchmarks/gpu_session.sh wait 530 pack    # progress until done or 530 s passed, then pack into $OUT
#   bash benchmarks/gpu_session.sh pack             # <= 8 files into $OUT: ledger.jsonl, progress, session.tgz.NN
# Back here: python -m benchmarks.plan unpack <files_at> && python -m benchmarks.report
set -uo pipefail
R=${LEM_SESSION_DIR:-/tmp/lem-session}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 LEM_CACHE_DIR=/tmp/lemcache VLLM_USE_FLASHINFER_SAMPLER=0
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH=/tmp/site/bin:$PATH
export LEM_LEDGER=$R/ledger.jsonl LEM_RAW_ROOT=$R/runs

case "${1:-}" in
  start)
    shift
    budget=${1:-1500}; shift || true
    [ -n "${LEM_GIT_COMMIT:-}" ] || echo "warning: LEM_GIT_COMMIT is not set; the ledger records the commit as unknown" >&2
    rm -rf "$R"; mkdir -p "$R/runs"
    { nvidia-smi --query-gpu=index,name,driver_version,power.limit,mig.mode.current --format=csv
      python3 -m benchmarks.plan show; } 2>&1 | tee "$R/plan-at-start.txt"
    setsid python3 -m benchmarks.plan run --root "$R" --budget-s "$budget" "$@" > "$R/plan.out" 2>&1 < /dev/null &
    sleep 2; cat "$R/progress" 2>/dev/null; echo "plan started (budget $budget s)" ;;
  wait)
    end=$(( $(date +%s) + ${2:-530} )); seen=0
    while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$R/all.done" ]; do
      n=$(wc -l < "$R/progress" 2>/dev/null || echo 0)
      if [ "$n" -gt "$seen" ]; then tail -n +$((seen + 1)) "$R/progress"; seen=$n; fi
      sleep 5
    done
    tail -n +$((seen + 1)) "$R/progress" 2>/dev/null; [ -e "$R/all.done" ] && echo "ALL DONE" || echo "still running"
    [ "${3:-}" = pack ] && python3 -m benchmarks.plan pack --root "$R" --out "${OUT:-/tmp/lem-out}" ;;
  pack)
    python3 -m benchmarks.plan pack --root "$R" --out "${OUT:-/tmp/lem-out}" ;;
  *) echo "usage: $0 start [BUDGET_S] [--only IDS | --from ID] | wait [SECONDS] [pack] | pack" >&2; exit 2 ;;
esac

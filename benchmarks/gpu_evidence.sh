#!/usr/bin/env bash
# Kept as the record of how sessions 1-5 ran (docs/benchmarks §1-§10); new evidence runs through the ledger
# and the session plan: benchmarks/plan.yaml, benchmarks/gpu_session.sh.
# GPU evidence for docs/benchmarks/, run on the lent device machine (one stage per call, each < 10 min):
#   bash benchmarks/gpu_evidence.sh engine     # list-hardware, llama-1b example (3 cycles x 2 batch sizes), meter overhead
#   bash benchmarks/gpu_evidence.sh roofline   # bs1/bs64 eager vs compiled static cache; meter overhead (compiled)
#   bash benchmarks/gpu_evidence.sh overhead   # cost of each NVML query; meter on/off (compiled path)
#   bash benchmarks/gpu_evidence.sh zeus       # our counter windows vs ZeusMonitor windows (zeus + tyro wheels in .whl/)
#   bash benchmarks/gpu_evidence.sh counter    # energy-counter step period; what the meter records for 5 ms .. 1 s windows
#   bash benchmarks/gpu_evidence.sh campaign   # 20-sweep-point campaign: share of wall time in measured windows
#   bash benchmarks/gpu_evidence.sh multigpu [tp1 tp2 dp2 2gpu]  # synthetic Llama-3.1-8B on 1 GPU vs TP=2, DP=2 (2gpu: both as sweep points): needs 2 GPUs
# Needs pydantic wheels in .whl/ (the device image has no pydantic). Output goes to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lem-out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 LEM_CACHE_DIR=/tmp/lemcache
lem() { python3 -m gpu_ops.cli "$@"; }
case "${1:-engine}" in
  engine)
    { nvidia-smi --query-gpu=name,driver_version,power.limit,mig.mode.current --format=csv; lem list-hardware; lem list-backends; } 2>&1 | tee "$OUT/device.txt"
    lem run examples/llama-1b-gpu.yaml --out /tmp/res -q 2>&1 | tee "$OUT/llama-1b-run.log"
    for d in /tmp/res/*/; do lem validate "$d"; python3 - "$d" <<'PY'
import sys, json, pandas as pd
d = sys.argv[1]
s = json.load(open(d + "summary.json"))
c = pd.read_parquet(d + "cycles.parquet")
w = pd.read_parquet(d + "windows.parquet")
print("idle W before/after:", [round(x, 1) for x in w[w.kind.str.startswith("idle")].avg_power_w])
cols = ["sweep_point", "cycle", "duration_s", "output_tokens", "tokens_per_s", "gross_energy_j", "timeline_energy_j",
        "cross_check_rel_diff", "net_energy_j", "j_per_token", "net_j_per_token", "avg_power_w", "peak_power_w",
        "prefill_energy_j", "decode_energy_j", "ttft_p50_s", "tpot_mean_s", "n_samples", "foreign_processes", "temp_max_c"]
print(c[cols].to_string(index=False))
for p in s["sweep_points"]:
    print(p["sweep_point"], "J/token mean %.5f ± %.5f (CV %.4f); net %.5f; tok/s %.1f (CV %.4f)" % (
        p["j_per_token_mean"], p["j_per_token_ci95"], p["j_per_token_cv"], p["net_j_per_token_mean"], p["tokens_per_s_mean"], p["tokens_per_s_cv"]))
PY
    done 2>&1 | tee "$OUT/llama-1b-summary.txt"
    python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --rounds 6 2>&1 | tee "$OUT/meter_overhead.log"
    tar czf "$OUT/results-engine.tgz" -C /tmp res
    ;;
  roofline)
    python3 benchmarks/decode_roofline.py --model synthetic:llama-3.2-1b --out /tmp/roof 2>&1 | tee "$OUT/roofline.log"
    python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --rounds 8 --compiled 2>&1 | tee "$OUT/meter_overhead_compiled.log"
    tar czf "$OUT/results-roofline.tgz" -C /tmp roof
    ;;
  overhead)
    python3 benchmarks/nvml_call_cost.py 2>&1 | tee "$OUT/nvml_call_cost.log"
    python3 benchmarks/meter_overhead.py --model synthetic:llama-3.2-1b --batch-size 16 --tokens 128 --rounds 8 --compiled 2>&1 | tee "$OUT/meter_overhead_compiled.log"
    ;;
  counter)
    python3 benchmarks/counter_step.py --seconds 3 2>&1 | tee "$OUT/counter_step.log"
    ;;
  zeus)
    lem run examples/zeus-gpu.yaml --out /tmp/zeus -q 2>&1 | tee "$OUT/zeus-run.log"
    python3 - /tmp/zeus/*/ <<'PY' 2>&1 | tee "$OUT/zeus-crosscheck.txt"
import sys, pandas as pd
c = pd.read_parquet(sys.argv[1] + "cycles.parquet")
c["zeus_vs_counter"] = (c.zeus_energy_j - c.gross_energy_j) / c.gross_energy_j
print(c[["cycle", "duration_s", "gross_energy_j", "zeus_energy_j", "zeus_vs_counter", "timeline_energy_j", "cross_check_rel_diff"]].to_string(index=False))
PY
    ;;
  multigpu)
    shift
    { nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,mig.mode.current --format=csv; lem list-hardware; } 2>&1 | tee "$OUT/device-multigpu.txt"
    for v in "${@:-tp1 tp2}"; do
      for name in $v; do
        start=$(date +%s)
        lem run "examples/multigpu/llama-8b-$name.yaml" --out /tmp/mg 2>&1 | grep -v "it/s\]" | tee "$OUT/multigpu-$name.log"
        echo "$name: $(( $(date +%s) - start )) s wall" | tee -a "$OUT/multigpu-$name.log"
      done
    done
    python3 - /tmp/mg/*/ <<'PY' 2>&1 | tee "$OUT/multigpu-summary.txt"
import sys, json, pandas as pd
for d in sys.argv[1:]:
    s = json.load(open(d + "summary.json"))
    c = pd.read_parquet(d + "cycles.parquet")
    sp = pd.read_parquet(d + "sweep_points.parquet")
    w = pd.read_parquet(d + "windows.parquet")
    print(f"== {s['name']} on {s['hardware']} (world {sp.get('backend_world_size', pd.Series([1])).iloc[0]}, "
          f"params on rank-0 GPU {sp.backend_parameters_on_this_device.iloc[0]:,} of {sp.backend_parameters.iloc[0]:,})")
    print("idle W before/after:", [round(x, 1) for x in w[w.kind.str.startswith("idle")].avg_power_w])
    print(c[["cycle", "duration_s", "output_tokens", "tokens_per_s", "gross_energy_j", "gpu_energy_by_device_j", "cross_check_rel_diff",
             "j_per_token", "net_j_per_token", "avg_power_w", "ttft_p50_s", "tpot_mean_s", "foreign_processes"]].to_string(index=False))
    for p in s["sweep_points"]:
        print("J/token %.4f ± %.4f (CV %.3f); net %.4f; tok/s %.1f ± %.1f; tokens/J %.2f" % (
            p["j_per_token_mean"], p["j_per_token_ci95"], p["j_per_token_cv"], p["net_j_per_token_mean"], p["tokens_per_s_mean"],
            p["tokens_per_s_ci95"], p["tokens_per_j_mean"]))
PY
    for d in /tmp/mg/*/; do lem validate "$d"; done 2>&1 | tee -a "$OUT/multigpu-summary.txt"
    tar czf "$OUT/results-multigpu.tgz" -C /tmp mg
    ;;
  campaign)
    python3 benchmarks/campaign.py --model synthetic:llama-3.2-1b --precision bf16 --cooldown "${COOLDOWN:-0.2}" --out /tmp/campaign 2>&1 | tee "$OUT/campaign.log"
    ;;
esac

"""Every column the engine and the platform publish: unit and meaning, defined once.

The dataset card and the site read this; a test fails when a published column has no entry here.
Statistic columns `<metric>_{mean,std,ci95,cv}` and `backend_<key>` columns are described by rule.
"""

from __future__ import annotations

S, J, W = "s", "J", "W"
COLUMNS: dict[str, tuple[str, str]] = {
    # identity and configuration
    "name": ("", "experiment name from its YAML file"),
    "model": ("", "model spec: builtin:, synthetic: (real architecture, random weights), a local folder or a hub id"),
    "backend": ("", "inference backend: pytorch, vllm or tensorrt"),
    "hardware": ("", "hardware profile slug, e.g. nvidia-h100-80gb-hbm3-x1 or cpu-intel-xeon-2c"),
    "weights": ("", "'real' or 'synthetic' (random weights with the real model's shapes: same FLOPs and bytes, meaningless text)"),
    "experiment_key": ("", "partition key part `model__backend`"),
    "partition_key": ("", "Dagster partition `experiment|hardware`: the key to the raw run in the Dagster UI"),
    "config_hash": ("", "hash of the fully resolved config of the sweep point (or experiment)"),
    "config_json": ("", "fully resolved config as JSON"),
    "overrides_json": ("", "sweep values that define this sweep point, as JSON"),
    "non_defaults_json": ("", "config fields that differ from the defaults, as JSON"),
    "trace_hash": ("", "hash of the request trace (prompt token ids, arrival offsets, token limits); equal hashes = same workload"),
    "schema_version": ("", "result-folder schema version"),
    "package_version": ("", "llm-energy-measure version that measured"),
    "started_at": ("UTC", "when the run took its devices (per-GPU locks held), ISO 8601"),
    "finished_at": ("UTC", "when the run was done with its devices, ISO 8601"),
    "fingerprint_json": ("", "environment fingerprint: driver, CUDA, library versions, GPU names, hashed host and GPU UUIDs"),
    "fingerprint_hash": ("", "hash of the environment fingerprint"),
    "meter_json": ("", "energy meter set-up: sources, sampling rate, counter update period, attribution"),
    "cross_check_tolerance": ("fraction", "allowed |timeline - counter| / counter before a window fails its cross-check"),
    "sweep_point": ("", "label of the sweep point (its sweep values), 'default' without a sweep"),
    "cycle": ("", "cycle index within the sweep point (0-based)"),
    "precision": ("", "weight/activation precision: fp32, fp16, bf16, int8, int4"),
    "batch_size": ("requests", "batch size (whole-batch strategies) or cap on running sequences (continuous batching)"),
    "parallelism": ("", "how the model was split over the GPUs: tpN tensor, ppN pipeline, dpN data-parallel replicas; 'single' = not split"),
    "n_cycles": ("cycles", "cycles aggregated in this row"),
    # windows and meter
    "kind": ("", "window kind: idle_before, warmup, cycle, idle_after"),
    "start_s": (S, "window start on the run clock"),
    "end_s": (S, "window end on the run clock"),
    "window_start_s": (S, "measured window start on the run clock"),
    "window_end_s": (S, "measured window end on the run clock"),
    "duration_s": (S, "measured window length"),
    "gpu_energy_status": ("", "'measured' or 'unmeasured' (then gpu_unmeasured_reason says why; never 0)"),
    "gpu_unmeasured_reason": ("", "why GPU energy is unmeasured"),
    "gpu_energy_j": (J, "GPU energy from the NVML energy counter, summed over the run's GPUs"),
    "gpu_energy_by_device_j": (J, "per-GPU counter energy, `device=J` pairs separated by ';'"),
    "timeline_energy_j": (J, "energy integrated from the sampled power timeline (cross-check of the counter)"),
    "cross_check_rel_diff": ("fraction", "(timeline energy - counter energy) / counter energy"),
    "n_samples": ("samples", "power samples inside the window"),
    "too_short": ("", "true when the window spans fewer than 10 counter updates (~1 s)"),
    "foreign_processes": ("", "PIDs of other processes seen on the run's GPUs during the window"),
    "throttle_reasons": ("bitmask", "OR of NVML clock-event reasons seen (0x1 = idle)"),
    "temp_min_c": ("°C", "lowest GPU temperature seen"),
    "temp_max_c": ("°C", "highest GPU temperature seen"),
    "sm_clock_min_mhz": ("MHz", "lowest SM clock seen"),
    "sm_clock_max_mhz": ("MHz", "highest SM clock seen"),
    "power_limit_w": (W, "enforced power limit, summed over the run's GPUs"),
    "zeus_energy_j": (J, "the same window measured by Zeus (when energy.zeus is on)"),
    "mig_attribution": ("", "how a MIG slice's energy is attributed (the parent GPU's counter is shared)"),
    "mig_attributed_energy_j": (J, "energy attributed to the MIG slice by compute fraction"),
    "cpu_energy_status": ("", "'measured' (RAPL) or 'unmeasured'"),
    "cpu_unmeasured_reason": ("", "why CPU energy is unmeasured"),
    "cpu_energy_j": (J, "CPU package energy from RAPL"),
    "idle_power_w": (W, "idle GPU power: mean of the idle windows before and after the run"),
    "idle_before_w": (W, "idle GPU power before the first cycle"),
    "idle_after_w": (W, "idle GPU power after the last cycle"),
    "t_s": (S, "sample time on the run clock"),
    "device": ("", "GPU label within the run (gpu0, gpu1, ...)"),
    "power_w": (W, "instantaneous power sample"),
    "temp_c": ("°C", "GPU temperature sample"),
    "sm_clock_mhz": ("MHz", "SM clock sample"),
    # cycle metrics
    "requests": ("requests", "requests completed in the cycle"),
    "input_tokens": ("tokens", "prompt tokens in the cycle"),
    "output_tokens": ("tokens", "generated tokens"),
    "tokens_per_s": ("tokens/s", "output tokens / window duration"),
    "requests_per_s": ("requests/s", "requests / window duration"),
    "energy_status": ("", "'measured' or 'unmeasured' (then unmeasured_reason says why; energy columns are empty, never 0)"),
    "unmeasured_reason": ("", "why energy is unmeasured"),
    "gross_energy_j": (J, "GPU energy of the window (counter), idle included"),
    "net_energy_j": (J, "gross energy - idle power x duration"),
    "j_per_token": ("J/token", "gross energy / output tokens"),
    "net_j_per_token": ("J/token", "net energy / output tokens"),
    "tokens_per_j": ("tokens/J", "output tokens / gross energy"),
    "j_per_request": ("J/request", "gross energy / requests"),
    "avg_power_w": (W, "gross energy / duration"),
    "peak_power_w": (W, "highest power sample in the window"),
    "peak_memory_bytes": ("bytes", "peak device memory allocated by the backend (empty when the engine preallocates)"),
    "ttft_mean_s": (S, "mean time to first token (first token - arrival)"),
    "ttft_p50_s": (S, "median TTFT"),
    "ttft_p99_s": (S, "99th percentile TTFT"),
    "tpot_mean_s": (S, "mean time per output token, (E2E - TTFT) / (output tokens - 1)"),
    "tpot_p50_s": (S, "median TPOT"),
    "tpot_p99_s": (S, "99th percentile TPOT"),
    "itl_p50_s": (S, "median inter-token latency (gaps between consecutive tokens; empty when tokens were not streamed)"),
    "itl_p99_s": (S, "99th percentile inter-token latency"),
    "e2e_mean_s": (S, "mean end-to-end latency (last token - arrival)"),
    "e2e_p99_s": (S, "99th percentile end-to-end latency"),
    "queue_mean_s": (S, "mean time from arrival to the engine scheduling the request"),
    "good_requests": ("requests", "requests meeting every SLO set in the config"),
    "goodput_req_per_s": ("requests/s", "good requests / window duration"),
    "goodput_per_j": ("requests/J", "good requests / gross energy"),
    "prefill_energy_j": (J, "energy while prompts were prefilled (timeline shape, scaled to the counter total)"),
    "decode_energy_j": (J, "energy while tokens were decoded (timeline shape, scaled to the counter total)"),
    "other_energy_j": (J, "rest of the window: idle gaps between arrivals, batch set-up"),
    "prefix_cache_hit_rate": ("fraction", "prefix-cache hits / queries (engine metric; empty when the backend does not report it)"),
    "kv_cache_usage_peak": ("fraction", "highest KV-cache usage in the cycle (engine metric)"),
    "preemptions": ("requests", "requests preempted for lack of KV cache (engine metric)"),
    "spec_decode_acceptance_rate": ("fraction", "accepted / proposed draft tokens (engine metric)"),
    # per request
    "request_id": ("", "request index within the trace"),
    "prompt_tokens": ("tokens", "prompt length"),
    "arrival_s": (S, "when the request was sent (open loop: its scheduled arrival) on the run clock"),
    "scheduled_s": (S, "when the engine started work on it"),
    "queue_s": (S, "scheduled - arrival"),
    "ttft_s": (S, "first token - arrival"),
    "tpot_s": (S, "(E2E - TTFT) / (output tokens - 1), for output tokens > 1"),
    "e2e_s": (S, "last token - arrival"),
    "itl_s": (S, "list of gaps between consecutive output tokens"),
    "batch_id": ("", "batch the request ran in (whole-batch strategies; -1 with continuous batching)"),
    "first_token_s": (S, "first token time on the run clock"),
    "last_token_s": (S, "last token time on the run clock"),
    "prefill_end_s": (S, "first token of the request's batch: end of its prefill"),
    # statistics, provenance, leaderboard
    "experiment_name": ("", "experiment name"),
    "experiment_config_hash": ("", "hash of the whole experiment file (all sweep points)"),
    "stats_code_version": ("", "code version of the statistics asset that computed the row"),
    "raw_run_id": ("", "Dagster run that materialized the raw partition"),
    "raw_storage_id": ("", "event-log storage id of that materialization"),
    "raw_data_version": ("", "data version (content hash) of the raw partition"),
    "raw_code_version": ("", "code version of the raw asset"),
    "content_hash": ("", "content hash of the raw result folder (hash of its files' sha256)"),
    "flag": ("", "warning shown beside the row, e.g. 'synthetic weights'"),
    "rank_j_per_token": ("rank", "rank by mean J/token (1 = least energy); empty when unmeasured"),
    "rank_tokens_per_j": ("rank", "rank by tokens/J (1 = most)"),
    "rank_throughput": ("rank", "rank by tokens/s (1 = fastest)"),
    "rank_ttft": ("rank", "rank by median TTFT (1 = lowest)"),
    "parameters": ("parameters", "model parameter count"),
    "gpu_count": ("GPUs", "GPUs the run used"),
}

STAT_SUFFIXES = {
    "_mean": "mean over cycles of",
    "_std": "sample standard deviation (ddof=1) over cycles of",
    "_ci95": "half-width of the 95 % confidence interval (Student t, n-1 degrees of freedom) of the mean of",
    "_cv": "coefficient of variation (std / mean) over cycles of",
}


def describe(column: str) -> tuple[str, str] | None:
    """(unit, meaning) of a published column, or None when it is undocumented."""
    if column in COLUMNS:
        return COLUMNS[column]
    for suffix, words in STAT_SUFFIXES.items():
        base = column.removesuffix(suffix)
        if base != column and base in COLUMNS:
            unit, meaning = COLUMNS[base]
            return ("" if suffix == "_cv" else unit, f"{words}: {meaning}")
    if column.startswith("backend_"):
        return ("", f"backend-specific load detail '{column.removeprefix('backend_')}' (e.g. device, mode, engine arguments)")
    return None

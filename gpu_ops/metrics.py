"""Every metric, defined once (vLLM's definitions, vllm/benchmarks/serve.py); docs/metrics.md explains them.

Per request (times in seconds on the experiment clock; "sent" = the request's arrival time, open loop):
  TTFT  = first token time - sent
  ITL   = gaps between consecutive output tokens
  TPOT  = (E2E - TTFT) / (output_tokens - 1), only when output_tokens > 1
  E2E   = last token time - sent
  queue = time work started on it - sent
Per cycle: throughput over the measured window; energies from the window (gross) and net of idle power.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpu_ops.backends.base import RequestRecord
from gpu_ops.config import Slo
from gpu_ops.energy.meter import WindowMeasurement
from gpu_ops.phases import PhaseSplit
from gpu_ops.schema import CYCLE_METRICS, REQUEST_METRICS, Record


def request_metrics(rec: RequestRecord, offset_s: float = 0.0) -> Record:
    """One request's metrics (a REQUEST_METRICS record); `offset_s` moves its times from the cycle clock onto the run
    clock."""
    t = rec.chunk_times_s
    first = t[0] if t else rec.first_token_s
    last = t[-1] if t else rec.last_token_s
    ttft = first - rec.arrival_s if first is not None else None
    e2e = last - rec.arrival_s if last is not None else None
    tpot = (
        (e2e - ttft) / (rec.output_tokens - 1)
        if rec.output_tokens > 1 and e2e is not None and ttft is not None
        else None
    )
    itl = list(np.diff(t)) if len(t) > 1 else []  # one gap per chunk, as vLLM defines ITL
    delivered = rec.delivered_s if rec.delivered_s is not None else last
    engine_first = rec.first_token_engine_s if rec.first_token_engine_s is not None else rec.prefill_end_s

    def shift(x: float | None) -> float | None:
        return None if x is None else x + offset_s

    return REQUEST_METRICS.record(
        request_id=rec.id,
        prompt_tokens=rec.prompt_tokens,
        output_tokens=rec.output_tokens,
        arrival_s=rec.arrival_s + offset_s,
        scheduled_s=rec.scheduled_s + offset_s,
        # TTFT = tokenize + queue + prefill + first-token delivery; a part the backend cannot see is None
        tokenize_s=rec.tokenize_s,
        queue_s=max(0.0, rec.scheduled_s - rec.arrival_s - (rec.tokenize_s or 0.0)),
        prefill_s=engine_first - rec.scheduled_s if engine_first is not None else None,
        first_token_delivery_s=first - rec.first_token_engine_s if t and rec.first_token_engine_s is not None else None,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=e2e,
        itl_s=[float(x) for x in itl],
        batch_id=rec.batch_id,
        first_token_s=shift(first),
        last_token_s=shift(last),
        delivered_s=shift(delivered),
        first_token_engine_s=shift(rec.first_token_engine_s),
        prefill_end_s=shift(rec.prefill_end_s),
    )


def requests_frame(records: list[RequestRecord], offset_s: float = 0.0) -> pd.DataFrame:
    """The REQUEST_METRICS table of a cycle's records, in request order."""
    return REQUEST_METRICS.frame(request_metrics(r, offset_s) for r in sorted(records, key=lambda r: r.id))


def meets_slo(req: pd.DataFrame, slo: Slo) -> pd.Series:
    ok = pd.Series(True, index=req.index)
    if slo.ttft_ms is not None:
        ok &= req.ttft_s.fillna(np.inf) * 1000 <= slo.ttft_ms
    if slo.tpot_ms is not None:
        ok &= req.tpot_s.fillna(0) * 1000 <= slo.tpot_ms
    return ok


def _pct(s: pd.Series, q: float) -> float | None:
    s = s.dropna()
    return float(np.percentile(s, q)) if len(s) else None


def cycle_metrics(
    req: pd.DataFrame,
    window: WindowMeasurement,
    idle_power_w: float | None,
    slo: Slo,
    peak_memory_bytes: int | None,
    phases: PhaseSplit,
) -> Record:
    """A cycle's figures (a CYCLE_METRICS record) from its requests, its window, the idle power and its phase split:
    the runner and the re-derivation of an uploaded result (gpu_ops.rederive) both call this."""
    out_tokens = int(req.output_tokens.sum())
    n = len(req)
    d = window.duration_s
    gross = window.gpu_energy_j
    net = gross - idle_power_w * d if gross is not None and idle_power_w is not None else None
    good_mask = meets_slo(req, slo)
    good = int(good_mask.sum())
    good_tokens = int(req.output_tokens[good_mask].sum())
    slo_set = slo.ttft_ms is not None or slo.tpot_ms is not None
    itl = np.concatenate([np.asarray(x, dtype=float) for x in req.itl_s]) if n else np.zeros(0)
    return CYCLE_METRICS.record(
        duration_s=d,
        requests=n,
        input_tokens=int(req.prompt_tokens.sum()),
        output_tokens=out_tokens,
        tokens_per_s=out_tokens / d,
        requests_per_s=n / d,
        energy_status=window.gpu_energy_status,
        unmeasured_reason=window.gpu_unmeasured_reason,
        gross_energy_j=gross,
        idle_power_w=idle_power_w,
        net_energy_j=net,
        j_per_token=gross / out_tokens if gross is not None and out_tokens else None,
        net_j_per_token=net / out_tokens if net is not None and out_tokens else None,
        tokens_per_j=out_tokens / gross if gross else None,
        j_per_request=gross / n if gross is not None and n else None,
        avg_power_w=window.avg_power_w,
        peak_power_w=window.peak_power_w,
        peak_memory_bytes=peak_memory_bytes,
        ttft_mean_s=float(req.ttft_s.mean()),
        ttft_p50_s=_pct(req.ttft_s, 50),
        ttft_p99_s=_pct(req.ttft_s, 99),
        tpot_mean_s=float(req.tpot_s.mean()) if req.tpot_s.notna().any() else None,
        tpot_p50_s=_pct(req.tpot_s, 50),
        tpot_p99_s=_pct(req.tpot_s, 99),
        itl_p50_s=float(np.percentile(itl, 50)) if len(itl) else None,
        itl_p99_s=float(np.percentile(itl, 99)) if len(itl) else None,
        e2e_mean_s=float(req.e2e_s.mean()),
        e2e_p99_s=_pct(req.e2e_s, 99),
        queue_mean_s=float(req.queue_s.mean()),
        window_tail_s=(window.end_s - float(req.delivered_s.max()) if req.delivered_s.notna().any() else None),
        good_requests=good,
        goodput_req_per_s=good / d,
        goodput_per_j=good / gross if gross else None,
        j_per_good_token=gross / good_tokens if gross is not None and slo_set and good_tokens else None,
        cpu_energy_status=window.cpu_energy_status,
        cpu_energy_j=window.cpu_energy_j,
        cpu_unmeasured_reason=window.cpu_unmeasured_reason,
        prefill_energy_j=phases.prefill_j,
        decode_energy_j=phases.decode_j,
        other_energy_j=phases.other_j,
        phase_method=phases.method,
        ttft_decode_energy_corr=phases.ttft_decode_corr,
    )

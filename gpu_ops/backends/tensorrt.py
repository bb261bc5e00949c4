"""TensorRT-LLM backend through its LLM API (`tensorrt_llm.LLM`). NOT VERIFIED ON HARDWARE.

Written against TensorRT-LLM's documented API and tested against a test double of that API boundary
(tests/gpu_ops/fake_tensorrt_llm.py); it has never run on a GPU with the real library, and results from it
carry `verified_on_hardware: false`. Every request is streamed (`generate_async(..., streaming=True)`), so
each token is timestamped on the cycle clock; `return_perf_metrics` supplies KV-cache reuse and
speculative-decoding acceptance per request.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from gpu_ops.backends.base import (
    DTYPES,
    Capabilities,
    Clock,
    CycleOutput,
    EventLoopThread,
    Request,
    RequestRecord,
    engine_args_json,
)
from gpu_ops.config import ExperimentConfig, TensorrtOptions
from gpu_ops.decoding import resolve_sampling
from gpu_ops.errors import BackendUnavailable
from gpu_ops.models import resolve_model, tokenizer_source

QUANT_ALGOS = {"fp8": "FP8", "int8_weight_only": "W8A16", "int4_weight_only": "W4A16", "int4_awq": "W4A16_AWQ"}
INSTALL_HINT = (
    "TensorRT-LLM installs only on Linux with CUDA GPUs: pip install 'llm-energy-measure[tensorrt]' (see NVIDIA's "
    "install guide)"
)


def is_available() -> tuple[bool, str]:
    """(importable, reason). The reason is the exact import failure when it is not."""
    try:
        import tensorrt_llm  # noqa: F401
    except Exception as exc:  # an ImportError, or a CUDA/driver error raised while importing
        return (
            False,
            f"backend 'tensorrt' unavailable: importing tensorrt_llm failed ({type(exc).__name__}: {exc}); "
            f"{INSTALL_HINT}",
        )
    return True, ""


def llm_kwargs(cfg: ExperimentConfig) -> dict[str, Any]:
    """`tensorrt_llm.LLM` arguments for a config: tp/pp from `parallelism:`, quantization and KV reuse from
    `tensorrt:`."""
    from tensorrt_llm import llmapi

    t = cfg.tensorrt or TensorrtOptions()
    source = resolve_model(cfg.model)
    kw: dict[str, Any] = dict(
        model=str(source.path or source.spec),
        tokenizer=tokenizer_source(source),
        dtype=DTYPES[cfg.precision],
        tensor_parallel_size=cfg.parallelism.tensor,
        pipeline_parallel_size=cfg.parallelism.pipeline,
        kv_cache_config=llmapi.KvCacheConfig(enable_block_reuse=t.enable_kv_cache_reuse),
        max_batch_size=t.max_batch_size or cfg.batching.batch_size,
    )
    if t.max_num_tokens:
        kw["max_num_tokens"] = t.max_num_tokens
    if t.quantization != "none":
        kw["quant_config"] = llmapi.QuantConfig(quant_algo=getattr(llmapi.QuantAlgo, QUANT_ALGOS[t.quantization]))
    return kw


class TensorrtBackend:
    name = "tensorrt"

    def __init__(self) -> None:
        ok, reason = is_available()
        if not ok:
            raise BackendUnavailable(reason)
        import tensorrt_llm

        self.trt = tensorrt_llm
        self.llm = None
        self.cfg: ExperimentConfig | None = None
        self.tokenizer = None
        self.loop: EventLoopThread | None = None
        self.info: dict[str, Any] = {}

    def version(self) -> str:
        return f"tensorrt_llm {self.trt.__version__} (not verified on hardware)"

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def unavailable(self, config: ExperimentConfig) -> str | None:
        return None

    def load(self, config: ExperimentConfig) -> bool:
        if self.llm is not None and self.cfg.load_key() == config.load_key():
            self.cfg = config
            return False
        self.close()
        self.cfg = config
        kw = llm_kwargs(config)
        self.llm = self.trt.LLM(**kw)
        self.tokenizer = self.llm.tokenizer
        self.loop = EventLoopThread("trtllm-async")
        self.info = {
            "mode": "streaming",
            "verified_on_hardware": False,
            "engine_args": engine_args_json(kw),
        }
        return True

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _sampling(self, req: Request):
        cfg = self.cfg
        s = resolve_sampling(cfg.decoder)
        kw: dict[str, Any] = dict(
            max_tokens=req.max_new_tokens,
            min_tokens=req.min_new_tokens,
            return_perf_metrics=True,
            repetition_penalty=s.repetition_penalty,
            seed=cfg.seed,
        )
        if req.exact_length:
            kw["end_id"] = -1  # TensorRT-LLM's way to ignore EOS: an exact length
        if s.do_sample:
            kw.update(temperature=s.temperature, top_k=s.top_k or None, top_p=s.top_p)
        else:
            kw.update(temperature=0.0)
        return self.trt.SamplingParams(**kw)

    def warmup(self, requests: list[Request]) -> None:
        import time

        self.after_cycle(self.run(requests, time.perf_counter))

    def before_cycle(self) -> None:
        pass  # the LLM API has no cache reset: with KV reuse on, later cycles may reuse earlier blocks (see notes)

    def run(self, requests: list[Request], clock: Clock) -> list[tuple[RequestRecord, Any]]:
        return self.loop.run(self._run(requests, clock))

    def after_cycle(self, delivered: list[tuple[RequestRecord, Any]]) -> CycleOutput:
        return CycleOutput([r for r, _ in delivered], aggregate_perf_metrics([m for _, m in delivered]))

    async def _run(self, requests, clock):
        params = {}  # one parameter set per distinct limits
        for r in requests:
            if (r.max_new_tokens, r.min_new_tokens) not in params:
                params[r.max_new_tokens, r.min_new_tokens] = self._sampling(r)
        return await asyncio.gather(
            *(self._stream_one(r, params[r.max_new_tokens, r.min_new_tokens], clock) for r in requests)
        )

    async def _stream_one(self, req: Request, params, clock: Clock):
        wait = req.arrival_s - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        times: list[float] = []
        seen = 0
        perf = None
        async for out in self.llm.generate_async(req.prompt_token_ids, sampling_params=params, streaming=True):
            now = clock()
            completion = out.outputs[0]
            n = len(completion.token_ids)  # cumulative in TensorRT-LLM's streaming outputs
            if n > seen:  # one time per chunk (vLLM's ITL definition); a chunk may carry several tokens
                times.append(now)
            seen = n
            perf = getattr(completion, "request_perf_metrics", None) or perf
        first_scheduled = None
        if perf is not None and getattr(perf, "timing_metrics", None) is not None and times:
            # steady-clock timedeltas: only differences are meaningful; anchor on the first token we saw
            tm = perf.timing_metrics
            first_scheduled = times[0] - (tm.first_token_time - tm.first_scheduled_time).total_seconds()
        record = RequestRecord(
            id=req.id,
            prompt_tokens=len(req.prompt_token_ids),
            output_tokens=seen,
            arrival_s=req.arrival_s,
            scheduled_s=max(first_scheduled if first_scheduled is not None else req.arrival_s, req.arrival_s),
            chunk_times_s=times,
        )
        return record, perf

    def peak_memory_bytes(self) -> int | None:
        return None

    def sync(self) -> None:
        pass

    def close(self) -> None:
        try:
            if self.llm is not None:
                self.llm.shutdown()
        finally:
            self.llm = None
            if self.loop is not None:
                self.loop.close()
                self.loop = None
            gc.collect()


def aggregate_perf_metrics(perfs: list) -> dict[str, float | None]:
    """Cycle-level engine metrics from per-request `RequestPerfMetrics`: block-weighted KV reuse, token-weighted
    acceptance."""
    reused = missed = drafted = accepted = 0
    have_kv = have_spec = False
    for p in perfs:
        if p is None:
            continue
        kv = getattr(p, "kv_cache_metrics", None)
        if kv is not None:
            have_kv = True
            reused += kv.num_reused_blocks
            missed += kv.num_missed_blocks
        sd = getattr(p, "speculative_decoding", None)
        if sd is not None and sd.total_draft_tokens > 0:
            have_spec = True
            drafted += sd.total_draft_tokens
            accepted += sd.total_accepted_draft_tokens
    return {
        "prefix_cache_hit_rate": reused / (reused + missed) if have_kv and reused + missed else None,
        "kv_cache_usage_peak": None,
        "preemptions": None,
        "spec_decode_acceptance_rate": accepted / drafted if have_spec and drafted else None,
    }


CAPABILITIES = Capabilities(
    precisions=frozenset({"fp16", "bf16", "fp32"}),
    batching=frozenset({"continuous"}),
    streaming=True,
    prefix_caching=True,
    lora=False,
    speculative=False,
    tensor_parallel=True,
    pipeline_parallel=True,
    open_loop=True,
    data_parallel=False,
    engine_metrics=frozenset({"prefix_cache_hit_rate", "spec_decode_acceptance_rate"}),
    verified="",
    notes=(
        "not verified on hardware: tested only against a test double of the LLM API",
        "quantization (fp8, int8/int4 weight-only, AWQ) from tensorrt.quantization",
        "KV-cache reuse from tensorrt.enable_kv_cache_reuse; hit rate = reused / (reused + missed) blocks; the LLM API "
        "has no cache reset, so with reuse on, cycles after the first may hit blocks cached by earlier cycles",
        "spec-decode acceptance is read from return_perf_metrics when the engine speculates; the config exposes no "
        "draft model yet",
    ),
)

"""The `InferenceBackend` protocol: what every backend offers the runner, and the capability matrix."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gpu_ops import schema
from gpu_ops.config import ExperimentConfig
from gpu_ops.errors import CapabilityError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Config precision -> the dtype name torch, vLLM and TensorRT-LLM all accept."""

Clock = Callable[[], float]
"""Seconds since the cycle started (monotonic). Every timestamp a backend records uses it."""


class CycleClock:
    """A `Clock`: seconds since `origin` on time.perf_counter, which is CLOCK_MONOTONIC on Linux, one clock for every
    process of the machine; so an engine in another process (gpu_ops.engines) keeps the cycle clock from its origin."""

    def __init__(self, origin: float) -> None:
        self.origin = origin

    def __call__(self) -> float:
        return time.perf_counter() - self.origin


@dataclass(frozen=True)
class Request:
    """One request of the trace a cycle replays.

    Attributes:
        id: its index in the trace (records and tables name it by this).
        prompt_token_ids: the prompt, tokenised before the window opened.
        max_new_tokens: most tokens to generate.
        min_new_tokens: fewest tokens to generate (equal to max_new_tokens: a fixed output length).
        arrival_s: when to send it, on the cycle clock (open loop: whether or not earlier requests finished).
        prompt_text: with tokenize_in_window, the text the backend tokenises when it sends the request (inside the
            window); None otherwise.
    """

    id: int
    prompt_token_ids: list[int]
    max_new_tokens: int
    min_new_tokens: int
    arrival_s: float
    prompt_text: str | None = None

    @property
    def exact_length(self) -> bool:
        """It generates exactly max_new_tokens (a fixed or a drawn length): every backend ignores end-of-sequence."""
        return self.min_new_tokens == self.max_new_tokens


def engine_args_json(kw: dict) -> str:
    """The engine's constructor arguments as recorded in `info` (the model and tokenizer are recorded apart)."""
    import json

    return json.dumps({k: v for k, v in kw.items() if k not in ("model", "tokenizer")}, sort_keys=True, default=str)


def tokenize_now(tokenizer, req: Request, clock: Clock, max_tokens: int) -> tuple[list[int], float | None]:
    """The request's token ids; with a text prompt, tokenised now (inside the window) and timed on `clock`."""
    if req.prompt_text is None:
        return req.prompt_token_ids, None
    t0 = clock()
    ids = tokenizer(req.prompt_text, add_special_tokens=True)["input_ids"][:max_tokens]
    return ids, clock() - t0


@dataclass
class RequestRecord:
    """What a backend saw of one request; all times are on the cycle clock."""

    id: int
    prompt_tokens: int
    output_tokens: int
    arrival_s: float
    scheduled_s: float  # when the engine started work on it (batch start / vLLM scheduled_ts)
    chunk_times_s: list[
        float
    ]  # host time each delivered chunk of tokens arrived (one per engine step); [] if not observed
    batch_id: int = -1
    prefill_end_s: float | None = None  # first token of its batch: end of the prefill step
    # engines that report only first/last token times (vLLM offline) set these and leave chunk_times_s empty:
    # TTFT, TPOT and E2E stay measured, ITL is then unmeasured (never interpolated)
    first_token_s: float | None = None
    last_token_s: float | None = None
    first_token_engine_s: float | None = None  # when the engine produced the first token (vLLM's stats), if it says
    tokenize_s: float | None = None  # tokenize_in_window: the time tokenising the prompt took
    delivered_s: float | None = (
        None  # when the last token reached this process, if not its last token time (vLLM offline)
    )


@dataclass(frozen=True)
class EngineStep:
    """One iteration of a continuous-batching engine, as its scheduler reported it; `t_s` is when the engine core
    finished it (cycle clock). The tokens tell prefill from decode work inside mixed steps."""

    t_s: float
    prompt_tokens: int  # prompt tokens computed (prefix-cache hits excluded) for requests whose prefill ended here
    first_tokens: int  # requests that got their first token in this step (part of their prefill)
    decode_tokens: int  # other tokens generated (one per running request, more under speculative decoding)
    kv_usage: float  # fraction of KV-cache blocks in use
    running: int
    waiting: int


@dataclass
class CycleOutput:
    """What a backend hands back once a cycle's window has closed."""

    records: list[RequestRecord]
    engine_metrics: dict[str, float | None] = field(default_factory=dict)  # ENGINE_METRICS; None = not reported
    steps: list[EngineStep] = field(default_factory=list)  # continuous batching: the engine's iterations


@dataclass(frozen=True)
class Capabilities:
    """What a backend can honour; a config asking for more is refused before anything runs, naming each option.
    docs/backends.md is generated from these (gpu_ops.backends.matrix).

    Attributes:
        precisions: the `precision` values it runs.
        batching: the `batching.strategy` values it runs.
        streaming: it delivers tokens as they are generated (per-token timestamps).
        prefix_caching: it can reuse the KV cache of shared prompt prefixes.
        lora: it applies LoRA adapters.
        speculative: it runs speculative decoding.
        tensor_parallel: it splits layers over GPUs.
        pipeline_parallel: it splits the layer stack over GPUs.
        open_loop: it takes requests as they arrive (constant and Poisson traffic).
        data_parallel: it runs independent replicas.
        combined_parallelism: it runs more than one of tensor/pipeline/data above 1 at once.
        engine_metrics: which ENGINE_METRICS it reports (the others are empty in its tables).
        verified: where this adapter has run for real; "" = nowhere (test double only).
        notes: what else a user should know, listed under the backend in docs/backends.md.
    """

    precisions: frozenset[str]
    batching: frozenset[str]
    streaming: bool = True
    prefix_caching: bool = False
    lora: bool = False
    speculative: bool = False
    tensor_parallel: bool = False
    pipeline_parallel: bool = False
    open_loop: bool = True
    data_parallel: bool = False
    combined_parallelism: bool = True
    engine_metrics: frozenset[str] = frozenset()
    verified: str = ""
    notes: tuple[str, ...] = field(default=())


ENGINE_METRICS = {c.name: c.meaning for c in schema.ENGINE_METRICS.columns}
"""Engine metrics by name (defined in gpu_ops.schema): a column in every backend's cycles table; empty where a
backend does not report it."""


@runtime_checkable
class InferenceBackend(Protocol):
    """What every backend offers the runner. Per sweep point: `load`, `warmup`; per cycle: `before_cycle` (outside the
    window), `run` (the only work inside it), `after_cycle` (outside again); `sync` at every window edge.

    Attributes:
        name: the config's `backend` value.
        tokenizer: the loaded model's tokenizer (prompts are tokenised with it before the window opens).
        vocab_size: the tokenizer's vocabulary size: random prompts draw token ids below it (one model, one trace on
            every backend).
        info: the loaded model's details stored per sweep point as `backend_<key>` columns (device, parameter count,
            engine arguments, ...).
    """

    name: str

    def version(self) -> str:
        """The inference library's version, recorded in the environment fingerprint."""

    def capabilities(self) -> Capabilities:
        """What this backend can honour (checked against every sweep point before anything runs)."""

    def unavailable(self, config: ExperimentConfig) -> str | None:
        """Why `config` cannot run on this machine (an optional kernel or package it lacks), or None. Such a sweep
        point is recorded as unavailable with the reason and skipped; the others run."""

    def load(self, config: ExperimentConfig) -> bool:
        """Load for `config`; returns False when the already loaded model/engine serves it unchanged."""

    def warmup(self, requests: list[Request]) -> None:
        """Run `requests` in the warm-up window: loading, compilation and first-batch costs land here, not in a
        cycle."""

    def before_cycle(self) -> None:
        """Outside the measured window, before it opens: e.g. empty a prefix cache, read engine counters."""

    def run(self, requests: list[Request], clock: Clock) -> Any:
        """The measured work. Returns as soon as the last token is delivered: the window closes right after, so
        anything else (records, engine metrics) belongs in `after_cycle`."""

    def after_cycle(self, delivered: Any) -> CycleOutput:
        """Outside the window, after it closed: the cycle's request records (from what `run` returned), its
        ENGINE_METRICS and, for continuous-batching engines, its engine steps."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory the model and its work allocated; None when the engine preallocates (vLLM)."""

    def sync(self) -> None:
        """Wait for queued device work, so a window edge is where the work really ended."""

    def close(self) -> None:
        """Free the model and the engine (its processes, its device memory)."""


def check_capabilities(name: str, caps: Capabilities, cfg: ExperimentConfig) -> None:
    """Reject a config the backend cannot honour, naming each option."""
    problems: list[str] = []
    if cfg.precision not in caps.precisions:
        problems.append(f"precision '{cfg.precision}' (supported: {', '.join(sorted(caps.precisions))})")
    if cfg.batching.strategy not in caps.batching:
        problems.append(f"batching.strategy '{cfg.batching.strategy}' (supported: {', '.join(sorted(caps.batching))})")
    if cfg.lora is not None and not caps.lora:
        problems.append("lora")
    if cfg.parallelism.tensor > 1 and not caps.tensor_parallel:
        problems.append(f"parallelism.tensor={cfg.parallelism.tensor}")
    if cfg.parallelism.pipeline > 1 and not caps.pipeline_parallel:
        problems.append(f"parallelism.pipeline={cfg.parallelism.pipeline}")
    if cfg.parallelism.data > 1 and not caps.data_parallel:
        problems.append(f"parallelism.data={cfg.parallelism.data}")
    dims = [f"{k}={v}" for k, v in cfg.parallelism.model_dump().items() if v > 1]
    if len(dims) > 1 and not caps.combined_parallelism:
        problems.append(f"parallelism {' with '.join(dims)} at once (one kind of parallelism per run)")
    if cfg.streaming and not caps.streaming:
        problems.append("streaming")
    if cfg.traffic.mode != "offline" and not caps.open_loop:
        problems.append(f"traffic.mode '{cfg.traffic.mode}'")
    if cfg.vllm is not None and cfg.vllm.enable_prefix_caching and not caps.prefix_caching:
        problems.append("vllm.enable_prefix_caching")
    if cfg.vllm is not None and cfg.vllm.speculative_model and not caps.speculative:
        problems.append("vllm.speculative_model")
    if cfg.tensorrt is not None and cfg.tensorrt.enable_kv_cache_reuse and not caps.prefix_caching:
        problems.append("tensorrt.enable_kv_cache_reuse")
    if problems:
        raise CapabilityError(
            f"backend '{name}' cannot honour: {'; '.join(problems)}. Change these options or pick another backend."
        )


class EventLoopThread:
    """One asyncio loop in a thread for an async engine's lifetime: engines such as vLLM's AsyncLLM bind their
    output task to the loop they first ran in, so every call must go to that same loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
        self.thread.start()

    def run(self, coro):
        """Run `coro` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

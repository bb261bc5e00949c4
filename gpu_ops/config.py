"""Experiment config: YAML -> strict pydantic models, and sweep expansion into sweep points.

Strict means: an unknown key is an error naming its path and the nearest valid key, every number is
range-checked, and each message names the file, the field and the fix. The file itself is read by
gpu_ops.strict_yaml (size limit, no aliases or tags, no duplicate keys).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpu_ops.energy.nvml import MIN_IDLE_BASELINE_S, MIN_IDLE_UPDATES
from gpu_ops.energy.sampler import DEFAULT_SAMPLE_HZ
from gpu_ops.errors import ConfigError, excerpt
from gpu_ops.strict_yaml import parse_yaml, read_config_bytes, read_yaml

MAX_SWEEP_POINTS = 1000
# Fixed for a whole run: they decide its partition (model, backend, GPUs), its meter or its identity.
RUN_FIELDS = frozenset({"name", "model", "backend", "device", "gpus", "hardware", "energy", "schedule"})
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

Precision = Literal["fp32", "fp16", "bf16", "int8", "int4"]
Backend = Literal["pytorch", "vllm", "tensorrt"]


class Strict(BaseModel):
    """A config block: unknown keys are errors (with the nearest valid key), so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class RandomPromptLengths(Strict):
    """Random token ids whose input lengths follow a uniform range (vLLM's `random` dataset).

    Attributes:
        input_len: mean prompt length in tokens (capped by max_input_tokens).
        range_ratio: lengths are uniform in input_len x [1 - range_ratio, 1 + range_ratio]; 0 gives equal lengths.
    """

    input_len: Annotated[int, Field(ge=1, le=131072)] = 128
    range_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class Prompts(Strict):
    """Where the prompts come from; each cycle sends `count` of them (a source with fewer is cycled).

    Attributes:
        source: `builtin` (the corpus shipped with the package: works offline), `jsonl` (a file of {"prompt": ...}
            lines), `sharegpt` (a ShareGPT JSON file: each conversation's first turn), `hf` (a Hub dataset; needs the
            `prompts` extra) or `random` (random token ids, see `random`: exact lengths, no tokenizer).
        path: the file of a `jsonl` or `sharegpt` source.
        dataset: the Hub dataset id of an `hf` source.
        split: the dataset split of an `hf` source.
        column: the text column of an `hf` source.
        count: prompts per cycle: the requests of each measured window.
        random: the lengths of `random` prompts.
    """

    source: Literal["builtin", "jsonl", "sharegpt", "hf", "random"] = "builtin"
    path: str | None = None
    dataset: str | None = None
    split: str = "train"
    column: str = "text"
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 16
    random: RandomPromptLengths = RandomPromptLengths()

    @model_validator(mode="after")
    def _needs_location(self) -> Prompts:
        if self.source in ("jsonl", "sharegpt") and not self.path:
            raise ValueError(f"prompts.source '{self.source}' needs prompts.path (a file)")
        if self.source == "hf" and not self.dataset:
            raise ValueError("prompts.source 'hf' needs prompts.dataset (a dataset id)")
        return self


class Decoder(Strict):
    """How tokens are sampled: a named preset (`llm-energy-measure list-presets`), any field set here overriding it.

    Attributes:
        preset: `deterministic` (greedy: repeatable output lengths, the default for measuring), `standard`,
            `creative` or `factual`.
        temperature: sampling temperature; 0 means greedy.
        top_k: sample among the k most likely tokens (0: no limit).
        top_p: sample among the most likely tokens whose probabilities sum to p.
        repetition_penalty: > 1 discourages repeating tokens.
        do_sample: sample (true) or take the most likely token (false).
    """

    preset: Literal["deterministic", "standard", "creative", "factual"] = "deterministic"
    temperature: Annotated[float, Field(ge=0.0, le=10.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=100_000)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    do_sample: bool | None = None


class Batching(Strict):
    """How requests are grouped. Left out, the strategy is the backend's native one, so one file runs on every backend.

    Attributes:
        strategy: `static` (fixed batches in arrival order, started once all members arrived), `dynamic` (whatever
            has arrived when the engine is free, up to batch_size), `sorted_static`/`sorted_dynamic` (the same,
            ordered by prompt length to cut padding) form whole batches (PyTorch); `continuous` is an engine's
            iteration-level scheduler (vLLM, TensorRT-LLM).
        batch_size: requests per whole batch; with `continuous`, the cap on sequences running at once (max_num_seqs).
    """

    strategy: Literal["static", "dynamic", "sorted_static", "sorted_dynamic", "continuous"] = "static"
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 1


class Traffic(Strict):
    """When requests arrive. Open loop: a request is sent at its arrival time whether or not earlier ones finished,
    and the idle time between arrivals stays inside the measured window.

    Attributes:
        mode: `offline` (all at once: throughput), `constant` (evenly spaced at `rate`) or `poisson` (random gaps
            with mean 1 / rate).
        rate: requests per second of `constant` and `poisson`.
        burstiness: shape of poisson's gaps (a Gamma distribution): 1 is Poisson, below 1 burstier, above 1 smoother.
        seed: seed of the random arrivals (the same trace every run).
    """

    mode: Literal["offline", "constant", "poisson"] = "offline"
    rate: Annotated[float, Field(gt=0.0, le=100_000.0)] | None = None
    burstiness: Annotated[float, Field(gt=0.0, le=100.0)] = 1.0
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0

    @model_validator(mode="after")
    def _rate(self) -> Traffic:
        if self.mode != "offline" and self.rate is None:
            raise ValueError(f"traffic.mode '{self.mode}' needs traffic.rate (requests per second)")
        return self


class Parallelism(Strict):
    """How the model is split over the run's GPUs; the product of the three must equal the number of `gpus`.

    Attributes:
        tensor: GPUs each layer is split over (tensor parallel).
        pipeline: GPUs the layers are split over in sequence (pipeline parallel).
        data: independent replicas, each taking every N-th request (data parallel).
    """

    tensor: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline: Annotated[int, Field(ge=1, le=64)] = 1
    data: Annotated[int, Field(ge=1, le=64)] = 1

    @property
    def label(self) -> str:
        """Short form for tables and charts: `tp2`, `dp2`, `tp2-pp2`; `single` when nothing is split."""
        parts = [f"{k}{n}" for k, n in (("tp", self.tensor), ("pp", self.pipeline), ("dp", self.data)) if n > 1]
        return "-".join(parts) or "single"


class Lora(Strict):
    """A LoRA adapter applied on top of the model.

    Attributes:
        path: the adapter's folder (PEFT format).
        name: the adapter's name in the engine.
    """

    path: str
    name: str = "adapter"


class Slo(Strict):
    """Service-level objectives for goodput: a request is good when it meets every one that is set.

    Attributes:
        ttft_ms: the most time to first token a good request may take, in ms.
        tpot_ms: the most time per output token (after the first) a good request may take, in ms.
    """

    ttft_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None
    tpot_ms: Annotated[float, Field(gt=0, le=3_600_000)] | None = None


class EnergyOptions(Strict):
    """How energy is measured (docs/energy.md).

    Attributes:
        sample_hz: power samples per second for the timeline (cross-check, phase energy); >= 50 keeps the
            cross-check within its tolerance.
        idle_baseline_s: length of the idle windows before the first cycle and after the last, whose mean power is
            subtracted for net energy; 0 skips them (net energy is then empty).
        settle_timeout_s: after the last cycle, wait up to this long for the GPUs' power to return to the
            idle-before level before the idle-after window; 0 (the default) does not wait: both baselines are
            taken with the engine loaded and idle, one state (docs/energy.md, "Idle baselines"). How long it took
            is recorded.
        cross_check_tolerance: allowed |timeline - counter| / counter of every window; None: the length-dependent
            default.
        zeus: read the same windows with Zeus's ZeusMonitor too, for comparison (needs the `zeus` extra and a GPU).
        rapl: read the CPU package energy through RAPL where readable.
        precondition_s: thermal pre-conditioning: after the first warm-up, repeat it until the GPU temperature's
            slope over 30 s is flat (<= 0.5 C/min) or this long passed; 0: none. What was done is recorded.
        lock_clocks_mhz: lock the GPUs' SM clocks at this frequency for the run where the driver permits it (it
            needs root or a permissive driver), and reset them afterwards; None: the driver's governor. What the
            driver did or refused is recorded.
    """

    sample_hz: Annotated[float, Field(ge=10.0, le=1000.0)] = DEFAULT_SAMPLE_HZ
    idle_baseline_s: Annotated[float, Field(ge=0.0, le=600.0)] = 3.0
    settle_timeout_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.0
    cross_check_tolerance: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    zeus: bool = False
    rapl: bool = True
    precondition_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 0.0
    lock_clocks_mhz: Annotated[int, Field(ge=100, le=10_000)] | None = None

    @field_validator("idle_baseline_s")
    @classmethod
    def _idle_long_enough(cls, v: float) -> float:
        if 0 < v < MIN_IDLE_BASELINE_S:
            raise ValueError(
                f"{v:g} s is shorter than {MIN_IDLE_BASELINE_S:g} s ({MIN_IDLE_UPDATES} energy-counter updates), so it "
                f"would read no energy; set 0 (no idle baseline) or at least {MIN_IDLE_BASELINE_S:g}"
            )
        return v


class PytorchOptions(Strict):
    """Options of the PyTorch (transformers) backend.

    Attributes:
        attn_implementation: transformers' attention kernel (`eager`, `sdpa`, `flash_attention_2`); None: its default.
        static_cache: a preallocated KV cache of fixed shape (needed for CUDA graphs with torch_compile).
        torch_compile: compile the model with torch.compile; the compilation lands in the warm-up window.
        compile_mode: torch.compile's mode.
        assistant_model: a draft model for assisted generation (speculative decoding).
        token_timestamps: record when each step's tokens reach the host (a `generate` streamer, which copies them:
            a device sync per step); false drops it: TTFT, ITL and TPOT are then unmeasured, E2E and throughput remain.
    """

    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    static_cache: bool = False
    torch_compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "reduce-overhead"
    )
    assistant_model: str | None = None
    token_timestamps: bool = True


class VllmOptions(Strict):
    """Options of the vLLM backend (vLLM's engine arguments of the same names where they exist).

    Attributes:
        gpu_memory_utilization: share of device memory vLLM reserves (weights + KV cache); None: 0.9 on a GPU, and
            on the CPU build a share that fits the memory free on this machine (there it reserves system memory).
        max_num_seqs: sequences running at once; None: batching.batch_size.
        max_model_len: longest context; None: max_input_tokens + max_output_tokens.
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes; None: vLLM's default.
        cold_prefix_cache: empty the prefix cache before each measured cycle: cycles replay the same prompts, so a
            cache kept across cycles would make every cycle after the first a cache hit; false measures that warm
            regime on purpose.
        kv_cache_dtype: the KV cache's element type (`auto`: the model's).
        enforce_eager: no CUDA graphs (slower, less memory, no capture in the warm-up).
        speculative_model: a draft model for speculative decoding.
        num_speculative_tokens: tokens the draft model proposes per step.
        attention_backend: vLLM's attention kernel; None: vLLM picks (FLASH_ATTN on Hopper).
    """

    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    max_num_seqs: Annotated[int, Field(ge=1, le=65536)] | None = None
    max_model_len: Annotated[int, Field(ge=16, le=1_048_576)] | None = None
    enable_prefix_caching: bool | None = None
    cold_prefix_cache: bool = True
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"] = "auto"
    enforce_eager: bool = False
    speculative_model: str | None = None
    num_speculative_tokens: Annotated[int, Field(ge=1, le=64)] | None = None
    attention_backend: Literal["FLASH_ATTN", "TRITON_ATTN", "FLASHINFER", "FLEX_ATTENTION"] | None = None


class TensorrtOptions(Strict):
    """Options of the TensorRT-LLM backend (its LLM API).

    Attributes:
        quantization: weight quantization the engine is built with (`none` keeps `precision`).
        enable_kv_cache_reuse: reuse the KV cache of shared prompt prefixes.
        max_batch_size: the engine's largest batch; None: batching.batch_size.
        max_num_tokens: tokens the engine schedules per step; None: its default.
    """

    quantization: Literal["none", "fp8", "int8_weight_only", "int4_weight_only", "int4_awq"] = "none"
    enable_kv_cache_reuse: bool = False
    max_batch_size: Annotated[int, Field(ge=1, le=65536)] | None = None
    max_num_tokens: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule(Strict):
    """Re-measurement schedule; becomes a cron schedule on the platform (a partition measured before is measured again).

    Attributes:
        interval: `hourly`, `daily` or `weekly`.
        at: time of day, HH:MM (hourly: its minutes).
        days: weekdays to run on (`mon` ... `sun`); empty: every day, or Monday for `weekly`.
    """

    interval: Literal["hourly", "daily", "weekly"] = "daily"
    at: str = "03:00"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = []

    @field_validator("at")
    @classmethod
    def _time(cls, v: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v)
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
            raise ValueError("schedule.at must be a time of day HH:MM, e.g. '03:00'")
        return v

    def cron(self) -> str:
        """The cron expression of this schedule."""
        hour, minute = (int(x) for x in self.at.split(":"))
        if self.interval == "hourly":
            return f"{minute} * * * *"
        dow = ",".join(str(DAYS.index(d) + 1 if d != "sun" else 0) for d in self.days) if self.days else "*"
        if self.interval == "weekly" and not self.days:
            dow = "1"
        return f"{minute} {hour} * * {dow}"


class ExperimentConfig(Strict):
    """One experiment file. A `sweep:` block expands it into sweep points (see `expand`).

    Attributes:
        name: names the result folder and the experiment in every table.
        model: `builtin:<name>` (built here, random weights), `synthetic:<architecture>` (real shapes, random
            weights: same FLOPs and bytes), a local Hugging Face model folder, or a hub id.
        backend: `pytorch`, `vllm` or `tensorrt`; with the model, the experiment's partition (`experiment_key`).
        precision: weight/activation precision; int8/int4 need a backend that quantizes.
        device: `cuda`, `cpu`, or `auto` (a GPU when there is one).
        gpus: visible GPU indices the run uses and meters; as many as the parallelism needs.
        hardware: platform only: the hardware profiles to measure on (one partition each); empty: this machine's.
        max_input_tokens: prompts are cut to this many tokens.
        max_output_tokens: most tokens generated per request.
        min_output_tokens: fewest tokens generated per request; equal to max_output_tokens for a fixed output length
            (comparable J/token across backends).
        output_lengths: `until_stop`: each request may generate up to max_output_tokens and stops at its
            end-of-sequence token once it has min_output_tokens (equal limits: every request exactly that long);
            `uniform`: each request has its own exact length, drawn uniformly from [min_output_tokens,
            max_output_tokens] with the seed, end-of-sequence ignored (vLLM's `random` dataset; the same lengths on
            every backend and every cycle).
        prompts: where the prompts come from and how many per cycle.
        decoder: how tokens are sampled.
        batching: how requests are grouped.
        traffic: when requests arrive.
        streaming: deliver tokens as they are generated (per-token timestamps on every backend).
        tokenize_in_window: tokenise each prompt when it is sent, inside the measured window (its time becomes part
            of TTFT); false: prompts are token ids before the window opens.
        cycles: measured windows per sweep point; their spread gives the confidence interval (the platform needs 3).
        warmup_requests: requests of the warm-up window that keeps loading, compilation and a batch shape's first
            use out of measured windows; PyTorch sends at least one full batch (0: no warm-up, except a static
            cache's).
        cooldown_s: pause before each cycle, so one cycle's heat and power state do not run into the next.
        seed: seed of the weights of builtin/synthetic models and of random prompts.
        parallelism: how the model is split over `gpus`.
        lora: a LoRA adapter, or None.
        slo: service-level objectives for goodput.
        energy: how energy is measured.
        pytorch: PyTorch backend options.
        vllm: vLLM backend options (only with backend: vllm).
        tensorrt: TensorRT-LLM backend options (only with backend: tensorrt).
        schedule: platform only: re-measure on a schedule.
        price_per_hour: price of one device-hour, overriding the hardware profile's; estimates only, so it is never
            stored with a result nor part of any config hash.
        sweep: dotted field -> values; the grid of their combinations are the sweep points. `a.b+c.d` varies fields
            together (one list of values per setting). Fields fixed for a run (name, model, backend, device, gpus,
            hardware, energy, schedule) cannot be swept.
    """

    name: Annotated[str, Field(pattern=NAME_PATTERN, examples=["my-experiment"])]
    model: Annotated[str, Field(min_length=1, max_length=512, examples=["builtin:tiny-llama"])]
    backend: Backend = "pytorch"
    precision: Precision = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: list[Annotated[int, Field(ge=0, le=1023)]] = [0]
    hardware: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,129}$")]] = []
    max_input_tokens: Annotated[int, Field(ge=1, le=1_048_576)] = 256
    max_output_tokens: Annotated[int, Field(ge=1, le=1_048_576)] = 32
    min_output_tokens: Annotated[int, Field(ge=0, le=1_048_576)] = 0
    output_lengths: Literal["until_stop", "uniform"] = "until_stop"
    prompts: Prompts = Prompts()
    decoder: Decoder = Decoder()
    batching: Batching = Batching()
    traffic: Traffic = Traffic()
    streaming: bool = False
    tokenize_in_window: bool = False
    cycles: Annotated[int, Field(ge=1, le=1000)] = 3
    warmup_requests: Annotated[int, Field(ge=0, le=100_000)] = 2
    cooldown_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 1.0
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    parallelism: Parallelism = Parallelism()
    lora: Lora | None = None
    slo: Slo = Slo()
    energy: EnergyOptions = EnergyOptions()
    pytorch: PytorchOptions = PytorchOptions()
    vllm: VllmOptions | None = None
    tensorrt: TensorrtOptions | None = None
    schedule: Schedule | None = None
    price_per_hour: Annotated[float | None, Field(ge=0.0, le=10_000.0, exclude=True)] = None
    sweep: dict[str, list[Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _native_batching(cls, data: Any) -> Any:
        """An unset batching strategy is the backend's native one, so one file runs on every backend."""
        if isinstance(data, dict) and data.get("backend") in ("vllm", "tensorrt"):
            batching = data.get("batching")
            if batching is None or (isinstance(batching, dict) and "strategy" not in batching):
                data = dict(data, batching=dict(batching or {}, strategy="continuous"))
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.min_output_tokens > self.max_output_tokens:
            raise ValueError(
                f"min_output_tokens ({self.min_output_tokens}) exceeds max_output_tokens "
                f"({self.max_output_tokens}); set them equal for a fixed output length"
            )
        if self.output_lengths == "uniform" and not 1 <= self.min_output_tokens < self.max_output_tokens:
            raise ValueError(
                f"output_lengths: uniform draws each request's length from [min_output_tokens, max_output_tokens], "
                f"but they are {self.min_output_tokens} and {self.max_output_tokens}; set 1 <= min_output_tokens < "
                "max_output_tokens, or output_lengths: until_stop"
            )
        for block in ("vllm", "tensorrt"):
            if getattr(self, block) is not None and self.backend != block:
                raise ValueError(
                    f"a '{block}:' block is set but backend is '{self.backend}'; remove it or set backend: {block}"
                )
        if self.backend != "pytorch" and self.pytorch != PytorchOptions():
            raise ValueError(
                f"a 'pytorch:' block is set but backend is '{self.backend}'; remove it or set backend: pytorch"
            )
        if self.tokenize_in_window and self.prompts.source == "random":
            raise ValueError(
                "tokenize_in_window needs prompts as text; random prompts are token ids already. Use prompts.source "
                "builtin, jsonl, sharegpt or hf, or set tokenize_in_window: false"
            )
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError("gpus lists a GPU twice; list each visible GPU index once")
        p = self.parallelism
        needed = p.tensor * p.pipeline * p.data
        if needed != len(self.gpus) and (needed > 1 or len(self.gpus) > 1):
            raise ValueError(
                f"parallelism uses {needed} GPU(s) (tensor {p.tensor} x pipeline {p.pipeline} x data {p.data}) but "
                f"gpus lists {len(self.gpus)}; list {needed} GPU indices, e.g. gpus: {list(range(needed))}"
            )
        return self

    @property
    def fixed_output_length(self) -> bool:
        """Every request generates exactly max_output_tokens."""
        return self.min_output_tokens == self.max_output_tokens

    @property
    def exact_output_lengths(self) -> bool:
        """Every request generates exactly the tokens its trace gives it (a fixed or a drawn length): token counts
        equal on every backend."""
        return self.fixed_output_length or self.output_lengths == "uniform"

    def expand(self) -> list[SweepPoint]:
        """The grid of sweep points. A config without `sweep:` is one point."""
        return expand_sweep(self)

    def non_defaults(self) -> dict[str, Any]:
        """The fields set to other than their defaults (what the file changed), as JSON values. A schedule that is
        set is shown whole: its own fields may all be defaults (daily at 03:00), which would read as `schedule: {}`."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        if self.schedule is not None:
            data["schedule"] = self.schedule.model_dump(mode="json")
        return data

    def config_hash(self) -> str:
        """Hash of the fully resolved config: equal hashes, equal configurations."""
        return content_hash(self.model_dump(mode="json"))

    def experiment_key(self) -> str:
        """The `experiment` part of the partition key, `model__backend` (e.g. `builtin-tiny-llama__pytorch`). Pure:
        it looks at no file, so an uploaded result's claim can be checked against its stored config."""
        from gpu_ops.models import model_slug

        return f"{model_slug(self.model)}__{self.backend}"

    def warmup_count(self) -> int:
        """Requests a warm-up sends. PyTorch batches statically: at least one full batch, so the batch shape measured
        is the one warmed up, and a static cache is always warmed (its graphs are built for the batch size). An engine
        that batches continuously (vLLM, TensorRT-LLM) captures its shapes when it starts: `warmup_requests` as set."""
        if self.backend != "pytorch":
            return self.warmup_requests
        full = self.batching.batch_size
        return max(self.warmup_requests, full) if self.warmup_requests else (full if self.pytorch.static_cache else 0)

    def load_key(self) -> str:
        """Equal keys mean the same loaded model/engine serves both configs (only run-time options differ)."""
        fields = {
            "model",
            "backend",
            "precision",
            "device",
            "gpus",
            "seed",
            "parallelism",
            "lora",
            "pytorch",
            "vllm",
            "tensorrt",
        }
        # options a loaded model honours as they are (gpu_ops.engines: not part of an engine's identity either)
        run_time = {"pytorch": {"token_timestamps"}, "vllm": {"cold_prefix_cache"}}
        return content_hash(self.model_dump(mode="json", include=fields, exclude=run_time))


class SweepPoint(BaseModel):
    """One concrete configuration measured for `cycles` cycles; `label` names it in every table."""

    model_config = ConfigDict(frozen=True)
    label: str
    overrides: dict[str, Any]
    config: ExperimentConfig


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's description from the `Attributes:` section of its model's docstring: the one place a config field
    is described, read by the Launchpad's experiment form (energy_assets.sensors.submit) as much as by people."""
    _, _, section = inspect.cleandoc(model.__doc__ or "").partition("Attributes:\n")
    docs: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        if m := re.fullmatch(r"    (\w+): (.*)", line):
            name = m.group(1)
            docs[name] = m.group(2).strip()
        elif name and line.startswith("        "):
            docs[name] += " " + line.strip()
        else:
            break
    return docs


def content_hash(obj: Any) -> str:
    """A short hash of JSON values, independent of key order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"sweep key '{dotted}': '{part}' is not a block")
        node = child
    node[parts[-1]] = value


def _known_path(dotted: str) -> bool:
    model: type[BaseModel] | None = ExperimentConfig
    for part in dotted.split("."):
        if model is None or part not in model.model_fields or part == "sweep":
            return False
        model = submodel(model.model_fields[part].annotation)
    return True


def _axis(key: str, values: list, source: str) -> list[dict[str, Any]]:
    """One sweep axis as its list of settings. `a.b: [1, 2]` varies one field; `a.b+c.d: [[1, 8], [64, 64]]` varies
    several fields together (e.g. a batch size with its request count), one list of values per setting."""
    paths = key.split("+")
    for path in paths:
        if not _known_path(path):
            raise ConfigError(
                f"{source}: sweep.{excerpt(key, bare=True)}: unknown field {excerpt(path, bare=True)}; use a "
                "dotted path of a config field, e.g. batching.batch_size (join fields varied together with '+')"
            )
        if path.split(".")[0] in RUN_FIELDS:
            raise ConfigError(
                f"{source}: sweep.{key}: fixed for the whole run ({path} decides the partition, the meter "
                "or the experiment's identity); write one experiment file per value instead"
            )
    if not values:
        raise ConfigError(f"{source}: sweep.{key}: empty list; give at least one value")
    if len(paths) == 1:
        return [{key: v} for v in values]
    bad = next((v for v in values if not isinstance(v, list) or len(v) != len(paths)), None)
    if bad is not None:
        raise ConfigError(
            f"{source}: sweep.{key}: {excerpt(bad)} is not a list of {len(paths)} values (one per field, "
            f"e.g. [{', '.join('...' for _ in paths)}])"
        )
    return [dict(zip(paths, v)) for v in values]


def expand_sweep(cfg: ExperimentConfig, source: str = "<config>") -> list[SweepPoint]:
    """The sweep points of `cfg` (one without a sweep), each validated; `source` names the file in errors."""
    base = cfg.model_dump(mode="python", exclude={"sweep"})
    if not cfg.sweep:
        return [SweepPoint(label="default", overrides={}, config=cfg)]
    keys = sorted(cfg.sweep)
    total = math.prod(len(cfg.sweep[k]) for k in keys)  # counted before anything is built
    if total > MAX_SWEEP_POINTS:
        product = f"{' x '.join(str(len(cfg.sweep[k])) for k in keys)} = " if len(keys) > 1 else ""
        raise ConfigError(
            f"{source}: sweep: {product}{total} sweep points exceed the limit of {MAX_SWEEP_POINTS}; "
            "split the experiment into several files"
        )
    axes = [_axis(k, cfg.sweep[k], source) for k in keys]
    points = []
    for settings in itertools.product(*axes):
        data = copy.deepcopy(base)
        overrides = {k: v for setting in settings for k, v in setting.items()}
        for k, v in overrides.items():
            _set_dotted(data, k, v)
        try:
            point_cfg = ExperimentConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, f"{source} (sweep point {excerpt(overrides)})")) from None
        label = ",".join(
            f"{k.split('.')[-1]}={point_cfg.parallelism.label if k == 'parallelism' else v}"
            for k, v in overrides.items()
        )
        points.append(SweepPoint(label=label, overrides=overrides, config=point_cfg))
    return points


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `VllmOptions | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = ExperimentConfig
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = submodel(model.model_fields[part].annotation)
    return list(model.model_fields) if model else []


INSTANCE_ONLY_NOTIFY = (
    "webhooks are set for the platform instance, not in an experiment file (its config is copied into every result "
    "folder and the published dataset, and a webhook URL is a secret): move the block to $LEM_NOTIFY_CONFIG or "
    "<storage>/notify.yaml (docs/operations.md)"
)


def format_validation_error(exc: ValidationError, source: str) -> str:
    """pydantic's errors as one line each naming the file, the field and the fix (the nearest key for a typo)."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden" and loc == ("notify",):
            lines.append(f"{source}: notify: {INSTANCE_ONLY_NOTIFY}")
        elif err["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_at(loc[:-1])
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys here: {', '.join(valid)}"
            lines.append(f"{source}: {excerpt(path, bare=True)}: unknown key; {hint} Remove or rename it.")
        elif err["type"] == "missing":
            lines.append(f"{source}: {path}: required field is missing; add it.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {excerpt(got)})"
            lines.append(f"{source}: {path}: {msg}{got_s}.")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """A config from parsed YAML/JSON values, every sweep point validated now rather than mid-campaign."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty; write at least `name:` and `model:` (see examples/tiny.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the file must hold a mapping of fields (name:, model:, ...), not {type(data).__name__}"
        )
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    expand_sweep(cfg, source)  # validates every sweep point now, not mid-campaign
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """An experiment file, read and validated."""
    return parse_config(read_yaml(path), str(path))


def file_sha(data: bytes) -> str:
    """`file_sha`: the experiment file's bytes, hashed (16 hex digits of sha256). It changes with any edit, comments
    included; `experiment_hash` (ExperimentConfig.config_hash) changes only with what is measured."""
    return hashlib.sha256(data).hexdigest()[:16]


def apply_settings(data: Any, settings: list[str], source: str) -> Any:
    """`run --set a.b=v`: each dotted key set in the file's values before they are validated, so the config model
    types and checks it as if the file said it (`v` is YAML: `8` is a number, `[1, 2]` a list, `bf16` text)."""
    if not settings:
        return data
    data = copy.deepcopy(data) if isinstance(data, dict) else {}
    for item in settings:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise ConfigError(
                f"--set {excerpt(item)}: expected KEY=VALUE with a dotted key, e.g. --set batching.batch_size=8"
            )
        node = data
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"--set {excerpt(key, bare=True)}: {'.'.join(parts[: i + 1])} is a value, not a group of fields; "
                    "set it directly"
                )
        node[parts[-1]] = parse_yaml(text.encode(), f"--set {key}")
    return data


def load_config_with(path: str | Path, settings: list[str]) -> tuple[ExperimentConfig, str]:
    """An experiment file with `--set` settings applied, validated, and the file's `file_sha`."""
    raw = read_config_bytes(path)
    source = f"{path} with --set {' '.join(settings)}" if settings else str(path)
    return parse_config(apply_settings(parse_yaml(raw, str(path)), settings, str(path)), source), file_sha(raw)

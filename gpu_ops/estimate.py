"""Estimates before a run: requests, tokens, wall time, energy and cost of each sweep point, so a submitter (and the
platform's queue) knows what a run will cost before it takes a GPU.

Three methods, the first that applies:
- `history`: the nearest measured sweep points on the same hardware, scaled by weight bytes and decode steps (decode
  is memory-bound: a step reads the weights once) at the power they drew;
- `history on other hardware`: the same, on another standard profile, further scaled by the profiles' memory
  bandwidth (time) and TDP (power);
- `roofline`: no history at all: the profile's bandwidth and bf16 throughput give the fastest possible cycle, and
  the shares of the roofline and of TDP that real runs reached (`roofline_shares`) give the range.
The range is the spread of the per-cycle predictions widened by the run-to-run spread of repeated runs in the
history (`run_to_run`), or the spread of those shares (roofline).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gpu_ops.config import ExperimentConfig, parse_config
from gpu_ops.errors import UserError, excerpt
from gpu_ops.hardware import CPU_SLUG, Hardware, resolve, standard_profiles
from gpu_ops.prompts import output_limits
from gpu_ops.readable import span, watt_hours
from gpu_ops.results import load_json, read_tables

NEAREST = 3  # sweep points a history estimate draws on
MAX_HISTORY_FOLDERS = 500  # result folders read per history root (each is checked: ~0.5 s); the rest are ignored
MAX_HISTORY_DEPTH = 4  # a result folder this deep under a history root at most (raw partitions: experiment/hardware)
MAX_MODEL_CONFIG_BYTES = 1 << 20
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
# What measured runs reached (docs/benchmarks/raw/roofline-h200.log: PyTorch eager and compiled, bs1 and bs64, on
# the h200 profile): 4.1 %-24.3 % of the decode roofline at the copy bandwidth measured there, drawing 143.9-432.2 W.
ROOFLINE_LOG = {"profile": "h200", "share": (0.041, 0.243), "copy_gbs": 4150.0, "power_w": (143.9, 432.2)}
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Span:
    """A predicted figure: its middle and the range around it."""

    low: float
    mid: float
    high: float

    def scaled(self, factor: float) -> Span:
        return Span(self.low * factor, self.mid * factor, self.high * factor)

    def plus(self, other: Span) -> Span:
        return Span(self.low + other.low, self.mid + other.mid, self.high + other.high)


@dataclass(frozen=True)
class Workload:
    """What one sweep point asks of the hardware in one cycle."""

    model: str
    backend: str
    variant: str  # precision, parallelism, traffic mode and compilation: runs that differ here are far apart
    params: float
    weight_bytes: float
    batch_size: int
    requests: int
    input_tokens: int
    output_tokens: int

    @property
    def decode_steps(self) -> float:
        """Forward passes of the decode phase: whole batches one after another, each as long as its outputs."""
        return math.ceil(self.requests / self.batch_size) * self.output_tokens / self.requests


@dataclass(frozen=True)
class Measured:
    """One measured sweep point of the history: its workload and each cycle's wall time and energy."""

    folder: str
    sweep_point: str
    hardware: str
    workload: Workload
    cycles: tuple[tuple[float, float], ...]  # (duration_s, gross_energy_j); only cycles with measured energy


@dataclass(frozen=True)
class CycleEstimate:
    duration_s: Span
    energy_j: Span
    method: str


@dataclass(frozen=True)
class PointEstimate:
    """The estimate of one sweep point: every cycle plus the warm-up."""

    sweep_point: str
    hardware: str
    requests: int  # measured and warm-up
    input_tokens: int  # upper bound unless the prompts are random token ids of one length
    output_tokens: int  # upper bound unless the output length is fixed
    tokens_exact: bool
    wall_s: Span  # cycles, warm-up, cool-downs and the idle baselines; loading the model is not included
    energy_j: Span | None  # None on a CPU: no energy counter there, so a run measures none (never 0)
    energy_kwh: Span | None
    cost: Span | None
    method: str


def parameter_count(model_config: dict) -> float:
    """Weights of a Llama-style decoder (Llama, Mistral, Qwen2) from its Hugging Face config.json."""
    try:
        h, layers, heads = (int(model_config[k]) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads"))
        inter, vocab = int(model_config["intermediate_size"]), int(model_config["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(
            f"model config: {excerpt(str(exc), bare=True)} missing or not a number; an estimate needs a decoder's "
            "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size"
        ) from None
    kv = int(model_config.get("num_key_value_heads") or heads)
    head_dim = int(model_config.get("head_dim") or h // heads)
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    embeddings = vocab * h * (1 if model_config.get("tie_word_embeddings") else 2)
    return float(layers * (attention + 3 * h * inter + 2 * h) + embeddings + h)


def model_config_of(spec: str) -> dict:
    """The config.json of a model spec, without building or downloading anything."""
    from gpu_ops.models import resolve_model
    from gpu_ops.models.builtin import SHAPES, VOCAB_SIZE

    if spec.startswith("builtin:"):
        resolve_model(spec, build=False)  # an unknown builtin is refused with the list
        shape = SHAPES[spec.removeprefix("builtin:")]
        return dict(shape, vocab_size=VOCAB_SIZE, head_dim=64, num_key_value_heads=shape["num_attention_heads"])
    source = resolve_model(spec, build=False)
    if source.architecture is not None:
        return source.architecture
    if source.path is None:
        return _cached_hub_config(spec)
    path = source.path / "config.json"
    if path.stat().st_size > MAX_MODEL_CONFIG_BYTES:
        raise UserError(f"model {excerpt(spec)}: config.json is larger than {MAX_MODEL_CONFIG_BYTES} bytes")
    data = load_json(path.read_text(), f"{spec} config.json")
    return data.get("text_config", data) if isinstance(data, dict) else {}


def _cached_hub_config(spec: str) -> dict:
    """A hub model's config from the local Hugging Face cache: an estimate downloads nothing."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec, local_files_only=True)
    except (OSError, ValueError):
        raise UserError(
            f"model {excerpt(spec)}: its config.json is not in the local Hugging Face cache, so its size is unknown; "
            f"download it first (`hf download {spec} config.json`, with HF_TOKEN set for a gated model) or "
            "estimate a synthetic: model"
        ) from None
    return getattr(config, "text_config", config).to_dict()


def workload_of(cfg: ExperimentConfig, params: float, output_tokens: int | None = None) -> Workload:
    """A sweep point's cycle; `output_tokens`: what a measured cycle generated, else the requests' most (their drawn
    lengths with `output_lengths: uniform`)."""
    random = cfg.prompts.source == "random"
    per_prompt = min(cfg.prompts.random.input_len, cfg.max_input_tokens) if random else cfg.max_input_tokens
    compiled = cfg.backend == "pytorch" and cfg.pytorch.torch_compile
    n = cfg.prompts.count
    return Workload(
        model=cfg.model,
        backend=cfg.backend,
        variant=f"{cfg.precision}/{cfg.parallelism.label}/{cfg.traffic.mode}{'/compiled' if compiled else ''}",
        params=params,
        weight_bytes=params * BYTES_PER_WEIGHT[cfg.precision],
        batch_size=min(cfg.batching.batch_size, cfg.prompts.count),
        requests=cfg.prompts.count,
        input_tokens=per_prompt * cfg.prompts.count,
        output_tokens=output_tokens if output_tokens is not None else sum(hi for hi, _ in output_limits(cfg, n)),
    )


def _result_folders(root: Path) -> list[Path]:
    """Result folders (a summary.json inside) under root, at most MAX_HISTORY_DEPTH deep; links are not followed."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        if "summary.json" in filenames:
            found.append(Path(dirpath))
            dirnames.clear()
        elif depth >= MAX_HISTORY_DEPTH:
            dirnames.clear()
        dirnames.sort()
        if len(found) >= MAX_HISTORY_FOLDERS:
            break
    return found


def read_history(roots: list[Path], checked: bool = False) -> tuple[list[Measured], list[str]]:
    """Measured sweep points of the result folders under `roots`, and a note for each folder that was skipped (an
    unreadable folder, or one failing a blocking check, is left out, never trusted). `checked`: the folders passed
    the checks already (the platform's raw partitions), so they are only read."""
    points: list[Measured] = []
    skipped: list[str] = []
    params: dict[str, float] = {}
    for root in roots:
        if not root.is_dir():
            raise UserError(f"--history {excerpt(str(root))}: not a folder; give a folder of result folders")
        for folder in _result_folders(root):
            try:
                points += _measured(folder, params, checked)
            except (UserError, ValueError, KeyError, OSError) as exc:
                skipped.append(f"{folder}: {excerpt(str(exc), bare=True)}")
    return points, skipped


def _measured(folder: Path, params: dict[str, float], checked: bool) -> list[Measured]:
    t = read_tables(folder)
    if not checked:
        from gpu_ops.validation import blocking_failures, failure_message, validate

        failed = blocking_failures(validate(t))
        if failed:
            raise UserError(failure_message(failed))
    hardware = str(t.experiment.iloc[0]["hardware"])
    out = []
    for row in t.sweep_points.itertuples():
        cfg = parse_config(load_json(row.config_json, "sweep_points.config_json"), f"{folder.name} config")
        cyc = t.cycles[(t.cycles.sweep_point == row.sweep_point) & (t.cycles.energy_status == "measured")]
        if cyc.empty or (cyc.requests <= 0).any():
            continue
        if cfg.model not in params:
            params[cfg.model] = parameter_count(model_config_of(cfg.model))
        work = workload_of(cfg, params[cfg.model], int(round(cyc.output_tokens.mean())))
        pairs = tuple((float(d), float(e)) for d, e in zip(cyc.duration_s, cyc.gross_energy_j))
        out.append(Measured(str(folder), str(row.sweep_point), hardware, work, pairs))
    return out


def _distance(target: Workload, hw: Hardware, m: Measured) -> tuple:
    """Order of preference: same backend, same variant, same device count, then the nearest size and batch."""
    other = resolve(m.hardware)
    w = m.workload
    size = abs(math.log(target.weight_bytes / w.weight_bytes)) + abs(math.log(target.batch_size / w.batch_size))
    return (w.backend != target.backend, w.variant != target.variant, other.count != hw.count, size)


def _from_history(target: Workload, hw: Hardware, history: list[Measured]) -> CycleEstimate | None:
    same = [m for m in history if m.hardware == hw.slug]
    cross = not same
    if cross:  # other hardware is usable only where both sets of figures are known
        same = [m for m in history if hw.standard and resolve(m.hardware).standard]
    if not same:
        return None
    ranked = sorted(same, key=lambda m: _distance(target, hw, m))
    kind = _distance(target, hw, ranked[0])[:-1]  # only the runs as alike as the closest one: a tp2 run is no dp2's
    nearest = [m for m in ranked if _distance(target, hw, m)[:-1] == kind][:NEAREST]
    times, energies, mids_t, mids_e = [], [], [], []
    for m in nearest:
        scale = (target.weight_bytes / m.workload.weight_bytes) * (target.decode_steps / m.workload.decode_steps)
        power = 1.0
        if cross:
            other = resolve(m.hardware)
            scale *= other.bandwidth_gbs / hw.bandwidth_gbs
            power = hw.tdp_w / other.tdp_w
        t = [d * scale for d, _ in m.cycles]
        e = [en * scale * power for _, en in m.cycles]
        times += t
        energies += e
        mids_t.append(sum(t) / len(t))
        mids_e.append(sum(e) / len(e))
    spread_t, spread_e = run_to_run(history)
    where = ", ".join(sorted({m.hardware for m in nearest}))
    plural = "s" if len(nearest) > 1 else ""
    method = f"history: {len(nearest)} nearest result{plural} on {where}, scaled by parameter count and tokens"
    if cross:
        method += f" and by the profiles' bandwidth and TDP to {hw.slug}"
    return CycleEstimate(
        Span(min(times) * (1 - spread_t), _median(mids_t), max(times) * (1 + spread_t)),
        Span(min(energies) * (1 - spread_e), _median(mids_e), max(energies) * (1 + spread_e)),
        method,
    )


def run_to_run(history: list[Measured]) -> tuple[float, float]:
    """How far apart repeated runs of one workload on one hardware landed in the history (the largest relative
    difference of their mean cycle time, and energy): a new run may land that far from any single past one, beyond
    the cycle-to-cycle spread a past run shows. 0 when nothing was repeated."""
    groups: dict[tuple[str, Workload], list[tuple[float, float]]] = {}
    for m in history:
        n = len(m.cycles)
        groups.setdefault((m.hardware, m.workload), []).append(
            (sum(d for d, _ in m.cycles) / n, sum(e for _, e in m.cycles) / n)
        )
    pairs = [(a, b) for runs in groups.values() for a in runs for b in runs if a is not b]
    return (
        max((abs(a[0] / b[0] - 1) for a, b in pairs), default=0.0),
        max((abs(a[1] / b[1] - 1) for a, b in pairs), default=0.0),
    )


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _geomean(pair: tuple[float, float]) -> float:
    return math.sqrt(pair[0] * pair[1])


def roofline_shares() -> tuple[tuple[float, float], tuple[float, float]]:
    """(lowest, highest) share of the peak-bandwidth roofline and of TDP that the runs of ROOFLINE_LOG reached."""
    ref = standard_profiles()[ROOFLINE_LOG["profile"]]
    to_peak = ROOFLINE_LOG["copy_gbs"] / ref.memory_bandwidth_gbs
    low, high = ROOFLINE_LOG["share"]
    watts_low, watts_high = ROOFLINE_LOG["power_w"]
    return (low * to_peak, high * to_peak), (watts_low / ref.tdp_w, watts_high / ref.tdp_w)


def roofline(target: Workload, hw: Hardware) -> CycleEstimate:
    """The fastest cycle the profile allows (prefill at bf16 peak, each decode step reading the weights at peak
    bandwidth), slowed by the roofline shares real runs reach, at the TDP shares they draw."""
    flops = hw.spec.bf16_tflops * 1e12 * hw.count * hw.share
    fastest = 2 * target.params * target.input_tokens / flops + target.decode_steps * target.weight_bytes / (
        hw.bandwidth_gbs * 1e9
    )
    share, power = roofline_shares()
    t = Span(fastest / share[1], fastest / _geomean(share), fastest / share[0])
    low_p, high_p = (s * hw.tdp_w for s in power)
    e = Span(t.low * low_p, t.mid * math.sqrt(low_p * high_p), t.high * high_p)
    method = f"roofline: {hw.spec.title} profile ({hw.bandwidth_gbs:g} GB/s, {hw.tdp_w:g} W), no history"
    return CycleEstimate(t, e, method)


def estimate_cycle(target: Workload, hardware: str, history: list[Measured]) -> CycleEstimate:
    """One cycle of `target` on `hardware`: from history where there is some, else from the roofline."""
    hw = resolve(hardware)
    found = _from_history(target, hw, history)
    if found is not None:
        return found
    if not hw.standard:
        raise UserError(
            f"hardware {excerpt(hardware)}: no history on it and no standard profile for a roofline estimate; "
            "pass --history with results measured there, or add gpu_ops/hardware/<slug>.yaml"
        )
    return roofline(target, hw)


def estimate(cfg: ExperimentConfig, hardware: str, history: list[Measured]) -> list[PointEstimate]:
    """Every sweep point of `cfg` on `hardware`: cycles, warm-up and cool-downs, the run's two idle baselines on its
    first point (loading the model is not included: it depends on disk and caches, not on the workload). On a CPU
    the energy is None: a run there measures none."""
    hw = resolve(hardware)
    on_cpu = hw.spec is not None and hw.spec is standard_profiles()[CPU_SLUG]
    params = parameter_count(model_config_of(cfg.model))
    price = cfg.price_per_hour if cfg.price_per_hour is not None else (hw.spec.price_per_hour if hw.spec else None)
    out = []
    for point in cfg.expand():
        pc = point.config
        work = workload_of(pc, params)
        cycle = estimate_cycle(work, hardware, history)
        duration, method = cycle.duration_s, cycle.method
        if pc.traffic.mode != "offline":  # open loop: a cycle lasts at least until its last request arrives
            arrivals = pc.prompts.count / pc.traffic.rate
            duration = Span(*(max(v, arrivals) for v in (duration.low, duration.mid, duration.high)))
            method += f"; a cycle lasts >= {arrivals:.3g} s ({pc.prompts.count} arrivals at {pc.traffic.rate:g}/s)"
        warmup = pc.warmup_count() / pc.prompts.count  # the warm-up window, as a share of a cycle
        runs = pc.cycles + warmup
        idle = 2 * pc.energy.idle_baseline_s if not out else 0.0  # before the first cycle, after the last
        wall = duration.scaled(runs).plus(Span(*(pc.cycles * pc.cooldown_s + idle,) * 3))
        energy = None if on_cpu else cycle.energy_j.scaled(runs)
        cost = None if price is None else wall.scaled(price * hw.count * hw.share / 3600)
        per_request = work.output_tokens // work.requests
        sent = pc.prompts.count * pc.cycles + pc.warmup_count()
        out.append(
            PointEstimate(
                sweep_point=point.label,
                hardware=hardware,
                requests=sent,
                input_tokens=(work.input_tokens // work.requests) * sent,
                output_tokens=per_request * sent,
                tokens_exact=pc.exact_output_lengths,
                wall_s=wall,
                energy_j=energy,
                energy_kwh=None if energy is None else energy.scaled(1 / J_PER_KWH),
                cost=cost,
                method=method,
            )
        )
    return out


def hardware_of(cfg: ExperimentConfig) -> list[str]:
    """The hardware to estimate for: the config's `hardware:` list, else the profile this machine would measure on."""
    if cfg.hardware:
        return list(cfg.hardware)
    from gpu_ops.energy import load_nvml, select_targets
    from gpu_ops.environment import hardware_profile

    nvml = load_nvml()[0] if cfg.device != "cpu" else None
    return [hardware_profile(select_targets(nvml, cfg.gpus) if nvml is not None else [])]


def _fmt(s: Span, kind: str = "number", unit: str = "") -> str:
    return span(s.mid, s.low, s.high, kind, unit)


def render(estimates: list[PointEstimate]) -> str:
    """A table for people: one line per sweep point, then the method of each."""
    w = max([len("sweep point"), *(len(e.sweep_point) for e in estimates)])
    head = (
        f"{'sweep point':<{w}} {'requests':>8} {'tokens':>10} {'wall time (range)':>22} {'energy (range)':>26} "
        f"{'energy':>10} {'cost (range)':>20}"
    )
    lines = [head]
    for e in estimates:
        tokens = f"{'' if e.tokens_exact else '<='}{e.output_tokens}"
        cost = "unknown" if e.cost is None else _fmt(e.cost)
        lines.append(
            f"{e.sweep_point:<{w}} {e.requests:>8} {tokens:>10} {_fmt(e.wall_s, unit='s'):>22} "
            f"{_fmt(e.energy_j, 'joules') if e.energy_j else 'unmeasured (CPU)':>26} "
            f"{watt_hours(e.energy_kwh.mid * 1000) if e.energy_kwh else 'unmeasured':>10} {cost:>20}"
        )
    lines += [f"  {e.sweep_point}: {e.method}" for e in estimates]
    lines.append("  wall time: cycles, warm-up, cool-downs and idle baselines; loading the model comes on top")
    if any(e.energy_j is None for e in estimates):
        lines.append("  energy unmeasured: a CPU has no energy counter, so a run there measures none")
    if any(e.cost is None for e in estimates):
        lines.append("  cost unknown: set price_per_hour in the config or the hardware profile")
    return "\n".join(lines)


def as_json(estimates: list[PointEstimate], skipped: list[str]) -> str:
    """The estimates for programs: every figure with its range, the method, and the history folders left out."""
    return json.dumps({"sweep_points": [asdict(e) for e in estimates], "history_skipped": skipped}, indent=2)

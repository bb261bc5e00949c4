"""Measures an experiment in this process: idle baseline, then per sweep point a warm-up window and `cycles`
measured windows. (gpu_ops.runner decides whether a run is measured here or over several ranks.)

Order per sweep point: load -> warm-up (compilation lands here, reported on its own) -> for each cycle:
cooldown, open window, replay the request trace open loop, close window. Idle baseline before the first
cycle and after the last. Net energy uses the mean of both idle powers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd

from gpu_ops import __version__, phases
from gpu_ops.backends import EngineStep, Request, check_capabilities, get_backend
from gpu_ops.config import ExperimentConfig, SweepPoint
from gpu_ops.energy import EnergyMeter, IdleBaseline, WindowMeasurement, build_meter
from gpu_ops.energy.conditioning import lock_clocks, precondition, unlock_clocks
from gpu_ops.energy.nvml import uuid_hash
from gpu_ops.environment import fingerprint, hardware_profile
from gpu_ops.errors import CapabilityError, MeasurementError, UserError
from gpu_ops.locks import device_locks
from gpu_ops.metrics import cycle_metrics, requests_frame
from gpu_ops.models import resolve_model
from gpu_ops.prompts import build_prompts, prompt_texts
from gpu_ops.results import SCHEMA_VERSION, ResultFolder, ResultTables, save_result
from gpu_ops.schema import (
    CYCLE_KEY,
    CYCLE_WINDOW,
    CYCLES,
    ENGINE_METRICS,
    ENGINE_STEP,
    EXPERIMENT,
    POINT_SETTINGS,
    REQUESTS,
    RUN_GPUS,
    RUN_IDENTITY,
    STEPS,
    SWEEP_POINTS,
    TIMELINE,
    WINDOW_FIELD,
    WINDOWS,
    Record,
    Table,
    plain_rows,
)
from gpu_ops.stats import fmt_value, sweep_point_statistics
from gpu_ops.steady import max_num_seqs, steady_state
from gpu_ops.traffic import arrival_times

log = logging.getLogger("gpu_ops")


def _requests(
    prompts: list[list[int]], cfg: ExperimentConfig, offset_s: float, texts: list[str] | None = None
) -> list[Request]:
    """The request trace; with `texts` (tokenize_in_window) each request carries its text for the backend to
    tokenise."""
    arrivals = arrival_times(cfg.traffic, len(prompts))
    return [
        Request(i, p, cfg.max_output_tokens, cfg.min_output_tokens, offset_s + float(a), texts[i] if texts else None)
        for i, (p, a) in enumerate(zip(prompts, arrivals))
    ]


def trace_hash(requests: list[Request]) -> str:
    """Identity of a request trace (prompt ids, arrival offsets, token limits): equal hashes mean two runs
    (e.g. two backends in `compare`) replayed the same trace."""
    h = hashlib.sha256()
    for r in requests:
        h.update(json.dumps([r.prompt_token_ids, round(r.arrival_s, 9), r.max_new_tokens, r.min_new_tokens]).encode())
    return h.hexdigest()[:16]


def measure_experiment(
    cfg: ExperimentConfig,
    out_root: Path,
    *,
    nvml=None,
    progress: Callable[[str], None] | None = None,
    folder_name: str | None = None,
    show_bar: bool = False,
    show_tokens: bool = False,
    file_sha: str | None = None,
) -> ResultFolder:
    """Measure every sweep point of `cfg` with this process's backend and write the result folder under `out_root`
    (the arguments are run_experiment's)."""
    from gpu_ops.backends.pytorch import resolve_device

    points = sorted(cfg.expand(), key=lambda p: p.config.load_key())  # fewest model reloads
    backend = get_backend(cfg.backend)
    caps = backend.capabilities()
    for p in points:
        check_capabilities(backend.name, caps, p.config)
    unavailable = {p.label: reason for p in points if (reason := backend.unavailable(p.config))}
    if len(unavailable) == len(points):
        raise CapabilityError(
            f"nothing can run on this machine: {'; '.join(f'[{k}] {v}' for k, v in unavailable.items())}"
        )

    use_cuda = resolve_device(cfg).startswith("cuda")
    source = resolve_model(cfg.model)
    meter = build_meter(cfg, use_cuda or nvml is not None, nvml_module=nvml, sync=backend.sync)
    hardware = hardware_profile(meter.targets)
    identity = RUN_IDENTITY.record(
        model=cfg.model,
        backend=cfg.backend,
        hardware=hardware,
        weights=source.weights,
        experiment_key=cfg.experiment_key(),
    )
    say = progress or (lambda msg: log.info(msg))
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(points) * cfg.cycles, desc=cfg.name, unit="cycle", file=sys.stderr)
        say = partial(bar.write, file=sys.stderr)  # tqdm.write's default is stdout: `$(run ...)` would capture it
    if show_tokens:
        from gpu_ops.display import TokenDisplay

        backend.token_display = TokenDisplay(
            str(source.tokenizer_path or source.path or source.spec), cfg.batching.batch_size
        )
    run = _measure(cfg, points, unavailable, backend, meter, hardware, say, bar)
    if bar:
        bar.close()
    tables = _tables(cfg, identity, run, file_sha)
    name = folder_name or f"{cfg.name}__{hardware}__{run.started.strftime('%Y%m%dT%H%M%SZ')}-{cfg.config_hash()[:8]}"
    folder = Path(out_root) / name
    save_result(tables, folder)  # a failed write keeps the tables in a recovery folder
    return ResultFolder(folder, tables)


def _batch_shape(cfg: ExperimentConfig) -> tuple:
    """What a warm-up must have seen: batch size and token lengths (allocations, kernels and caches follow them)."""
    return (cfg.batching.batch_size, cfg.max_input_tokens, cfg.max_output_tokens, cfg.min_output_tokens)


@dataclass
class _Run:
    """What a run measured, before it becomes tables."""

    started: datetime
    finished: datetime
    windows: list[tuple[str, str, int | None, WindowMeasurement]]  # (kind, sweep point, cycle, window)
    cycles: list[tuple[SweepPoint, int, CycleResult]]
    points: list[tuple[Record, dict]]  # sweep_points rows and each one's backend load details
    idle: IdleBaseline
    timeline: pd.DataFrame
    meter: EnergyMeter
    backend_version: str


def _measure(
    cfg: ExperimentConfig,
    points: list[SweepPoint],
    unavailable: dict[str, str],
    backend,
    meter: EnergyMeter,
    hardware: str,
    say,
    bar,
) -> _Run:
    """Hold the run's devices: idle baseline, each sweep point's warm-up and cycles, settling, idle baseline again."""
    windows: list[tuple[str, str, int | None, WindowMeasurement]] = []
    per_cycle: list[tuple[SweepPoint, int, CycleResult]] = []
    point_rows: list[tuple[Record, dict]] = []
    lock_keys = [uuid_hash(t.uuid if t.mig is None else t.parent_uuid) for t in meter.targets] or [
        f"cpu-{socket.gethostname()}"
    ]
    with device_locks(lock_keys), meter, _clocks_locked(meter, cfg.energy.lock_clocks_mhz, say):
        started = datetime.now(UTC)  # started_at / finished_at span the time this run held its devices
        idle_before = _idle(meter, "idle-before", cfg.energy.idle_baseline_s, say)
        if idle_before:
            windows.append(("idle_before", "", None, idle_before))
        warm_shape = None  # the batch shape the loaded model was last warmed up at
        try:
            for point in points:
                pc = point.config
                if point.label in unavailable:  # an optional kernel or package this machine lacks: recorded, not run
                    say(f"[{point.label}] unavailable here: {unavailable[point.label]}")
                    point_rows.append(
                        (_point_row(point, None, status="unavailable", reason=unavailable[point.label]), {})
                    )
                    continue
                say(f"[{point.label}] {pc.model} ({pc.precision}) on {hardware}")
                reloaded = _load(backend, pc, point.label)
                prompts = build_prompts(pc, backend.tokenizer, backend.vocab_size)
                warm = _requests(prompts[: pc.warmup_count()], pc, 0.0)
                # warm-up keeps loading, compilation and first-use costs of a batch shape out of measured windows:
                # needed after a (re)load, for compiled paths, and whenever the batch shape changes (on the H200 an
                # eager model's first cycle at a new batch size ran 2.0-4.2x slower: docs/benchmarks §13); an eager
                # model already warm at this shape skips it
                warmup_s = None
                shape = _batch_shape(pc)
                if warm and (reloaded or pc.pytorch.static_cache or pc.pytorch.torch_compile or shape != warm_shape):
                    warm_shape = shape
                    meter.begin_window(f"{point.label}/warmup")
                    backend.warmup(warm)
                    w = meter.end_window(f"{point.label}/warmup")
                    windows.append(("warmup", point.label, None, w))
                    warmup_s = w.duration_s
                    say(
                        f"[{point.label}] warm-up {len(warm)} request(s): {w.duration_s:.2f} s (includes any "
                        "compilation)"
                    )
                if warm and cfg.energy.precondition_s and meter.conditioning["precondition"] is None:
                    done = precondition(meter, partial(backend.warmup, warm), cfg.energy.precondition_s)
                    meter.conditioning["precondition"] = done
                    say(f"[{point.label}] pre-conditioned {done['seconds']:.0f} s: temperature flat {done['flat']}")
                for c in range(pc.cycles):
                    cycle = run_cycle(backend, meter, pc, prompts, point.label, c, say)
                    windows.append(("cycle", point.label, c, cycle.window))
                    per_cycle.append((point, c, cycle))
                    if bar:
                        bar.update(1)
                point_rows.append(
                    (
                        _point_row(point, prompts, model_reused=not reloaded, warmup_s=warmup_s),
                        {f"backend_{k}": v for k, v in backend.info.items()},
                    )
                )
        finally:
            backend.close()
            if getattr(backend, "token_display", None) is not None:
                backend.token_display.close()
        settle_s = _settle(meter, idle_before, cfg.energy.settle_timeout_s, say)
        idle_after = _idle(meter, "idle-after", cfg.energy.idle_baseline_s, say)
        if idle_after:
            windows.append(("idle_after", "", None, idle_after))
        timeline = meter.timeline()
        finished = datetime.now(UTC)
    return _Run(
        started,
        finished,
        windows,
        per_cycle,
        point_rows,
        IdleBaseline(idle_before, idle_after, settle_s),
        timeline,
        meter,
        backend.version(),
    )


def _tables(cfg: ExperimentConfig, identity: Record, run: _Run, file_sha: str | None) -> ResultTables:
    """The result folder's tables and summary from what the run measured, each row a record of gpu_ops.schema."""
    meter, idle = run.meter, run.idle
    gpus = RUN_GPUS.record(
        power_limit_w=sum(t.power_limit_w for t in meter.targets if t.power_limit_w) or None,
        gpu_count=len(meter.targets),
    )
    cycles, requests, steps = [], [], []
    for point, c, cycle in run.cycles:
        key = CYCLE_KEY.record(sweep_point=point.label, cycle=c)
        w = cycle.window
        split = phases.attribute(run.timeline, cycle.requests, w, cycle.steps)
        req = cycle.requests.assign(
            prefill_energy_j=split.request_prefill_j, decode_energy_j=split.request_decode_j, energy_j=split.request_j
        )
        cycles.append(
            CYCLES.row(
                key,
                identity,
                _point_settings(point.config),
                gpus,
                _window_part(w),
                cycle_metrics(req, w, idle.power_w, point.config.slo, cycle.peak_memory_bytes, split),
                steady_state(cycle.steps, run.timeline, w, max_num_seqs(point.config)),
                cycle_setup_s=cycle.setup_s,
                cycle_collect_s=cycle.collect_s,
                # same columns on every backend; empty = not reported
                **{name: cycle.engine.get(name) for name in ENGINE_METRICS.names},
            )
        )
        requests.append(req.assign(**key.as_dict()))
        steps.append(cycle.steps.assign(**key.as_dict()))
    windows = [WINDOWS.row(w.readings(), kind=kind, sweep_point=label, cycle=c) for kind, label, c, w in run.windows]
    cycles_df, requests_df = CYCLES.frame(cycles), _concat(REQUESTS, requests)
    stats = sweep_point_statistics(cycles_df, requests_df)
    fp = fingerprint(
        meter.targets,
        meter.gpu.nvml if meter.gpu else None,
        run.backend_version,
        cfg.config_hash(),
        identity.hardware,
        meter.step_s if meter.step_measured else None,
    )
    meter_info = meter.describe()
    experiment = EXPERIMENT.row(
        identity,
        name=cfg.name,
        config_hash=cfg.config_hash(),
        config_json=json.dumps(cfg.model_dump(mode="json"), sort_keys=True),
        schema_version=SCHEMA_VERSION,
        package_version=__version__,
        started_at=run.started.isoformat(),
        finished_at=run.finished.isoformat(),
        idle_power_w=idle.power_w,
        idle_before_w=idle.before.avg_power_w if idle.before else None,
        idle_after_w=idle.after.avg_power_w if idle.after else None,
        idle_settle_s=idle.settle_s,
        cross_check_tolerance=cfg.energy.cross_check_tolerance,
        fingerprint_json=json.dumps(fp, sort_keys=True),
        fingerprint_hash=fp["fingerprint_hash"],
        meter_json=json.dumps(meter_info, sort_keys=True),
    )
    summary = {
        "name": cfg.name,
        **identity.as_dict(),
        "experiment_hash": cfg.config_hash(),
        "file_sha": file_sha,
        "fingerprint": fp,
        "meter": meter_info,
        "idle_power_w": idle.power_w,
        "sweep_points": plain_rows(stats),
        "warmup_s": {label: w.duration_s for kind, label, _, w in run.windows if kind == "warmup"},
    }
    return ResultTables(
        experiment=EXPERIMENT.frame([experiment]),
        sweep_points=SWEEP_POINTS.frame((row for row, _ in run.points), free=(info for _, info in run.points)),
        cycles=cycles_df,
        requests=requests_df,
        windows=WINDOWS.frame(windows),
        timeline=TIMELINE.conform(run.timeline),
        steps=_concat(STEPS, steps),
        summary=summary,
    )


def _concat(table: Table, frames: list[pd.DataFrame]) -> pd.DataFrame:
    return table.conform(pd.concat(frames, ignore_index=True)) if frames else table.frame([])


def _point_settings(pc: ExperimentConfig) -> Record:
    return POINT_SETTINGS.record(
        precision=pc.precision,
        batch_size=pc.batching.batch_size,
        parallelism=pc.parallelism.label,
        config_hash=pc.config_hash(),
    )


def _window_part(w: WindowMeasurement) -> Record:
    """What a cycle repeats of its window (schema.CYCLE_WINDOW)."""
    readings = w.readings()
    return CYCLE_WINDOW.record(**{name: getattr(readings, WINDOW_FIELD.get(name, name)) for name in CYCLE_WINDOW.names})


@dataclass
class CycleResult:
    requests: pd.DataFrame
    window: WindowMeasurement
    peak_memory_bytes: int | None
    engine: dict
    steps: pd.DataFrame  # continuous-batching engine steps (run clock); empty for whole-batch backends
    setup_s: float  # before the window: trace, backend.before_cycle, the wait for a counter update
    collect_s: float  # after the work: the wait for a counter update, records, engine metrics


def run_cycle(
    backend, meter: EnergyMeter, pc: ExperimentConfig, prompts, label: str, c: int, say=lambda m: None
) -> CycleResult:
    """One measured cycle. The window holds the work and nothing else: the trace is built, the prefix cache emptied
    and engine counters started before it opens; records and engine metrics are collected after it closes.
    Backends time everything on the cycle clock (0 = window start); the records are moved onto the run clock."""
    if pc.cooldown_s:
        time.sleep(pc.cooldown_s)
    name = f"{label}/cycle-{c}"
    if getattr(backend, "token_display", None) is not None:
        backend.token_display.new_cycle()
    t0 = meter.now()
    requests = _requests(prompts, pc, 0.0, prompt_texts(pc) if pc.tokenize_in_window else None)
    backend.before_cycle()
    start = meter.begin_window(name)
    try:
        delivered = backend.run(requests, lambda: meter.now() - start)
    except Exception as exc:
        meter.cancel_window(name)  # this window's energy is discarded
        raise MeasurementError(
            f"[{label}] cycle {c} failed, its energy discarded: {type(exc).__name__}: {exc}"
        ) from exc
    w = meter.end_window(name)
    out = backend.after_cycle(delivered)
    req = requests_frame(out.records, offset_s=start)
    steps = steps_frame(out.steps)
    steps["t_s"] += start
    say(
        f"[{label}] cycle {c}: {w.duration_s:.2f} s, "
        + (
            f"{w.gpu_energy_j:.1f} ± {w.energy_uncertainty_j:.2g} J"
            if w.gpu_energy_j is not None
            else f"energy unmeasured ({w.gpu_unmeasured_reason})"
        )
    )
    return CycleResult(
        req, w, backend.peak_memory_bytes(), out.engine_metrics, steps, start - t0, meter.now() - w.end_s
    )


def steps_frame(steps: list[EngineStep]) -> pd.DataFrame:
    """Engine steps as a typed table (an empty one keeps its column types, so every folder has one schema)."""
    return ENGINE_STEP.conform(pd.DataFrame([asdict(st) for st in steps], columns=list(ENGINE_STEP.names)))


def _point_row(
    point: SweepPoint,
    prompts,
    status: str = "measured",
    reason: str | None = None,
    model_reused: bool | None = None,
    warmup_s: float | None = None,
) -> Record:
    """The sweep_points row: the point's resolved config and trace, its status."""
    pc = point.config
    return SWEEP_POINTS.record(
        sweep_point=point.label,
        status=status,
        unavailable_reason=reason,
        overrides_json=json.dumps(point.overrides, sort_keys=True, default=str),
        config_json=json.dumps(pc.model_dump(mode="json"), sort_keys=True),
        non_defaults_json=json.dumps(pc.non_defaults(), sort_keys=True),
        config_hash=pc.config_hash(),
        trace_hash=trace_hash(_requests(prompts, pc, 0.0)) if prompts is not None else None,
        model_reused=model_reused,
        warmup_s=warmup_s,
    )


def _load(backend, pc: ExperimentConfig, label: str) -> bool:
    """Load for a sweep point (reusing the loaded model when only run-time options changed); an engine that fails
    to start is a measurement failure with its cause, not a traceback."""
    try:
        return backend.load(pc)
    except UserError:
        raise
    except Exception as exc:
        raise MeasurementError(
            f"[{label}] backend '{backend.name}' failed to load {pc.model}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
        ) from exc


@contextlib.contextmanager
def _clocks_locked(meter: EnergyMeter, mhz: int | None, say):
    """The run with its GPUs' clocks locked at `mhz` where the driver permits it (recorded in the meter's
    conditioning), reset afterwards; nothing without a lock asked for or without NVML."""
    if mhz is None or meter.gpu is None:
        yield
        return
    record = meter.conditioning["clock_lock"] = lock_clocks(meter.gpu, mhz)
    if record["refused"]:
        say(f"clock lock at {mhz} MHz refused on {', '.join(record['refused'])}: running unlocked there")
    try:
        yield
    finally:
        unlock_clocks(meter.gpu, record)


def _settle(meter: EnergyMeter, idle_before: WindowMeasurement | None, timeout_s: float, say) -> float | None:
    """Wait for the GPUs to return to their idle power before measuring it again (a GPU lingers in a higher power
    state after work); the seconds it took are recorded. None: not waited for, or not back within the timeout."""
    if idle_before is None or idle_before.avg_power_w is None or timeout_s <= 0:
        return None
    took = meter.settle(idle_before.avg_power_w, timeout_s)
    say(
        f"idle power back within 10 % of {idle_before.avg_power_w:.1f} W after {took:.1f} s"
        if took is not None
        else f"idle power still above {idle_before.avg_power_w:.1f} W + 10 % after {timeout_s:.0f} s; idle-after "
        "measured anyway"
    )
    return took


def _idle(meter: EnergyMeter, name: str, seconds: float, say) -> WindowMeasurement | None:
    if seconds <= 0 or not meter.measures_gpu:
        return None
    w = meter.measure_idle(name, seconds)
    say(f"{name}: {fmt_value(w.avg_power_w, ' W', digits=4)} over {w.duration_s:.1f} s")
    return w

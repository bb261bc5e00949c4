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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pandas as pd

from gpu_ops import __version__, phases
from gpu_ops.backends import EngineStep, Request, check_capabilities, get_backend
from gpu_ops.backends.base import CycleClock
from gpu_ops.config import ExperimentConfig, SweepPoint
from gpu_ops.energy import EnergyMeter, IdleBaseline, WindowMeasurement, build_meter
from gpu_ops.energy.conditioning import lock_clocks, precondition, unlock_clocks
from gpu_ops.energy.nvml import uuid_hash
from gpu_ops.engines import Engine, EngineHost, EnginePool, engine_identity
from gpu_ops.environment import fingerprint, hardware_profile
from gpu_ops.errors import CapabilityError, MeasurementError, UserError
from gpu_ops.locks import device_locks
from gpu_ops.metrics import cycle_metrics, requests_frame
from gpu_ops.models import resolve_model
from gpu_ops.prompts import build_prompts, output_limits, prompt_texts
from gpu_ops.results import SCHEMA_VERSION, ResultFolder, ResultTables, save_result
from gpu_ops.schema import (
    CYCLE_KEY,
    CYCLE_WINDOW,
    CYCLES,
    ENGINE_METRICS,
    ENGINE_STEP,
    ENGINE_USE,
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
from gpu_ops.timing import SpanRecorder, apportion, breakdown
from gpu_ops.traffic import arrival_times

log = logging.getLogger("gpu_ops")


def _requests(
    prompts: list[list[int]], cfg: ExperimentConfig, offset_s: float, texts: list[str] | None = None
) -> list[Request]:
    """The request trace; with `texts` (tokenize_in_window) each request carries its text for the backend to
    tokenise."""
    arrivals = arrival_times(cfg.traffic, len(prompts))
    limits = output_limits(cfg, len(prompts))
    return [
        Request(i, p, hi, lo, offset_s + float(a), texts[i] if texts else None)
        for i, (p, a, (hi, lo)) in enumerate(zip(prompts, arrivals, limits))
    ]


def trace_hash(requests: list[Request]) -> str:
    """Identity of a request trace (prompt ids, arrival offsets, token limits): equal hashes mean two runs
    (e.g. two backends in `compare`) replayed the same trace."""
    h = hashlib.sha256()
    for r in requests:
        h.update(json.dumps([r.prompt_token_ids, round(r.arrival_s, 9), r.max_new_tokens, r.min_new_tokens]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out and shown, apart from what it measures (that is the config): handed whole from
    run_experiment to measure_experiment, and to rank 0 of a run over several GPUs."""

    nvml: object | None = None  # an NVML stand-in (tests); None loads pynvml when the run uses a GPU
    progress: Callable[[str], None] | None = None  # receives one line per step (sweep point, warm-up, cycle); None logs
    folder_name: str | None = None  # the result folder's name; None: `<name>__<hardware>__<start time>-<config hash>`
    show_bar: bool = False  # a progress bar over the cycles (the CLI's default)
    show_tokens: bool = False  # print one sampled request's text per batch as it is generated (`run --show-tokens`)
    file_sha: str | None = None  # the experiment file's config.file_sha, kept in summary.json; None: not from a file
    pool: EnginePool | None = None  # warm engines to run on (the engine server's); None: engines for this run only


def measure_experiment(cfg: ExperimentConfig, out_root: Path, opts: RunOptions = RunOptions()) -> ResultFolder:
    """Measure every sweep point of `cfg` on engines from `opts.pool` and write the result folder under `out_root`.
    Without a pool, one lives for this run: its engines close when the run ends."""
    from gpu_ops.backends.pytorch import resolve_device
    from gpu_ops.backends.ranked import in_ranks

    began = time.time()
    # one engine start per identity; a warm engine the pool holds (the engine server's) runs its points first, before
    # another point's engine evicts it
    held = {e.identity for e in opts.pool.engines.values()} if opts.pool is not None else set()
    keyed = sorted(
        ((engine_identity(p.config), p) for p in cfg.expand()), key=lambda ip: (ip[0] not in held, ip[0].key)
    )
    points = [p for _, p in keyed]
    backend = get_backend(cfg.backend)  # capabilities and version; the engines come from the pool
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
    owned = opts.pool is None
    pool = opts.pool or EnginePool()
    # ranks are processes already, and --show-tokens writes from inside the engine: both keep it in this process
    placement = "inline" if opts.show_tokens or in_ranks() else pool.placement(cfg, use_cuda)
    current = _Current()
    meter = build_meter(cfg, use_cuda or opts.nvml is not None, nvml_module=opts.nvml, sync=current.sync)
    hardware = hardware_profile(meter.targets)
    identity = RUN_IDENTITY.record(
        model=cfg.model,
        backend=cfg.backend,
        hardware=hardware,
        weights=source.weights,
        experiment_key=cfg.experiment_key(),
    )
    say = opts.progress or (lambda msg: log.info(msg))
    bar = None
    if opts.show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(points) * cfg.cycles, desc=cfg.name, unit="cycle", file=sys.stderr)
        say = partial(bar.write, file=sys.stderr)  # tqdm.write's default is stdout: `$(run ...)` would capture it
    if opts.show_tokens:
        from gpu_ops.display import TokenDisplay

        current.display = TokenDisplay(
            str(source.tokenizer_path or source.path or source.spec), cfg.batching.batch_size
        )
    spans = SpanRecorder()
    try:
        run = _measure(cfg, points, unavailable, pool, placement, current, meter, hardware, say, bar, spans)
    finally:
        if owned:
            with spans.span("engine_start"):  # stopping this run's engines: their own cost, like their start
                pool.close()
        if current.display is not None:
            current.display.close()
    run.backend_version = backend.version()
    if bar:
        bar.close()
    with spans.span("bookkeeping"):
        tables = _tables(cfg, identity, run, opts.file_sha)
    tables.summary["wall_time"] = wall_time(spans, began, spans.clock())
    stamp = run.started.strftime("%Y%m%dT%H%M%SZ")
    name = opts.folder_name or f"{cfg.name}__{hardware}__{stamp}-{cfg.config_hash()[:8]}"
    folder = Path(out_root) / name
    save_result(tables, folder)  # a failed write keeps the tables in a recovery folder
    return ResultFolder(folder, tables)


def engine_start_parts(info: dict) -> dict[str, float]:
    """The seconds of an engine's start that its backend reports as weights loading and compilation."""
    return {
        kind: float(info[key])
        for kind, key in (("weights", "model_load_s"), ("compile", "compile_s"))
        if isinstance(info.get(key), (int, float))
    }


def wall_time(spans: SpanRecorder, start: float, end: float) -> dict:
    """The run's wall time [start, end] by kind (gpu_ops.timing.KINDS; the kinds sum to `wall_s`) and its spans."""
    return {
        "start": start,
        "end": end,
        "wall_s": end - start,
        "seconds": breakdown(spans.spans, start, end),
        "spans": spans.as_list(),
    }


def _batch_shape(cfg: ExperimentConfig) -> tuple:
    """What a warm-up must have seen: batch size and token lengths (allocations, kernels and caches follow them)."""
    return (
        cfg.batching.batch_size,
        cfg.max_input_tokens,
        cfg.max_output_tokens,
        cfg.min_output_tokens,
        cfg.output_lengths,
    )


class _Current:
    """The engine a run works on now: the meter syncs it at every window edge."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.display = None  # run --show-tokens

    def sync(self) -> None:
        if self.engine is not None:
            self.engine.backend.sync()


@dataclass
class _Run:
    """What a run measured, before it becomes tables."""

    started: datetime
    finished: datetime
    windows: list[tuple[str, str, int | None, WindowMeasurement]]  # (kind, sweep point, cycle, window)
    cycles: list[tuple[SweepPoint, int, CycleResult, Record]]  # ..., the engine the cycle ran on (ENGINE_USE)
    points: list[tuple[Record, dict]]  # sweep_points rows and each one's backend load details
    idle: IdleBaseline
    timeline: pd.DataFrame
    meter: EnergyMeter
    spans: SpanRecorder
    engines: list[dict]  # each engine the run used: its id, start seconds and cache states
    backend_version: str = ""


def _measure(
    cfg: ExperimentConfig,
    points: list[SweepPoint],
    unavailable: dict[str, str],
    pool: EnginePool,
    placement: str,
    current: _Current,
    meter: EnergyMeter,
    hardware: str,
    say,
    bar,
    spans: SpanRecorder,
) -> _Run:
    """Hold the run's devices: each sweep point's engine (warm from the pool, or started), its warm-up and cycles.
    The idle baselines are measured with an engine loaded and idle, before the first cycle and after the last: the
    same state both times (docs/energy.md, "Idle baselines")."""
    windows: list[tuple[str, str, int | None, WindowMeasurement]] = []
    per_cycle: list[tuple[SweepPoint, int, CycleResult, Record]] = []
    point_rows: list[tuple[Record, dict]] = []
    used: dict[str, Engine] = {}
    found_warm: dict[str, bool] = {}
    lock_keys = [uuid_hash(t.uuid if t.mig is None else t.parent_uuid) for t in meter.targets] or [
        f"cpu-{socket.gethostname()}"
    ]
    with device_locks(lock_keys), meter, _clocks_locked(meter, cfg.energy.lock_clocks_mhz, say):
        started = datetime.now(UTC)  # started_at / finished_at span the time this run held its devices
        idle_before = idle_after = None
        warm_shape = None  # the batch shape the current engine was last warmed up at in this run
        engine: Engine | None = None
        idle_pending = True
        # the run's next engine starts in a spare process whose imports overlapped the engine before it
        runnable = [p for p in points if p.label not in unavailable]
        identities = [engine_identity(p.config) for p in runnable]
        changes_after = {
            p.label: any(later != ident for later in identities[i + 1 :])
            for i, (p, ident) in enumerate(zip(runnable, identities))
        }
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
                previous, engine = engine, None
                t = spans.clock()
                then = [pc.backend] if changes_after[point.label] else []
                engine = _acquire(pool, pc, placement, point.label, say, then)
                if not engine.reused:  # started now (evicting the engine before it, if any)
                    spans.add("engine_start", t, spans.clock(), point.label, engine_start_parts(engine.backend.info))
                current.engine, used[engine.id] = engine, engine
                found_warm.setdefault(engine.id, engine.reused)  # whether this run found it warm, not a later point
                use = ENGINE_USE.record(engine_id=engine.id, engine_start_s=engine.start_s, engine_reused=engine.reused)
                # backends that show tokens (PyTorch, vLLM) have a token_display; TensorRT-LLM and the ranks do not
                if current.display is not None and getattr(engine.backend, "token_display", False) is None:
                    engine.backend.token_display = current.display
                if idle_pending or not engine.reused:
                    # a spare process still importing (refilled after the last run, or started beside this engine's
                    # load) is waited for here, before this engine's first window, so none imports beside a window
                    t = spans.clock()
                    if pool.quiesce() > 0.01:
                        spans.add("engine_start", t, spans.clock(), "spare")
                if idle_pending:  # the first engine is loaded: idle-before in its loaded, idle state
                    idle_pending = False
                    with spans.span("idle_baseline"):
                        idle_before = _idle(meter, "idle-before", cfg.energy.idle_baseline_s, say)
                    if idle_before:
                        windows.append(("idle_before", "", None, idle_before))
                t = spans.clock()
                reloaded = _load(engine.backend, pc, point.label)
                if reloaded:
                    spans.add("engine_start", t, spans.clock(), point.label, engine_start_parts(engine.backend.info))
                with spans.span("bookkeeping", point.label):
                    prompts = build_prompts(pc, engine.backend.tokenizer, engine.backend.vocab_size)
                warm = _requests(prompts[: pc.warmup_count()], pc, 0.0)
                # warm-up keeps loading, compilation and first-use costs of a batch shape out of measured windows:
                # needed on an engine new to this run, after a (re)load, for compiled paths, and whenever the batch
                # shape changes (on the H200 an eager model's first cycle at a new batch size ran 2.0-4.2x slower:
                # docs/benchmarks §13); an eager model already warm at this shape in this run skips it
                warmup_s = None
                shape = _batch_shape(pc)
                if engine is not previous:
                    warm_shape = None
                if warm and (reloaded or pc.pytorch.static_cache or pc.pytorch.torch_compile or shape != warm_shape):
                    warm_shape = shape
                    with spans.span("warmup", point.label):
                        meter.begin_window(f"{point.label}/warmup")
                        engine.backend.warmup(warm)
                        w = meter.end_window(f"{point.label}/warmup")
                    windows.append(("warmup", point.label, None, w))
                    warmup_s = w.duration_s
                    say(
                        f"[{point.label}] warm-up {len(warm)} request(s): {w.duration_s:.2f} s (includes any "
                        "compilation)"
                    )
                if warm and cfg.energy.precondition_s and meter.conditioning["precondition"] is None:
                    with spans.span("warmup", point.label):  # pre-conditioning repeats the warm-up
                        done = precondition(meter, partial(engine.backend.warmup, warm), cfg.energy.precondition_s)
                    meter.conditioning["precondition"] = done
                    say(f"[{point.label}] pre-conditioned {done['seconds']:.0f} s: temperature flat {done['flat']}")
                for c in range(pc.cycles):
                    cycle = run_cycle(engine.backend, meter, pc, prompts, point.label, c, say, spans)
                    windows.append(("cycle", point.label, c, cycle.window))
                    per_cycle.append((point, c, cycle, use))
                    if bar:
                        bar.update(1)
                engine.warmed_up(pc)  # compilation is done by now: the caches' states
                point_rows.append(
                    (
                        _point_row(point, prompts, model_reused=engine.reused, warmup_s=warmup_s),
                        {f"backend_{k}": v for k, v in engine.backend.info.items()},
                    )
                )
            with spans.span("settle"):
                settle_s = _settle(meter, idle_before, cfg.energy.settle_timeout_s, say)
            # the last engine is still loaded and idle: the state idle-before saw
            with spans.span("idle_baseline"):
                idle_after = _idle(meter, "idle-after", cfg.energy.idle_baseline_s, say)
        except BaseException:
            if engine is not None:
                pool.evict(engine)  # an engine that failed is never handed out again
            raise
        finally:
            current.engine = None
        if idle_after:
            windows.append(("idle_after", "", None, idle_after))
        idle = IdleBaseline(idle_before, idle_after, settle_s)
        drift = idle_drift(idle)
        if drift is not None and abs(drift) > IDLE_DRIFT_LIMIT:
            say(
                f"warning: idle-after differs from idle-before by {drift:+.0%} (more than {IDLE_DRIFT_LIMIT:.0%}): "
                "the two baselines were not taken in the same state; net energy uses their mean"
            )
        timeline = meter.timeline()
        finished = datetime.now(UTC)
    return _Run(
        started,
        finished,
        windows,
        per_cycle,
        point_rows,
        idle,
        timeline,
        meter,
        spans,
        [{**e.describe(), "engine_reused": found_warm[e.id]} for e in used.values()],
    )


IDLE_DRIFT_LIMIT = 0.10
"""How far idle-after may stray from idle-before (a fraction) before the run warns and records it (idle_drift)."""


def idle_drift(idle: IdleBaseline) -> float | None:
    """idle-after / idle-before - 1; None unless both were measured."""
    before = idle.before.avg_power_w if idle.before else None
    after = idle.after.avg_power_w if idle.after else None
    return after / before - 1 if before and after is not None else None


def _acquire(pool: EnginePool, pc: ExperimentConfig, placement: str, label: str, say, then: list[str]) -> Engine:
    """The sweep point's engine from the pool (warm, or started now, beside the spares of `then`); an engine that
    fails to start is a measurement failure with its cause, not a traceback."""
    try:
        engine = pool.acquire(pc, placement=placement, then=then)
    except (UserError, MeasurementError):
        raise
    except Exception as exc:
        raise MeasurementError(
            f"[{label}] backend '{pc.backend}' failed to load {pc.model}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}"
        ) from exc
    say(
        f"[{label}] engine {engine.id}: "
        + ("warm (reused)" if engine.reused else f"started in {engine.start_s:.1f} s")
        + (" in a spare process" if engine.prestarted and not engine.reused else "")
        + (f", process {engine.pid}" if engine.pid else "")
    )
    return engine


def _tables(cfg: ExperimentConfig, identity: Record, run: _Run, file_sha: str | None) -> ResultTables:
    """The result folder's tables and summary from what the run measured, each row a record of gpu_ops.schema."""
    meter, idle = run.meter, run.idle
    gpus = RUN_GPUS.record(
        power_limit_w=sum(t.power_limit_w for t in meter.targets if t.power_limit_w) or None,
        gpu_count=len(meter.targets),
    )
    cycles, requests, steps = [], [], []
    meter_info = meter.describe()
    sensed = meter_info["sensed_stretch_s"]
    for point, c, cycle, use in run.cycles:
        key = CYCLE_KEY.record(sweep_point=point.label, cycle=c)
        w = cycle.window
        split = phases.attribute(run.timeline, cycle.requests, w, cycle.steps, sensed)
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
                **use.as_dict(),
                # same columns on every backend; empty = not reported
                **{name: cycle.engine.get(name) for name in ENGINE_METRICS.names},
            )
        )
        requests.append(req.assign(**key.as_dict()))
        steps.append(cycle.steps.assign(**key.as_dict()))
    windows = [WINDOWS.row(w.readings(), kind=kind, sweep_point=label, cycle=c) for kind, label, c, w in run.windows]
    cycles_df, requests_df = CYCLES.frame(cycles), _concat(REQUESTS, requests)
    sweep_points = SWEEP_POINTS.frame(
        (_with_gpu_seconds(run, gpus.gpu_count, row) for row, _ in run.points), free=(info for _, info in run.points)
    )
    stats = sweep_point_statistics(cycles_df, requests_df, sweep_points)
    fp = fingerprint(
        meter.targets,
        meter.gpu.nvml if meter.gpu else None,
        run.backend_version,
        cfg.config_hash(),
        identity.hardware,
        meter.step_s if meter.step_measured else None,
        engines=run.engines,
    )
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
        idle_drift=idle_drift(idle),
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
        sweep_points=sweep_points,
        cycles=cycles_df,
        requests=requests_df,
        windows=WINDOWS.frame(windows),
        timeline=TIMELINE.conform(run.timeline),
        steps=_concat(STEPS, steps),
        summary=summary,
    )


def _with_gpu_seconds(run: _Run, gpu_count: int, row: Record) -> Record:
    """The sweep_points row with the GPU-seconds it cost: its share of the time the run held its devices
    (gpu_ops.timing.apportion over the measured points) times the GPUs held; none on a CPU."""
    measured = [r.sweep_point for r, _ in run.points if r.status == "measured"]
    if not gpu_count or row.sweep_point not in measured:
        return row
    held = apportion(run.spans.spans, run.started.timestamp(), run.finished.timestamp(), measured)
    return replace(row, gpu_seconds=held[row.sweep_point] * gpu_count)


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
    backend,
    meter: EnergyMeter,
    pc: ExperimentConfig,
    prompts,
    label: str,
    c: int,
    say=lambda m: None,
    spans: SpanRecorder | None = None,
) -> CycleResult:
    """One measured cycle. The window holds the work and nothing else: the trace is built, the prefix cache emptied
    and engine counters started before it opens; records and engine metrics are collected after it closes.
    Backends time everything on the cycle clock (0 = window start); the records are moved onto the run clock.
    `spans` receives the cooldown (as settle), the bookkeeping around the window and the window itself."""
    spans = spans or SpanRecorder()
    if pc.cooldown_s:
        with spans.span("settle", label):
            time.sleep(pc.cooldown_s)
    name = f"{label}/cycle-{c}"
    wall0 = spans.clock()
    if getattr(backend, "token_display", None) is not None:
        backend.token_display.new_cycle()
    t0 = meter.now()
    requests = _requests(prompts, pc, 0.0, prompt_texts(pc) if pc.tokenize_in_window else None)
    if isinstance(backend, EngineHost):
        backend.stage(requests)  # the trace crosses to the engine's process before the window opens, not inside it
    backend.before_cycle()
    wall1 = spans.clock()
    start = meter.begin_window(name)
    try:
        # the cycle clock on perf_counter (the meter's base, found to ~0.1 µs): an engine in another process keeps it
        delivered = backend.run(requests, CycleClock(time.perf_counter() - meter.now() + start))
    except Exception as exc:
        meter.cancel_window(name)  # this window's energy is discarded
        raise MeasurementError(
            f"[{label}] cycle {c} failed, its energy discarded: {type(exc).__name__}: {exc}"
        ) from exc
    w = meter.end_window(name)
    wall2 = spans.clock()
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
    result = CycleResult(
        req, w, backend.peak_memory_bytes(), out.engine_metrics, steps, start - t0, meter.now() - w.end_s
    )
    spans.add("bookkeeping", wall0, wall1, label)
    spans.add("cycle", wall1, wall2, label)
    spans.add("bookkeeping", wall2, spans.clock(), label)
    return result


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
        gpu_seconds=None,  # known when the run has released its devices (_with_gpu_seconds)
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

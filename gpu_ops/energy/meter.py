"""The measurement window API.

    with build_meter(cfg, use_cuda) as meter:   # gpu_ops.energy.build_meter: the meter of a run's config
        meter.begin_window("cycle-0")
        ...work...
        m = meter.end_window("cycle-0")   # WindowMeasurement: counter J ± uncertainty, timeline J, conditions

Totals come from the NVML energy counter, with each window edge aligned to a counter update: the counter is read
until it steps (it updates about every 100 ms), and the stretch between that step and the window edge is taken
from the power timeline. The timeline is sampled in a separate process (`gpu_ops.energy.sampler`) and also gives
an independent estimate of the window's energy (the cross-check), its shape and phase attribution. Windows are
named and independent, so they nest. A domain that cannot be read is `unmeasured` with a reason: never a zero.
"""

from __future__ import annotations

import bisect
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpu_ops.energy import sampler as smp
from gpu_ops.energy.nvml import COUNTER_UPDATE_S, GpuTarget, NvmlSource, uuid_hash
from gpu_ops.energy.rapl import RaplSource
from gpu_ops.energy.tolerance import (
    COUNTER_RESOLUTION_J,
    POWER_ACCURACY_W,
    RULE,
    physics_tolerance,
    timeline_edge_error,
)
from gpu_ops.errors import MeasurementError
from gpu_ops.schema import TIMELINE, WINDOW_READINGS, Record

MIN_TRUSTED_UPDATES = 10  # a window shorter than 10 counter updates is flagged too short to trust
STEP_WAIT_UPDATES = 2.5  # how long a window edge waits for the counter to step, in counter updates
TIMELINE_EDGE_ERROR = 0.05  # relative error allowed for the timeline's share of a window (the stretch past each edge)
SAMPLER_START_S = 30.0
EDGE_MARGIN_S = 1.0  # timeline samples this far outside a window let the integral interpolate its edges


# What one update of a power field reports, per (power source, GPU model name prefix): the mean power over
# [update - first, update - second] seconds. Measured by benchmarks/power_lag.py on an H100 (docs/benchmarks §22,
# block s22-power-lag: benchmarks.power_lag.fit_stretch over that run's edges, 6 of them inside the stretch), apart from
# any run it is used on. One run: the next power-lag run on an H100 checks it.
SENSED_STRETCH_S = {("nvml_field_power_instant", "NVIDIA H100"): (0.026, 0.011)}


def sensed_stretch(power_source: str | None, gpu_names: list[str]) -> tuple[float, float] | None:
    """The stretch each update of this power field senses, if measured for these GPUs (all of one model)."""
    for (source, model), stretch in SENSED_STRETCH_S.items():
        if power_source == source and gpu_names and all(n.startswith(model) for n in gpu_names):
            return stretch
    return None


@dataclass
class WindowMeasurement:
    """What the meter measured over one window. Stored flat as a row of the `windows` table (schema.WINDOW_READINGS,
    where each field's unit and meaning are defined); a cycle repeats part of it (schema.CYCLE_WINDOW)."""

    name: str
    start_s: float
    end_s: float
    duration_s: float
    gpu_energy_status: str  # "measured" | "unmeasured"
    gpu_unmeasured_reason: str | None
    gpu_energy_j: float | None  # energy counter, edges aligned to its updates, summed over the run's GPUs
    energy_uncertainty_j: float | None  # ± bound of gpu_energy_j from the edge alignment (docs/energy.md)
    edges_aligned: bool  # both edges of every GPU's counter read at an observed update
    gpu_energy_by_device_j: dict[str, float]  # label -> J
    timeline_energy_j: float | None  # independent estimate: the sampled power integrated over the window
    cross_check_rel_diff: float | None  # (timeline - counter) / counter
    cross_check_tolerance: float | None  # allowed |cross_check_rel_diff| for this window's length
    n_samples: int
    avg_power_w: float | None
    peak_power_w: float | None
    temp_min_c: float | None
    temp_max_c: float | None
    sm_clock_min_mhz: float | None
    sm_clock_max_mhz: float | None
    throttle_reasons: int
    foreign_processes: list[int]
    too_short: bool
    cpu_energy_status: str
    cpu_unmeasured_reason: str | None
    cpu_energy_j: float | None
    zeus_energy_j: float | None = None
    mig_attribution: str | None = None  # set when a MIG slice ran: how the parent's energy is attributed
    mig_attributed_energy_j: float | None = None
    mem_clock_min_mhz: float | None = None  # memory clock at the window's edges (read outside the measured work)
    mem_clock_max_mhz: float | None = None
    window_power_limit_w: float | None = None  # enforced power limit at the window's end, summed over the GPUs
    memory_power_w: float | None = None  # GPU memory power at the window's end (NVML average; Hopper), summed

    def readings(self) -> Record:
        """This window as stored: a WINDOW_READINGS record, its per-GPU energies and process ids as text."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(
            gpu_energy_by_device_j=";".join(f"{k}={v:.6f}" for k, v in self.gpu_energy_by_device_j.items()),
            foreign_processes=",".join(str(p) for p in self.foreign_processes),
        )
        return WINDOW_READINGS.record(**values)


def _condition_fields(readings: list[dict], gpus: int) -> dict:
    """A window's conditions from its GPUs' readings at both edges (the last `gpus` are the end's): the memory clock's
    range, and the power limit and memory power at the end summed over GPUs (None when any GPU does not report it)."""
    clocks = [r["mem_clock_mhz"] for r in readings if r["mem_clock_mhz"] is not None]
    end = readings[-gpus:] if gpus else []

    def total(key: str) -> float | None:
        values = [r[key] for r in end]
        return float(sum(values)) if values and all(v is not None for v in values) else None

    return {
        "mem_clock_min_mhz": min(clocks) if clocks else None,
        "mem_clock_max_mhz": max(clocks) if clocks else None,
        "window_power_limit_w": total("power_limit_w"),
        "memory_power_w": total("memory_power_w"),
    }


def integrate(t: np.ndarray, p: np.ndarray, t0: float, t1: float) -> float | None:
    """Trapezoid integral of a sampled power curve over [t0, t1], interpolating at the edges."""
    if len(t) < 2 or t1 <= t0 or t[0] > t0 + COUNTER_UPDATE_S * 2 or t[-1] < t1 - COUNTER_UPDATE_S * 2:
        return None
    inside = (t > t0) & (t < t1)
    tt = np.concatenate([[t0], t[inside], [t1]])
    pp = np.concatenate([[np.interp(t0, t, p)], p[inside], [np.interp(t1, t, p)]])
    return float(np.sum((tt[1:] - tt[:-1]) * (pp[1:] + pp[:-1]) / 2.0))


def timeline_energy(timeline: pd.DataFrame, start_s: float, end_s: float) -> float | None:
    """Energy of [start_s, end_s] integrated from the power timeline, summed over devices; None without samples
    inside the window or when a device's samples do not cover it. The meter and the check of an uploaded result
    (gpu_ops.rederive) both use this."""
    around = timeline[(timeline.t_s >= start_s - EDGE_MARGIN_S) & (timeline.t_s <= end_s + EDGE_MARGIN_S)]
    if not ((around.t_s >= start_s) & (around.t_s <= end_s)).any():
        return None
    parts = [integrate(g.t_s.to_numpy(), g.power_w.to_numpy(), start_s, end_s) for _, g in around.groupby("device")]
    return None if any(p is None for p in parts) else float(sum(parts))


def window_figures(
    duration_s: float,
    gpu_energy_j: float | None,
    timeline_energy_j: float | None,
    step_s: float,
    tolerance: float | None,
    rule_tolerance: float | None,
) -> dict:
    """What a window's readings imply: average power, counter vs timeline difference and its tolerance (the configured
    one, else `rule_tolerance`, the rule's for this window), and whether it spans enough counter updates (of period
    `step_s`) to be trusted. Shared with the check of an uploaded result."""
    return {
        "avg_power_w": gpu_energy_j / duration_s if gpu_energy_j is not None and duration_s > 0 else None,
        "cross_check_rel_diff": (
            (timeline_energy_j - gpu_energy_j) / gpu_energy_j
            if gpu_energy_j and timeline_energy_j is not None
            else None
        ),
        "cross_check_tolerance": (tolerance or rule_tolerance) if gpu_energy_j is not None else None,
        "too_short": duration_s < MIN_TRUSTED_UPDATES * step_s,
    }


@dataclass(frozen=True)
class _Edge:
    """One GPU's counter at a window edge: its value, and when it took that value (an observed update)."""

    energy_mj: int
    t_s: float  # when the counter took this value (an update); unaligned: the middle of where that update fell
    half_width_s: float  # the update happened within t_s ± half_width_s
    aligned: bool


class _Samples:
    """The timeline and the process observations, in meter time, appended in time order."""

    def __init__(self) -> None:
        self.power: list[tuple] = []  # (t_s, label, power_w, temp_c, sm_clock_mhz, throttle_reasons)
        self.processes: list[tuple] = []  # (t_s, label, pid, own)

    def last_t(self) -> float:
        return self.power[-1][0] if self.power else -math.inf


class _ThreadSampler(threading.Thread):
    """In-process sampling, for NVML stand-ins injected as objects (tests); real runs use the sampler process."""

    def __init__(self, meter: EnergyMeter):
        super().__init__(name="lem-power-sampler", daemon=True)
        self.meter, self.period_s = meter, meter.sample_period_s
        self.stop_event = threading.Event()
        self.error: Exception | None = None
        self.root = smp.run_root_pid()

    def run(self) -> None:
        m, store = self.meter, self.meter._store
        next_aux = next_poll = 0.0
        aux: dict[str, tuple] = {}
        while not self.stop_event.is_set():
            t = m.now()
            try:
                if t >= next_aux:
                    aux = {target.label: m.gpu.aux(target) for target in m.targets}
                    next_aux = t + smp.AUX_PERIOD_S
                for target in m.targets:
                    store.power.append((t, target.label, m.gpu.power_w(target), *aux[target.label]))
                if t >= next_poll:
                    own = smp.own_pids(self.root)
                    for target in m.targets:
                        store.processes += [
                            (t, target.label, pid, pid in own) for pid in sorted(m.gpu.process_pids(target))
                        ]
                    next_poll = t + smp.PROCESS_POLL_S
            except Exception as exc:  # NVML failed mid-run: the window using it must fail
                self.error = exc
                return
            self.stop_event.wait(max(0.0, self.period_s - (m.now() - t)))

    def refresh(self) -> None:
        pass  # the thread appends directly

    def failure(self) -> str | None:
        return None if self.error is None else f"{type(self.error).__name__}: {self.error}"

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


class _ProcessSampler:
    """`python -m gpu_ops.energy.sampler` beside the measured process; its records are read from a file."""

    def __init__(self, meter: EnergyMeter, nvml_spec: str | None):
        self.meter = meter
        self.dir = Path(tempfile.mkdtemp(prefix="lem-sampler-"))
        self.path = self.dir / "samples.bin"
        self.path.touch()
        self.stderr = open(self.dir / "stderr.txt", "wb")
        self._file = open(self.path, "rb")
        self._pending = b""
        self._t0 = meter._t0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])
        )
        cmd = [
            sys.executable,
            "-m",
            "gpu_ops.energy.sampler",
            "--out",
            str(self.path),
            "--hz",
            repr(meter.sample_hz),
            "--root-pid",
            str(smp.run_root_pid()),
            *(x for t in meter.targets for x in ("--index", str(t.index))),
        ]
        if nvml_spec:
            cmd += ["--nvml", nvml_spec]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env
        )
        self.ready = False

    def start(self) -> None:
        deadline = time.monotonic() + SAMPLER_START_S
        while not self.ready:
            self.refresh()
            failure = self.failure()
            if failure or time.monotonic() > deadline:
                self.stop()
                raise MeasurementError(f"the power sampler process did not start: {failure or 'no answer in 30 s'}")
            time.sleep(0.01)

    def refresh(self) -> None:
        data = self._pending + self._file.read()
        usable = len(data) - len(data) % smp.RECORD.size
        self._pending = data[usable:]
        store, labels = self.meter._store, [t.label for t in self.meter.targets]
        for kind, t, target, a, b, c, d in smp.unpack(data[:usable]):
            t -= self._t0
            if kind == smp.SAMPLE:
                store.power.append(
                    (t, labels[target], a, None if math.isnan(b) else b, None if math.isnan(c) else c, d)
                )
            elif kind == smp.PROCESS:
                store.processes.append((t, labels[target], int(a), bool(b)))
            elif kind == smp.READY:
                self.ready = True

    def failure(self) -> str | None:
        if self.proc.poll() is None:
            return None
        text = (self.dir / "stderr.txt").read_text(errors="replace").strip()
        return text.splitlines()[-1] if text else f"the sampler process exited with code {self.proc.returncode}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._file.close()
        self.stderr.close()
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()


class EnergyMeter:
    """Named energy windows over the run's GPUs (NVML) and, where readable, the CPU package (RAPL).

    Args:
        gpu: the run's GPUs, or None when GPU energy cannot be read here.
        gpu_reason: why GPU energy is unmeasured; required when `gpu` is None (a missing reading is never 0 J).
        cpu: RAPL zones, or None.
        cpu_reason: why CPU energy is unmeasured when `cpu` is None.
        sample_hz: power samples per second for the timeline (>= 50 keeps the cross-check within its tolerance).
        sync: waits for queued device work, so a window edge is where the work really ended (a CUDA sync).
        zeus: an optional `zeus.monitor.ZeusMonitor` measuring the same windows, for comparison.
        sampler: "process" (the default for the real pynvml: sampling never competes with the measured process),
            "thread" (for NVML stand-ins passed as objects, i.e. tests) or "auto".
        nvml_spec: `module:factory` of an NVML stand-in the sampler process can build itself (tests of that process).
        tolerance: allowed |timeline - counter| / counter of every window; None: the rule's (gpu_ops.energy.tolerance).
    """

    def __init__(
        self,
        gpu: NvmlSource | None,
        *,
        gpu_reason: str | None = None,
        cpu: RaplSource | None = None,
        cpu_reason: str | None = None,
        sample_hz: float = smp.DEFAULT_SAMPLE_HZ,
        sync: Callable[[], None] | None = None,
        zeus=None,
        sampler: str = "auto",
        nvml_spec: str | None = None,
        tolerance: float | None = None,
    ):
        if gpu is None and not gpu_reason:
            raise ValueError("an unmeasured GPU domain needs a reason")
        self.gpu = gpu
        self.gpu_reason = gpu_reason
        self.cpu = cpu
        self.cpu_reason = cpu_reason if cpu is None else None
        self.sample_hz = sample_hz
        self.sample_period_s = smp.sample_period_s(sample_hz)
        self.sync = sync or (lambda: None)
        self.zeus = zeus
        self.targets: list[GpuTarget] = gpu.targets if gpu else []
        if sampler == "auto":
            real = gpu is not None and getattr(gpu.nvml, "__name__", "") == "pynvml"
            sampler = "process" if real or nvml_spec else "thread"
        self.sampler_kind = sampler
        self.nvml_spec = nvml_spec
        self.tolerance = tolerance
        self.step_s = COUNTER_UPDATE_S  # replaced by the period measured on this GPU when the meter starts
        self.step_measured = False
        self._t0 = time.perf_counter()
        self._open: dict[str, tuple[float, list[_Edge] | None, dict | None, str | None]] = {}
        self._conditions_at: dict[str, list[dict]] = {}  # each open window's GPU conditions at its start
        self.conditioning: dict[str, dict | None] = {"precondition": None, "clock_lock": None}  # what was done
        self._store = _Samples()
        self._sampler: _ThreadSampler | _ProcessSampler | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the meter was created; every time in the result tables uses this base."""
        return time.perf_counter() - self._t0

    def __enter__(self) -> EnergyMeter:
        if self.gpu is not None:
            if self.sampler_kind == "process":
                self._sampler = _ProcessSampler(self, self.nvml_spec)
                self._sampler.start()
            else:
                self._sampler = _ThreadSampler(self)
                self._sampler.start()
            self._measure_step_period()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the power sampler (the `with` block does this); readings taken so far stay available."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    @property
    def measures_gpu(self) -> bool:
        """Whether GPU energy can be read here (else every window's GPU energy is unmeasured, with the reason)."""
        return self.gpu is not None

    def _check_sampler(self) -> None:
        failure = self._sampler.failure() if self._sampler is not None else None
        if failure:
            raise MeasurementError(f"NVML failed during the measurement: {failure}")

    # -- the energy counter --------------------------------------------------------------------
    def _measure_step_period(self, updates: int = 4) -> None:
        """The counter's update period on this GPU, from a few consecutive updates (~0.4 s, once per meter)."""
        target = self.targets[0]
        times, last = [], self.gpu.energy_of(target)
        deadline = self.now() + (updates + 2) * COUNTER_UPDATE_S
        while len(times) < updates + 1 and self.now() < deadline:
            value = self.gpu.energy_of(target)
            if value != last:
                times.append(self.now())
                last = value
            time.sleep(0.0002)
        if len(times) >= 3:
            self.step_s = float(np.median(np.diff(times)))
            self.step_measured = True

    def _edges(self) -> list[_Edge]:
        """Every GPU's counter read just after it updated. The update happened between the previous read and this
        one: ~NVML's call time (a few ms). Waits at most STEP_WAIT_UPDATES updates, then keeps the first read,
        unaligned: its value is from the last update before that read returned, at most one update earlier. A
        process descheduled between the window's end and that read (a busy host) would otherwise count the gap."""
        reads, asked = [], []  # asked: when each first read began and returned
        for target in self.targets:
            t_a = self.now()
            reads.append((self.gpu.energy_of(target), t_a))
            asked.append((t_a, self.now()))
        edges: list[_Edge | None] = [None] * len(self.targets)
        deadline = self.now() + STEP_WAIT_UPDATES * self.step_s
        while any(e is None for e in edges) and self.now() < deadline:
            for i, target in enumerate(self.targets):
                if edges[i] is not None:
                    continue
                t_a = self.now()
                value = self.gpu.energy_of(target)
                t_b = self.now()
                first, prev_a = reads[i]
                if value != first:
                    edges[i] = _Edge(value, (prev_a + t_b) / 2, (t_b - prev_a) / 2, True)
                else:
                    reads[i] = (first, t_a)
            time.sleep(0.0002)
        return [
            e or _Edge(reads[i][0], (t_a - self.step_s + t_b) / 2, (t_b - t_a + self.step_s) / 2, False)
            for i, (e, (t_a, t_b)) in enumerate(zip(edges, asked))
        ]

    # -- windows ----------------------------------------------------------------------------
    def begin_window(self, name: str) -> float:
        """Open a measurement window. Its GPU edge is the counter's next update, so this waits up to one update
        (~100 ms): start the work after it returns.

        Args:
            name: names the window in end_window and in the result; windows are independent, so they may nest.

        Returns:
            The window's start on the meter clock (`now`); the work's timestamps are relative to it.
        """
        if name in self._open:
            raise ValueError(f"window '{name}' is already open")
        self._check_sampler()
        self.sync()
        self._conditions_at[name] = self._conditions()  # before the edge: the reads stay outside the window
        edges = self._edges() if self.gpu else None
        cpu = self.cpu.read_uj() if self.cpu else None
        zeus_name = None
        if self.zeus is not None:
            zeus_name = f"lem-{name}"
            self.zeus.begin_window(zeus_name, sync_execution=False)
        start = self.now()
        self._open[name] = (start, edges, cpu, zeus_name)
        return start

    def cancel_window(self, name: str) -> None:
        """Discard the open window `name` (its work failed): nothing is recorded for it, never a partial energy."""
        self._open.pop(name, None)
        self._conditions_at.pop(name, None)

    def end_window(self, name: str) -> WindowMeasurement:
        """Close a window where the work ended (after a sync) and measure it. The counter is then read at its next
        update and the stretch past the window's end, taken from the timeline, is subtracted: the bookkeeping after
        the work stays outside the window.

        Args:
            name: the window begin_window opened.

        Returns:
            The window's counter energy (± its uncertainty, or unmeasured with the reason), its timeline energy and
            cross-check, and the conditions seen (temperatures, clocks, throttling, foreign processes).
        """
        if name not in self._open:
            raise ValueError(f"window '{name}' was not begun")
        self.sync()
        end_s = self.now()
        start_s, edges0, cpu0, zeus_name = self._open.pop(name)
        try:
            edges1 = self._edges() if self.gpu else None
        except Exception as exc:
            raise MeasurementError(
                f"NVML energy counter read failed at the end of window '{name}': {type(exc).__name__}: {exc}"
            ) from exc
        cpu_j = self.cpu.delta_j(cpu0, self.cpu.read_uj()) if self.cpu else None
        conditions = [*self._conditions_at.pop(name, []), *self._conditions()]
        zeus_j = None
        if zeus_name:
            zeus_j = float(sum(self.zeus.end_window(zeus_name, sync_execution=False).gpu_energy.values()))
        if self.gpu is not None:
            self._await_samples(max(e.t_s for e in edges1) + self.sample_period_s)
        self._check_sampler()
        m = self._measure(name, start_s, end_s, edges0, edges1, cpu_j, zeus_j)
        return replace(m, **_condition_fields(conditions, len(self.targets)))

    def _conditions(self) -> list[dict]:
        """Each GPU's memory clock, power limit and memory power now (NvmlSource.conditions); none without NVML."""
        return [self.gpu.conditions(t) for t in self.targets] if self.gpu else []

    def _await_samples(self, until_s: float) -> None:
        """The edge corrections integrate the timeline up to the last edge: wait until the sampler got there."""
        deadline = time.monotonic() + 1.0 + 5 * self.sample_period_s
        self._sampler.refresh()
        while self._store.last_t() < until_s and time.monotonic() < deadline and not self._sampler.failure():
            time.sleep(self.sample_period_s / 4)
            self._sampler.refresh()

    def _gpu_energy(self, start_s, end_s, edges0, edges1, around: pd.DataFrame):
        """(J by device, ± J, all edges aligned, reason when unmeasured)."""
        duration = end_s - start_s
        by_dev: dict[str, float] = {}
        uncertainty = 0.0
        stalled = []
        for target, e0, e1 in zip(self.targets, edges0, edges1):
            raw_j = (e1.energy_mj - e0.energy_mj) / 1000.0
            if raw_j <= 0:
                stalled.append(target.label)
                continue
            dev = around[around.device == target.label]
            t, p = dev.t_s.to_numpy(), dev.power_w.to_numpy()
            head = _stretch(t, p, e0.t_s, start_s)
            tail = _stretch(t, p, end_s, e1.t_s)  # negative where an unaligned read's update came before the end
            peak = float(p.max()) if len(p) else raw_j / max(e1.t_s - e0.t_s, self.step_s)
            by_dev[target.label] = raw_j - head - tail
            for edge, part in ((e0, head), (e1, tail)):
                uncertainty += peak * edge.half_width_s + TIMELINE_EDGE_ERROR * abs(part)
        if stalled:  # a GPU always draws power: no counter step inside the window means no reading, not zero joules
            return (
                None,
                None,
                False,
                (
                    f"the energy counter of {', '.join(stalled)} did not advance in this {duration * 1000:.0f} ms "
                    f"window (it updates about every {self.step_s * 1000:.0f} ms); lengthen the window "
                    "(more prompts or output tokens)"
                ),
            )
        if duration < self.step_s:
            return (
                None,
                None,
                False,
                (
                    f"this {duration * 1000:.0f} ms window is shorter than one update of the energy counter "
                    f"({self.step_s * 1000:.0f} ms), which cannot resolve it; lengthen the window "
                    "(more prompts or output tokens)"
                ),
            )
        aligned = all(e.aligned for e in edges0 + edges1)
        return by_dev, uncertainty, aligned, None

    def _measure(self, name, start_s, end_s, edges0, edges1, cpu_j, zeus_j) -> WindowMeasurement:
        duration = end_s - start_s
        margin = max(self.step_s * STEP_WAIT_UPDATES, EDGE_MARGIN_S)  # the edge corrections reach up to an update past
        around = self.timeline(start_s - margin, end_s + margin)
        by_dev, uncertainty, aligned, gpu_reason = {}, None, False, self.gpu_reason
        if edges1 is not None:
            by_dev, uncertainty, aligned, reason = self._gpu_energy(start_s, end_s, edges0, edges1, around)
            gpu_reason = reason
        gpu_j = float(sum(by_dev.values())) if by_dev else None
        tl = around[(around.t_s >= start_s) & (around.t_s <= end_s)]
        timeline_j = timeline_energy(around, start_s, end_s) if len(tl) else None
        peak = temp_min = temp_max = clk_min = clk_max = None
        reasons = 0
        if len(tl):
            peak = float(tl.groupby("t_s").power_w.sum().max())
            temp_min, temp_max = _range(tl.temp_c)
            clk_min, clk_max = _range(tl.sm_clock_mhz)
            reasons = int(np.bitwise_or.reduce(tl.throttle_reasons.to_numpy(dtype=np.int64)))
        mig = [t for t in self.targets if t.mig is not None]
        mig_method = mig_j = None
        if mig and gpu_j is not None:
            mig_method = "parent_gpu_total; attributed share = compute-slice fraction (see docs/energy.md)"
            mig_j = float(sum(by_dev[t.label] * t.mig.compute_fraction for t in self.targets if t.mig))
        return WindowMeasurement(
            name=name,
            start_s=start_s,
            end_s=end_s,
            duration_s=duration,
            gpu_energy_status="measured" if gpu_j is not None else "unmeasured",
            gpu_unmeasured_reason=None if gpu_j is not None else gpu_reason,
            gpu_energy_j=gpu_j,
            energy_uncertainty_j=uncertainty if gpu_j is not None else None,
            edges_aligned=aligned,
            gpu_energy_by_device_j=by_dev if gpu_j is not None else {},
            timeline_energy_j=timeline_j,
            n_samples=len(tl),
            **window_figures(
                duration,
                gpu_j,
                timeline_j,
                self.step_s,
                self.tolerance,
                physics_tolerance(
                    gpu_j,
                    uncertainty,
                    duration,
                    len(by_dev),
                    timeline_edge_error(around, start_s, end_s, max(self.step_s, self.sample_period_s)),
                )
                if gpu_j
                else None,
            ),
            peak_power_w=peak,
            temp_min_c=temp_min,
            temp_max_c=temp_max,
            sm_clock_min_mhz=clk_min,
            sm_clock_max_mhz=clk_max,
            throttle_reasons=reasons,
            foreign_processes=self._foreign(start_s, end_s),
            cpu_energy_status="measured" if cpu_j is not None else "unmeasured",
            cpu_unmeasured_reason=None if cpu_j is not None else self.cpu_reason,
            cpu_energy_j=cpu_j,
            zeus_energy_j=zeus_j,
            mig_attribution=mig_method,
            mig_attributed_energy_j=mig_j,
        )

    def _foreign(self, start_s: float, end_s: float) -> list[int]:
        seen: dict[str, set[int]] = {}
        own: set[int] = set()
        for t, label, pid, is_own in self._store.processes:
            if start_s - smp.PROCESS_POLL_S <= t <= end_s:
                seen.setdefault(label, set()).add(pid)
                if is_own:
                    own.add(pid)
        return smp.foreign_pids(seen, own)

    def measure_idle(self, name: str, seconds: float) -> WindowMeasurement:
        """A window of `seconds` with no work on the devices: the idle baseline that net energy subtracts."""
        self.begin_window(name)
        time.sleep(seconds)
        return self.end_window(name)

    def settle(self, baseline_w: float, timeout_s: float, margin: float = 0.10, hold_s: float = 1.0) -> float | None:
        """Wait for the GPUs to return to idle: after a run a GPU lingers in a higher power state, which would inflate
        the idle baseline measured next.

        Args:
            baseline_w: the idle power to return to (the GPUs' sum).
            timeout_s: how long to wait at most.
            margin: how far above baseline_w still counts as back (a fraction).
            hold_s: how long the power must stay within the margin.

        Returns:
            The seconds it took, or None when the power did not return within timeout_s.
        """
        start = self.now()
        while self.now() - start < timeout_s:
            self._sampler.refresh()
            self._check_sampler()
            recent = self.timeline(self.now() - hold_s, self.now())
            if self.now() - start >= hold_s and len(recent):
                power = recent.groupby("t_s").power_w.sum()
                if (power <= baseline_w * (1 + margin)).all():
                    return self.now() - start
            time.sleep(0.1)
        return None

    # -- timeline ---------------------------------------------------------------------------
    def timeline(self, start_s: float | None = None, end_s: float | None = None) -> pd.DataFrame:
        """Power samples of all devices on the meter clock (the columns of schema.TIMELINE), optionally only those
        in [start_s, end_s]."""
        if self._sampler is not None:
            self._sampler.refresh()
        samples = self._store.power[:]  # appended in time order: slice by bisection, not a scan
        if start_s is not None:
            samples = samples[bisect.bisect_left(samples, (start_s,)) : bisect.bisect_right(samples, (end_s, "\uffff"))]
        return pd.DataFrame(samples, columns=list(TIMELINE.names))

    def describe(self) -> dict:
        """The meter's set-up as stored with a result (meter_json): sources, sampling, counter period, devices. Plain
        JSON values only: the result's checks compare it with what meter_json reads back."""
        stretch = sensed_stretch(self.gpu.power_source, [t.name for t in self.targets]) if self.gpu else None
        return {
            "gpu_source": "nvml" if self.gpu else None,
            "gpu_unmeasured_reason": self.gpu_reason,
            "power_source": self.gpu.power_source if self.gpu else None,
            "sample_hz": self.sample_hz,
            "sampler": self.sampler_kind if self.gpu else None,
            "counter_step_s": self.step_s if self.gpu else None,
            "counter_step_measured": self.step_measured,
            "edge_alignment": "counter read at its next update; the stretch to the window edge from the timeline",
            "cross_check_rule": RULE,  # gpu_ops.energy.tolerance; a folder from before it: gpu_ops.results.upgrade
            "power_accuracy_w": POWER_ACCURACY_W,
            # what each power-field update reports, where measured (gpu_ops.phases uses it; a folder without it: the
            # timeline integral per step)
            "sensed_stretch_s": list(stretch) if stretch else None,  # a list, as it reads back from meter_json
            "counter_resolution_j": COUNTER_RESOLUTION_J,
            "cross_check_edges": True,  # the tolerance includes timeline_edge_error (folders before it: not)
            "conditioning": self.conditioning,  # gpu_ops.energy.conditioning: pre-conditioning, clock lock; None: none
            "cpu_source": "rapl" if self.cpu else None,
            "cpu_unmeasured_reason": self.cpu_reason,
            "zeus": self.zeus is not None,
            "devices": [
                {
                    "label": t.label,
                    "uuid_hash": uuid_hash(t.uuid),
                    "name": t.name,
                    "mig_profile": t.mig.profile if t.mig else None,
                }
                for t in self.targets
            ],
        }


def _stretch(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    """Energy over [a, b] from the timeline (a stretch of about one counter update past a window edge); negative
    when b comes before a."""
    if b < a:
        return -_stretch(t, p, b, a)
    if b == a:
        return 0.0
    part = integrate(t, p, a, b)
    if part is not None:
        return part
    if len(t):
        return float(np.interp((a + b) / 2, t, p)) * (b - a)
    raise MeasurementError("no power samples around a window edge: the power sampler is not running")


def _range(s: pd.Series) -> tuple[float | None, float | None]:
    s = s.dropna()
    return (float(s.min()), float(s.max())) if len(s) else (None, None)


@dataclass
class IdleBaseline:
    """Idle power before the first cycle and after the last; net energy subtracts their mean."""

    before: WindowMeasurement | None
    after: WindowMeasurement | None
    settle_s: float | None = None  # how long the power took to return to the before-level after the run

    @property
    def power_w(self) -> float | None:
        """The mean of the idle powers that were measured; None when neither was."""
        vals = [w.avg_power_w for w in (self.before, self.after) if w is not None and w.avg_power_w is not None]
        return float(np.mean(vals)) if vals else None

"""The measurement window API.

    with EnergyMeter.detect(cfg) as meter:
        meter.begin_window("cycle-0")
        ...work...
        m = meter.end_window("cycle-0")   # WindowMeasurement: counter J, timeline J, cross-check, ...

Totals come from the NVML energy counter (read at window edges, after a CUDA sync); a background thread
samples power >= 10 Hz into a timeline used for shape, phase attribution and the cross-check. Windows are
named and independent, so they nest (a cycle window holding phase windows). A domain that cannot be read
is `unmeasured` with a reason: never a zero.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from gpu_ops.energy.nvml import COUNTER_UPDATE_S, GpuTarget, NvmlSource, uuid_hash
from gpu_ops.energy.rapl import RaplSource
from gpu_ops.errors import MeasurementError

MIN_TRUSTED_UPDATES = 10  # a window shorter than 10 counter updates is flagged too short to trust
EDGE_MARGIN_S = 1.0  # timeline samples this far outside a window let the integral interpolate its edges
PROCESS_POLL_S = 1.0
AUX_PERIOD_S = 0.5


@dataclass
class WindowMeasurement:
    name: str
    start_s: float
    end_s: float
    duration_s: float
    gpu_energy_status: str  # "measured" | "unmeasured"
    gpu_unmeasured_reason: str | None
    gpu_energy_j: float | None  # energy counter, summed over the run's GPUs
    gpu_energy_by_device_j: dict[str, float]  # label -> J
    timeline_energy_j: float | None
    cross_check_rel_diff: float | None  # (timeline - counter) / counter
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

    def to_row(self) -> dict:
        row = asdict(self)
        row["gpu_energy_by_device_j"] = ";".join(f"{k}={v:.6f}" for k, v in self.gpu_energy_by_device_j.items())
        row["foreign_processes"] = ",".join(str(p) for p in self.foreign_processes)
        return row


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


def window_figures(duration_s: float, gpu_energy_j: float | None, timeline_energy_j: float | None) -> dict:
    """What a window's readings imply: average power, counter vs timeline difference, and whether it spans enough
    counter updates to be trusted. Shared with the check of an uploaded result."""
    return {
        "avg_power_w": gpu_energy_j / duration_s if gpu_energy_j is not None and duration_s > 0 else None,
        "cross_check_rel_diff": ((timeline_energy_j - gpu_energy_j) / gpu_energy_j
                                 if gpu_energy_j and timeline_energy_j is not None else None),
        "too_short": duration_s < MIN_TRUSTED_UPDATES * COUNTER_UPDATE_S,
    }


def _own_pids() -> set[int]:
    """This run's processes: us, our threads and children, and the other ranks of a multi-GPU run (LEM_RUN_PIDS,
    set by gpu_ops.distributed: they are siblings under torchrun, not children)."""
    pids = {os.getpid()} | {int(p) for p in os.environ.get("LEM_RUN_PIDS", "").split(",") if p.strip().isdigit()}
    try:
        for child in os.listdir(f"/proc/{os.getpid()}/task"):
            pids.add(int(child))
        import psutil  # optional: children of torchrun/vLLM workers

        pids |= {c.pid for c in psutil.Process().children(recursive=True)}
    except Exception:
        pass
    return pids


def foreign_pids(seen: set[int], own: set[int]) -> list[int]:
    """Processes on our GPUs that are not ours. When NVML reports PIDs of another PID namespace
    (containers), ours cannot be recognised by number: then every process beyond one is foreign."""
    others = seen - own
    if not others:
        return []
    local = sorted(p for p in others if os.path.exists(f"/proc/{p}"))
    if local:
        return local
    return sorted(others)[1:] if others == seen else sorted(others)


class _Sampler(threading.Thread):
    """Power of every device each tick; temperature, clocks and clock-event reasons every AUX_PERIOD_S;
    the process list every PROCESS_POLL_S. The rare queries are the costly ones (benchmarks/nvml_call_cost.py)."""

    def __init__(self, meter: EnergyMeter, period_s: float):
        super().__init__(name="lem-power-sampler", daemon=True)
        self.meter = meter
        self.period_s = period_s
        self.stop_event = threading.Event()

    def run(self) -> None:
        m = self.meter
        next_aux = next_poll = 0.0
        aux: dict[str, tuple] = {}
        while not self.stop_event.is_set():
            t = m.now()
            try:
                if t >= next_aux:
                    aux = {target.label: m.gpu.aux(target) for target in m.targets}
                    next_aux = t + AUX_PERIOD_S
                for target in m.targets:
                    m._samples.append((t, target.label, m.gpu.power_w(target), *aux[target.label]))
                if t >= next_poll:
                    for target in m.targets:
                        m._pid_polls.append((t, target.label, m.gpu.process_pids(target)))
                    next_poll = t + PROCESS_POLL_S
            except Exception as exc:  # NVML failed mid-run: the window using it must fail
                m._sampler_error = exc
                return
            self.stop_event.wait(max(0.0, self.period_s - (m.now() - t)))


@dataclass
class _Open:
    start_s: float
    energy_mj: list[int] | None
    cpu_uj: dict[str, int] | None
    zeus_name: str | None = None


class EnergyMeter:
    def __init__(
        self,
        gpu: NvmlSource | None = None,
        gpu_reason: str | None = None,
        cpu: RaplSource | None = None,
        cpu_reason: str | None = None,
        sample_hz: float = 20.0,
        sync: Callable[[], None] | None = None,
        zeus=None,
    ):
        if gpu is None and not gpu_reason:
            raise ValueError("an unmeasured GPU domain needs a reason")
        self.gpu = gpu
        self.gpu_reason = gpu_reason
        self.cpu = cpu
        self.cpu_reason = cpu_reason if cpu is None else None
        self.sample_period_s = 1.0 / sample_hz
        self.sync = sync or (lambda: None)
        self.zeus = zeus
        self.targets: list[GpuTarget] = gpu.targets if gpu else []
        self._t0 = time.perf_counter()
        self._open: dict[str, _Open] = {}
        self._samples: list[tuple] = []
        self._pid_polls: list[tuple] = []
        self._sampler: _Sampler | None = None
        self._sampler_error: Exception | None = None
        self._own = _own_pids()

    # -- lifecycle ---------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the meter was created; every time in the result tables uses this base."""
        return time.perf_counter() - self._t0

    def __enter__(self) -> EnergyMeter:
        if self.gpu is not None:
            self._sampler = _Sampler(self, self.sample_period_s)
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop_event.set()
            self._sampler.join(timeout=5)
            self._sampler = None

    @property
    def measures_gpu(self) -> bool:
        return self.gpu is not None

    def _check_sampler(self) -> None:
        if self._sampler_error is not None:
            raise MeasurementError(f"NVML failed during the measurement: {type(self._sampler_error).__name__}: {self._sampler_error}")

    # -- windows ----------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"window '{name}' is already open")
        self._check_sampler()
        self.sync()
        energy = self.gpu.energy_mj() if self.gpu else None
        cpu = self.cpu.read_uj() if self.cpu else None
        zeus_name = None
        if self.zeus is not None:
            zeus_name = f"lem-{name}"
            self.zeus.begin_window(zeus_name, sync_execution=False)
        self._open[name] = _Open(self.now(), energy, cpu, zeus_name)

    def cancel_window(self, name: str) -> None:
        """Discard an open window (its work failed); nothing is recorded for it."""
        self._open.pop(name, None)

    def end_window(self, name: str) -> WindowMeasurement:
        if name not in self._open:
            raise ValueError(f"window '{name}' was not begun")
        self.sync()
        end_s = self.now()
        opened = self._open.pop(name)
        try:
            energy = self.gpu.energy_mj() if self.gpu else None
        except Exception as exc:
            raise MeasurementError(f"NVML energy counter read failed at the end of window '{name}': {type(exc).__name__}: {exc}") from exc
        cpu = self.cpu.read_uj() if self.cpu else None
        zeus_j = None
        if opened.zeus_name:
            zeus_j = float(sum(self.zeus.end_window(opened.zeus_name, sync_execution=False).gpu_energy.values()))
        self._check_sampler()
        return self._measure(name, opened, end_s, energy, cpu, zeus_j)

    def _measure(self, name, opened: _Open, end_s, energy, cpu, zeus_j) -> WindowMeasurement:
        duration = end_s - opened.start_s
        by_dev: dict[str, float] = {}
        gpu_j = None
        if energy is not None:
            for target, e0, e1 in zip(self.targets, opened.energy_mj, energy):
                by_dev[target.label] = (e1 - e0) / 1000.0
            gpu_j = float(sum(by_dev.values()))
        gpu_reason = self.gpu_reason
        stalled = [label for label, j in by_dev.items() if j <= 0]
        if stalled:  # a GPU always draws power: no counter step inside the window means no reading, not zero joules
            gpu_j, gpu_reason = None, (f"the energy counter of {', '.join(stalled)} did not advance in this {duration * 1000:.0f} ms window "
                                       f"(it updates about every {COUNTER_UPDATE_S * 1000:.0f} ms); lengthen the window "
                                       "(more prompts or output tokens)")
        around = self.timeline(opened.start_s - EDGE_MARGIN_S, end_s + EDGE_MARGIN_S)
        tl = around[(around.t_s >= opened.start_s) & (around.t_s <= end_s)]
        timeline_j = None
        peak = temp_min = temp_max = clk_min = clk_max = None
        reasons = 0
        n = len(tl)
        if n:
            timeline_j = timeline_energy(around, opened.start_s, end_s)
            peak = float(tl.groupby("t_s").power_w.sum().max())
            temp_min, temp_max = _range(tl.temp_c)
            clk_min, clk_max = _range(tl.sm_clock_mhz)
            reasons = int(np.bitwise_or.reduce(tl.throttle_reasons.to_numpy(dtype=np.int64))) if n else 0
        seen: set[int] = set()
        for t, _, pids in self._pid_polls:
            if opened.start_s - PROCESS_POLL_S <= t <= end_s:
                seen |= pids
        cpu_j = None
        if cpu is not None:
            cpu_j = self.cpu.delta_j(opened.cpu_uj, cpu)
        mig = [t for t in self.targets if t.mig is not None]
        mig_method = mig_j = None
        if mig and gpu_j is not None:
            mig_method = "parent_gpu_total; attributed share = compute-slice fraction (see docs/energy.md)"
            mig_j = float(sum(by_dev[t.label] * t.mig.compute_fraction for t in self.targets if t.mig))
        return WindowMeasurement(
            name=name, start_s=opened.start_s, end_s=end_s, duration_s=duration,
            gpu_energy_status="measured" if gpu_j is not None else "unmeasured",
            gpu_unmeasured_reason=None if gpu_j is not None else gpu_reason,
            gpu_energy_j=gpu_j, gpu_energy_by_device_j=by_dev if gpu_j is not None else {}, timeline_energy_j=timeline_j,
            n_samples=n, **window_figures(duration, gpu_j, timeline_j),
            peak_power_w=peak, temp_min_c=temp_min, temp_max_c=temp_max,
            sm_clock_min_mhz=clk_min, sm_clock_max_mhz=clk_max, throttle_reasons=reasons,
            foreign_processes=foreign_pids(seen, self._own),
            cpu_energy_status="measured" if cpu_j is not None else "unmeasured",
            cpu_unmeasured_reason=None if cpu_j is not None else self.cpu_reason,
            cpu_energy_j=cpu_j, zeus_energy_j=zeus_j, mig_attribution=mig_method, mig_attributed_energy_j=mig_j,
        )

    def measure_idle(self, name: str, seconds: float) -> WindowMeasurement:
        """A window with no work on the device: the idle baseline."""
        self.begin_window(name)
        time.sleep(seconds)
        return self.end_window(name)

    # -- timeline ---------------------------------------------------------------------------
    def timeline(self, start_s: float | None = None, end_s: float | None = None) -> pd.DataFrame:
        cols = ["t_s", "device", "power_w", "temp_c", "sm_clock_mhz", "throttle_reasons"]
        samples = self._samples[:]  # appended in time order by one thread: slice by bisection, not a scan
        if start_s is not None:
            samples = samples[bisect.bisect_left(samples, (start_s,)): bisect.bisect_right(samples, (end_s, "\uffff"))]
        return pd.DataFrame(samples, columns=cols)

    def describe(self) -> dict:
        return {
            "gpu_source": "nvml" if self.gpu else None,
            "gpu_unmeasured_reason": self.gpu_reason,
            "power_source": self.gpu.power_source if self.gpu else None,
            "sample_hz": 1.0 / self.sample_period_s,
            "cpu_source": "rapl" if self.cpu else None,
            "cpu_unmeasured_reason": self.cpu_reason,
            "zeus": self.zeus is not None,
            "devices": [{"label": t.label, "uuid_hash": uuid_hash(t.uuid), "name": t.name,
                         "mig_profile": t.mig.profile if t.mig else None} for t in self.targets],
        }


def _range(s: pd.Series) -> tuple[float | None, float | None]:
    s = s.dropna()
    return (float(s.min()), float(s.max())) if len(s) else (None, None)


@dataclass
class IdleBaseline:
    """Idle power before the first cycle and after the last; net energy subtracts their mean."""

    before: WindowMeasurement | None
    after: WindowMeasurement | None

    @property
    def power_w(self) -> float | None:
        vals = [w.avg_power_w for w in (self.before, self.after) if w is not None and w.avg_power_w is not None]
        return float(np.mean(vals)) if vals else None

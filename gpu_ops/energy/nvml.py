"""NVML: GPU discovery by UUID (honouring CUDA_VISIBLE_DEVICES), MIG topology, energy counter, power samples.

Everything talks to an `nvml` module object (pynvml by default) so tests inject a fake at this boundary.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

COUNTER_UPDATE_S = 0.1  # the energy counter and power reading change every ~100 ms (H100/H200)
MIN_IDLE_UPDATES = 5
MIN_IDLE_BASELINE_S = MIN_IDLE_UPDATES * COUNTER_UPDATE_S
"""The shortest idle window worth measuring: one shorter than a few counter updates reads no counter step, so it would
measure nothing (config.EnergyOptions refuses a shorter `idle_baseline_s`)."""


def load_nvml() -> tuple[Any | None, str | None]:
    """(pynvml, None) when NVML initialises, else (None, reason)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML unavailable ({type(exc).__name__}: {exc}): no NVIDIA driver on this machine"
    return pynvml, None


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def uuid_hash(uuid: str) -> str:
    return hashlib.sha256(uuid.encode()).hexdigest()[:12]


@dataclass
class MigInstance:
    uuid: str
    profile: str  # e.g. "1g.10gb"
    gpu_instance_id: int
    compute_fraction: float  # share of the parent's compute slices (attribution weight)
    memory_bytes: int


@dataclass
class GpuTarget:
    """One device a run uses. For a MIG slice, energy and power come from the parent GPU."""

    index: int  # NVML index of the (parent) physical GPU
    uuid: str  # UUID of what CUDA sees: the GPU, or the MIG instance
    name: str
    handle: Any  # the physical GPU's handle: energy, power, clocks, processes
    power_limit_w: float | None
    mig: MigInstance | None = None
    parent_uuid: str | None = None

    @property
    def label(self) -> str:
        return f"gpu{self.index}" + (f"-mig{self.mig.gpu_instance_id}" if self.mig else "")


@dataclass
class GpuTopology:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    power_limit_w: float | None
    mig_enabled: bool
    mig_instances: list[MigInstance] = field(default_factory=list)


def _mig_profile_name(nvml, mig_handle) -> str:
    name = _s(nvml.nvmlDeviceGetName(mig_handle))  # e.g. "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    return name.split("MIG")[-1].strip() if "MIG" in name else name


def _compute_slices(profile: str) -> int:
    head = profile.split(".")[0]
    return int(head.removesuffix("g")) if head.removesuffix("g").isdigit() else 1


def topology(nvml) -> list[GpuTopology]:
    """Every physical GPU with its MIG layout, as `list-hardware` shows it."""
    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        try:
            limit = nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        except Exception:
            limit = None
        try:
            mig_on = nvml.nvmlDeviceGetMigMode(h)[0] == 1
        except Exception:  # NotSupported on non-MIG parts
            mig_on = False
        instances = []
        if mig_on:
            total_slices = 7  # A100/H100/H200 split into 7 compute slices
            for j in range(nvml.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    mh = nvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                except Exception:
                    continue
                profile = _mig_profile_name(nvml, mh)
                instances.append(
                    MigInstance(
                        uuid=_s(nvml.nvmlDeviceGetUUID(mh)),
                        profile=profile,
                        gpu_instance_id=nvml.nvmlDeviceGetGpuInstanceId(mh),
                        compute_fraction=_compute_slices(profile) / total_slices,
                        memory_bytes=nvml.nvmlDeviceGetMemoryInfo(mh).total,
                    )
                )
        out.append(
            GpuTopology(
                i,
                _s(nvml.nvmlDeviceGetUUID(h)),
                _s(nvml.nvmlDeviceGetName(h)),
                nvml.nvmlDeviceGetMemoryInfo(h).total,
                limit,
                mig_on,
                instances,
            )
        )
    return out


def visible_targets(nvml, environ: dict[str, str] | None = None) -> list[GpuTarget]:
    """The devices CUDA sees, in CUDA ordinal order, resolved to NVML by UUID.

    CUDA_VISIBLE_DEVICES may hold UUIDs (GPU-..., MIG-...) or indices; indices are NVML (PCI bus)
    order, which is CUDA's order once CUDA_DEVICE_ORDER=PCI_BUS_ID (the CLI sets it).
    """
    environ = os.environ if environ is None else environ
    topo = topology(nvml)
    by_uuid: dict[str, GpuTarget] = {}
    physical: list[GpuTarget] = []
    for g in topo:
        parent = nvml.nvmlDeviceGetHandleByIndex(g.index)
        t = GpuTarget(g.index, g.uuid, g.name, parent, g.power_limit_w)
        by_uuid[g.uuid] = t
        physical.append(t)
        for m in g.mig_instances:
            by_uuid[m.uuid] = GpuTarget(
                g.index, m.uuid, f"{g.name} MIG {m.profile}", parent, g.power_limit_w, m, g.uuid
            )
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        # without a selection CUDA shows each GPU, or the first MIG instance of a MIG-enabled GPU
        out = []
        for g, t in zip(topo, physical):
            out.append(by_uuid[g.mig_instances[0].uuid] if g.mig_enabled and g.mig_instances else t)
        return out
    out = []
    for entry in (e.strip() for e in cvd.split(",") if e.strip()):
        if entry.isdigit():
            idx = int(entry)
            if idx >= len(physical):
                break  # CUDA stops at the first invalid entry
            out.append(physical[idx])
        else:
            matches = [u for u in by_uuid if u == entry or u.startswith(entry)]
            if len(matches) != 1:
                break
            out.append(by_uuid[matches[0]])
    return out


def select_targets(nvml, gpus: list[int], environ: dict[str, str] | None = None) -> list[GpuTarget]:
    from gpu_ops.errors import ConfigError

    visible = visible_targets(nvml, environ)
    missing = [g for g in gpus if g >= len(visible)]
    if missing:
        raise ConfigError(
            f"gpus: index {missing} out of range; this process sees {len(visible)} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    chosen = [visible[g] for g in gpus]
    parents = [t.index for t in chosen]
    if len(set(parents)) != len(parents):
        raise ConfigError(
            "gpus: two MIG slices of one GPU in one run cannot be told apart by the energy counter; use one slice per "
            "parent GPU"
        )
    return chosen


class NvmlSource:
    """Reads the counters of the chosen GPUs. One instance per run."""

    def __init__(self, nvml, targets: list[GpuTarget]):
        self.nvml = nvml
        self.targets = targets
        self._instant_field = self._probe_instant_power()

    def _probe_instant_power(self) -> int | None:
        fid = getattr(self.nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if fid is None or not hasattr(self.nvml, "nvmlDeviceGetFieldValues"):
            return None
        try:
            v = self.nvml.nvmlDeviceGetFieldValues(self.targets[0].handle, [fid])[0]
            return fid if v.nvmlReturn == 0 else None
        except Exception:
            return None

    @property
    def power_source(self) -> str:
        return "nvml_field_power_instant" if self._instant_field is not None else "nvmlDeviceGetPowerUsage"

    def energy_of(self, t: GpuTarget) -> int:
        """The energy counter of `t` (mJ since the driver loaded); it changes only at its ~100 ms updates."""
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(t.handle)

    def power_w(self, t: GpuTarget) -> float:
        if self._instant_field is not None:
            v = self.nvml.nvmlDeviceGetFieldValues(t.handle, [self._instant_field])[0]
            if v.nvmlReturn == 0:
                return v.value.uiVal / 1000.0
        return self.nvml.nvmlDeviceGetPowerUsage(t.handle) / 1000.0

    def aux(self, t: GpuTarget) -> tuple[float | None, float | None, int]:
        """(temperature C, SM clock MHz, clock-event reasons bitmask)."""
        nv = self.nvml
        temp = clock = None
        reasons = 0
        try:
            temp = float(nv.nvmlDeviceGetTemperature(t.handle, nv.NVML_TEMPERATURE_GPU))
            clock = float(nv.nvmlDeviceGetClockInfo(t.handle, nv.NVML_CLOCK_SM))
            get_reasons = (
                getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                or nv.nvmlDeviceGetCurrentClocksThrottleReasons
            )
            reasons = int(get_reasons(t.handle))
        except Exception as exc:
            if type(exc).__name__ not in ("NVMLError_NotSupported",):
                raise
        return temp, clock, reasons

    def conditions(self, t: GpuTarget) -> dict[str, float | None]:
        """What the GPU runs under, read at a window's edges: memory clock (MHz), enforced power limit (W) and GPU
        memory power (W, NVML's average over its scope; Hopper reports it, older GPUs do not: None, never 0). A
        reading the driver does not support is None."""
        nv = self.nvml

        def read(fn):
            try:
                return fn()
            except Exception as exc:
                if type(exc).__name__.startswith("NVMLError"):
                    return None
                raise

        def memory_power():
            fid, scope = getattr(nv, "NVML_FI_DEV_POWER_AVERAGE", None), getattr(nv, "NVML_POWER_SCOPE_MEMORY", None)
            if fid is None or scope is None or not hasattr(nv, "nvmlDeviceGetFieldValues"):
                return None
            v = nv.nvmlDeviceGetFieldValues(t.handle, [(fid, scope)])[0]
            return v.value.uiVal / 1000.0 if v.nvmlReturn == 0 else None

        clock_mem = getattr(nv, "NVML_CLOCK_MEM", None)
        return {
            "mem_clock_mhz": None
            if clock_mem is None
            else read(lambda: float(nv.nvmlDeviceGetClockInfo(t.handle, clock_mem))),
            "power_limit_w": read(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(t.handle) / 1000.0),
            "memory_power_w": read(memory_power),
        }

    def process_pids(self, t: GpuTarget) -> set[int]:
        try:
            return {p.pid for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(t.handle)}
        except Exception as exc:
            if type(exc).__name__ == "NVMLError_NotSupported":
                return set()
            raise

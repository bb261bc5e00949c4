"""A deterministic stand-in for pynvml at the module boundary: scripted power traces, an energy counter
that integrates them and publishes the integral in steps (`update_s`), MIG layouts, injected errors.

The real counter steps every 100 ms (docs/benchmarks §9); the default here is 2 ms because the tests' tiny
models run measured windows of a few milliseconds, which on a real GPU would be unmeasured (no counter step).
Tests of the meter's own step handling pass REAL_UPDATE_S."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

REAL_UPDATE_S = 0.1


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


@dataclass
class FakeProcess:
    pid: int
    usedGpuMemory: int = 1 << 30


@dataclass
class FakeMig:
    uuid: str
    profile: str
    gi: int
    memory: int


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    power: Callable[[float], float] = lambda t: 300.0  # watts at seconds since fake start
    power_limit_mw: int = 700_000
    memory: int = 80 << 30
    mig: list[FakeMig] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    fail_after_s: float | None = None  # every call raises GpuIsLost after this time
    memory_power_w: float | None = 36.0  # GPU memory power (Hopper reports it); None: NotSupported
    clock_lock_allowed: bool = False  # the driver permits locking clocks (root); False: NoPermission, as usual
    locked_clocks: tuple[int, int] | None = None  # what a lock set (a fake: no real clock is ever locked)
    mem_clock_mhz: int = 2619


@dataclass
class _Mem:
    total: int


@dataclass
class _Value:
    uiVal: int


@dataclass
class _Field:
    nvmlReturn: int
    value: _Value


class FakeNVML:
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_FI_DEV_POWER_AVERAGE = 185
    NVML_POWER_SCOPE_MEMORY = 2
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], update_s: float = 0.002, dt: float = 0.001, instant_power: bool = False):
        self.gpus = gpus
        if instant_power:  # the field the meter prefers where the driver has it (NVML_FI_DEV_POWER_INSTANT)
            self.NVML_FI_DEV_POWER_INSTANT = 186
        self.update_s = update_s
        self.dt = dt
        self.t0 = time.perf_counter()
        self.energy_calls = 0
        self._lock = threading.Lock()
        # per GPU: integrated up to t (s), joules so far, counter value published at the last 100 ms step
        self._state = [[0.0, 0.0, 0.0] for _ in gpus]

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _gpu(self, h) -> FakeGpu:
        g = self.gpus[h[1]]
        if g.fail_after_s is not None and self._now() > g.fail_after_s:
            raise NVMLError_GpuIsLost("GPU is lost")
        return g

    # discovery
    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetUUID(self, h):
        if h[0] == "mig":
            return self.gpus[h[1]].mig[h[2]].uuid
        return self._gpu(h).uuid

    def nvmlDeviceGetName(self, h):
        if h[0] == "mig":
            return f"{self.gpus[h[1]].name} MIG {self.gpus[h[1]].mig[h[2]].profile}"
        return self._gpu(h).name

    def nvmlDeviceGetMemoryInfo(self, h):
        if h[0] == "mig":
            return _Mem(self.gpus[h[1]].mig[h[2]].memory)
        return _Mem(self._gpu(h).memory)

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._gpu(h).power_limit_mw

    def nvmlDeviceGetMigMode(self, h):
        return (1, 1) if self._gpu(h).mig else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        if j >= len(self.gpus[h[1]].mig):
            raise NVMLError_NotSupported("no such MIG device")
        return ("mig", h[1], j)

    def nvmlDeviceGetGpuInstanceId(self, h):
        return self.gpus[h[1]].mig[h[2]].gi

    # counters: power is integrated as time passes (so a power function may depend on state, e.g. "busy"),
    # and the counter publishes the integral in 100 ms steps like the real one
    def _advance(self, i: int) -> float:
        g = self.gpus[i]
        with self._lock:
            st = self._state[i]
            now = self._now()
            while st[0] + self.dt <= now:
                st[1] += g.power(st[0]) * self.dt
                st[0] += self.dt
                if int(st[0] / self.update_s) != int((st[0] - self.dt) / self.update_s):
                    st[2] = st[1]
            return st[2]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._gpu(h)
        self.energy_calls += 1
        return int(self._advance(h[1]) * 1000)

    def nvmlDeviceGetPowerUsage(self, h):
        g = self._gpu(h)
        self._advance(h[1])
        return int(g.power(self._now()) * 1000)

    def nvmlDeviceGetTemperature(self, h, sensor):
        self._gpu(h)
        return 55

    def nvmlDeviceGetClockInfo(self, h, clock):
        g = self._gpu(h)
        return g.mem_clock_mhz if clock == self.NVML_CLOCK_MEM else 1980

    def nvmlDeviceSetGpuLockedClocks(self, h, low, high):
        g = self._gpu(h)
        if not g.clock_lock_allowed:
            raise NVMLError_NoPermission("Insufficient Permissions")
        g.locked_clocks = (low, high)

    def nvmlDeviceResetGpuLockedClocks(self, h):
        self._gpu(h).locked_clocks = None

    def nvmlDeviceGetFieldValues(self, h, fields):
        """GPU memory power (NVML_FI_DEV_POWER_AVERAGE at NVML_POWER_SCOPE_MEMORY) and, with `instant_power`, the
        board's instantaneous power, in mW."""
        g = self._gpu(h)
        if list(fields) == [getattr(self, "NVML_FI_DEV_POWER_INSTANT", None)]:
            return [_Field(0, _Value(self.nvmlDeviceGetPowerUsage(h)))]
        if list(fields) != [(self.NVML_FI_DEV_POWER_AVERAGE, self.NVML_POWER_SCOPE_MEMORY)]:
            raise NVMLError_NotSupported()
        if g.memory_power_w is None:
            return [_Field(3, _Value(0))]  # NVML_ERROR_NOT_SUPPORTED
        return [_Field(0, _Value(int(g.memory_power_w * 1000)))]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self._gpu(h)
        return 0

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [FakeProcess(p) for p in self._gpu(h).pids]

    def nvmlSystemGetDriverVersion(self):
        return "580.159.04"

    def nvmlSystemGetNVMLVersion(self):
        return "13.580.159.04"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000


def from_env() -> FakeNVML:
    """The stand-in the real sampler process builds (`--nvml tests.fake_nvml:from_env`): one GPU drawing
    LEM_FAKE_POWER_W watts with the processes LEM_FAKE_PIDS (comma-separated) on it."""
    import os

    pids = [int(p) for p in os.environ.get("LEM_FAKE_PIDS", "").split(",") if p]
    watts = float(os.environ.get("LEM_FAKE_POWER_W", "300"))
    return FakeNVML(
        [FakeGpu(power=lambda t: watts, pids=pids)],
        update_s=REAL_UPDATE_S,
    )

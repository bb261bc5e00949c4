"""Cost of each NVML query the meter makes, measured on this machine's GPU 0 (median of 200 calls), so the
sampler's per-tick work can be chosen with numbers: cheap queries every tick, costly ones rarely."""

from __future__ import annotations

import statistics
import time

import pynvml as nv


def main() -> int:
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    calls = {
        "nvmlDeviceGetPowerUsage": lambda: nv.nvmlDeviceGetPowerUsage(h),
        "nvmlDeviceGetFieldValues(POWER_INSTANT)": lambda: nv.nvmlDeviceGetFieldValues(
            h, [nv.NVML_FI_DEV_POWER_INSTANT]
        ),
        "nvmlDeviceGetTemperature": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetClockInfo(SM)": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
        "nvmlDeviceGetCurrentClocksEventReasons": lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h),
        "nvmlDeviceGetComputeRunningProcesses": lambda: nv.nvmlDeviceGetComputeRunningProcesses(h),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
    }
    print(f"device: {nv.nvmlDeviceGetName(h)}")
    for name, fn in calls.items():
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"{name:<42} median {statistics.median(times) * 1e6:9.1f} us   max {max(times) * 1e6:9.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The power sampler: power, temperature, clocks and the GPU process list, read in a process of its own.

Why a separate process, as Zeus's power monitor does: a sampling thread inside the measured process competes with
the inference loop for the GIL (it cost 2 % of throughput on a compiled H200 path), and a thread that sits inside
NVML at the instant an engine forks its worker (vLLM's EngineCore) leaves NVML's lock held in the child forever.

The sampler appends fixed-size records to a file; the meter reads the new ones when a window ends, so nothing
crosses between the processes while a window runs. Every time is `time.perf_counter()`, which is CLOCK_MONOTONIC
on Linux: one clock for every process of the machine.

    python -m gpu_ops.energy.sampler --out FILE --index 0 [--index 1] --hz 50 --root-pid PID

A process is "own" when it is the run's root process or one of its descendants (engine cores, workers, torchrun
ranks), or listed in LEM_RUN_PIDS; every other process on the run's GPUs is foreign.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import signal
import struct
import sys
import time

RECORD = struct.Struct("<cdHdddq")  # kind, t, target, a, b, c, d
SAMPLE, PROCESS, READY = b"s", b"p", b"r"  # s: power W, temp C, SM clock MHz, reasons; p: pid, own (0/1)
AUX_PERIOD_S = 0.5  # temperature, clocks and clock-event reasons: the costly queries (benchmarks/nvml_call_cost.py)
PROCESS_POLL_S = 1.0
DEFAULT_SAMPLE_HZ = 50.0
"""Power samples per second unless the config says otherwise (energy.sample_hz): >= 50 keeps the cross-check within
its tolerance."""
ROOT_ENV = "LEM_RUN_ROOT_PID"  # set by a launcher whose children run the meter (torchrun ranks)
PIDS_ENV = "LEM_RUN_PIDS"


def sample_period_s(sample_hz: float) -> float:
    """Seconds between power samples at `sample_hz`: the one place the sampling rate becomes a period."""
    return 1.0 / sample_hz


def run_root_pid() -> int:
    """The process whose tree is this run: a launcher's pid when it set LEM_RUN_ROOT_PID, else this process."""
    value = os.environ.get(ROOT_ENV, "")
    return int(value) if value.isdigit() else os.getpid()


def own_pids(root: int) -> set[int]:
    """The run's processes: the root, all its descendants, and the pids a launcher listed in LEM_RUN_PIDS."""
    import psutil

    pids = {root, os.getpid()} | {int(p) for p in os.environ.get(PIDS_ENV, "").split(",") if p.strip().isdigit()}
    try:
        pids |= {c.pid for c in psutil.Process(root).children(recursive=True)}
    except psutil.Error:
        pass
    return pids


def foreign_pids(seen_by_device: dict[str, set[int]], own: set[int]) -> list[int]:
    """Processes on the run's GPUs that are not the run's.

    NVML may report PIDs of another PID namespace (containers); such PIDs match nothing here. Then a device's
    processes cannot be told apart by number, and each device may hold one process of the run (every engine,
    worker or rank uses one GPU); any further unknown process on that device is foreign."""
    foreign: set[int] = set()
    for pids in seen_by_device.values():
        others = pids - own
        local = {p for p in others if os.path.exists(f"/proc/{p}")}
        foreign |= local
        unknown = sorted(others - local)
        foreign |= set(unknown[1:] if unknown and not (pids & own) else unknown)
    return sorted(foreign)


def pack_sample(t: float, target: int, power: float, temp: float | None, clock: float | None, reasons: int) -> bytes:
    return RECORD.pack(
        SAMPLE, t, target, power, math.nan if temp is None else temp, math.nan if clock is None else clock, int(reasons)
    )


def pack_process(t: float, target: int, pid: int, own: bool) -> bytes:
    return RECORD.pack(PROCESS, t, target, float(pid), float(own), math.nan, 0)


def unpack(data: bytes):
    """Yield (kind, t, target, a, b, c, d) for each complete record in `data`."""
    yield from RECORD.iter_unpack(data[: len(data) - len(data) % RECORD.size])


def load_nvml_module(spec: str | None):
    """pynvml, initialised; or `module:factory` returning an NVML stand-in (tests run the real process on CPU)."""
    if spec:
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module), attr)()
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _loop(args) -> None:
    from gpu_ops.energy.nvml import GpuTarget, NvmlSource

    nvml = load_nvml_module(args.nvml)
    period_s = sample_period_s(args.hz)
    targets = [GpuTarget(i, "", "", nvml.nvmlDeviceGetHandleByIndex(i), None) for i in args.index]
    source = NvmlSource(nvml, targets)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    parent = os.getppid()
    out = open(args.out, "ab", buffering=0)
    out.write(RECORD.pack(READY, time.perf_counter(), 0, 0.0, 0.0, 0.0, 0))
    next_aux = next_poll = 0.0
    aux: list[tuple] = [(None, None, 0)] * len(targets)
    while not stop["now"] and os.getppid() == parent:  # a parent that died without stopping us: stop too
        t = time.perf_counter()
        chunk = []
        if t >= next_aux:
            aux = [source.aux(target) for target in targets]
            next_aux = t + AUX_PERIOD_S
        for i, target in enumerate(targets):
            chunk.append(pack_sample(t, i, source.power_w(target), *aux[i]))
        if t >= next_poll:
            own = own_pids(args.root_pid)
            for i, target in enumerate(targets):
                chunk += [pack_process(t, i, pid, pid in own) for pid in sorted(source.process_pids(target))]
            next_poll = t + PROCESS_POLL_S
        out.write(b"".join(chunk))
        time.sleep(max(0.0, period_s - (time.perf_counter() - t)))
    out.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="power sampler of llm-energy-measure (started by the meter)")
    ap.add_argument("--out", required=True, help="file the records are appended to")
    ap.add_argument("--index", type=int, action="append", required=True, help="NVML index of a GPU to sample")
    ap.add_argument("--hz", type=float, default=DEFAULT_SAMPLE_HZ, help="power samples per second")
    ap.add_argument("--root-pid", type=int, required=True, help="root of the run's process tree (own processes)")
    ap.add_argument("--nvml", default=None, help="module:factory of an NVML stand-in (tests)")
    args = ap.parse_args(argv)
    try:
        _loop(args)
    except Exception as exc:  # the meter reads this and fails the window that needed the samples
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

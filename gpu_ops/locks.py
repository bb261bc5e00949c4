"""Per-device exclusive locks: two measurements never share a GPU (or a CPU host), even if the run
queue is misconfigured. flock-based, so a crashed holder releases its lock when its process dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path

from gpu_ops.errors import MeasurementError


def lock_dir() -> Path:
    return Path(os.environ.get("LEM_LOCK_DIR") or Path(tempfile.gettempdir()) / "llm-energy-measure-locks")


@contextlib.contextmanager
def device_locks(keys: list[str], timeout_s: float | None = None):
    """Hold an exclusive lock per device key (GPU UUID hash, or 'cpu-<host>') for the block."""
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    timeout_s = float(os.environ.get("LEM_LOCK_TIMEOUT_S", "3600")) if timeout_s is None else timeout_s
    handles = []
    try:
        for key in sorted(set(keys)):  # fixed order: no deadlock between multi-GPU runs
            fh = open(d / f"{key}.lock", "a+")
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        fh.close()
                        raise MeasurementError(f"device {key} stayed busy for {timeout_s:.0f} s (lock {d / (key + '.lock')}); another measurement is running on it")
                    time.sleep(0.2)
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            handles.append(fh)
        yield
    finally:
        for fh in handles:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

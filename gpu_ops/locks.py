"""Per-device exclusive locks: two measurements never share a GPU (or a CPU host), even if the run
queue is misconfigured. flock-based, so a crashed holder releases its lock when its process dies.

The holder writes who it is into the lock file, so a run that has to wait says whom it waits for and since when."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gpu_ops.errors import MeasurementError

log = logging.getLogger("gpu_ops")
HOLDER_BYTES = 4096  # the most of a lock file read back


def lock_dir() -> Path:
    return Path(os.environ.get("LEM_LOCK_DIR") or Path(tempfile.gettempdir()) / "llm-energy-measure-locks")


def _me() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:200],
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def describe_holder(path: Path) -> str:
    """'pid 123 (llm-energy-measure run x.yaml) on host h since 2026-...' from a lock file, as far as it can be read."""
    try:
        with open(path, "rb") as fh:
            info = json.loads(fh.read(HOLDER_BYTES).decode("utf-8", "replace"))
        return f"pid {info['pid']} ({info['command']}) on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not say who it is (an older version?)"


@contextlib.contextmanager
def device_locks(keys: list[str], timeout_s: float | None = None):
    """Hold an exclusive lock per device key (GPU UUID hash, or 'cpu-<host>') for the block."""
    d = lock_dir()
    d.mkdir(parents=True, exist_ok=True)
    timeout_s = float(os.environ.get("LEM_LOCK_TIMEOUT_S", "3600")) if timeout_s is None else timeout_s
    handles = []
    try:
        for key in sorted(set(keys)):  # fixed order: no deadlock between multi-GPU runs
            path = d / f"{key}.lock"
            fh = open(path, "a+")
            deadline = time.monotonic() + timeout_s
            told = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        log.warning(
                            f"device {key} is busy: held by {describe_holder(path)}; waiting up to "
                            f"{timeout_s:.0f} s (LEM_LOCK_TIMEOUT_S) for it"
                        )
                        told = True
                    if time.monotonic() > deadline:
                        fh.close()
                        raise MeasurementError(
                            f"device {key} stayed busy for {timeout_s:.0f} s (lock {path}), held by "
                            f"{describe_holder(path)}; another measurement is running on it"
                        ) from None
                    time.sleep(0.2)
            fh.seek(0)
            fh.truncate()
            fh.write(_me() + "\n")
            fh.flush()
            handles.append(fh)
        yield
    finally:
        for fh in handles:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

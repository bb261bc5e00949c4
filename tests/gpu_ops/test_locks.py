"""The per-device lock: a run that has to wait says who holds the device and since when."""

import json
import logging
import os
import threading

import pytest

from gpu_ops.errors import MeasurementError
from gpu_ops.locks import device_locks, lock_dir


def test_waiting_names_the_holder_and_since_when(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LEM_LOCK_DIR", str(tmp_path))
    held, release = threading.Event(), threading.Event()

    def holder():
        with device_locks(["gpu-abc"]):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        info = json.loads((lock_dir() / "gpu-abc.lock").read_text())
        assert info["pid"] == os.getpid() and info["since"]
        with caplog.at_level(logging.WARNING, logger="gpu_ops"), pytest.raises(MeasurementError) as err:
            with device_locks(["gpu-abc"], timeout_s=0.5):
                pass
    finally:
        release.set()
        t.join()
    holder_text = f"pid {os.getpid()} ("
    assert holder_text in caplog.text and f"since {info['since']}" in caplog.text and "waiting up to 0 s" in caplog.text
    assert holder_text in str(err.value) and "stayed busy for 0 s" in str(err.value)
    with device_locks(["gpu-abc"], timeout_s=0.5):  # released: taken at once
        pass

"""The engine caches: where an engine's synthetic weights and compile caches persist between runs and processes.

A warm cache is what makes a second engine start cheap (no weights drawn and written, no torch.compile, no Triton
autotuning), so they live under one root per worker that outlives every run: LEM_ENGINE_CACHE_DIR, else `engine/`
in the model cache (LEM_CACHE_DIR or ~/.cache/llm-energy-measure).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "LEM_ENGINE_CACHE_DIR"
CACHE_ENV = {"vllm_compile": "VLLM_CACHE_ROOT", "inductor": "TORCHINDUCTOR_CACHE_DIR", "triton": "TRITON_CACHE_DIR"}
"""Compile caches an engine reads and writes, by the environment variable that places them (read when torch and
vLLM compile, so they are set in the engine's process before it starts)."""
CACHES = ("synthetic_weights", *CACHE_ENV)
"""Every cache whose state (hit / miss / unused) a run records."""
_USER_CACHE_ENV = {var: os.environ.get(var) for var in CACHE_ENV.values()}
"""The compile-cache variables as the user set them, before an inline engine set its own in this process."""


def cache_dir() -> Path:
    """Where built models and generated weights are kept: LEM_CACHE_DIR, else ~/.cache/llm-energy-measure."""
    return Path(os.environ.get("LEM_CACHE_DIR") or Path.home() / ".cache" / "llm-energy-measure")


def engine_cache_dir() -> Path:
    """The engine caches' root (see the module docstring)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or cache_dir() / "engine")


def cache_environment(root: Path | None = None) -> dict[str, str]:
    """The compile caches' environment variables under `root` (engine_cache_dir() by default); a variable the user
    set already is kept."""
    root = Path(root or engine_cache_dir())
    return {var: _USER_CACHE_ENV[var] or str(root / name) for name, var in CACHE_ENV.items()}


def _file_count(folder: Path, limit: int = 200_000) -> int:
    n = 0
    for _, _, files in os.walk(folder):
        n += len(files)
        if n >= limit:
            break
    return n


def cache_counts(env: dict[str, str]) -> dict[str, int]:
    """Files in each compile cache now (compared before and after an engine starts and warms up)."""
    return {name: _file_count(Path(env[var])) for name, var in CACHE_ENV.items() if var in env}

"""llm-energy-measure measurement engine: runs an experiment on one worker and writes a result folder.

It imports no Dagster, so it runs on a bare GPU worker. `read_leaderboard` (gpu_ops.reader) loads a published
leaderboard; it is imported when first used, so `import gpu_ops` stays light.
"""

import os

__version__ = "0.1.0"

# Asking torch whether CUDA exists must not initialise the CUDA driver in this process: an engine that forks its
# workers afterwards (vLLM's EngineCore) would inherit a driver state that cannot survive the fork and hang at start.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

# tqdm starts a monitor thread with the first progress bar (ours, or transformers' while loading weights) and keeps it
# in the measuring process: a thread that may hold tqdm's lock when an engine forks its workers. Our bars need none.
import tqdm  # noqa: E402

tqdm.tqdm.monitor_interval = 0


def __getattr__(name: str):
    if name == "read_leaderboard":
        from gpu_ops.reader import read_leaderboard

        return read_leaderboard
    raise AttributeError(f"module 'gpu_ops' has no attribute {name!r}")

"""llm-energy-measure measurement engine: runs an experiment on one worker and writes a result folder.

It imports no Dagster, so it runs on a bare GPU worker.
"""

import os

__version__ = "0.1.0"

# Asking torch whether CUDA exists must not initialise the CUDA driver in this process: an engine that forks its
# workers afterwards (vLLM's EngineCore) would inherit a driver state that cannot survive the fork and hang at start.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

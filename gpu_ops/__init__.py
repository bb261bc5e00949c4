"""llm-energy-measure measurement engine: runs an experiment on one worker and writes a result folder.

It imports no Dagster, so it runs on a bare GPU worker.
"""

__version__ = "0.1.0"

"""The steady state of a continuous-batching cycle, as ML.ENERGY defines it: the stretch where the engine runs the
batch it was configured for.

A serving engine ramps up (requests arrive, the running batch grows), runs full, then drains (the last requests finish
one by one with a shrinking batch). Ramp and drain cost energy per token that says more about the trace's ends than
about the configuration, so a serving run is ranked by its steady state: the window opens at the start of the first
engine step whose running batch reaches max_num_seqs, and closes at the end of the last step before the batch starts
to drain (running below max_num_seqs with nothing waiting: no request is left to refill it). A dip while requests
still wait (KV cache full, preemption) stays inside: it lowers the batch fill, which the ranking rules check.

The steady state's energy is the power timeline over it scaled to the cycle's counter energy (as the phase split does,
gpu_ops.phases), its tokens are the engine steps' (first tokens + decoded tokens). The runner and the re-derivation of
an uploaded result (gpu_ops.rederive) both call `steady_state`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpu_ops.config import ExperimentConfig
from gpu_ops.energy.meter import WindowMeasurement, timeline_energy
from gpu_ops.schema import STEADY_STATE, Record


def max_num_seqs(cfg: ExperimentConfig) -> int:
    """The running-batch cap the engine was given: vllm.max_num_seqs, else batching.batch_size (as the backend)."""
    return (cfg.vllm.max_num_seqs if cfg.vllm else None) or cfg.batching.batch_size


def steady_state(steps: pd.DataFrame, timeline: pd.DataFrame, window: WindowMeasurement, cap: int) -> Record:
    """A cycle's STEADY_STATE record from its engine steps (run clock), the run's power timeline, its window and the
    engine's max_num_seqs `cap`. All empty for a whole-batch backend (no steps); only the cycle's batch fill when the
    batch never reached `cap`; the energy figures empty when the window's energy is unmeasured."""
    empty = dict.fromkeys(STEADY_STATE.names)
    if steps.empty or cap < 1:
        return STEADY_STATE.record(**empty)
    inside = steps[(steps.t_s > window.start_s) & (steps.t_s <= window.end_s)].sort_values("t_s", kind="stable")
    if inside.empty:
        return STEADY_STATE.record(**empty)
    ends = inside.t_s.to_numpy(dtype=float)
    starts = np.concatenate([[window.start_s], ends[:-1]])
    span = ends - starts
    running = inside.running.to_numpy(dtype=float)
    waiting = inside.waiting.to_numpy(dtype=float)
    values = empty | {"cycle_batch_fill": _fill(running, span, cap)}
    full = np.flatnonzero(running >= cap)
    if not len(full):
        return STEADY_STATE.record(**values)
    first = int(full[0])
    drain = np.flatnonzero((np.arange(len(ends)) > first) & (running < cap) & (waiting == 0))
    last = int(drain[0]) - 1 if len(drain) else len(ends) - 1
    sel = slice(first, last + 1)
    start, end = float(starts[first]), float(ends[last])
    tokens = float((inside.first_tokens.to_numpy()[sel] + inside.decode_tokens.to_numpy()[sel]).sum())
    energy = None
    if window.gpu_energy_j is not None and window.timeline_energy_j:
        part = timeline_energy(timeline, start, end)
        energy = None if part is None else part * window.gpu_energy_j / window.timeline_energy_j
    values.update(
        steady_start_s=start,
        steady_end_s=end,
        steady_duration_s=end - start,
        steady_output_tokens=tokens,
        steady_energy_j=energy,
        steady_j_per_token=energy / tokens if energy is not None and tokens else None,
        batch_fill=_fill(running[sel], span[sel], cap),
    )
    return STEADY_STATE.record(**values)


def _fill(running: np.ndarray, span: np.ndarray, cap: int) -> float | None:
    """Mean running batch / cap, each step weighted by how long it took."""
    total = float(span.sum())
    return float((running * span).sum() / total / cap) if total > 0 else float(running.mean() / cap)

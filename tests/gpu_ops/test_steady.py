"""The steady state of a serving cycle (#27): on a recorded vLLM step trace (H200, 3,072 requests, max_num_seqs 256,
docs/benchmarks/raw/session7/reference-vllm.tgz) and on small traces that exercise each edge of the definition."""

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_ops.rederive import config_of, window_from_row
from gpu_ops.results import read_tables
from gpu_ops.steady import max_num_seqs, steady_state

RECORDED = Path(__file__).parents[2] / "docs/benchmarks/raw/session7/reference-vllm.tgz"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference-vllm")
    with tarfile.open(RECORDED) as tar:
        tar.extractall(root, filter="data")
    return read_tables(next(root.iterdir()))


def test_the_steady_state_of_a_recorded_vllm_trace(recorded):
    t = recorded
    cap = max_num_seqs(config_of(t.experiment.config_json.iloc[0], "config_json"))
    windows = t.windows[t.windows.kind == "cycle"]
    for _, c in t.cycles.iterrows():
        window = window_from_row(windows[windows.cycle == c.cycle].iloc[0])
        steps = t.steps[t.steps.cycle == c.cycle].sort_values("t_s").reset_index(drop=True)
        s = steady_state(steps, t.timeline, window, cap)
        first = int(np.flatnonzero(steps.running >= cap)[0])
        assert first > 0 and s.steady_start_s == steps.t_s[first - 1]  # opens where the first full step starts
        inside = steps[(steps.t_s > s.steady_start_s) & (steps.t_s <= s.steady_end_s)]
        after = steps[steps.t_s > s.steady_end_s].iloc[0]
        assert (inside.running.iloc[[0, -1]] >= cap).all() and after.running < cap and after.waiting == 0  # drains
        assert s.steady_output_tokens == (inside.first_tokens + inside.decode_tokens).sum() < c.output_tokens
        assert window.start_s < s.steady_start_s < s.steady_end_s < window.end_s
        assert 0.85 < s.batch_fill <= 1 and 0 < s.cycle_batch_fill <= s.batch_fill
        power = t.timeline[(t.timeline.t_s >= s.steady_start_s) & (t.timeline.t_s <= s.steady_end_s)].power_w
        scale = c.gross_energy_j / window.timeline_energy_j
        assert power.min() * scale <= s.steady_energy_j / s.steady_duration_s <= power.max() * scale
        # the ramp and the tail after the last token cost energy but make few tokens: the steady state is cheaper
        assert s.steady_j_per_token == s.steady_energy_j / s.steady_output_tokens < c.j_per_token


def trace(running: list[int], waiting: list[int] | None = None, dt: float = 0.1) -> pd.DataFrame:
    n = len(running)
    return pd.DataFrame(
        {
            "t_s": np.arange(1, n + 1) * dt,
            "prompt_tokens": 0,
            "first_tokens": 0,
            "decode_tokens": running,
            "kv_usage": 0.5,
            "running": running,
            "waiting": waiting or [0] * n,
        }
    )


@pytest.fixture
def window(recorded):
    w = window_from_row(recorded.windows[recorded.windows.kind == "cycle"].iloc[0])
    w.start_s, w.end_s, w.gpu_energy_j, w.timeline_energy_j = 0.0, 10.0, None, None  # unmeasured: no timeline needed
    return w


def test_a_dip_while_requests_wait_stays_inside_and_lowers_the_fill(window):
    s = steady_state(trace([2, 4, 4, 2, 4, 4, 3, 1], waiting=[5, 3, 3, 3, 1, 0, 0, 0]), pd.DataFrame(), window, 4)
    assert (s.steady_start_s, s.steady_end_s) == pytest.approx((0.1, 0.6))  # steps 2-6; step 7 drains
    assert s.batch_fill == pytest.approx((4 + 4 + 2 + 4 + 4) / 5 / 4) and s.steady_output_tokens == 18
    assert s.steady_energy_j is None and s.steady_j_per_token is None  # unmeasured energy stays unmeasured


def test_a_batch_that_never_fills_has_no_steady_state_but_a_cycle_fill(window):
    s = steady_state(trace([1, 2, 3, 2, 1]), pd.DataFrame(), window, 4)
    assert s.steady_start_s is None and s.steady_duration_s is None and s.cycle_batch_fill == pytest.approx(9 / 20)


def test_a_whole_batch_backend_has_no_steady_state(window):
    s = steady_state(trace([]), pd.DataFrame(), window, 4)
    assert all(v is None for v in s.as_dict().values())

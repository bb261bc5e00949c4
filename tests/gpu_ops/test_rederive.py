"""Recomputing a result's derived figures from its raw readings: real GPU results pass as they are, and any edited
figure, however small, is found."""

from pathlib import Path

import pandas as pd
import pytest

from gpu_ops.rederive import derived_problems, request_energy_problems
from gpu_ops.results import read_tables
from gpu_ops.validation import blocking_failures, validate
from tests.gpu_ops.test_phases import window

MULTIGPU = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "raw" / "multigpu"
REAL = sorted(p.parent for p in MULTIGPU.rglob("summary.json"))


def test_real_h100_and_h200_results_are_reproduced_exactly():
    """Seven result folders measured on H100/H200 (one and two GPUs, TP, DP, a sweep): every derived figure is
    recomputed to 1e-9 by the engine's own functions; the only failure is the run that really saw a foreign process."""
    assert len(REAL) >= 7
    for folder in REAL:
        failed = {f.check for f in blocking_failures(validate(read_tables(folder)))}
        foreign = folder.parent.name == "earlier-run" and "tp2" in folder.name  # pid 1061 on the GPU during that run
        assert failed == ({"no_foreign_gpu_process"} if foreign else set()), folder


@pytest.mark.parametrize(
    "column,factor",
    [
        ("j_per_token", 1.01),
        ("tokens_per_s", 1.001),
        ("net_energy_j", 0.999),
        ("ttft_p50_s", 1.01),
        ("goodput_req_per_s", 1.01),
    ],
)
def test_a_one_percent_edit_of_a_derived_figure_is_found(column, factor):
    t = read_tables(REAL[0])
    t.cycles.loc[1, column] *= factor
    sweep_point = t.cycles.sweep_point[1]
    assert derived_problems(read_tables(REAL[0])) == []
    assert [p for p in derived_problems(t) if p.startswith(f"cycles '{sweep_point}' cycle 1: {column} is ")], column


def test_requests_energy_must_sum_to_their_window_within_its_bound():
    w = window(0.0, 2.0)  # 800 J
    w.energy_uncertainty_j = 4.0
    fine = pd.DataFrame({"energy_j": [500.0, 302.0]})
    assert request_energy_problems("cycles x", fine, w) == []
    off = pd.DataFrame({"energy_j": [500.0, 250.0]})
    (problem,) = request_energy_problems("cycles x", off, w)
    assert "energy_j" in problem and "800" in problem
    assert request_energy_problems("cycles x", pd.DataFrame({"energy_j": [None, None]}, dtype=float), w) == []


H100_STEPS = next((Path(__file__).resolve().parents[2] / "docs/benchmarks/runs/request-energy").glob(
    "20261207T143309Z-30342a/results/*/summary.json")).parent  # fmt: skip


def test_the_attribution_is_rederived_with_the_sensed_stretch_the_meter_recorded_and_a_bad_one_is_refused():
    """An H100 vLLM folder measured before the meter recorded `sensed_stretch_s`: its split is the timeline integral,
    and it re-derives clean. Recording the stretch in its meter_json makes the checker derive the sensed fit
    (gpu_ops.phases), which the stored phase energies no longer match; a malformed stretch is refused by name."""
    import json

    from gpu_ops.errors import UserError

    assert not [p for p in derived_problems(read_tables(H100_STEPS)) if "energy_j" in p]
    t = read_tables(H100_STEPS)
    meter = json.loads(t.experiment.meter_json.iloc[0])
    t.experiment.loc[0, "meter_json"] = json.dumps({**meter, "sensed_stretch_s": [0.026, 0.011]})
    assert [p for p in derived_problems(t) if "prefill_energy_j" in p]
    t.experiment.loc[0, "meter_json"] = json.dumps({**meter, "sensed_stretch_s": [0.011, 0.026]})
    with pytest.raises(UserError, match="sensed_stretch_s"):
        derived_problems(t)

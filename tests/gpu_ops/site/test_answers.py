"""The site's #32 sections without a browser: carbon and cost beside their inputs, a row's history and drift."""

import json

import pandas as pd

from gpu_ops.schema import HISTORY
from gpu_ops.site.answers import conversion_notes, detail_sections


def board_row(drift=True, carbon=12.5):
    inputs = {
        "grid_gco2e_per_kwh": {"value": 400, "set_by": "instance"},
        "pue": {"value": 1.25, "set_by": "hardware h200"},
        "price_per_kwh": {"value": None, "set_by": "unknown"},
        "price_per_gpu_hour": {"value": None, "set_by": "unknown"},
        "currency": {"value": None, "set_by": "unknown"},
        "source": [],
    }
    return pd.DataFrame(
        [
            {
                "partition_key": "m__vllm|h200",
                "sweep_point": "bs8",
                "currency": None,
                "conversion_inputs": json.dumps(inputs),
                "gco2e_per_mtoken": carbon,
                "gco2e_per_mtoken_ci95": 0.5,
                "energy_cost_per_mtoken": None,
                "gpu_time_cost_per_mtoken": None,
                "cost_per_mtoken": None,
                "drift": drift,
                "drift_detail": "j_per_token 0.1 ± 0.004 -> 0.13 ± 0.004 J/token: moved +0.03, outside",
            }
        ]
    )


def history(n: int) -> pd.DataFrame:
    return HISTORY.frame(
        HISTORY.record(
            partition_key="m__vllm|h200",
            sweep_point="bs8",
            measured_at=f"2026-12-0{i + 1}T00:00:00+00:00",
            raw_run_id=f"r{i}",
            figure="j_per_token",
            mean=0.1 + 0.03 * i,
            ci95=0.004,
            drift=None if i == 0 else bool(i == n - 1),
        )
        for i in range(n)
    )


def test_carbon_shows_beside_its_inputs_and_cost_says_unknown():
    board = board_row()
    row = next(board.itertuples())
    html, _ = detail_sections(row, None)
    assert "12.5 ± 0.5 gCO2e per million tokens" in html
    assert "400 gCO2e/kWh (instance)" in html and "PUE 1.25 (hardware h200)" in html
    assert html.count("unknown (an input is not set)") == 3  # both costs and their sum: no price given
    notes = conversion_notes(board).iloc[0]
    assert notes.carbon_inputs.startswith("400 gCO2e/kWh") and "unknown" in notes.cost_inputs


def test_history_is_plotted_and_the_last_drift_marked():
    row = next(board_row().itertuples())
    html, figures = detail_sections(row, history(3))
    assert 'id="drift-badge"' in html and "outside" in html and "3 measurement(s) kept" in html
    (fig,) = figures
    assert fig["id"] == "chart-history" and fig["figure"]["data"][0]["y"] == [0.1, 0.13, 0.16]
    assert fig["figure"]["data"][0]["marker"]["color"][-1] != fig["figure"]["data"][0]["marker"]["color"][0]
    one, figs = detail_sections(next(board_row(drift=None).itertuples()), history(1))
    assert figs == [] and "not judged" in one and "drift-badge" not in one

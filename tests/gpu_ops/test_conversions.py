"""Carbon and cost from measured energy: explicit inputs, the most specific level wins, unknown stays unknown."""

import json

import pandas as pd
import pytest

from gpu_ops.conversions import J_PER_KWH, Conversions, converted, inputs_text, load_conversions
from gpu_ops.errors import ConfigError


def board(jpt=0.36, tps=1000.0, gpus=2):
    return pd.DataFrame(
        [
            {
                "partition_key": "m__vllm|h100-80gb-hbm3",
                "hardware": "h100-80gb-hbm3",
                "j_per_token_mean": jpt,
                "j_per_token_ci95": jpt / 10,
                "tokens_per_s_mean": tps,
                "gpu_count": gpus,
            }
        ]
    )


def test_without_inputs_every_converted_figure_is_unknown_never_a_default():
    out = converted(board(), Conversions()).iloc[0]
    for c in ("gco2e_per_mtoken", "energy_cost_per_mtoken", "gpu_time_cost_per_mtoken", "cost_per_mtoken", "pue"):
        assert out[c] is None
    inputs = json.loads(out.conversion_inputs)
    assert inputs["pue"] == {"value": None, "set_by": "unknown"}
    assert "PUE unknown" in inputs_text(out.conversion_inputs)


def test_inputs_convert_energy_and_the_most_specific_level_wins():
    conv = Conversions.model_validate(
        {
            "instance": {"grid_gco2e_per_kwh": 400, "pue": 1.5, "price_per_kwh": 0.2},
            "hardware": {"h100-80gb-hbm3": {"price_per_gpu_hour": 3.0, "currency": "USD"}},
            "partitions": {"m__vllm|h100-80gb-hbm3": {"grid_gco2e_per_kwh": 50}},
        }
    )
    jpt, tps, gpus = 0.36, 1000.0, 2
    out = converted(board(jpt, tps, gpus), conv).iloc[0]
    kwh = jpt * 1e6 / J_PER_KWH
    assert out.gco2e_per_mtoken == pytest.approx(kwh * 1.5 * 50)  # the partition's grid, the instance's PUE
    assert out.gco2e_per_mtoken_ci95 == pytest.approx(kwh / 10 * 1.5 * 50)
    assert out.energy_cost_per_mtoken == pytest.approx(kwh * 1.5 * 0.2)
    assert out.gpu_time_cost_per_mtoken == pytest.approx(1e6 / tps / 3600 * gpus * 3.0)
    assert out.cost_per_mtoken == pytest.approx(out.energy_cost_per_mtoken + out.gpu_time_cost_per_mtoken)
    inputs = json.loads(out.conversion_inputs)
    assert inputs["grid_gco2e_per_kwh"]["set_by"] == "partition"
    assert inputs["price_per_gpu_hour"]["set_by"] == "hardware h100-80gb-hbm3"
    assert inputs["pue"]["set_by"] == "instance"


def test_an_unmeasured_row_has_no_carbon_even_with_inputs():
    conv = Conversions.model_validate({"instance": {"grid_gco2e_per_kwh": 400, "pue": 1.2}})
    assert converted(board(jpt=float("nan")), conv).iloc[0].gco2e_per_mtoken is None


def test_a_bad_conversions_file_is_refused_naming_the_field(tmp_path):
    f = tmp_path / "conversions.yaml"
    f.write_text("instance: {pue: 0.5}\n")
    with pytest.raises(ConfigError, match="pue"):
        load_conversions(f)
    f.write_text("instance: {grid: 400}\n")
    with pytest.raises(ConfigError, match="grid"):
        load_conversions(f)

"""Charts draw mean ± 95 % CI with the lower bar clipped at zero (#27): `make demo` once drew 46 ± 137 tok/s down to
-91 tok/s."""

import math

import pandas as pd

from gpu_ops.plotting import efficiency_scatter, error_bars


def test_an_interval_that_crosses_zero_is_drawn_down_to_zero_never_below():
    bars = error_bars([46.06, 2.0, 1.0], [137.2, 0.5, math.nan])
    assert bars["array"] == [137.2, 0.5, None] and bars["arrayminus"] == [46.06, 0.5, None]
    lows = [m - d for m, d in zip([46.06, 2.0], bars["arrayminus"][:2])]
    assert min(lows) == 0.0 and bars["symmetric"] is False


def test_the_efficiency_scatter_clips_its_bars():
    points = pd.DataFrame(
        {
            "backend": ["pytorch"] * 2,
            "label": ["a", "b"],
            "tokens_per_s_mean": [10.0, 20.0],
            "j_per_token_mean": [0.4, 0.2],
            "j_per_token_ci95": [1.2, 0.05],
            "energy_status": ["measured"] * 2,
        }
    )
    trace = efficiency_scatter(points).data[0]
    assert list(trace.error_y.arrayminus) == [0.4, 0.05] and list(trace.error_y.array) == [1.2, 0.05]

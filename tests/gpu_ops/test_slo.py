"""Energy at a latency target: deadlines parsed, judged on pooled-percentile intervals, the lowest-J/token pick."""

import pandas as pd
import pytest

from gpu_ops.cli import main
from gpu_ops.errors import UserError
from gpu_ops.slo import Deadline, deadline_verdicts, parse_slo, slo_pick


def row(model, hardware, point, jpt, itl99, ttft99=(0.1, 0.09, 0.11)):
    """A leaderboard row: J/token and the pooled ITL p99 and TTFT p99 as (percentile, lo, hi) in seconds."""
    return {
        "model": model,
        "hardware": hardware,
        "backend": "vllm",
        "sweep_point": point,
        "partition_key": f"{model}__vllm|{hardware}",
        "j_per_token_mean": jpt,
        "j_per_token_ci95": jpt / 50,
        "tokens_per_s_mean": 1000.0,
        "itl_p99_pooled_s": itl99[0],
        "itl_p99_pooled_lo_s": itl99[1],
        "itl_p99_pooled_hi_s": itl99[2],
        "ttft_p99_pooled_s": ttft99[0],
        "ttft_p99_pooled_lo_s": ttft99[1],
        "ttft_p99_pooled_hi_s": ttft99[2],
    }


@pytest.fixture
def board():
    return pd.DataFrame(
        [
            row("m", "h100", "bs64", 0.05, (0.080, 0.075, 0.085)),  # cheapest, fails 50 ms ITL
            row("m", "h100", "bs32", 0.07, (0.050, 0.045, 0.056)),  # straddles 50 ms: uncertain
            row("m", "h100", "bs16", 0.09, (0.030, 0.028, 0.033)),  # meets
            row("m", "h100", "bs1", 0.50, (0.010, 0.009, 0.011)),  # meets, dearer
            row("m", "h200", "bs64", 0.04, (0.070, 0.066, 0.074)),  # only row there, fails
            row("n", "h100", "bs8", 0.20, (0.020, 0.019, 0.021), ttft99=(3.0, 2.5, 3.5)),  # fails on TTFT
        ]
    )


def test_parse_slo_reads_units_and_names():
    d = parse_slo("itl_p99=50ms, ttft_p99=2s,tpot_p50=0.5s")
    assert d == (Deadline("itl", 99, 0.05), Deadline("ttft", 99, 2.0), Deadline("tpot", 50, 0.5))


@pytest.mark.parametrize(
    "text, named",
    [
        ("itl_p95=50ms", "itl_p95"),  # no pooled p95
        ("latency_p99=1s", "latency_p99"),
        ("itl_p99=50", "itl_p99"),  # no unit
        ("itl_p99=50ms,itl_p99=60ms", "itl_p99"),
        ("itl_p99=0ms", "itl_p99"),
        ("", "--slo"),
    ],
)
def test_bad_deadlines_are_refused_naming_the_field(text, named):
    with pytest.raises(UserError, match=named):
        parse_slo(text)


def test_verdicts_read_the_interval_and_a_straddling_one_is_uncertain(board):
    v = deadline_verdicts(board, parse_slo("itl_p99=50ms"))["itl_p99"].tolist()
    assert v == ["fails", "uncertain", "meets", "meets", "fails", "meets"]


def test_pick_is_the_lowest_j_per_token_that_meets_every_deadline_with_cheaper_uncertain_rows_beside_it(board):
    pick = slo_pick(board, parse_slo("itl_p99=50ms,ttft_p99=2s"))
    m = pick[(pick.model == "m") & (pick.hardware == "h100")]
    assert m.sweep_point.tolist() == ["bs32", "bs16"] and m.verdict.tolist() == ["uncertain", "meets"]
    assert pick[pick.hardware == "h200"].verdict.tolist() == ["none"]  # nothing meets: said, not guessed
    assert pick[pick.model == "n"].verdict.tolist() == ["none"]  # meets ITL, fails TTFT
    looser = slo_pick(board, parse_slo("itl_p99=100ms"))
    assert looser[(looser.model == "m") & (looser.hardware == "h100")].sweep_point.tolist() == ["bs64"]


def test_report_refuses_a_bad_slo_before_reading_anything(tmp_path, capsys):
    rc = main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "site"), "--slo", "itl_p99=fast"])
    err = capsys.readouterr().err
    assert rc == 2 and "--slo" in err and "itl_p99" in err
    assert not (tmp_path / "site").exists()

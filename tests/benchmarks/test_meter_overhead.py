"""The meter's overhead judged as statistics (#27): the median paired ratio and its bootstrap CI, not a round's
minimum; the median target reads the script's own summary line."""

from pathlib import Path

from benchmarks.decision import evaluate, load_target, series_values
from benchmarks.meter_overhead import MIN_ROUNDS, judged, verdict

TARGETS = Path(__file__).resolve().parents[2] / "benchmarks" / "targets"
NEUTRAL = [1.0, 1.002, 0.998, 1.001, 0.88, 0.999, 1.003, 1.0, 0.997, 1.001, 1.002, 0.999]  # one host hiccup


def test_a_neutral_meter_passes_despite_one_slow_round_and_a_cost_fails():
    med, low, high, result = verdict(NEUTRAL)
    assert result == "PASS" and low <= med <= high and low >= 0.99 and min(NEUTRAL) < 0.99
    costly = [r - 0.02 for r in NEUTRAL]
    assert verdict(costly)[3] == "FAIL"  # a 2 % cost: the median is 2 % off
    noisy = [1.0 + d for d in (0.03, -0.04, 0.05, -0.03, 0.0, 0.04, -0.05, 0.02, -0.02, 0.01)]
    assert verdict(noisy)[1] < 0.99 and verdict(noisy)[3] == "FAIL"  # its CI cannot rule out a 1 % cost
    assert verdict(NEUTRAL[: MIN_ROUNDS - 1])[3].startswith("not evaluable")


def test_the_median_target_reads_the_printed_summary(tmp_path):
    target = load_target(TARGETS / "meter-overhead-median.yaml")
    for ratios, met in ((NEUTRAL, True), ([r - 0.02 for r in NEUTRAL], False)):
        (tmp_path / "stdout.log").write_text(
            "round 0 (on first): ...\n"
            + judged("paired ratio on/off", ratios)
            + "\n"
            + judged("A/A control off/off2", [1.1] * 12)
            + "\n"
        )
        values = series_values(target, tmp_path)[""]
        assert len(values) == 1 and evaluate(target, values).met is met

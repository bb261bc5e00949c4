"""Numbers as people read them: grouped thousands, SI prefixes, one unit per range, never scientific notation."""

import pytest

from gpu_ops.readable import joules, number, span, watt_hours


@pytest.mark.parametrize(
    "value, text",
    [(17160.3, "17,160"), (0.04412, "0.0441"), (422.5, "422"), (1.5e-7, "0.00000015"), (0, "0"), (-2500.0, "-2,500")],
)
def test_numbers_never_use_scientific_notation(value, text):
    assert number(value) == text


def test_energy_takes_the_prefix_that_fits():
    assert joules(4600) == "4.6 kJ" and joules(0.5) == "500 mJ" and joules(0) == "0 J"
    assert watt_hours(0.37) == "0.37 Wh" and watt_hours(7.36e-06 * 1000) == "7.36 mWh"
    assert watt_hours(1250) == "1.25 kWh"


def test_a_range_reads_in_the_unit_of_its_middle():
    assert span(4600, 1090, 19400, "joules") == "4.6 kJ (1.09-19.4 kJ)"
    assert span(1.9, 1.1, 3.0, unit="s") == "1.9 s (1.1-3 s)"

"""The simulated board's gas pulses follow the profile its docstring documents."""

from __future__ import annotations

from energy_tracker_addon.simulated_gas import SimulatedGasMeter


def test_a_simulated_day_counts_the_documented_four_cubic_metres() -> None:
    meter = SimulatedGasMeter()
    counts = []
    for minute in range(24 * 60):
        meter.advance(minute // 60, 60.0)
        counts.append(meter.pulses)
    # The docstring's table, hour by hour: 00-06 0.05, 06-09 0.35, 09-17 0.10, 17-19 0.30,
    # 19-20 0.45, 20-22 0.30, 22-24 0.08 m³/h; one pulse is 0.01 m³.
    day_m3 = 6 * 0.05 + 3 * 0.35 + 8 * 0.10 + 2 * 0.30 + 0.45 + 2 * 0.30 + 2 * 0.08
    assert counts[-1] == round(day_m3 / 0.01)
    assert counts == sorted(counts)  # a count since boot never goes down
    # Night setback: the first six hours count 0.3 m³ only.
    assert counts[6 * 60 - 1] == round(6 * 0.05 / 0.01)

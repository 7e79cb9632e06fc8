"""The simulated voltage board's gas meter: a synthetic, documented profile.

The replay data (UCI household, see data/ATTRIBUTION.md) has no gas measurement at all, so
the simulated board's pulses are made up, plainly: a gas boiler heating a house on a winter
day, by local hour of the replayed day (m³/h):

    00-06  0.05   night setback
    06-09  0.35   morning heating
    09-17  0.10   daytime
    17-19  0.30   evening heating
    19-20  0.45   evening heating and cooking
    20-22  0.30   evening heating
    22-24  0.08   late evening

about 4 m³ (≈ 42 kWh) a day. One pulse is `SIM_M3_PER_PULSE` (the `gas_m3_per_pulse`
default), so the add-on's m³ follow this profile at the default option.
"""

from __future__ import annotations

from typing import Final

SIM_M3_PER_PULSE: Final = 0.01
PULSE_MODULUS: Final = 2**32
# (first hour, m³/h) in order; each rate holds until the next first hour.
PROFILE: Final = ((0, 0.05), (6, 0.35), (9, 0.10), (17, 0.30), (19, 0.45), (20, 0.30),
                  (22, 0.08))


def rate_m3_per_h(hour: int) -> float:
    """The profile's gas flow at a local hour of the day (0-23)."""
    rate = PROFILE[0][1]
    for first, value in PROFILE:
        if hour >= first:
            rate = value
    return rate


class SimulatedGasMeter:
    """Pulses counted since the simulated board's boot, as its `$ETM` frames carry them."""

    def __init__(self) -> None:
        self._m3 = 0.0

    def advance(self, hour: int, seconds: float) -> None:
        """`seconds` of gas flow at the rate of the local `hour` have passed."""
        self._m3 += rate_m3_per_h(hour) * seconds / 3600.0

    @property
    def pulses(self) -> int:
        # Rounded first: summing float steps must not lose a pulse exactly at a boundary.
        return int(round(self._m3 / SIM_M3_PER_PULSE, 6)) % PULSE_MODULUS

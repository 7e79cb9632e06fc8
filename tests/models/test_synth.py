"""Synthetic appliance houses: real background plus AMBAL activations with ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy_tracker_models.synth import synthesize


def _background(days: int) -> pd.DataFrame:
    idx = pd.date_range("2009-03-01", periods=days * 1440, freq="60s")
    bg = pd.DataFrame({"other": 300.0, "valid": True}, index=idx)
    bg.loc[idx[1440 + 100] : idx[1440 + 200], "valid"] = False  # day 2 has a long filled gap
    return bg


def test_house_days_hold_every_appliance_and_skip_gappy_backgrounds() -> None:
    bg = _background(3)
    days = [pd.Timestamp("2009-03-01"), pd.Timestamp("2009-03-02"), pd.Timestamp("2009-03-03")]
    house = synthesize(bg, days, unseen=True, augment=False, seed=3)
    per_day = 86_400 // house.period_s
    assert len(house.mains) == 2 * per_day  # the day with the gap is left out
    assert house.start.tolist() == [int(days[0].timestamp()), int(days[2].timestamp())]
    appliances = sum(house.truth.values())
    assert np.all(house.mains + 1e-3 >= appliances)  # mains = background + appliances (+ others)
    assert 0.1 < (house.truth["fridge"] > 25).mean() < 0.9  # the fridge cycles
    for name, power in house.truth.items():
        assert np.all(power >= 0), name

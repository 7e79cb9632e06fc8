"""Synthetic appliance houses: real background plus AMBAL activations with ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from energy_tracker_models.synth import synthesize, tumble


def _background(days: int) -> pd.DataFrame:
    idx = pd.date_range("2009-03-01", periods=days * 1440, freq="60s")
    bg = pd.DataFrame({"other": 300.0, "water_heater_ac": 0.0, "valid": True}, index=idx)
    bg.loc[idx[600] : idx[629], "water_heater_ac"] = 2000.0  # half an hour of water heater
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


def test_the_water_heater_circuit_is_background_in_steps() -> None:
    # A real house's long resistive plateaus belong to no target: they are in the mains,
    # switching within one sample, and in nobody's truth.
    bg = _background(2)
    house = synthesize(bg, [pd.Timestamp("2009-03-01")], unseen=True, augment=False, seed=3)
    per_minute = 60 // house.period_s
    rest = house.mains - sum(house.truth.values())
    start, end = 600 * per_minute, 630 * per_minute
    assert np.median(rest[start:end]) > np.median(rest[start - 60 : start]) + 1900
    assert rest[start] - rest[start - 1] > 1500  # one step, not a minute-long ramp


def test_a_washing_machine_drum_turns_in_bursts_of_the_same_energy() -> None:
    # AMBAL's wash phases are smooth averages (~60 W); a real drum turns for 10-15 s, rests,
    # turns back, so its motor draws in bursts. Heating carries the motor on top.
    profile = np.r_[np.full(1200, 60.0), np.full(600, 2200.0)]
    out = tumble(profile, np.random.default_rng(1))
    wash, heat = out[:1200], out[1200:]
    assert set(np.unique(wash)) == {0.0, float(wash.max())}
    assert wash.max() > 70
    assert abs(wash.mean() - 60.0) < 2.0  # the energy of the wash is kept
    assert 100 <= heat.max() - 2200.0 <= 250
    assert heat.min() == 2200.0


def test_washing_machines_in_synthetic_houses_swing_between_samples() -> None:
    days = [pd.Timestamp("2009-03-01") + pd.Timedelta(days=d) for d in range(8)]
    idx = pd.date_range(days[0], periods=8 * 1440, freq="60s")
    bg = pd.DataFrame({"other": 300.0, "water_heater_ac": 0.0, "valid": True}, index=idx)
    washer = synthesize(bg, days, unseen=True, augment=False, seed=5).truth["washing_machine"]
    both = (washer[1:] > 20) & (washer[:-1] > 20)
    wash = both & (washer[1:] < 300)
    heating = both & (washer[1:] > 1500)
    assert wash.sum() > 100
    assert heating.sum() > 10
    steps = np.abs(np.diff(washer))
    assert np.median(steps[wash]) > 20  # 6 s samples see the bursts
    assert np.median(steps[heating]) > 20  # the motor on top of the flat heater

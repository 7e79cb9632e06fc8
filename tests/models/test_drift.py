"""The model card's error-by-band and energy-by-band tables (models/energy_tracker_models/drift)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from energy_tracker_models.drift import (
    energy_by_band_per_year,
    error_by_band,
    long_runs_per_quarter,
)


def test_error_parts_add_up_to_the_mae_and_land_in_the_missed_band() -> None:
    truth = np.zeros(1000)
    truth[100:160] = 1000.0  # a 1 kW load the model misses entirely
    truth[500:520] = 2300.0  # a 2.3 kW load it over-estimates by 100 W
    pred = np.zeros(1000)
    pred[500:520] = 2400.0
    pred[900:910] = 80.0  # a false 80 W
    pred[0] = np.nan  # not counted, as in the MAE
    rows = {r["band"]: r for r in error_by_band(pred, truth)}
    ok = np.isfinite(pred)
    mae = float(np.mean(np.abs(pred[ok] - truth[ok])))
    assert sum(r["under_w"] + r["over_w"] for r in rows.values()) == pytest.approx(mae, abs=0.02)
    assert rows["600-1600 W"]["under_w"] == pytest.approx(60 * 1000 / 999, abs=0.01)
    assert rows["600-1600 W"]["over_w"] == 0
    assert rows["2000-2600 W"]["over_w"] == pytest.approx(20 * 100 / 999, abs=0.01)
    assert rows["0-50 W"]["over_w"] == pytest.approx(10 * 80 / 999, abs=0.01)
    assert rows["600-1600 W"]["share"] == pytest.approx(60 / 999, abs=1e-4)
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0, abs=1e-3)


def test_energy_per_band_shows_a_load_that_changes_at_new_year() -> None:
    start = pd.Timestamp("2009-12-30").timestamp()
    minutes = 4 * 1440  # 2009-12-30 .. 2010-01-02
    truth = np.zeros(minutes)
    valid = np.ones(minutes, dtype=bool)
    truth[60:120] = 2300.0  # an hour of oven on 2009-12-30
    truth[2 * 1440 + 60 : 2 * 1440 + 120] = 1000.0  # an hour of a new 1 kW cooker in 2010
    valid[3 * 1440 :] = False  # 2010-01-02 was not measured: neither energy nor a day
    truth[3 * 1440 + 60 : 3 * 1440 + 120] = 5000.0
    years = energy_by_band_per_year(int(start), 60, truth, valid)
    assert set(years) == {2009, 2010}
    assert years[2009]["2000-2600 W"] == pytest.approx(2300 / 2)  # Wh per day over two days
    assert years[2009]["600-1600 W"] == 0
    assert years[2010]["600-1600 W"] == pytest.approx(1000.0)  # one measured day
    assert years[2010]["≥ 2600 W"] == 0


def test_long_fridge_runs_are_counted_in_the_quarter_they_start() -> None:
    # 2009-06-30 and 2009-07-01 at 1 min: short 25-min cycles in June, then a run that
    # starts in July and keeps going for two hours, then one broken by a missing minute
    start = int(pd.Timestamp("2009-06-30").timestamp())
    truth = np.zeros(2 * 1440)
    valid = np.ones(2 * 1440, dtype=bool)
    for cycle in range(0, 1440, 100):
        truth[cycle : cycle + 25] = 60.0
    truth[1440 + 60 : 1440 + 180] = np.where(np.arange(120) % 3, 60.0, 120.0)
    truth[1440 + 300 : 1440 + 360] = 60.0
    valid[1440 + 330] = False
    truth[1440 + 600 : 1440 + 700] = 2000.0  # a heater: not in the fridge band
    quarters = long_runs_per_quarter(start, 60, truth, valid)
    assert quarters["2009Q2"] == {"share": 0.0, "median_min": 0.0}
    assert quarters["2009Q3"]["share"] == pytest.approx(120 / 1439, abs=1e-4)
    assert quarters["2009Q3"]["median_min"] == 120.0
    # 45 minutes is the shortest run that counts
    truth[1440 + 60 : 1440 + 180] = 0.0
    truth[1440 + 60 : 1440 + 105] = 60.0
    assert long_runs_per_quarter(start, 60, truth, valid)["2009Q3"]["median_min"] == 45.0
    truth[1440 + 104] = 0.0
    assert long_runs_per_quarter(start, 60, truth, valid)["2009Q3"]["share"] == 0.0

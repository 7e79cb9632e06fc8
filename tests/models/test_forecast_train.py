"""Forecast training and evaluation (models/): hourly UCI energy, fit, baselines."""

from __future__ import annotations

import importlib.util
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy_tracker_addon.forecast import HORIZONS, Calendar, HourlyHistory
from energy_tracker_models.forecast_train import (
    UCI_TZ,
    VALIDATION_START,
    evaluate,
    fit,
    gbm_fit,
    index_of,
    summary,
    uci_hourly,
)
from tests.addon.uci import read_uci

HEADER = ("date_time,Global_active_power,Global_reactive_power,Voltage,Global_intensity,"
          "Sub_metering_1,Sub_metering_2,Sub_metering_3\n")
VALIDATION_END = datetime(2010, 1, 1, tzinfo=UCI_TZ)


def test_hourly_energy_leaves_out_hours_the_packager_filled(tmp_path: Path) -> None:
    rows = []
    start = pd.Timestamp("2009-03-02")
    for minute in range(180):
        kw = 1.0 + (minute % 7) / 10  # varies: measured
        if 60 <= minute < 80:  # 20 identical rows in the second hour: a filled gap
            kw = 0.5
        rows.append(f"{start + pd.Timedelta(minutes=minute)},{kw},0.1,240,5,1,2,3\n")
    csv = tmp_path / "household.csv"
    csv.write_text(HEADER + "".join(rows))
    history = uci_hourly(csv)
    expected = np.mean([1.0 + (m % 7) / 10 for m in range(60)])  # kW over 1 h = kWh
    assert history.kwh[0] == pytest.approx(expected)
    assert math.isnan(history.kwh[1])  # only 40 measured minutes
    assert history.kwh[2] == pytest.approx(np.mean([1.0 + (m % 7) / 10 for m in range(120, 180)]))
    assert history.start == datetime(2009, 3, 2, tzinfo=UCI_TZ)


@pytest.fixture(scope="module")
def year_2009() -> tuple[HourlyHistory, Calendar]:
    """Real UCI hours of 2009 (training and validation data, never the 2010 hold-out)."""
    frame = read_uci(datetime(2009, 1, 1, tzinfo=UCI_TZ), VALIDATION_END)
    mains = frame["mains"].where(~frame["filled"])
    hourly = mains.resample("1h")
    kwh = (hourly.mean() / 1000).where(hourly.count() >= 45)
    history = HourlyHistory(datetime(2009, 1, 1, tzinfo=UCI_TZ), kwh.to_numpy(np.float64))
    return history, Calendar.of_hours(history.start, len(history.kwh) + HORIZONS, UCI_TZ)


def test_fitted_model_beats_both_naive_forecasts_on_the_validation_quarter(
    year_2009: tuple[HourlyHistory, Calendar],
) -> None:
    history, calendar = year_2009
    val_start = index_of(history, VALIDATION_START)
    model = fit(history, calendar, val_start, alpha=0.3, lad=4)
    scores = evaluate(model, history, calendar, val_start, len(history.kwh))
    result = summary(scores)
    assert result["pairs"] > 0.9 * (len(history.kwh) - val_start) * HORIZONS
    assert scores.mae("model") < 0.9 * scores.mae("seasonal_naive_168h")
    assert scores.mae("model") < scores.mae("daily_naive_24h")
    assert scores.mae("model", horizon=0) < scores.mae("model", horizon=23)  # nearer is easier
    assert result["improvement_vs_seasonal_naive"]["model"] == pytest.approx(
        1 - scores.mae("model") / scores.mae("seasonal_naive_168h"), abs=1e-4)


def test_training_never_sees_the_hours_it_is_evaluated_on(
    year_2009: tuple[HourlyHistory, Calendar],
) -> None:
    history, calendar = year_2009
    val_start = index_of(history, VALIDATION_START)
    poisoned = history.kwh.copy()
    poisoned[val_start:] = 50.0  # if the fit saw these, its weights would change
    clean = fit(history, calendar, val_start, alpha=0.3, lad=0)
    dirty = fit(HourlyHistory(history.start, poisoned), calendar, val_start, alpha=0.3, lad=0)
    np.testing.assert_allclose(clean.weights, dirty.weights)


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                    reason="scikit-learn (models extra) is not installed")
def test_gradient_boosting_baseline_is_scored_on_the_same_hours(
    year_2009: tuple[HourlyHistory, Calendar],
) -> None:
    history, calendar = year_2009
    val_start = index_of(history, VALIDATION_START + timedelta(weeks=8))
    model = fit(history, calendar, val_start, alpha=0.3, lad=0)
    gbm = gbm_fit(history, calendar, val_start)
    scores = evaluate(model, history, calendar, val_start, len(history.kwh), gbm)
    assert set(scores.errors) == {"seasonal_naive_168h", "daily_naive_24h", "model",
                                  "gradient_boosting"}
    assert len({len(errors) for errors in scores.errors.values()}) == 1
    assert scores.mae("gradient_boosting") < scores.mae("seasonal_naive_168h")

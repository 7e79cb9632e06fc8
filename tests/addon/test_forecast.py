"""The add-on's energy forecast on real UCI data: the shipped model, retraining, drift."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy_tracker_addon.forecast import (
    DEFAULT_MODEL,
    HORIZONS,
    Calendar,
    DriftTracker,
    Forecaster,
    ForecastModelError,
    HourlyHistory,
    NotEnoughHistory,
    hourly_history,
    naive_same_hour_last_week,
    retrain_due,
)

from .uci import UCI_TZ, read_uci

# Held-out 2010 data (never trained or tuned on): four weeks of look-back, then evaluation.
HELD_OUT_START = datetime(2010, 3, 1, tzinfo=UCI_TZ)


def history_of(frame: pd.DataFrame, column: str, end: datetime, days: float) -> HourlyHistory:
    """What the add-on builds from its history store: per-minute means -> hourly kWh."""
    minutes = np.asarray(frame.index.as_unit("s").astype("int64")) // 60
    power = frame[column].where(~frame["filled"])
    return hourly_history(minutes.tolist(), [None if math.isnan(v) else v for v in power],
                          end, days)


def curve_errors(
    model: Forecaster, history: HourlyHistory, first: int
) -> tuple[float, float]:
    """MAE over every 24-hour curve forecast from hour `first` on, and of "same hour last
    week" on the same hours."""
    calendar = Calendar.of_hours(history.start, len(history.kwh) + HORIZONS, UCI_TZ)
    origins = np.arange(first, len(history.kwh) - HORIZONS + 1)
    predicted, _ = model.predict_ratios(history, calendar, origins)
    target = origins[:, None] + np.arange(HORIZONS)[None, :]
    actual, naive = history.kwh[target], history.kwh[target - 168]
    ok = np.isfinite(actual) & np.isfinite(naive)
    return float(np.abs(predicted - actual)[ok].mean()), float(np.abs(naive - actual)[ok].mean())


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return read_uci(HELD_OUT_START - timedelta(weeks=4), HELD_OUT_START + timedelta(weeks=4))


@pytest.fixture(scope="module")
def shipped() -> Forecaster:
    return Forecaster.load()


def test_shipped_model_loads_and_predicts_without_tensorflow_sklearn_or_pandas() -> None:
    script = (
        "import sys\n"
        "for name in ('tensorflow', 'sklearn', 'pandas'): sys.modules[name] = None\n"
        "from datetime import UTC, datetime\n"
        "import numpy as np\n"
        "from energy_tracker_addon.forecast import Forecaster, HourlyHistory\n"
        "model = Forecaster.load()\n"
        "history = HourlyHistory(datetime(2026, 1, 1, tzinfo=UTC), np.full(24 * 30, 0.5))\n"
        "print(model.predict(datetime(2026, 1, 31, tzinfo=UTC), history, UTC).next_24h_kwh)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < 100
    assert DEFAULT_MODEL.stat().st_size < 100_000  # small enough to ship and to read


def test_shipped_model_beats_seasonal_naive_on_held_out_real_weeks(
    held_out: pd.DataFrame, shipped: Forecaster
) -> None:
    history = history_of(held_out, "mains", HELD_OUT_START + timedelta(weeks=4), 56)
    model_mae, naive_mae = curve_errors(shipped, history, 4 * 7 * 24)
    # The project's goal is >= 20 % lower MAE than seasonal-naive.
    assert model_mae <= 0.8 * naive_mae, (model_mae, naive_mae)


def test_forecast_curve_is_24_local_hours_from_the_current_one(
    held_out: pd.DataFrame, shipped: Forecaster
) -> None:
    now = HELD_OUT_START + timedelta(hours=7, minutes=3)
    history = history_of(held_out, "mains", now, 28)
    result = shipped.predict(now, history, UCI_TZ)
    starts = [datetime.fromisoformat(start) for start, _ in result.curve]
    assert starts[0] == HELD_OUT_START + timedelta(hours=7)
    assert starts == [starts[0] + timedelta(hours=h) for h in range(24)]
    assert all(start.utcoffset() == timedelta(hours=1) for start in starts)
    assert result.next_hour_kwh == result.curve[0][1]
    assert result.next_24h_kwh == pytest.approx(sum(kwh for _, kwh in result.curve), abs=0.01)
    # The evening peak is above the small hours.
    by_hour = {start.hour: kwh for start, (_, kwh) in zip(starts, result.curve, strict=True)}
    assert by_hour[19] > by_hour[4]
    attributes = result.as_attributes()
    assert len(attributes["forecast"]) == 24
    assert attributes["uses_temperature"] is False
    json.dumps(attributes)  # fit for Home Assistant state attributes


def test_a_house_twice_as_big_gets_twice_the_forecast(
    held_out: pd.DataFrame, shipped: Forecaster
) -> None:
    now = HELD_OUT_START + timedelta(days=3)
    history = history_of(held_out, "mains", now, 28)
    double = HourlyHistory(history.start, history.kwh * 2)
    single, twice = shipped.predict(now, history, UCI_TZ), shipped.predict(now, double, UCI_TZ)
    assert twice.next_24h_kwh == pytest.approx(2 * single.next_24h_kwh, rel=1e-3)


def test_gaps_in_the_history_still_give_a_forecast(
    held_out: pd.DataFrame, shipped: Forecaster
) -> None:
    now = HELD_OUT_START + timedelta(days=3)
    history = history_of(held_out, "mains", now, 28)
    kwh = history.kwh.copy()
    kwh[-30:-2] = np.nan  # the meter was off for more than a day
    kwh[::5] = np.nan
    result = shipped.predict(now, HourlyHistory(history.start, kwh), UCI_TZ)
    assert all(math.isfinite(value) and value >= 0 for _, value in result.curve)


def test_too_little_history_is_a_clear_error(shipped: Forecaster) -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    few = HourlyHistory(now - timedelta(hours=10), np.full(10, 0.4))
    with pytest.raises(NotEnoughHistory, match="24 measured hours"):
        shipped.predict(now, few, UTC)
    with pytest.raises(NotEnoughHistory, match="no measured hour"):
        shipped.predict(now, HourlyHistory(now, np.full(5, 0.4)), UTC)
    with pytest.raises(NotEnoughHistory, match="21 days"):
        shipped.retrain(HourlyHistory(now - timedelta(days=20), np.full(480, 0.4)), UTC)


def test_retraining_needs_about_30_days_and_says_how_many_more(shipped: Forecaster) -> None:
    """docs/api.md promised a retrain at 28 days, which the refit refused ("have 19.0
    forecastable of 28.0 measured") without saying how long to wait (helper 97)."""
    end = datetime(2026, 3, 1, tzinfo=UTC)
    hours = 56 * 24  # what forecasting.py reads (RETRAIN_DAYS)
    usage = 0.3 + 0.4 * (np.arange(hours) % 24 >= 17) + np.random.default_rng(0).gamma(
        2, 0.05, hours)
    for days in (28, 30):
        kwh = np.full(hours, np.nan)
        kwh[-days * 24:] = usage[-days * 24:]
        history = HourlyHistory(end - timedelta(hours=hours), kwh)
        if days == 28:
            with pytest.raises(NotEnoughHistory, match=r"about 2 more days of readings"):
                shipped.retrain(history, UCI_TZ)
        else:
            assert shipped.retrain(history, UCI_TZ).samples >= 21 * 24  # fitted, then judged


def test_retraining_on_a_different_real_house_improves_its_forecast(
    shipped: Forecaster, tmp_path: Path
) -> None:
    # Another "house": the UCI load outside the three sub-metered circuits (real data with
    # its own daily pattern), 9 weeks of history, then 2 weeks the refit never saw.
    end = HELD_OUT_START + timedelta(weeks=5)
    frame = read_uci(end - timedelta(weeks=9), end + timedelta(weeks=2))
    frame["other"] = frame["mains"] - frame[["kitchen", "laundry", "water_heater_ac"]].sum(axis=1)
    report = shipped.retrain(history_of(frame, "other", end, 63), UCI_TZ)
    assert report.accepted, report
    assert report.validation_mae_after <= report.validation_mae_before
    assert not np.allclose(report.model.weights, shipped.weights)
    assert "+local." in report.model.version
    report.model.save(tmp_path / "model.json")
    reloaded = Forecaster.load(tmp_path / "model.json")
    assert reloaded.features == report.model.features

    later = history_of(frame, "other", end + timedelta(weeks=2), 77)
    retrained_mae, _ = curve_errors(reloaded, later, len(later.kwh) - 14 * 24)
    shipped_mae, _ = curve_errors(shipped, later, len(later.kwh) - 14 * 24)
    assert retrained_mae < shipped_mae


def test_a_refit_with_no_measured_hour_to_check_it_on_is_refused(
    shipped: Forecaster,
) -> None:
    """The board was unplugged for the last week: both errors were infinite, and
    `inf <= inf` took the refit unchecked (helper 84)."""
    start = datetime(2025, 1, 6, tzinfo=UTC)
    rng = np.random.default_rng(0)
    kwh = 0.3 + rng.normal(0, 0.05, 56 * 24)
    kwh[-7 * 24:] = np.nan
    report = shipped.retrain(HourlyHistory(start, kwh), UCI_TZ)
    assert not report.accepted
    assert report.model is shipped
    assert "no measured hour to check" in report.reason


def test_retraining_learns_electric_heating_from_the_probe_temperature(
    held_out: pd.DataFrame, shipped: Forecaster
) -> None:
    # UCI has no temperature, so this house is real mains plus a modelled electric heater
    # that follows the probe's mean temperature of the last day (1 kWh per hour per 10 °C
    # below 16 °C) over a cold spell and a mild one.
    end = HELD_OUT_START + timedelta(weeks=4)
    history = history_of(held_out, "mains", end, 56)
    hours = np.arange(len(history.kwh))
    temperature = 10 + 6 * np.sin(2 * np.pi * hours / (24 * 9))
    daily = np.convolve(temperature, np.ones(24) / 24)[: len(hours)]
    heated = history.kwh + np.maximum(0.0, 16 - daily) / 10
    report = shipped.retrain(HourlyHistory(history.start, heated, temperature), UCI_TZ)
    assert report.accepted, report
    model = report.model
    assert model.uses_temperature
    cold, mild = temperature.copy(), temperature.copy()
    cold[-24:], mild[-24:] = 0.0, 15.0
    on_cold = model.predict(end, HourlyHistory(history.start, heated, cold), UCI_TZ)
    on_mild = model.predict(end, HourlyHistory(history.start, heated, mild), UCI_TZ)
    assert on_cold.uses_temperature
    assert on_cold.next_24h_kwh > on_mild.next_24h_kwh


def test_refit_that_forecasts_worse_is_refused(shipped: Forecaster) -> None:
    # Four weeks of a flat house, then a last week that is nothing like them: the refit
    # learns the flat weeks and forecasts the last one worse than the shipped model.
    start = datetime(2026, 1, 5, tzinfo=UTC)
    rng = np.random.default_rng(1)
    days = 5 * 7 + 7
    profile = np.tile(np.r_[np.full(7, 0.3), np.full(10, 0.6), np.full(7, 1.2)], days)
    kwh = profile * rng.uniform(0.9, 1.1, len(profile))
    kwh[-7 * 24:] = np.roll(kwh[-7 * 24:], 12)  # the last week lives at night
    report = shipped.retrain(HourlyHistory(start, kwh), UTC, alpha=0.01)
    assert not report.accepted
    assert report.model is shipped
    assert report.validation_mae_after > report.validation_mae_before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no forecast model file"),
        ("{not json", "unreadable forecast model"),
        ('{"format": "something else"}', "not an energy_tracker forecast model"),
        ('{"format": "energy_tracker_forecast", "format_version": 99}', "format 99"),
        ("WRONG_SHAPE", "weights of shape"),
        ("NAN_WEIGHT", "finite numbers"),
    ],
)
def test_bad_or_missing_model_file_is_a_clear_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "model.json"
    if content in ("WRONG_SHAPE", "NAN_WEIGHT"):
        data = json.loads(DEFAULT_MODEL.read_text())
        if content == "WRONG_SHAPE":
            data["weights"] = data["weights"][:3]
        else:
            data["weights"][0][0] = "NaN"
        path.write_text(json.dumps(data))
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ForecastModelError, match=message) as caught:
        Forecaster.load(path)
    assert str(path) in str(caught.value)


def test_hourly_history_from_minute_means() -> None:
    end = datetime(2026, 1, 1, 3, 10, tzinfo=UTC)
    base = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) // 60
    minutes, power, temperature = [], [], []
    for minute in range(180):
        if 60 <= minute < 60 + 30:  # half of the second hour missing: meter off
            continue
        minutes.append(base + minute)
        power.append(1200.0 if minute < 60 else 600.0)
        temperature.append(20.0 + minute // 60)
    history = hourly_history(minutes, power, end, days=1 / 8, temperature_c=temperature)
    assert history.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert history.kwh[0] == pytest.approx(1.2)
    assert math.isnan(history.kwh[1])  # 30 minutes do not make an hour of energy
    assert history.kwh[2] == pytest.approx(0.6)
    assert history.temperature_c is not None
    assert history.temperature_c[:3].tolist() == [20.0, 21.0, 22.0]


def test_drift_tracks_the_error_of_past_forecasts() -> None:
    tracker = DriftTracker(window_hours=3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for h, (predicted, actual, naive) in enumerate(
        [(1.0, 1.5, 2.0), (2.0, 2.0, 1.0), (0.5, 1.0, 1.0), (1.0, 0.5, 1.5)]
    ):
        tracker.forecast(start + timedelta(hours=h), predicted, naive)
        tracker.measured(start + timedelta(hours=h, minutes=1), actual)
    status = tracker.status()  # the last 3 hours only
    assert status.hours == 3
    assert status.mae_kwh == pytest.approx((0 + 0.5 + 0.5) / 3, abs=1e-4)
    assert status.bias_kwh == pytest.approx(0.0, abs=1e-4)
    assert status.mape_pct == pytest.approx((0 + 50 + 100) / 3, abs=0.1)
    assert status.skill == pytest.approx(1 - (1 / 3) / (2 / 3), abs=1e-3)  # naive: 1, 0, 1
    restored = DriftTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert restored.status() == status
    # A forecast whose hour was never measured does not count, and is forgotten.
    tracker.forecast(start + timedelta(hours=10), 9.0)
    assert tracker.status() == status
    tracker.forecast(start + timedelta(hours=20), 1.0)
    assert tracker.to_dict()["pending"] == [[(start + timedelta(hours=20)).isoformat(), 1.0,
                                             None]]


def test_retraining_is_weekly_and_naive_reads_last_week() -> None:
    now = datetime(2026, 1, 15, tzinfo=UTC)
    assert retrain_due(None, now)
    assert not retrain_due(now - timedelta(days=6), now)
    assert retrain_due(now - timedelta(days=7), now)
    history = HourlyHistory(datetime(2026, 1, 1, tzinfo=UTC), np.arange(24 * 14.0))
    assert naive_same_hour_last_week(history, now + timedelta(minutes=5)) == 24 * 7
    assert naive_same_hour_last_week(history, now - timedelta(days=8)) is None  # before it

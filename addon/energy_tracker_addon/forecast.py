"""Energy forecast: the next hour and the next 24 hours (kWh) from the house's hourly history.

One linear model per horizon h = 0..23 (hours after the forecast's first hour) predicts an
hour's energy as a multiple of the house's *level*, its mean kWh per hour over the last week:

    kwh[T] = level * max(0, w_h · x(T))

x(T): hour of day x workday/weekend, day of week, season (day-of-year harmonics), the same
hour 1 day and 7 days before, the mean of the same hour over the last 7 days and over the last
4 weeks (same weekday), the last known hour and the last 24 h mean (all divided by the level),
and, when the history carries probe temperatures (RPICT3T1), heating and cooling degrees of
the last 24 h. Dividing by the level lets the shipped model (fitted on the UCI house, which has
no temperature) serve a house of any size. `Forecaster.retrain` refits on the user's own
history by ridge regression shrunk toward the current weights, so a few weeks of data adjust
the model without over-fitting, and a refit that does worse on the user's last week is refused.

`DriftTracker` compares past next-hour forecasts with what was measured (rolling MAE, MAPE,
bias and skill against the same hour one week before) for a diagnostic sensor.

Numpy only (the add-on never imports TensorFlow, scikit-learn or pandas). `retrain` takes a
few seconds of CPU: run it off the event loop (e.g. `HistoryWriter.run_in_worker`).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .statefile import write_atomic

type FloatArray = npt.NDArray[np.float64]
type IntArray = npt.NDArray[np.int64]

FORMAT: Final = "energy_tracker_forecast"
FORMAT_VERSION: Final = 1
DEFAULT_MODEL: Final = Path(__file__).resolve().parent / "forecast_model" / "model.json"
HORIZONS: Final = 24
ONE_HOUR: Final = timedelta(hours=1)
HISTORY_HOURS: Final = 4 * 7 * 24  # the longest look-back of any feature (4 weeks)
MIN_LEVEL_HOURS: Final = 24  # valid hours needed in the last week (or 4 weeks) for a level
MIN_LEVEL_KWH: Final = 0.01  # a house "using nothing" still gets a finite ratio
HEATING_BASE_C: Final = 16.0
COOLING_BASE_C: Final = 22.0
MIN_TEMPERATURE_SHARE: Final = 0.8  # hours with a probe reading needed to fit temperature
MIN_RETRAIN_DAYS: Final = 21  # of forecastable history (beyond the 4-week look-back)
RETRAIN_INTERVAL: Final = timedelta(days=7)
VALIDATION_DAYS: Final = 7  # the user's most recent week judges a refit
DEFAULT_RETRAIN_ALPHA: Final = 50.0
MIN_COVERAGE_MINUTES: Final = 45  # minutes with readings needed to count an hour

_DAY_TYPES: Final = ("workday", "weekend")
_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BASE_FEATURES: Final[tuple[str, ...]] = (
    *(f"hour_{hour:02d}_{kind}" for kind in _DAY_TYPES for hour in range(24)),
    *(f"dow_{day}" for day in _WEEKDAYS),
    "season_sin1", "season_cos1", "season_sin2", "season_cos2",
    "lag_24h", "lag_168h", "same_hour_7d", "same_hour_4w", "last_hour", "mean_24h",
)
TEMPERATURE_FEATURES: Final[tuple[str, ...]] = ("heating_degrees", "cooling_degrees")


class ForecastModelError(Exception):
    """The model file is missing, unreadable or not a forecast model of this version."""


class NotEnoughHistory(Exception):
    """Too little measured history to forecast or to retrain."""


@dataclass(frozen=True, slots=True)
class HourlyHistory:
    """Energy per hour from `start` on; NaN where unknown (meter off, gap, counter reset).

    `temperature_c` (same length, NaN where unknown) is the probe's hourly mean, or None
    without a probe.
    """

    start: datetime  # aware, on an hour boundary
    kwh: FloatArray
    temperature_c: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("hourly history needs an aware start")
        if self.start.astimezone(UTC).timestamp() % 3600:
            raise ValueError(f"hourly history must start on an hour, not {self.start}")
        if self.temperature_c is not None and len(self.temperature_c) != len(self.kwh):
            raise ValueError("temperature and energy histories differ in length")

    @property
    def end(self) -> datetime:
        """The first hour after the history."""
        return self.start + len(self.kwh) * ONE_HOUR

    def until(self, end: datetime) -> HourlyHistory:
        """The hours before `end` (the whole history if it ends earlier)."""
        count = max(0, min(len(self.kwh), _hours_between(self.start, end)))
        temperature = None if self.temperature_c is None else self.temperature_c[:count]
        return HourlyHistory(self.start, self.kwh[:count], temperature)


@dataclass(frozen=True, slots=True)
class ForecastResult:
    """A forecast from the hour starting at `curve[0]`'s time, one value per hour."""

    issued: datetime
    next_hour_kwh: float
    next_24h_kwh: float
    curve: list[tuple[str, float]]  # (local ISO hour start, kWh)
    uses_temperature: bool
    model_version: str

    def as_attributes(self) -> dict[str, Any]:
        """For the sensors' attributes: the curve as a list of {start, kwh}."""
        return {
            "issued": self.issued.isoformat(timespec="seconds"),
            "forecast": [{"start": start, "energy_kwh": kwh} for start, kwh in self.curve],
            "uses_temperature": self.uses_temperature,
            "model_version": self.model_version,
        }


@dataclass(frozen=True, slots=True)
class RetrainReport:
    """What a retrain did: `model` is the refit if accepted, else the unchanged one."""

    model: Forecaster
    accepted: bool
    reason: str
    samples: int
    validation_mae_before: float
    validation_mae_after: float


# --------------------------------------------------------------------------- features


def _hours_between(start: datetime, end: datetime) -> int:
    return math.floor((end - start).total_seconds() / 3600)


def hour_start(moment: datetime) -> datetime:
    """Start of the hour holding `moment` (UTC hours: whole-hour zone offsets assumed)."""
    if moment.tzinfo is None:
        raise ValueError("forecast times must be aware")
    utc = moment.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local hour of day, weekday (Monday 0) and day of year of consecutive hours."""

    hour: IntArray
    weekday: IntArray
    day_of_year: FloatArray

    @classmethod
    def of_hours(cls, start: datetime, count: int, tz: tzinfo) -> Calendar:
        locals_ = [(start + i * ONE_HOUR).astimezone(tz) for i in range(count)]
        return cls(
            np.array([moment.hour for moment in locals_], dtype=np.int64),
            np.array([moment.weekday() for moment in locals_], dtype=np.int64),
            np.array([moment.timetuple().tm_yday for moment in locals_], dtype=np.float64),
        )


def _window_mean(
    sums: FloatArray, counts: FloatArray, begin: IntArray, end: IntArray
) -> FloatArray:
    """NaN-aware mean of values[begin:end] from prefix sums (index 0 = before the first)."""
    total = sums[end] - sums[begin]
    count = counts[end] - counts[begin]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


def design(
    history: HourlyHistory,
    calendar: Calendar,
    origins: IntArray,
    horizon: int,
    use_temperature: bool,
) -> tuple[FloatArray, FloatArray]:
    """Features of hour `origin + horizon` known at `origin` (an index into the history:
    hours before it are known), for every origin; and each origin's level (kWh/h).

    `calendar` covers the history and `HORIZONS` hours beyond it. A level of NaN means the
    origin cannot be forecast (too little history); missing lags fall back to other
    windows and finally to the level itself (ratio 1).
    """
    kwh = history.kwh
    known = np.isfinite(kwh)
    sums = np.concatenate(([0.0], np.cumsum(np.where(known, kwh, 0.0))))
    counts = np.concatenate(([0.0], np.cumsum(known.astype(np.float64))))
    origins = np.asarray(origins, dtype=np.int64)
    target = origins + horizon

    def mean_over(begin: IntArray, end: IntArray) -> FloatArray:
        begin = np.clip(begin, 0, len(kwh))
        end = np.clip(end, 0, len(kwh))
        return _window_mean(sums, counts, begin, np.maximum(begin, end))

    def value_at(index: IntArray) -> FloatArray:
        inside = (index >= 0) & (index < origins)
        return np.where(inside, kwh[np.clip(index, 0, len(kwh) - 1)], np.nan)

    week = mean_over(origins - 168, origins)
    week_count = counts[np.clip(origins, 0, len(kwh))] - counts[np.clip(origins - 168, 0, len(kwh))]
    month = mean_over(origins - HISTORY_HOURS, origins)
    month_count = (counts[np.clip(origins, 0, len(kwh))]
                   - counts[np.clip(origins - HISTORY_HOURS, 0, len(kwh))])
    level = np.where(week_count >= MIN_LEVEL_HOURS, week,
                     np.where(month_count >= MIN_LEVEL_HOURS, month, np.nan))
    level = np.maximum(level, MIN_LEVEL_KWH)  # NaN stays NaN

    def same_hour(step: int, count: int) -> FloatArray:
        stacked = np.stack([value_at(target - step * k) for k in range(1, count + 1)])
        valid = np.isfinite(stacked)
        total = np.where(valid, stacked, 0.0).sum(axis=0)
        n = valid.sum(axis=0)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    same_7d = same_hour(24, 7)
    same_4w = same_hour(168, 4)
    lags = {
        "lag_24h": value_at(target - 24),
        "lag_168h": value_at(target - 168),
        "same_hour_7d": same_7d,
        "same_hour_4w": same_4w,
        "last_hour": value_at(origins - 1),
        "mean_24h": mean_over(origins - 24, origins),
    }
    fallbacks = {"lag_24h": same_7d, "lag_168h": same_4w, "same_hour_4w": same_7d}
    ratios: list[FloatArray] = []
    for name, values in lags.items():
        if name in fallbacks:
            values = np.where(np.isfinite(values), values, fallbacks[name])
        with np.errstate(invalid="ignore"):
            ratio = values / level
        ratios.append(np.where(np.isfinite(ratio), ratio, 1.0))

    cal_index = np.clip(target, 0, len(calendar.hour) - 1)
    hour = calendar.hour[cal_index]
    weekday = calendar.weekday[cal_index]
    weekend = (weekday >= 5).astype(np.int64)
    n = len(origins)
    hour_day = np.zeros((n, 48))
    hour_day[np.arange(n), hour + 24 * weekend] = 1.0
    dow = np.zeros((n, 7))
    dow[np.arange(n), weekday] = 1.0
    angle = 2.0 * np.pi * calendar.day_of_year[cal_index] / 365.25
    season = np.stack([np.sin(angle), np.cos(angle), np.sin(2 * angle), np.cos(2 * angle)], 1)
    columns = [hour_day, dow, season, np.stack(ratios, axis=1)]
    if use_temperature:
        columns.append(_temperature_features(history, origins))
    return np.concatenate(columns, axis=1), level


def _temperature_features(history: HourlyHistory, origins: IntArray) -> FloatArray:
    """Heating and cooling degrees (per 10 °C) of the last 24 h mean probe temperature;
    0 when unknown (the model then reads it as a mild day)."""
    temperature = history.temperature_c
    if temperature is None:
        return np.zeros((len(origins), 2))
    known = np.isfinite(temperature)
    sums = np.concatenate(([0.0], np.cumsum(np.where(known, temperature, 0.0))))
    counts = np.concatenate(([0.0], np.cumsum(known.astype(np.float64))))
    end = np.clip(origins, 0, len(temperature))
    mean = _window_mean(sums, counts, np.clip(origins - 24, 0, len(temperature)), end)
    heating = np.where(np.isfinite(mean), np.maximum(0.0, HEATING_BASE_C - mean) / 10.0, 0.0)
    cooling = np.where(np.isfinite(mean), np.maximum(0.0, mean - COOLING_BASE_C) / 10.0, 0.0)
    return np.stack([heating, cooling], axis=1)


def has_temperature(history: HourlyHistory) -> bool:
    """True when the probe reported for most hours of the history's last 4 weeks."""
    temperature = history.temperature_c
    if temperature is None or len(temperature) == 0:
        return False
    recent = temperature[-HISTORY_HOURS:]
    return float(np.isfinite(recent).mean()) >= MIN_TEMPERATURE_SHARE


def training_set(
    history: HourlyHistory,
    calendar: Calendar,
    origins: IntArray,
    horizon: int,
    use_temperature: bool,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Features, target ratios and levels of the origins whose target hour was measured."""
    x, level = design(history, calendar, origins, horizon, use_temperature)
    target = origins + horizon
    inside = target < len(history.kwh)
    actual = np.where(inside, history.kwh[np.clip(target, 0, len(history.kwh) - 1)], np.nan)
    keep = np.isfinite(actual) & np.isfinite(level)
    return x[keep], actual[keep] / level[keep], level[keep]


def fit_ridge(
    x: FloatArray, y: FloatArray, alpha: float, prior: FloatArray | None = None,
    lad_iterations: int = 0,
) -> FloatArray:
    """Ridge regression shrunk toward `prior` (zeros when None):
    minimise Σ wᵢ (y - x·w)² + alpha ‖w - prior‖².

    With `lad_iterations` > 0 the sample weights are re-estimated as 1/|residual| that many
    times (iteratively reweighted least squares), which fits the median instead of the mean:
    the forecast is judged by absolute error and household energy is right-skewed.
    """
    base = np.zeros(x.shape[1]) if prior is None else prior
    penalty = alpha * np.eye(x.shape[1])
    sample_weight = np.ones(len(y))
    weights = base
    for _ in range(lad_iterations + 1):
        xw = x * sample_weight[:, None]
        residual = y - x @ base
        weights = base + np.linalg.solve(x.T @ xw + penalty, xw.T @ residual)
        sample_weight = 1.0 / np.maximum(np.abs(y - x @ weights), 0.05)
    return np.asarray(weights, dtype=np.float64)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Forecaster:
    """Per-horizon weights over named features, plus how they were obtained."""

    features: tuple[str, ...]
    weights: FloatArray  # (HORIZONS, len(features))
    version: str
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_temperature(self) -> bool:
        return self.features[-len(TEMPERATURE_FEATURES):] == TEMPERATURE_FEATURES

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> Forecaster:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ForecastModelError(f"{path}: no forecast model file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ForecastModelError(f"{path}: unreadable forecast model ({error})") from None
        try:
            return cls.from_dict(data)
        except ForecastModelError as error:
            raise ForecastModelError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Forecaster:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ForecastModelError("not an energy_tracker forecast model")
        if data.get("format_version") != FORMAT_VERSION:
            raise ForecastModelError(
                f"model format {data.get('format_version')!r}, this add-on reads "
                f"{FORMAT_VERSION}"
            )
        try:
            features = tuple(str(name) for name in data["features"])
            weights = np.array(data["weights"], dtype=np.float64)
            version = str(data["version"])
            info = dict(data.get("info", {}))
        except (KeyError, TypeError, ValueError) as error:
            raise ForecastModelError(f"malformed forecast model ({error!r})") from None
        expected = (BASE_FEATURES, BASE_FEATURES + TEMPERATURE_FEATURES)
        if features not in expected:
            raise ForecastModelError("the model's features are not the ones this add-on computes")
        if weights.shape != (HORIZONS, len(features)) or not np.isfinite(weights).all():
            raise ForecastModelError(
                f"weights of shape {weights.shape}, expected {(HORIZONS, len(features))} "
                "finite numbers"
            )
        return cls(features, weights, version, info)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "features": list(self.features),
            "weights": [[float(f"{w:.6g}") for w in row] for row in self.weights],
            "info": dict(self.info),
        }

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the previous file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    # ------------------------------------------------------------------ forecasting

    def predict_ratios(
        self, history: HourlyHistory, calendar: Calendar, origins: IntArray
    ) -> tuple[FloatArray, FloatArray]:
        """kWh for (origin, horizon) of many origins at once: shape (len(origins), HORIZONS),
        NaN rows where the level is unknown; and the levels."""
        out = np.empty((len(origins), HORIZONS))
        level: FloatArray = np.full(len(origins), np.nan)
        for horizon in range(HORIZONS):
            x, level = design(history, calendar, origins, horizon, self.uses_temperature)
            out[:, horizon] = level * np.maximum(0.0, x @ self.weights[horizon])
        return out, level

    def predict(self, now: datetime, history: HourlyHistory, tz: tzinfo) -> ForecastResult:
        """Forecast the hour holding `now` and the 23 after it from the hours before it.

        Call it just after each hour boundary: the first hour is then the next 60 minutes.
        Hours of `history` from the current one on are ignored (not yet complete).
        """
        first = hour_start(now)
        known = history.until(first)
        origin = _hours_between(known.start, first)
        if origin <= 0:
            raise NotEnoughHistory("no measured hour before the forecast")
        calendar = Calendar.of_hours(known.start, origin + HORIZONS, tz)
        padded = HourlyHistory(
            known.start,
            np.concatenate((known.kwh, np.full(origin - len(known.kwh), np.nan))),
            None if known.temperature_c is None else np.concatenate(
                (known.temperature_c, np.full(origin - len(known.kwh), np.nan))),
        )
        values, level = self.predict_ratios(padded, calendar, np.array([origin]))
        if not np.isfinite(level[0]):
            measured = int(np.isfinite(padded.kwh[-HISTORY_HOURS:]).sum())
            raise NotEnoughHistory(
                f"need {MIN_LEVEL_HOURS} measured hours in the last 4 weeks to forecast; "
                f"have {measured}"
            )
        curve = [
            ((first + h * ONE_HOUR).astimezone(tz).isoformat(timespec="seconds"),
             round(float(values[0, h]), 4))
            for h in range(HORIZONS)
        ]
        return ForecastResult(
            issued=now,
            next_hour_kwh=round(float(values[0, 0]), 4),
            next_24h_kwh=round(float(values[0].sum()), 3),
            curve=curve,
            uses_temperature=self.uses_temperature,
            model_version=self.version,
        )

    # ------------------------------------------------------------------ retraining

    def retrain(
        self, history: HourlyHistory, tz: tzinfo, alpha: float = DEFAULT_RETRAIN_ALPHA
    ) -> RetrainReport:
        """Refit on the user's history (ridge shrunk toward the current weights).

        Temperature features are added when the probe reported for most recent hours. The
        refit is first made without the last `VALIDATION_DAYS` and judged on them against
        the current model; it is accepted (and refit on everything) only if its absolute
        error there is not worse. Raises NotEnoughHistory below `MIN_RETRAIN_DAYS` of
        forecastable hours.
        """
        n = len(history.kwh)
        use_temperature = has_temperature(history)
        features = BASE_FEATURES + (TEMPERATURE_FEATURES if use_temperature else ())
        prior = np.zeros((HORIZONS, len(features)))
        prior[:, : len(self.features)] = self.weights[:, : len(features)]
        calendar = Calendar.of_hours(history.start, n + HORIZONS, tz)
        split = n - VALIDATION_DAYS * 24
        fit_origins = np.arange(1, max(1, split - HORIZONS + 1), dtype=np.int64)
        check_origins = np.arange(split, n, dtype=np.int64)
        x_probe, _, _ = training_set(history, calendar, fit_origins, 0, use_temperature)
        if len(x_probe) < MIN_RETRAIN_DAYS * 24:
            # "28 measured, 19 forecastable" read as a contradiction: say what is missing.
            raise NotEnoughHistory(
                f"retraining needs {MIN_RETRAIN_DAYS} days of forecastable history plus "
                f"{VALIDATION_DAYS} to check it; have {len(x_probe) / 24:.1f} forecastable "
                f"of {int(np.isfinite(history.kwh).sum()) / 24:.1f} measured (about "
                f"{math.ceil(MIN_RETRAIN_DAYS - len(x_probe) / 24)} more days of readings)"
            )
        candidate = self._fit(history, calendar, fit_origins, features, prior, alpha)
        before = _mae_on(self, history, calendar, check_origins)
        after = _mae_on(candidate, history, calendar, check_origins)
        if not math.isfinite(after):  # inf <= inf would pass it unchecked
            return RetrainReport(self, False, "the last week has no measured hour to check "
                                 "the refit on", len(x_probe), before, after)
        if not after <= before:
            return RetrainReport(self, False, "the refit forecast the last week worse",
                                 len(x_probe), before, after)
        all_origins = np.arange(1, n, dtype=np.int64)
        final = self._fit(history, calendar, all_origins, features, prior, alpha)
        return RetrainReport(final, True, "refit on the house's own history", len(x_probe),
                             before, after)

    def _fit(
        self, history: HourlyHistory, calendar: Calendar, origins: IntArray,
        features: tuple[str, ...], prior: FloatArray, alpha: float,
    ) -> Forecaster:
        use_temperature = features[-len(TEMPERATURE_FEATURES):] == TEMPERATURE_FEATURES
        weights = np.empty_like(prior)
        samples = 0
        for horizon in range(HORIZONS):
            x, y, _ = training_set(history, calendar, origins, horizon, use_temperature)
            weights[horizon] = fit_ridge(x, y, alpha, prior[horizon], lad_iterations=3)
            samples = max(samples, len(y))
        info = {
            **{key: value for key, value in self.info.items() if key != "retrained"},
            "retrained": {
                "history_start": history.start.isoformat(),
                "history_end": history.end.isoformat(),
                "samples": samples,
                "alpha": alpha,
                "temperature": use_temperature,
            },
        }
        version = self.version.split("+")[0] + "+local." + history.end.strftime("%Y%m%d%H")
        return Forecaster(features, weights, version, info)


def _mae_on(
    model: Forecaster, history: HourlyHistory, calendar: Calendar, origins: IntArray
) -> float:
    """Mean absolute error of every measured hour that `origins` forecast (any horizon)."""
    predicted, _ = model.predict_ratios(history, calendar, origins)
    target = origins[:, None] + np.arange(HORIZONS)[None, :]
    inside = target < len(history.kwh)
    actual = np.where(inside, history.kwh[np.clip(target, 0, len(history.kwh) - 1)], np.nan)
    ok = np.isfinite(actual) & np.isfinite(predicted)
    return float(np.abs(predicted[ok] - actual[ok]).mean()) if ok.any() else math.inf


def retrain_due(last_retrain: datetime | None, now: datetime) -> bool:
    """Weekly: the schedule for `Forecaster.retrain` (never retrained counts as due)."""
    return last_retrain is None or now - last_retrain >= RETRAIN_INTERVAL


# --------------------------------------------------------------------------- history


def hourly_history(
    epoch_minutes: Sequence[int],
    power_w: Sequence[float | None],
    end: datetime,
    days: float = 8 * 7,
    temperature_c: Sequence[float | None] | None = None,
) -> HourlyHistory:
    """Energy per UTC hour over the `days` before the hour holding `end`, from per-minute
    mean powers (what `HistoryStore.minute_means(["total_power_w"], since)` returns).

    An hour's energy is its mean power * 1 h, counted only when at least 45 of its minutes
    have a power: a meter that was off gives NaN, not 0 kWh. `temperature_c` (per minute,
    same length) gives the hourly mean probe temperature.
    """
    last = hour_start(end)
    start = last - timedelta(days=days)
    hours = _hours_between(start, last)
    minutes = np.asarray(epoch_minutes, dtype=np.int64)
    index = minutes // 60 - int(start.timestamp()) // 3600
    inside = (index >= 0) & (index < hours)

    def hourly_mean(values: Sequence[float | None], min_count: int) -> FloatArray:
        array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        if len(array) != len(minutes):
            raise ValueError("one value per minute is needed")
        ok = inside & np.isfinite(array)
        total = np.bincount(index[ok], weights=array[ok], minlength=hours)
        count = np.bincount(index[ok], minlength=hours)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count >= min_count, total / count, np.nan)

    kwh = np.maximum(hourly_mean(power_w, MIN_COVERAGE_MINUTES), 0.0) / 1000.0
    temperature = None if temperature_c is None else hourly_mean(temperature_c, 1)
    return HourlyHistory(start, kwh, temperature)


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True, slots=True)
class DriftStatus:
    """Forecast error over the last `window_hours` hours that have both a forecast and a
    measurement. `skill` = 1 - MAE / MAE of "same hour last week" (positive: the model is
    better than that naive guess; it drifting toward 0 or below says: retrain or check)."""

    hours: int
    mae_kwh: float | None
    mape_pct: float | None
    bias_kwh: float | None
    skill: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"hours": self.hours, "mae_kwh": self.mae_kwh, "mape_pct": self.mape_pct,
                "bias_kwh": self.bias_kwh, "skill": self.skill}


class DriftTracker:
    """Rolling error of the next-hour forecasts against the measured hours.

    `forecast(hour, kwh, naive_kwh)` records the forecast of an hour (`naive_kwh`: the same
    hour a week before, if known); `measured(hour, kwh)` its energy once the hour is over.
    """

    MAPE_FLOOR_KWH: Final = 0.05  # hours below this are left out of MAPE (÷ near zero)

    def __init__(self, window_hours: int = 7 * 24) -> None:
        self.window_hours = window_hours
        self._pending: dict[datetime, tuple[float, float | None]] = {}
        self._errors: deque[tuple[datetime, float, float, float | None]] = deque(
            maxlen=window_hours)

    def forecast(self, hour: datetime, kwh: float, naive_kwh: float | None = None) -> None:
        self._pending[hour_start(hour)] = (kwh, naive_kwh)
        # Forecasts whose measurement never came (meter off) must not pile up.
        horizon = hour_start(hour) - timedelta(hours=self.window_hours)
        for old in [moment for moment in self._pending if moment < horizon]:
            del self._pending[old]

    def measured(self, hour: datetime, kwh: float) -> None:
        entry = self._pending.pop(hour_start(hour), None)
        if entry is None or not math.isfinite(kwh):
            return
        predicted, naive = entry
        self._errors.append((hour_start(hour), predicted, kwh, naive))

    def status(self) -> DriftStatus:
        if not self._errors:
            return DriftStatus(0, None, None, None, None)
        predicted = np.array([e[1] for e in self._errors])
        actual = np.array([e[2] for e in self._errors])
        error = predicted - actual
        mae = float(np.abs(error).mean())
        big = actual >= self.MAPE_FLOOR_KWH
        mape = float(np.abs(error[big] / actual[big]).mean() * 100) if big.any() else None
        pairs = [(abs(e[1] - e[2]), abs(e[3] - e[2])) for e in self._errors if e[3] is not None]
        skill = None
        if pairs:
            naive_mae = sum(p[1] for p in pairs) / len(pairs)
            model_mae = sum(p[0] for p in pairs) / len(pairs)
            skill = round(1.0 - model_mae / naive_mae, 3) if naive_mae > 0 else None
        return DriftStatus(
            len(self._errors), round(mae, 4), None if mape is None else round(mape, 1),
            round(float(error.mean()), 4), skill,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_hours": self.window_hours,
            "pending": [[h.isoformat(), p, n] for h, (p, n) in self._pending.items()],
            "errors": [[h.isoformat(), p, a, n] for h, p, a, n in self._errors],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftTracker:
        """Restore a `to_dict` state; malformed data raises ValueError."""
        try:
            tracker = cls(int(data["window_hours"]))
            for hour, predicted, naive in data["pending"]:
                tracker._pending[datetime.fromisoformat(hour)] = (
                    float(predicted), None if naive is None else float(naive))
            for hour, predicted, actual, naive in data["errors"]:
                tracker._errors.append((datetime.fromisoformat(hour), float(predicted),
                                        float(actual), None if naive is None else float(naive)))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed drift state ({error!r})") from None
        return tracker


def naive_same_hour_last_week(history: HourlyHistory, hour: datetime) -> float | None:
    """The measured energy of the same hour a week before `hour`, if known."""
    index = _hours_between(history.start, hour_start(hour) - timedelta(days=7))
    if 0 <= index < len(history.kwh) and math.isfinite(history.kwh[index]):
        return float(history.kwh[index])
    return None


__all__: Sequence[str] = (
    "DEFAULT_MODEL", "Calendar", "DriftStatus", "DriftTracker", "ForecastModelError",
    "ForecastResult", "Forecaster", "HourlyHistory", "NotEnoughHistory", "RetrainReport",
    "design", "fit_ridge", "hourly_history", "naive_same_hour_last_week", "retrain_due",
    "training_set",
)

"""The energy forecast in the running service: forecast.py's model fed from the history store.

Just after each hour turns (the first reading of a new hour) the next hour and the next
24 hours are forecast from the history store's minute means; the hour that just ended is
scored against the forecast made for it (`DriftTracker`). Weekly, the model is refit on the
house's own history (`Forecaster.retrain`, which refuses a worse refit). All of it runs on
the history writer's worker thread, never on the event loop. The retrained model, the retrain
schedule and the drift are kept in `<data dir>/forecast.json` (atomic, see statefile.py).

State fields (docs/api.md, "Forecast"): `forecast` (null while unavailable) and
`forecast_reason` (why it is null; null when there is a forecast).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

from .forecast import (
    DEFAULT_MODEL,
    DriftTracker,
    Forecaster,
    ForecastModelError,
    ForecastResult,
    HourlyHistory,
    NotEnoughHistory,
    hour_start,
    hourly_history,
    naive_same_hour_last_week,
    retrain_due,
)
from .history import HistoryWriter
from .meter import Meter, iso_utc
from .statefile import VersionedStateFile
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)

# Read at start, not bound at import: a test points it at a missing or corrupt file.
MODEL_PATH: Path = DEFAULT_MODEL
STATE_FILE: Final = "forecast.json"
FORMAT_VERSION: Final = 1
POWER_COLUMN: Final = "total_power_w"
# The RPICT probe; the forecaster adds degree-hours when it reported most of the time.
TEMPERATURE_COLUMN: Final = "temperature_c"
PREDICT_DAYS: Final = 29  # the features look back 4 weeks (forecast.HISTORY_HOURS)
RETRAIN_DAYS: Final = 56
RETRAIN_RETRY: Final = timedelta(days=1)  # after "not enough history yet"
# A forecast whose first hour ended over an hour ago (not renewed at the hour's turn while
# readings went on): hidden, not shown old.
MAX_AGE: Final = timedelta(hours=2)
STALE_AFTER: Final = timedelta(hours=1)  # no reading for this long: the forecast is hidden
DRIFT_LOOKBACK_HOURS: Final = 24  # ended hours scored at each turn (catches missed turns)
NO_MODEL: Final = "no forecast model"
STARTING: Final = "starting"


@dataclass(frozen=True, slots=True)
class _Update:
    """What the worker computed for one hour turn."""

    history: HourlyHistory
    result: ForecastResult | None
    reason: str | None


class Forecasting:
    """Owns the forecaster and its drift tracker; `start()` after the analytics' history."""

    def __init__(
        self,
        meter: Meter,
        history: HistoryWriter,
        data_dir: Path,
        tz: tzinfo,
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._meter = meter
        self._history = history
        self._tz = tz
        self._now = wall_clock
        self._file = VersionedStateFile(data_dir / STATE_FILE, FORMAT_VERSION, "forecast state",
                                       _LOGGER)
        self._model: Forecaster | None = None
        self._trained: datetime | None = None  # set: the model is a local retrain
        self._last_retrain: datetime | None = None
        self._retry_retrain: datetime | None = None
        self._drift = DriftTracker()
        self._result: ForecastResult | None = None
        self._payload: dict[str, Any] | None = None  # the state field of `_result`
        self._reason: str | None = STARTING
        self._hour: datetime | None = None
        self._last_reading: datetime | None = None  # this run's newest reading
        self._task: asyncio.Task[None] | None = None
        self._remove_observer: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._restore()
        if self._model is None:
            try:
                self._model = Forecaster.load(MODEL_PATH)
            except ForecastModelError as error:
                _LOGGER.error("Energy forecast off: %s", error)
                self._reason = f"{NO_MODEL} ({error})"
        self._meter.add_state_part("forecast", self.state)
        self._meter.add_state_part("forecast_reason", lambda: self.reason)
        if self._model is None:
            return
        self._remove_observer = self._meter.add_observer(self._observe)
        # Forecast at once: after a restart the sensors need not wait for the next hour.
        self._launch(self._now(), score=False)

    async def stop(self) -> None:
        if self._remove_observer is not None:
            self._remove_observer()
            self._remove_observer = None
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._persist()

    # ------------------------------------------------------------------ hour turns

    def _observe(self, state: dict[str, Any]) -> None:
        if not state["available"]:
            return  # the meter going stale is no reading: it must not issue a forecast
        moment = datetime.fromisoformat(state["timestamp"])
        self._last_reading = moment
        # A busy worker (a retrain) skips the turn; the next reading of the hour retries.
        if hour_start(moment) != self._hour and (self._task is None or self._task.done()):
            self._launch(moment, score=True)

    def _launch(self, now: datetime, score: bool) -> None:
        self._hour = hour_start(now)
        self._task = asyncio.create_task(self._update(now, score), name="energy forecast")

    async def _update(self, now: datetime, score: bool) -> None:
        """Retrain when due, forecast from `now`'s hour, score the ended hours."""
        model = self._model
        assert model is not None
        retrain = retrain_due(self._last_retrain, now) and (
            self._retry_retrain is None or now >= self._retry_retrain)
        days = RETRAIN_DAYS if retrain else PREDICT_DAYS
        try:
            minutes, rows = await self._history.minute_means(
                [POWER_COLUMN, TEMPERATURE_COLUMN], hour_start(now) - timedelta(days=days))
            history = await self._history.run_in_worker(_hourly, minutes, rows, now, days)
            if retrain:
                model = await self._retrain(model, history, now)
            update = await self._history.run_in_worker(self._predict, model, history, now)
        except Exception:  # a background task: one failed hour must not end the forecasts
            _LOGGER.exception("Energy forecast failed")
            self._result, self._payload = None, None
            self._reason = "forecast failed (see the add-on log)"
            return
        if score:
            self._score(update, now)
        self._result, self._reason = update.result, update.reason
        self._payload = None if update.result is None else self._as_state(update.result)
        self._persist()

    def _predict(self, model: Forecaster, history: HourlyHistory, now: datetime) -> _Update:
        try:
            result = model.predict(now, history, self._tz)
        except NotEnoughHistory as error:
            return _Update(history, None, f"learning: {error}")
        return _Update(history, result, None)

    async def _retrain(self, model: Forecaster, history: HourlyHistory,
                       now: datetime) -> Forecaster:
        try:
            report = await self._history.run_in_worker(model.retrain, history, self._tz)
        except NotEnoughHistory as error:
            _LOGGER.info("Forecast model not retrained yet: %s", error)
            self._retry_retrain = now + RETRAIN_RETRY
            return model
        self._last_retrain, self._retry_retrain = now, None
        if not report.accepted:
            _LOGGER.info("Forecast refit refused (%s): MAE %.3f → %.3f kWh on the last week",
                         report.reason, report.validation_mae_before,
                         report.validation_mae_after)
            return model
        _LOGGER.info("Forecast model retrained on %d hours: MAE %.3f → %.3f kWh on the last "
                     "week", report.samples, report.validation_mae_before,
                     report.validation_mae_after)
        self._model, self._trained = report.model, now
        return report.model

    def _score(self, update: _Update, now: datetime) -> None:
        """Measure the ended hours, then record this hour's next-hour forecast."""
        history = update.history
        ended = history.until(hour_start(now))
        for back in range(1, min(DRIFT_LOOKBACK_HOURS, len(ended.kwh)) + 1):
            kwh = float(ended.kwh[-back])
            if math.isfinite(kwh):
                self._drift.measured(ended.end - back * timedelta(hours=1), kwh)
        if update.result is not None:
            self._drift.forecast(now, update.result.next_hour_kwh,
                                 naive_same_hour_last_week(history, now))

    # ------------------------------------------------------------------ output

    @property
    def reason(self) -> str | None:
        """Why `state()` is null (None when there is a forecast)."""
        if self._result is not None and self.state() is None:
            return "out of date: no reading for over an hour"
        return self._reason

    def state(self) -> dict[str, Any] | None:
        """The `forecast` state field, or None while there is none (or it is out of date)."""
        result = self._result
        if result is None:
            return None
        now = self._now()
        # Before this run's first reading, the forecast's own time stands in for one.
        seen = self._last_reading or result.issued
        if now - seen > STALE_AFTER or now - hour_start(result.issued) >= MAX_AGE:
            return None
        return self._payload

    def _as_state(self, result: ForecastResult) -> dict[str, Any]:
        # Built once per hour, not per reading: every stream message carries it.
        return {
            "next_hour_kwh": result.next_hour_kwh,
            "next_24h_kwh": result.next_24h_kwh,
            "curve": [{"hour": hour, "kwh": kwh} for hour, kwh in result.curve],
            "generated": iso_utc(result.issued),
            "uses_temperature": result.uses_temperature,
            "model": {
                "source": "shipped" if self._trained is None else "retrained",
                "version": result.model_version,
                "trained": None if self._trained is None else iso_utc(self._trained),
            },
            "drift": self._drift.status().as_dict(),
        }

    # ------------------------------------------------------------------ persistence

    def _persist(self) -> None:
        model = self._model if self._trained is not None else None
        self._file.write({
            "model": None if model is None else model.to_dict(),
            "trained": _iso(self._trained),
            "last_retrain": _iso(self._last_retrain),
            "retry_retrain": _iso(self._retry_retrain),
            "drift": self._drift.to_dict(),
        })

    def _restore(self) -> None:
        stored = self._file.read(_parse_state, "shipped model, drift afresh",
                                 errors=(ForecastModelError,))
        if stored is None:
            return
        drift, times, model = stored
        self._drift = drift
        self._last_retrain, self._retry_retrain = times[1], times[2]
        if model is not None:
            self._model, self._trained = model, times[0]


def _parse_state(data: dict[str, Any]
                 ) -> tuple[DriftTracker, list[datetime | None], Forecaster | None]:
    drift = DriftTracker.from_dict(data["drift"])
    times = [_parse(data[key]) for key in ("trained", "last_retrain", "retry_retrain")]
    model = None if data["model"] is None else Forecaster.from_dict(data["model"])
    if model is not None and times[0] is None:
        raise ValueError("a retrained model without its training time")
    return drift, times, model


def _hourly(
    minutes: list[int], rows: list[tuple[float | None, ...]], now: datetime, days: int
) -> HourlyHistory:
    return hourly_history(minutes, [row[0] for row in rows], now, days=days,
                          temperature_c=[row[1] for row in rows])


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} is not an aware time")
    return moment

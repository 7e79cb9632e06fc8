"""Analytics of the live readings: one object that watches the meter and owns the rolling
mean, the energy buckets, the anomaly detectors, the CO2 figures and the history writer.

It sees every reading before the API's listeners do (`Meter.add_observer`) and adds its
fields to the state (`Meter.add_state_part`), so each stream message carries them for the
reading it describes. The history store is the detectors' memory: they learn from it at
start and again every `REFIT_INTERVAL_S`. The buckets and the anomaly log are kept in
`<data dir>/analytics.json` (atomic, see statefile.py), saved every persist interval, at
each new hour and at once for what the readings cannot give back (an anomaly, a pushed
carbon intensity, a counter that restarted). Between saves, each reading rewrites only the
tail, the counters last recorded (`analytics_tail.live`, a few hundred bytes, no fsync),
not the whole state (47 KiB when full): after a crash or kill, recording the tail on the
saved buckets gives the hour's buckets as shown, as the saved state and the tail are
always in the same hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

import numpy as np

from .aggregates import EnergyBuckets, Period, RollingMean
from .anomaly import Anomaly, AnomalyDetector, DetectorSettings
from .carbon import CarbonIntensity
from .config import ChannelConfig, Options
from .history import ExportFormat, HistoryWriter, Reading
from .meter import Meter, iso_utc
from .statefile import LiveCopy, VersionedStateFile, WriteTrouble
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)

STATE_FILE: Final = "analytics.json"
TAIL_FILE: Final = "analytics_tail"  # a LiveCopy: analytics_tail.live
HISTORY_FILE: Final = "history.sqlite3"
FORMAT_VERSION: Final = 1
REFIT_INTERVAL_S: Final = 86_400.0
KEPT_EVENTS: Final = 50  # GET /api/v1/anomalies
STATE_EVENTS: Final = 5  # "anomalies" in every state message
# A detector judges only after one week of history: each hourly slot seen once.
READY_AFTER: Final = timedelta(days=7)
CIRCUIT_DETECTOR: Final = DetectorSettings(judge_low=False)
# Below this, shares of today's energy say nothing useful.
MIN_RECOMMEND_KWH: Final = 0.1
# A circuit below 1 Wh today used nothing worth a sentence (an idle CT reads noise).
MIN_CIRCUIT_KWH: Final = 0.001
TOTAL: Final = "total"


class Analytics:
    """Everything derived from the readings; `start()` before the meter is fed."""

    def __init__(
        self,
        options: Options,
        data_dir: Path,
        meter: Meter,
        tz: tzinfo,
        flush_interval_s: float = 10.0,
        carbon: CarbonIntensity | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        learn_afresh: bool = False,
    ) -> None:
        """`learn_afresh`: the meter is another one than the saved state's (meter_source.py):
        the detectors' windows and learning are not its."""
        self._options = options
        self._learn_afresh = learn_afresh
        # Today is the wall clock's: the last reading's day stays yesterday when no reading
        # came since midnight (a stale board), and goes back with a clock set back.
        self._wall_clock = wall_clock
        self.carbon = carbon or CarbonIntensity(options.co2_g_per_kwh)
        self._meter = meter
        self._tz = tz
        self._channels: tuple[ChannelConfig, ...] = options.channels
        self._file = VersionedStateFile(data_dir / STATE_FILE, FORMAT_VERSION, "analytics state",
                                       _LOGGER)
        self._tail = LiveCopy(data_dir / TAIL_FILE)
        self._tail_revision = 0
        self._tail_trouble = WriteTrouble(_LOGGER, "Could not write the analytics tail: %s")
        # Exports are written here, streamed, then deleted (api_analytics.py).
        self.export_dir = data_dir / "exports"
        self.history = HistoryWriter(
            data_dir / HISTORY_FILE,
            retention_days=options.history_retention_days,
            max_size_mb=options.history_max_size_mb,
            flush_interval_s=flush_interval_s,
        )
        self._rolling = RollingMean(options.rolling_window)
        self._buckets = EnergyBuckets(tz)
        # Cumulative kg CO2 per counter key, accumulated at the intensity of each reading's
        # time, bucketed like the energy (a live intensity varies within the day).
        self._co2_buckets = EnergyBuckets(tz)
        # series key ("total" or a channel id) -> detector; named for readable reasons.
        self._detectors: dict[str, AnomalyDetector] = {TOTAL: AnomalyDetector(tz, TOTAL)}
        # The total sums the mains channels, or every channel when none is mains (meter.py):
        # a lone channel in that sum is the total itself, and a second detector on it would
        # report every anomaly twice.
        summed = [c for c in self._channels if c.role == "mains"] or list(self._channels)
        for channel in self._channels:
            if summed != [channel]:
                self._detectors[str(channel.id)] = AnomalyDetector(
                    tz, channel.name, CIRCUIT_DETECTOR)
        self._ready: dict[str, bool] = dict.fromkeys(self._detectors, False)
        # Per series: the oldest reading learned from (history or live); READY_AFTER later
        # the series is ready, and only a ready series announces anomalies.
        self._learning_since: dict[str, datetime] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=KEPT_EVENTS)
        self._next_id = 1
        self._last_lines: int | None = None
        self._last_time: datetime | None = None
        self._unsaved = False
        self._event_unsaved = False
        self._task: asyncio.Task[None] | None = None
        self._remove_observer: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._restore()
        if self._learn_afresh:
            # Saved now: the source marker already names the new meter, and a first run
            # without a reading (the hat's port still wrong) saved nothing, so the next
            # start resumed the old meter's learning.
            self._unsaved = True
            self.persist()
        self.export_dir.mkdir(exist_ok=True)
        for leftover in self.export_dir.iterdir():  # from a stop in mid-export
            leftover.unlink(missing_ok=True)
        await self.history.start()
        try:
            await self.refit()
            self._remove_observer = self._meter.add_observer(self._observe)
            for key, part in self._state_parts().items():
                self._meter.add_state_part(key, part)
            self._task = asyncio.create_task(self._run(), name="energy_tracker analytics")
        except BaseException:
            await self.history.stop()
            raise

    async def stop(self) -> None:
        if self._remove_observer is not None:
            self._remove_observer()
            self._remove_observer = None
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.persist()
        await self.history.stop()

    async def refit(self) -> None:
        """Learn what is usual from the history store (the newest `weeks` of it)."""
        weeks = DetectorSettings().weeks
        since = (self._last_time or datetime.now(self._tz)) - timedelta(weeks=weeks)
        keys = list(self._detectors)
        columns = ["total_power_w" if key == TOTAL else f"channel_{key}_power_w"
                   for key in keys]
        minutes, rows = await self.history.minute_means(columns, since)
        if not minutes:
            _LOGGER.info("No history yet: anomaly detection learns as readings arrive")
            return
        # About 0.3 s per detector for 8 weeks: fitted on the history's thread, not here.
        fitted = await self.history.run_in_worker(self._fit, keys, minutes, rows)
        for key, (detector, since, until) in fitted.items():
            # A history shorter than what was learned live (history_retention_days under a
            # week, a small history_max_size_mb) must not unlearn it: detection fell back
            # to "learning" at every daily refit and never alerted.
            current = self._detectors[key]
            if detector.learned_minutes() >= current.learned_minutes():
                current.adopt_learning(detector)
            self._learning_since[key] = min(self._learning_since.get(key, since), since)
            self._ready[key] = self._ready[key] or self._span_ready(
                key, max(self._last_time or until, until))
        _LOGGER.info("Anomaly detection learned from %d minutes of history", len(minutes))

    def _span_ready(self, key: str, now: datetime) -> bool:
        since = self._learning_since.get(key)
        # In UTC: aware times of one ZoneInfo subtract as wall clocks (a DST change)
        return since is not None and now.astimezone(UTC) - since.astimezone(UTC) >= READY_AFTER

    def _fit(
        self, keys: list[str], minutes: list[int], rows: list[tuple[float | None, ...]]
    ) -> dict[str, tuple[AnomalyDetector, datetime, datetime]]:
        """Fresh detectors fitted on the history, and the history's first and last minute
        of each."""
        epoch_s = np.asarray(minutes, np.float64) * 60.0
        values = np.array(rows, dtype=np.float64)  # None -> nan
        fitted = {}
        for column, key in enumerate(keys):
            powers = values[:, column]
            finite = np.isfinite(powers)
            if not finite.any():
                continue
            detector = AnomalyDetector(self._tz, self._detectors[key].series,
                                       self._detectors[key].settings)
            detector.fit(epoch_s, powers)
            first, last = (datetime.fromtimestamp(float(epoch_s[finite][i]), UTC)
                           for i in (0, -1))
            fitted[key] = (detector, first, last)
        return fitted

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refit = loop.time() + REFIT_INTERVAL_S
        while True:
            await asyncio.sleep(self._options.persist_interval_s)
            self.persist()
            if loop.time() >= next_refit:
                next_refit = loop.time() + REFIT_INTERVAL_S
                await self.refit()

    # ------------------------------------------------------------------ input

    def _observe(self, state: dict[str, Any]) -> None:
        """Every meter publication; only a new RPICT reading (or its loss) counts."""
        lines = state["boards"]["rpict"]["lines_ok"]
        new_reading = lines != self._last_lines and state["available"]
        lost = not state["available"] and self._rolling.value is not None
        self._last_lines = lines
        if not (new_reading or lost):
            return
        timestamp = datetime.fromisoformat(state["timestamp"])
        self._last_time = timestamp
        self.history.add(Reading.from_state(state))
        if lost:
            self._rolling.clear()
            return
        total = state["total_power_w"]
        self._rolling.add(total)
        counters = {TOTAL: state["total_energy_kwh"]}
        counters |= {str(c["id"]): c["energy_kwh"] for c in state["channels"]}
        previous = self._buckets.last_counters
        previous_time = self._buckets.last_time
        self._buckets.record(timestamp, counters)
        self._record_co2(timestamp, previous, counters)
        powers = {TOTAL: total} | {str(c["id"]): c["power_w"] for c in state["channels"]}
        for key, detector in self._detectors.items():
            power = powers.get(key)
            if power is None:
                continue
            started = detector.check(timestamp, power)
            if not self._ready[key]:
                self._learning_since.setdefault(key, timestamp)
                self._ready[key] = self._span_ready(key, timestamp)
            # A slot can be judged before the series has a week: said only once ready, so
            # no alert comes while the state says detection is still learning.
            if started is not None and self._ready[key]:
                self._log_event(key, started)
        self._unsaved = True
        # Observers run before the state is published: what is shown survives a kill, from
        # the saved state and the tail, which must be of the same hour (compared in UTC:
        # the two local hours of an autumn night compare equal) and of the same counters
        # (a counter that restarted or appeared is a new baseline the tail cannot give).
        rebased = any(key not in previous or value < previous[key]
                      for key, value in counters.items())
        if (self._event_unsaved or rebased or previous_time is None
                or self._buckets.hour_of(previous_time).astimezone(UTC)
                != self._buckets.hour_of(timestamp).astimezone(UTC)):
            self.persist()
        self._write_tail()

    def push_intensity(self, g_per_kwh: float) -> None:
        """A live carbon intensity (ValueError when refused), kept with the analytics state
        so that it holds across a restart for its two hours."""
        self.carbon.push(g_per_kwh)
        self._unsaved = True
        self.persist()

    def clear_intensity(self) -> None:
        """Back to the co2_g_per_kwh option now, not two hours after the last push."""
        self.carbon.clear()
        self._unsaved = True
        self.persist()

    def _write_tail(self) -> None:
        """Rewrite the tail: the counters as last recorded, energy and CO2."""
        self._tail_revision += 1
        try:
            self._tail.write(self._tail_revision, encode_tail(self._buckets, self._co2_buckets))
        except OSError as error:
            self._tail_trouble.failed(error)
            return
        self._tail_trouble.succeeded()

    def _record_co2(self, timestamp: datetime, previous: dict[str, float],
                    counters: dict[str, float]) -> None:
        """Each counter's energy since the previous reading, at the intensity now."""
        kg_per_kwh = self.carbon.g_per_kwh / 1000
        co2 = self._co2_buckets.last_counters
        self._co2_buckets.record(timestamp, {
            key: co2.get(key, 0.0) + kg_per_kwh * max(kwh - previous.get(key, kwh), 0.0)
            for key, kwh in counters.items() if math.isfinite(kwh)
        })

    def _log_event(self, key: str, anomaly: Anomaly) -> None:
        event = anomaly.as_dict() | {
            "id": self._next_id, "channel": None if key == TOTAL else int(key),
        }
        self._next_id += 1
        self._events.append(event)
        self._event_unsaved = True  # the readings cannot give it back: saved at once

    # ------------------------------------------------------------------ output

    def _state_parts(self) -> dict[str, Callable[[], Any]]:
        return {
            "rolling_power_w": self._rolling_power,
            "energy_periods": self._energy_periods,
            "energy_today_kwh": self._energy_today,
            "time_zone": lambda: str(self._tz),
            "co2_g_per_kwh": lambda: self.carbon.g_per_kwh,
            "co2_intensity_source": lambda: self.carbon.source,
            "co2_kg_today": self._co2_today,
            "recommendations": self.recommendations,
            "anomaly": self._anomaly_state,
            "anomalies": lambda: self.anomalies()[-STATE_EVENTS:],
        }

    def _rolling_power(self) -> float | None:
        value = self._rolling.value
        return None if value is None else round(value, 2)

    @property
    def energy_buckets(self) -> EnergyBuckets:
        """Energy per local hour, day and month of the main meter since its first reading."""
        return self._buckets

    def aggregates(self, period: Period) -> dict[str, Any]:
        """GET /api/v1/aggregates: energy per local hour, day or month."""
        return self._buckets.as_json(period)

    def _energy_periods(self) -> dict[str, Any]:
        """The current local hour, day and month, each null before a reading in it."""
        now = self._wall_clock()
        periods: dict[str, Any] = {}
        for period in ("hour", "day", "month"):
            bucket = self._buckets.current(period, now)
            if bucket is not None:
                bucket["energy_kwh"] = {name: round(kwh, 6)
                                        for name, kwh in bucket["energy_kwh"].items()}
            periods[period] = bucket
        return periods

    def _today(self) -> dict[str, float] | None:
        """kWh per counter key of the current local day (None before a reading in it)."""
        return self._day(self._buckets)

    def _day(self, buckets: EnergyBuckets) -> dict[str, float] | None:
        bucket = buckets.current("day", self._wall_clock())
        return None if bucket is None else dict(bucket["energy_kwh"])

    def _energy_today(self) -> float | None:
        today = self._today()
        return None if today is None or TOTAL not in today else round(today[TOTAL], 6)

    def _co2_today(self) -> float | None:
        today = self._day(self._co2_buckets)
        return None if today is None or TOTAL not in today else round(today[TOTAL], 4)

    def recommendations(self) -> list[dict[str, Any]]:
        """Today's circuits by share of the total, largest first, each with a sentence."""
        today = self._today()
        total = None if today is None else today.get(TOTAL)
        if today is None or total is None or total < MIN_RECOMMEND_KWH:
            return []
        co2_today = self._day(self._co2_buckets) or {}
        circuits = sorted(
            ((energy, channel) for channel in self._channels
             if channel.role == "circuit" and (energy := today.get(str(channel.id))) is not None
             and energy >= MIN_CIRCUIT_KWH),
            key=lambda pair: -pair[0],
        )
        items = []
        for rank, (energy, channel) in enumerate(circuits):
            share = 100.0 * energy / total
            co2 = co2_today.get(str(channel.id), 0.0)
            text = (f"{channel.name} used {_share(share)} of today's energy "
                    f"({_amount(energy, 'kWh', 'Wh')}, {_amount(co2, 'kg', 'g')} CO2)")
            if rank == 0 and share >= 25:
                text += ": the biggest share, where shifting or trimming use saves most"
            items.append({
                "channel": channel.id, "name": channel.name, "energy_kwh": round(energy, 3),
                "share_pct": round(share, 1), "co2_kg": round(co2, 3), "text": text,
            })
        return items

    def _anomaly_state(self) -> dict[str, Any]:
        series = []
        for key, detector in self._detectors.items():
            ready = self._ready[key]
            active = detector.active
            series.append({
                "series": detector.series, "channel": None if key == TOTAL else int(key),
                "ready": ready, "active": (active is not None) if ready else None,
                "reason": None if active is None else active.reason,
            })
        ready_series = [s for s in series if s["ready"]]
        reasons = [str(s["reason"]) for s in ready_series if s["active"]]
        # While learning, when the first series has its week: when a new install's alerts
        # start (unknown before the first reading).
        since = min(self._learning_since.values(), default=None)
        ready_at = None if ready_series or since is None else iso_utc(
            since.astimezone(UTC) + READY_AFTER)
        return {
            "ready": bool(ready_series),
            "ready_at": ready_at,
            "active": bool(reasons) if ready_series else None,
            "reason": "; ".join(reasons) or None,
            "last": self.anomalies()[-1] if self._events else None,  # with `active`
            "series": series,
        }

    def anomalies(self) -> list[dict[str, Any]]:
        """The most recent anomaly events, oldest first; `active` while in progress."""
        in_progress = {
            (a.series, a.started) for d in self._detectors.values() if (a := d.active)
        }
        return [
            event | {"active": (event["series"], _parse(event["started"])) in in_progress}
            for event in self._events
        ]

    async def export(
        self, start: datetime, end: datetime, fmt: ExportFormat, destination: Path
    ) -> int:
        return await self.history.export(start, end, fmt, destination)

    def csv_export(self, start: datetime, end: datetime) -> AsyncGenerator[bytes]:
        return self.history.csv_pieces(start, end)

    # ------------------------------------------------------------------ persistence

    def persist(self) -> None:
        if self._unsaved and self._file.write(self._payload()):
            self._unsaved = self._event_unsaved = False

    def _payload(self) -> dict[str, Any]:
        return {
            "buckets": self._buckets.to_dict(),
            "co2_buckets": self._co2_buckets.to_dict(),
            "events": list(self._events),
            "next_id": self._next_id,
            "last_time": None if self._last_time is None else self._last_time.isoformat(),
            "detectors": {key: d.live_state() for key, d in self._detectors.items()},
            "learning_since": {key: since.isoformat()
                               for key, since in self._learning_since.items()},
            "carbon": self.carbon.to_dict(),
        }

    def _restore(self) -> None:
        def parse(data: dict[str, Any]) -> tuple[EnergyBuckets, EnergyBuckets,
                                                 list[dict[str, Any]], int, datetime | None,
                                                 tuple[Any, Any, Any]]:
            # Files from before 0.3.1 have no CO2 buckets: those versions showed the energy
            # at the option's intensity, which is where the CO2 goes on from (it fell to 0).
            co2 = data.get("co2_buckets") or _scaled(data["buckets"],
                                                     self.carbon.g_per_kwh / 1000)
            return (EnergyBuckets.from_dict(data["buckets"], self._tz),
                    EnergyBuckets.from_dict(co2, self._tz),
                    [dict(event) for event in data["events"]], int(data["next_id"]),
                    None if data["last_time"] is None else _parse(data["last_time"]),
                    (data.get("detectors"), data.get("carbon"), data.get("learning_since")))

        stored = self._file.read(parse, "starting afresh")
        if stored is not None:
            self._resume(*stored)
        self._record_tail()
        # Up to 0.3.12 the whole state was rewritten in place at every reading, and loading
        # took it when newer: made durable once, it is no longer needed.
        if self._file.live.path.exists():
            self._unsaved = True
            self.persist()
            if not self._unsaved:
                self._file.live.path.unlink(missing_ok=True)

    def _record_tail(self) -> None:
        """The counters recorded after the state was saved, if any (a crash or kill)."""
        found = self._tail.read()
        if found is None:
            return
        try:
            tail = json.loads(found[1])
            moment = None if tail["time"] is None else _parse(tail["time"])
            energy = {str(k): float(v) for k, v in tail["energy"].items()}
            co2 = {str(k): float(v) for k, v in tail["co2"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            _LOGGER.error("Ignoring %s (%s): energy since the last save is counted from the "
                          "next reading on", self._tail.path, error)
            return
        last = self._buckets.last_time
        if moment is not None and (last is None or moment > last):
            self._buckets.record(moment, energy)
            self._co2_buckets.record(moment, co2)
            self._last_time = max(self._last_time or moment, moment)

    def _resume(self, buckets: EnergyBuckets, co2_buckets: EnergyBuckets,
                events: list[dict[str, Any]], next_id: int, last_time: datetime | None,
                extras: tuple[Any, Any, Any]) -> None:
        streams, carbon, learning_since = extras
        self.carbon.restore(carbon)
        self._buckets, self._co2_buckets = buckets, co2_buckets
        self._next_id, self._last_time = next_id, last_time
        self._events.extend(events)
        if self._learn_afresh:
            return
        # Files from before 0.3.7 have no detector streams: they start from empty windows.
        for key, stream in (streams if isinstance(streams, dict) else {}).items():
            detector = self._detectors.get(key)
            if detector is None:
                continue  # a channel no longer configured
            try:
                detector.resume(stream)
            except ValueError as error:
                _LOGGER.warning("Anomaly detector %s starts from empty windows: %s",
                                detector.series, error)
        # Since 0.3.22: a history kept for less than a week (history_retention_days) dated
        # the learning from its first minute again at every restart, days without alerts.
        for key, text in (learning_since if isinstance(learning_since, dict) else {}).items():
            if key in self._detectors and isinstance(text, str):
                with contextlib.suppress(ValueError):
                    self._learning_since[key] = _parse(text)


def _scaled(buckets: dict[str, Any], factor: float) -> dict[str, Any]:
    """An EnergyBuckets.to_dict state with every counter and bucket times `factor`."""
    return {**buckets,
            "last_counters": {k: v * factor for k, v in buckets["last_counters"].items()},
            "buckets": {period: {key: {**bucket, "kwh": {k: v * factor
                                                         for k, v in bucket["kwh"].items()}}
                                 for key, bucket in by_key.items()}
                        for period, by_key in buckets["buckets"].items()}}


def encode_tail(buckets: EnergyBuckets, co2_buckets: EnergyBuckets) -> str:
    """The tail: the energy and CO2 counters last recorded, and when."""
    last_time = buckets.last_time
    return json.dumps({"time": None if last_time is None else last_time.isoformat(),
                       "energy": buckets.last_counters, "co2": co2_buckets.last_counters},
                      separators=(",", ":"))


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or not math.isfinite(moment.timestamp()):
        raise ValueError(f"{text!r} is not an aware time")
    return moment


def _share(percent: float) -> str:
    return "less than 1 %" if percent < 1 else f"{percent:.0f} %"


def _amount(value: float, unit: str, small_unit: str) -> str:
    """0.25 kWh, or 4 Wh below 0.1 kWh (where two decimals of kWh would read 0.00)."""
    return f"{value:.2f} {unit}" if value >= 0.1 else f"{value * 1000:.0f} {small_unit}"

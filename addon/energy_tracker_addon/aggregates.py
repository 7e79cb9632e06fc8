"""Aggregates of the live readings: rolling mean of the last N powers, and energy per local
hour, day and month.

Energy buckets are fed the meter's cumulative counters (kWh, never decreasing), not powers,
so they agree with `/api/v1/energy` to the last digit: each increase between two readings is
spread over the local hours it spans in proportion to time, then summed into days and months.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LOGGER = logging.getLogger(__name__)

type Period = Literal["hour", "day", "month"]
PERIODS: Final[tuple[Period, ...]] = ("hour", "day", "month")
FORMAT_VERSION: Final = 1
ONE_HOUR: Final = timedelta(hours=1)
QUARTER_S: Final = 900  # every real UTC offset is a multiple of 15 minutes


class RollingMean:
    """Mean of the last `size` values added (fewer while it fills)."""

    def __init__(self, size: int = 5) -> None:
        if size < 1:
            raise ValueError(f"rolling window must hold at least 1 reading, not {size}")
        self._values: deque[float] = deque(maxlen=size)

    @property
    def size(self) -> int:
        return self._values.maxlen or 0

    def add(self, value: float) -> None:
        """Add a reading; a non-finite value raises ValueError and leaves the window as it was."""
        if not math.isfinite(value):
            raise ValueError(f"rolling mean got a non-finite reading {value!r}")
        self._values.append(value)

    def clear(self) -> None:
        """Forget every reading (e.g. when the meter goes stale)."""
        self._values.clear()

    @property
    def value(self) -> float | None:
        """None until the first reading; fsum keeps a long run free of rounding drift."""
        if not self._values:
            return None
        return math.fsum(self._values) / len(self._values)


@dataclass(slots=True)
class _Bucket:
    start: datetime  # local, aware
    kwh: dict[str, float] = field(default_factory=dict)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _aware(text: str) -> datetime:
    """A saved time; one without a zone would break every later comparison."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"saved time {text!r} has no time zone")
    return moment


class EnergyBuckets:
    """Energy per local hour, day and month for each counter key ("total", channel ids...).

    `record(timestamp, counters)` takes the cumulative counters of one reading. Only the
    newest `keep` buckets of each period are held (bounded memory); the history store and
    Home Assistant's long-term statistics hold the rest.
    """

    def __init__(
        self,
        tz: tzinfo,
        keep: Mapping[Period, int] | None = None,
    ) -> None:
        self._tz = tz
        self._keep: dict[Period, int] = {"hour": 48, "day": 62, "month": 24}
        self._keep.update(keep or {})
        self._buckets: dict[Period, dict[str, _Bucket]] = {period: {} for period in PERIODS}
        self._last_time: datetime | None = None
        self._last_counters: dict[str, float] = {}

    # ------------------------------------------------------------------ feeding

    @property
    def last_counters(self) -> dict[str, float]:
        """The counters of the last recorded reading (a copy)."""
        return dict(self._last_counters)

    @property
    def last_time(self) -> datetime | None:
        """When the last reading was recorded (UTC)."""
        return self._last_time

    def hour_of(self, moment: datetime) -> datetime:
        """The local hour bucket `moment` falls in (its start)."""
        return self._hour_start(moment)

    def record(self, timestamp: datetime, counters: Mapping[str, float]) -> None:
        """Attribute the counters' increase since the previous reading to its buckets.

        A counter that went down or is not finite is skipped with a log line; the next good
        reading starts a new baseline for it. A reading older than the previous one (the
        clock was set back, e.g. by NTP after running ahead) is logged and counted in its
        own hour, and the clock goes on from it: waiting for the old time to come back would
        freeze the totals for as long as the clock was ahead.
        """
        if timestamp.tzinfo is None:
            raise ValueError("EnergyBuckets.record needs an aware timestamp")
        now = timestamp.astimezone(UTC)
        previous_time = self._last_time
        if previous_time is not None and now < previous_time:
            _LOGGER.warning(
                "Energy aggregates: reading at %s is older than the previous one (%s): the "
                "clock went back; counting on from this reading", _iso(now), _iso(previous_time),
            )
            previous_time = now
        increases: dict[str, float] = {}
        for key, value in counters.items():
            if not math.isfinite(value):
                _LOGGER.warning("Energy aggregates: counter %s is %r; skipped", key, value)
                self._last_counters.pop(key, None)
                continue
            before = self._last_counters.get(key)
            self._last_counters[key] = value
            if before is None:
                continue
            if value < before:
                _LOGGER.warning(
                    "Energy aggregates: counter %s went down from %.6f to %.6f kWh; "
                    "counting again from the new value", key, before, value,
                )
                continue
            increases[key] = value - before  # zero too: the bucket then shows 0, not nothing
        self._last_time = now
        if previous_time is not None and increases:
            self._spread(previous_time, now, increases)

    def _spread(self, begin: datetime, end: datetime, increases: dict[str, float]) -> None:
        span = (end - begin).total_seconds()
        if span <= 0:  # same instant: the whole increase belongs to that hour
            self._add(self._hour_start(end), 1.0, increases)
            return
        cursor = begin
        while cursor < end:
            hour_start = self._hour_start(cursor)
            boundary = hour_start.astimezone(UTC) + ONE_HOUR
            if boundary <= cursor:
                # A fold of less than an hour (Lord Howe Island's 30 minutes) puts the local
                # hour's start over an hour back: go on to the next UTC quarter hour
                boundary = datetime.fromtimestamp(
                    (math.floor(cursor.timestamp() / QUARTER_S) + 1) * QUARTER_S, UTC)
            piece_end = min(end, boundary)
            self._add(hour_start, (piece_end - cursor).total_seconds() / span, increases)
            cursor = piece_end

    def _hour_start(self, moment: datetime) -> datetime:
        """Start of the local hour holding `moment` (on the hour in local time)."""
        local = moment.astimezone(self._tz)
        return local.replace(minute=0, second=0, microsecond=0)

    def _add(self, hour_start: datetime, share: float, increases: dict[str, float]) -> None:
        keys: dict[Period, str] = {
            "hour": _iso(hour_start),
            "day": hour_start.date().isoformat(),
            "month": hour_start.strftime("%Y-%m"),
        }
        for period, key in keys.items():
            buckets = self._buckets[period]
            bucket = buckets.get(key)
            if bucket is None:
                bucket = buckets[key] = _Bucket(self._period_start(period, hour_start))
                self._trim(period)
            for name, increase in increases.items():
                bucket.kwh[name] = bucket.kwh.get(name, 0.0) + increase * share

    def _period_start(self, period: Period, hour_start: datetime) -> datetime:
        if period == "hour":
            return hour_start
        day = hour_start.date() if period == "day" else hour_start.date().replace(day=1)
        naive = datetime(day.year, day.month, day.day)
        # Midnight exists in every zone whose DST jumps happen at night (all real ones).
        return naive.replace(tzinfo=self._tz)

    def _trim(self, period: Period) -> None:
        buckets = self._buckets[period]
        excess = len(buckets) - self._keep[period]
        if excess > 0:
            for key in self._oldest_first(period)[:excess]:
                del buckets[key]

    def _oldest_first(self, period: Period) -> list[str]:
        # By start instant: at a DST fall-back the keys' text order is not time order.
        buckets = self._buckets[period]
        return sorted(buckets, key=lambda key: buckets[key].start)

    # ------------------------------------------------------------------ reading

    def energy(self, period: Period) -> dict[str, dict[str, float]]:
        """{bucket key: {counter key: kWh}}, oldest first; keys like `2026-11-24T10:00:00+01:00`,
        `2026-11-24`, `2026-11`."""
        buckets = self._buckets[period]
        return {key: dict(buckets[key].kwh) for key in self._oldest_first(period)}

    def current(self, period: Period, now: datetime) -> dict[str, Any] | None:
        """The bucket of the local hour, day or month holding `now` (a wall-clock time, not
        the last reading's: after midnight without readings today has none), as in
        `as_json`; None when it has none. A newer bucket than that one (the clock went
        back) stays the current one: a total must not jump back to an earlier period's."""
        buckets = self._buckets[period]
        if not buckets:
            return None
        # `now`'s own bucket, if it has one, is the newest: only a clock set back makes one
        # newer still. Instants in UTC: the two 02:00 of an autumn night compare equal as
        # local times.
        newest = max(buckets.values(), key=lambda b: b.start.astimezone(UTC))
        start = self._period_start(period, self._hour_start(now))
        if newest.start.astimezone(UTC) < start.astimezone(UTC):
            return None
        return {"start": _iso(newest.start), "energy_kwh": dict(newest.kwh)}

    def as_json(self, period: Period) -> dict[str, Any]:
        """JSON-ready answer for an API route: buckets with local start, kWh per key."""
        return {
            "period": period,
            "time_zone": str(self._tz),
            "buckets": [
                {"start": _iso(bucket.start),
                 "energy_kwh": {name: round(kwh, 6) for name, kwh in bucket.kwh.items()}}
                for bucket in map(self._buckets[period].__getitem__, self._oldest_first(period))
            ],
        }

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, restorable with `from_dict`."""
        return {
            "version": FORMAT_VERSION,
            "time_zone": str(self._tz),
            "last_time": None if self._last_time is None else self._last_time.isoformat(),
            "last_counters": dict(self._last_counters),
            "buckets": {
                period: {key: {"start": bucket.start.isoformat(), "kwh": dict(bucket.kwh)}
                         for key, bucket in self._buckets[period].items()}
                for period in PERIODS
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], tz: tzinfo, keep: Mapping[Period, int] | None = None
    ) -> EnergyBuckets:
        """Restore a `to_dict` state; malformed data raises ValueError (start afresh then).

        Saved in another time zone (Home Assistant's was corrected): the hours are kept
        under their new local names, where they still begin on a local hour; days and
        months, whose bounds were the old zone's midnights, start again (logged).
        """
        restored = cls(tz, keep)
        try:
            if data["version"] != FORMAT_VERSION:
                raise ValueError(f"unknown aggregates format version {data['version']!r}")
            last_time = data["last_time"]
            restored._last_time = None if last_time is None else _aware(last_time)
            restored._last_counters = {
                str(key): float(value) for key, value in data["last_counters"].items()
            }
            saved_zone = data.get("time_zone", str(tz))  # not kept before 0.3.7
            # A zone renamed to one with the same clock (Europe/Paris to Europe/Brussels,
            # UTC to Etc/UTC) has the same midnights: its day and month are kept.
            moved = saved_zone != str(tz) and not _same_clock(
                saved_zone, tz, data["buckets"], restored._last_time)
            periods: tuple[Period, ...] = ("hour",) if moved else PERIODS
            if moved:
                _LOGGER.warning("Energy aggregates were kept in time zone %s, now %s: hours "
                                "that are local hours here too are kept, day and month "
                                "totals start again", saved_zone, tz)
            for period in periods:
                for key, raw in data["buckets"][period].items():
                    start = _aware(raw["start"]).astimezone(tz)
                    kwh = {str(name): float(value) for name, value in raw["kwh"].items()}
                    if moved:  # hours only (periods above)
                        if start != restored._hour_start(start):
                            continue  # not a local hour here (a half-hour zone)
                        key = _iso(start)
                    restored._buckets[period][str(key)] = _Bucket(start, kwh)
                restored._trim(period)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed aggregates state ({error!r})") from None
        return restored


def _same_clock(saved_zone: str, tz: tzinfo, buckets: Mapping[str, Any],
                last_time: datetime | None) -> bool:
    """Whether `saved_zone` shows the time `tz` does at every quarter hour (UTC; zones
    change offset on quarter hours) from the oldest bucket kept to a day after `last_time`."""
    try:
        saved = UTC if saved_zone == str(UTC) else ZoneInfo(saved_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    starts = [_aware(raw["start"]) for by_key in buckets.values() for raw in by_key.values()]
    end = (last_time or datetime.now(UTC)) + timedelta(days=1)
    moment = min(starts, default=end - timedelta(days=2)).astimezone(UTC)
    moment = moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)
    while moment < end:
        if moment.astimezone(saved).utcoffset() != moment.astimezone(tz).utcoffset():
            return False
        moment += timedelta(minutes=15)
    return True


def local_zone(name: str | None = None) -> tzinfo:
    """The zone of local buckets: `name`, else $TZ (Supervisor sets it in add-ons), else UTC.

    An unknown name logs an error and falls back to UTC rather than stopping the service.
    """
    name = name or os.environ.get("TZ")
    if not name:
        return UTC
    try:
        return ZoneInfo(name.removeprefix(":"))
    except (ZoneInfoNotFoundError, ValueError):
        _LOGGER.error("Unknown time zone %r: energy per hour/day/month is in UTC", name)
        return UTC

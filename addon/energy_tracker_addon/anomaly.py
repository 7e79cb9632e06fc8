"""Anomaly detection on one power series against a robust time-of-week baseline.

The detector works on one-minute means (readings arrive every second or every minute). For
every time-of-week slot (168 hourly slots by default) it keeps the last `weeks` of three
features and their median and MAD:

* the minute mean itself               -> "spike": one minute far above the usual between
                                          two that are not (judged a minute late);
* the lowest minute of the last        -> "high": the base load above the usual (a heater
  `base_window_min` (the base load)         or pump left on raises it; cooking, kettles
                                          and other bursts do not);
* log of the mean of the last          -> "low": far below the usual, e.g. a dropped CT
  `low_window_min` minutes                 clamp reading ~0 W (log, because a house's
                                          usual consumption spans two orders of magnitude).

Before learning, gaps of up to `max_gap_min` minutes are interpolated (longer ones break the
windows) and minutes the detector itself would flag are rejected, so faults never become
"usual". A live minute is learned unless an anomaly is in progress; after `relearn_after_h`
of one continuous anomaly the detector learns anyway, so a lasting change in the house
becomes the new usual instead of an alarm that never ends.
"""

from __future__ import annotations

import base64
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

_LOGGER = logging.getLogger(__name__)

type AnomalyKind = Literal["high", "low", "spike"]
type FloatArray = npt.NDArray[np.float64]

FORMAT_VERSION: Final = 1
FEATURES: Final[tuple[AnomalyKind, ...]] = ("spike", "high", "low")
MAD_TO_SIGMA: Final = 1.4826  # MAD of a normal distribution times this is its sigma
LOW_OFFSET_W: Final = 20.0  # log(power + this): finite at 0 W, insensitive to a few watts
WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                   "Sunday")
MINUTES_PER_WEEK: Final = 7 * 24 * 60
EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Defaults tuned on UCI data before 2010 with injected faults (never on 2010)."""

    slot_minutes: int = 60
    weeks: int = 8
    base_window_min: int = 180
    low_window_min: int = 15
    k_spike: float = 4.0
    k_high: float = 5.0
    k_low: float = 3.0
    min_spike_w: float = 6500.0  # above the usual minute; an oven and a kettle stay below
    min_high_w: float = 1700.0  # base load above the usual one
    min_low_ratio: float = 10.0  # "low": the window below a tenth of the usual
    max_gap_min: int = 5
    clear_after_min: int = 15
    relearn_after_h: float = 48.0
    min_samples: int = 60  # a slot with fewer learned minutes is not judged
    # A circuit reads ~0 W whenever its appliances are off: a thermostat's water heater,
    # on for most of a slot's past weeks, would be "far below the usual" several times a
    # day (UCI 2009: 3.9 false alerts a day). Only the total is judged "low".
    judge_low: bool = True

    def __post_init__(self) -> None:
        if self.slot_minutes <= 0 or (24 * 60) % self.slot_minutes:
            raise ValueError(f"slot_minutes must divide a day, not {self.slot_minutes}")
        if min(self.weeks, self.base_window_min, self.low_window_min, self.clear_after_min) < 1:
            raise ValueError("weeks, windows and clear_after_min must be at least 1")

    @property
    def slots(self) -> int:
        return MINUTES_PER_WEEK // self.slot_minutes


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly episode, as announced when it starts."""

    kind: AnomalyKind
    series: str
    started: datetime
    power_w: float  # the feature that fired: minute or window mean
    usual_w: float  # the slot's median of that feature
    slot: str  # "Tuesday 19:00"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready payload for the API / a Home Assistant event."""
        data = asdict(self)
        data["started"] = self.started.astimezone(UTC).isoformat().replace("+00:00", "Z")
        data["power_w"] = round(self.power_w, 1)
        data["usual_w"] = round(self.usual_w, 1)
        return data


@dataclass(slots=True)
class _SlotStats:
    median: FloatArray  # per feature
    scale: FloatArray  # 1.4826 * MAD per feature
    samples: int


def _kw(watts: float) -> str:
    return f"{watts / 1000:.1f} kW"


class AnomalyDetector:
    """Time-of-week baseline of one power series; `check` each reading as it arrives."""

    def __init__(
        self, tz: tzinfo, series: str = "total", settings: DetectorSettings | None = None
    ) -> None:
        self.tz = tz
        self.series = series
        self.settings = settings or DetectorSettings()
        s = self.settings
        self._capacity = s.weeks * s.slot_minutes
        # samples[slot, i, feature]: a ring per slot, NaN where never written
        self._samples = np.full((s.slots, self._capacity, len(FEATURES)), np.nan, np.float32)
        self._next = np.zeros(s.slots, np.int64)
        self._stats: dict[int, _SlotStats] = {}  # of the slots the stream is in
        # Live stream state
        self._minute: int | None = None  # epoch minute being accumulated
        self._sum = 0.0
        self._count = 0
        self._recent: deque[float] = deque(maxlen=3)  # the last minutes, for spikes
        self._last_closed = 0
        self._window: deque[float] = deque(maxlen=s.base_window_min)
        self._active: Anomaly | None = None
        self._last_flagged = 0
        # Minutes judged (their feature known) without a flag since the last one: after a
        # gap the windows refill for up to 90 minutes, and those unjudged minutes ended a
        # stuck load's episode, announced again as new once they were full.
        self._calm_min = 0
        self._offsets: dict[int, int] = {}  # epoch hour -> UTC offset in minutes

    # ------------------------------------------------------------------ public

    @property
    def active(self) -> Anomaly | None:
        """The anomaly in progress (for a binary sensor), None when all is usual."""
        return self._active

    def fit(self, epoch_s: npt.ArrayLike, power_w: npt.ArrayLike) -> None:
        """Learn from history: timestamps (UTC epoch seconds) and powers; NaN = missing.

        Replaces what was learned before. Keeps the newest `weeks` of each slot.
        """
        times = np.asarray(epoch_s, dtype=np.float64)
        powers = np.asarray(power_w, dtype=np.float64)
        if times.shape != powers.shape or times.ndim != 1:
            raise ValueError("fit needs two 1-D arrays of equal length")
        good = np.isfinite(times) & np.isfinite(powers)
        if not good.any():
            raise ValueError("fit got no finite readings")
        minutes = np.floor(times[good] / 60).astype(np.int64)
        first = int(minutes.min())
        index = minutes - first
        counts = np.bincount(index)
        with np.errstate(invalid="ignore"):
            grid = np.bincount(index, weights=powers[good]) / counts
        grid = self._interpolate_short_gaps(grid)
        features = self._features(grid)
        slots = self._slots(np.arange(first, first + len(grid)))
        self._samples.fill(np.nan)
        self._next.fill(0)
        self._stats.clear()
        for slot in range(self.settings.slots):
            rows = features[slots == slot]
            rows = rows[np.isfinite(rows).all(axis=1)]
            # Outlier rejection: drop what this slot's own baseline would flag.
            if len(rows):
                stats = _robust(rows)
                rows = rows[~self._flags(rows, stats).any(axis=1)]
            rows = rows[-self._capacity:]
            self._samples[slot, : len(rows)] = rows
            self._next[slot] = len(rows) % self._capacity

    def learned_minutes(self) -> int:
        """Minutes of usual behaviour held, over every slot."""
        return int(np.isfinite(self._samples[..., 0]).sum())

    def adopt_learning(self, other: AnomalyDetector) -> None:
        """Take what `other` learned (fitted off the event loop, say), keeping this one's
        live windows and any anomaly in progress."""
        if other.settings != self.settings:
            raise ValueError("adopt_learning needs a detector with the same settings")
        self._samples = other._samples.copy()
        self._next = other._next.copy()
        self._stats.clear()

    def check(self, timestamp: datetime, power_w: float) -> Anomaly | None:
        """Feed one reading. Returns an Anomaly when one starts, else None.

        Minutes are judged when they end (on the first reading of a later minute).
        """
        if timestamp.tzinfo is None:
            raise ValueError("AnomalyDetector.check needs an aware timestamp")
        if not math.isfinite(power_w):
            _LOGGER.debug("Anomaly detector %s: ignoring reading %r", self.series, power_w)
            return None
        minute = math.floor(timestamp.timestamp() / 60)
        if self._minute is None:
            self._minute = minute
        if minute < self._minute - 1:
            # The clock set back (NTP after running ahead): waiting for the old time to come
            # back left the detector deaf for as long. Its windows restart here, as after a
            # long gap; what it learned and an anomaly in progress stay.
            _LOGGER.info("Anomaly detector %s: the clock went back %d minutes: windows restart",
                         self.series, self._minute - minute)
            self._minute, self._sum, self._count = minute, 0.0, 0
            self._window.clear()
            self._recent.clear()
        elif minute < self._minute:
            _LOGGER.debug("Anomaly detector %s: reading from the past ignored", self.series)
            return None
        started: Anomaly | None = None
        if minute > self._minute:
            started = self._close_minute(minute)
        self._sum += power_w
        self._count += 1
        return started

    # ------------------------------------------------------------------ live internals

    def _close_minute(self, new_minute: int) -> Anomaly | None:
        assert self._minute is not None
        value = self._sum / self._count
        closed = self._minute
        self._minute, self._sum, self._count = new_minute, 0.0, 0
        started: Anomaly | None = None
        previous = self._recent[-1] if self._recent else None
        gap = closed - self._last_closed if previous is not None else 1
        if previous is not None and 1 < gap <= self.settings.max_gap_min + 1:
            for step in range(1, gap):  # interpolate the short gap before this minute
                filled = previous + (value - previous) * step / gap
                started = self._judge(closed - gap + step, filled) or started
        elif gap > 1:  # a long gap: windows restart
            self._window.clear()
            self._recent.clear()
        started = self._judge(closed, value) or started
        self._last_closed = closed
        return started

    def _judge(self, minute: int, value: float) -> Anomaly | None:
        s = self.settings
        self._window.append(value)
        self._recent.append(value)
        window = np.fromiter(self._window, np.float64)
        high = float(window.min()) if len(window) >= s.base_window_min // 2 else math.nan
        low_part = window[-s.low_window_min:]
        low = (math.log(float(low_part.mean()) + LOW_OFFSET_W)
               if len(low_part) >= s.low_window_min // 2 else math.nan)
        features = np.array([value, high, low])
        slot = self._slot_of(minute)
        stats = self._slot_stats(slot)
        fired: tuple[AnomalyKind, int, int, FloatArray, _SlotStats] | None = None
        if stats.samples >= s.min_samples:
            flags = self._flags(features[np.newaxis, :], stats)[0]
            if flags[1]:
                fired = ("high", minute, slot, features, stats)
            elif flags[2]:
                fired = ("low", minute, slot, features, stats)
        if fired is None and len(self._recent) == 3:
            fired = self._isolated_spike(minute - 1)
        started: Anomaly | None = None
        if fired is not None:
            self._last_flagged, self._calm_min = minute, 0
            # Another kind while one is in progress (a stuck load, then the clamp reading
            # 0 W) is news of its own, not more of the first; a spike (one minute) inside
            # a lasting high or low does not replace it.
            if self._active is None or (fired[0] != self._active.kind
                                        and fired[0] != "spike"):
                started = self._active = self._describe(*fired)
        elif self._active is not None:
            if stats.samples >= s.min_samples and math.isfinite(
                    features[FEATURES.index(self._active.kind)]):
                self._calm_min += 1
            if self._calm_min >= s.clear_after_min:
                _LOGGER.info("Anomaly over for %s: %s", self.series, self._active.reason)
                self._active = None
        self._learn(slot, minute, features)
        return started

    def _isolated_spike(
        self, minute: int
    ) -> tuple[AnomalyKind, int, int, FloatArray, _SlotStats] | None:
        """A spike is one minute far above the usual between two that are not: judged one
        minute late, so a kettle or an oven that stays on is never called a spike."""
        slot = self._slot_of(minute)
        stats = self._slot_stats(slot)
        if stats.samples < self.settings.min_samples:
            return None
        before, value, after = self._recent
        excess = np.array([before, value, after]) - stats.median[0]
        over = excess > max(self.settings.k_spike * stats.scale[0], self.settings.min_spike_w)
        if over[1] and not over[0] and not over[2]:
            return ("spike", minute, slot, np.array([value, math.nan, math.nan]), stats)
        return None

    def _learn(self, slot: int, minute: int, features: FloatArray) -> None:
        active = self._active
        if active is not None:
            lasted = minute - active.started.timestamp() / 60
            if lasted < self.settings.relearn_after_h * 60:
                return
        if not np.isfinite(features).all():
            return
        position = self._next[slot]
        self._samples[slot, position] = features
        self._next[slot] = (position + 1) % self._capacity

    def _slot_stats(self, slot: int) -> _SlotStats:
        # Computed when the stream enters a slot and fixed while in it; the previous slot's
        # stay too, for the spike judged one minute late.
        stats = self._stats.get(slot)
        if stats is None:
            rows = self._samples[slot]
            stats = _robust(rows[np.isfinite(rows).all(axis=1)])
            if len(self._stats) > 1:
                del self._stats[next(iter(self._stats))]
            self._stats[slot] = stats
        return stats

    def _flags(self, features: FloatArray, stats: _SlotStats) -> npt.NDArray[np.bool_]:
        """Per row and feature: beyond the usual by k * scale and the absolute minimum."""
        s = self.settings
        spike, high, low = features[:, 0], features[:, 1], features[:, 2]
        median, scale = stats.median, stats.scale
        with np.errstate(invalid="ignore"):
            return np.column_stack([
                spike - median[0] > np.maximum(s.k_spike * scale[0], s.min_spike_w),
                high - median[1] > np.maximum(s.k_high * scale[1], s.min_high_w),
                (median[2] - low > np.maximum(s.k_low * scale[2], math.log(s.min_low_ratio)))
                & s.judge_low,
            ])

    def _describe(
        self, kind: AnomalyKind, minute: int, slot: int, features: FloatArray, stats: _SlotStats
    ) -> Anomaly:
        column = FEATURES.index(kind)
        if kind == "low":
            power = max(math.exp(features[2]) - LOW_OFFSET_W, 0.0)
            usual = math.exp(stats.median[2]) - LOW_OFFSET_W
        else:
            power, usual = float(features[column]), float(stats.median[column])
        slot_name = self._slot_name(slot)
        prefix = "" if self.series == "total" else f"{self.series}: "
        if kind == "spike":
            text = f"{_kw(power)} spike, {_kw(power - usual)} above the usual for {slot_name}"
        elif kind == "high":
            text = f"base load {_kw(power - usual)} above the usual for {slot_name}"
        else:
            text = f"{_kw(usual - power)} below the usual for {slot_name} (now {_kw(power)})"
        started = datetime.fromtimestamp(minute * 60, UTC)
        anomaly = Anomaly(kind, self.series, started, power, usual, slot_name, prefix + text)
        _LOGGER.warning("Anomaly on %s: %s", self.series, text)
        return anomaly

    def _slot_name(self, slot: int) -> str:
        per_day = 24 * 60 // self.settings.slot_minutes
        day, part = divmod(slot, per_day)
        hours, minutes = divmod(part * self.settings.slot_minutes, 60)
        return f"{WEEKDAYS[day]} {hours:02d}:{minutes:02d}"

    # ------------------------------------------------------------------ vector helpers

    def _slot_of(self, epoch_minute: int) -> int:
        local = epoch_minute + self._offset(epoch_minute // 60)
        minute_of_week = (local + EPOCH_WEEKDAY * 24 * 60) % MINUTES_PER_WEEK
        return minute_of_week // self.settings.slot_minutes

    def _slots(self, epoch_minutes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Local time-of-week slot of each UTC epoch minute (offsets looked up per hour)."""
        hours = epoch_minutes // 60
        unique, inverse = np.unique(hours, return_inverse=True)
        offsets = np.array([self._offset(int(hour)) for hour in unique], np.int64)
        local = epoch_minutes + offsets[inverse]
        minute_of_week = (local + EPOCH_WEEKDAY * 24 * 60) % MINUTES_PER_WEEK
        return minute_of_week // self.settings.slot_minutes

    def _offset(self, epoch_hour: int) -> int:
        offset = self._offsets.get(epoch_hour)
        if offset is None:
            delta = datetime.fromtimestamp(epoch_hour * 3600, self.tz).utcoffset()
            offset = int((delta or timedelta()).total_seconds() // 60)
            if len(self._offsets) > 10_000:
                self._offsets.clear()
            self._offsets[epoch_hour] = offset
        return offset

    def _interpolate_short_gaps(self, grid: FloatArray) -> FloatArray:
        missing = ~np.isfinite(grid)
        if not missing.any() or missing.all():
            return grid
        positions = np.arange(len(grid))
        filled: FloatArray = np.interp(positions, positions[~missing], grid[~missing])
        # Length of the run of missing minutes each missing minute belongs to
        starts = np.flatnonzero(np.diff(np.r_[0, missing.astype(np.int8)]) == 1)
        ends = np.flatnonzero(np.diff(np.r_[missing.astype(np.int8), 0]) == -1) + 1
        run_length = np.zeros(len(grid), np.int64)
        for start, end in zip(starts, ends, strict=True):
            inside = start > 0 and end < len(grid)  # no extrapolation at the edges
            run_length[start:end] = end - start if inside else len(grid)
        too_long = missing & (run_length > self.settings.max_gap_min)
        filled[too_long] = np.nan
        return filled

    def _features(self, grid: FloatArray) -> FloatArray:
        """Columns spike/high/low for each minute, NaN where a window is too incomplete."""
        s = self.settings
        return np.column_stack([
            grid,
            _trailing_min(grid, s.base_window_min),
            np.log(_trailing_mean(grid, s.low_window_min) + LOW_OFFSET_W),
        ])

    # ------------------------------------------------------------------ persistence

    def live_state(self) -> dict[str, Any]:
        """The stream's windows and the episode in progress, JSON-ready (a few kB): a
        restart within `max_gap_min` carries on where it stopped, so an episode still
        going is not announced a second time."""
        return {
            "minute": self._minute, "sum": self._sum, "count": self._count,
            "recent": list(self._recent), "last_closed": self._last_closed,
            "window": list(self._window), "last_flagged": self._last_flagged,
            "calm_min": self._calm_min,
            "active": None if self._active is None else self._active.as_dict(),
        }

    def resume(self, state: Mapping[str, Any]) -> None:
        """Take back a `live_state`; malformed data raises ValueError and changes nothing."""
        try:
            minute = state["minute"]
            active = state["active"]
            episode = None if active is None else Anomaly(
                kind=active["kind"], series=str(active["series"]),
                started=datetime.fromisoformat(active["started"]),
                power_w=float(active["power_w"]), usual_w=float(active["usual_w"]),
                slot=str(active["slot"]), reason=str(active["reason"]))
            if episode is not None and (episode.kind not in FEATURES  # FEATURES names each kind
                                        or episode.started.tzinfo is None):
                raise ValueError(f"not an anomaly: {active!r}")
            resumed = (None if minute is None else int(minute), float(state["sum"]),
                       int(state["count"]), [float(v) for v in state["recent"]],
                       int(state["last_closed"]), [float(v) for v in state["window"]],
                       int(state["last_flagged"]), int(state.get("calm_min", 0)))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed anomaly stream state ({error!r})") from None
        (self._minute, self._sum, self._count, recent, self._last_closed, window,
         self._last_flagged, self._calm_min) = resumed
        self._recent.clear()
        self._recent.extend(recent)
        self._window.clear()
        self._window.extend(window)
        self._active = episode

    def to_dict(self) -> dict[str, Any]:
        """What was learned, JSON-ready (about 1 MB at the defaults); the live windows and
        any anomaly in progress are `live_state`'s, small enough for every reading."""
        return {
            "version": FORMAT_VERSION,
            "series": self.series,
            "settings": asdict(self.settings),
            "next": self._next.tolist(),
            "samples": base64.b64encode(self._samples.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], tz: tzinfo) -> AnomalyDetector:
        """Restore a `to_dict` state; malformed data raises ValueError (learn afresh then)."""
        try:
            if data["version"] != FORMAT_VERSION:
                raise ValueError(f"unknown anomaly state version {data['version']!r}")
            detector = cls(tz, str(data["series"]), DetectorSettings(**data["settings"]))
            raw = base64.b64decode(data["samples"], validate=True)
            samples = np.frombuffer(raw, np.float32).reshape(detector._samples.shape)
            next_ = np.asarray(data["next"], np.int64).reshape(detector._next.shape)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(f"malformed anomaly detector state ({error})") from None
        detector._samples[...] = samples
        detector._next[...] = next_ % detector._capacity
        return detector


def _trailing_mean(grid: FloatArray, window: int) -> FloatArray:
    """Mean of the last `window` minutes at each minute, over the finite ones; NaN when
    fewer than half are finite (as live, where a long gap restarts the window)."""
    finite = np.isfinite(grid)
    sums = np.cumsum(np.where(finite, grid, 0.0))
    counts = np.cumsum(finite)
    sums[window:] = sums[window:] - sums[:-window].copy()
    counts[window:] = counts[window:] - counts[:-window].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: FloatArray = sums / counts
    mean[counts < max(window // 2, 1)] = np.nan
    return mean


def _trailing_min(grid: FloatArray, window: int) -> FloatArray:
    """Lowest minute of the last `window` at each minute; NaN when fewer than half are finite."""
    padded = np.r_[np.full(window - 1, np.nan), grid]
    views = np.lib.stride_tricks.sliding_window_view(padded, window)
    counts = np.isfinite(views).sum(axis=1)
    with np.errstate(invalid="ignore"):
        lowest: FloatArray = np.fmin.reduce(views, axis=1)
    lowest[counts < max(window // 2, 1)] = np.nan
    return lowest


def _robust(rows: FloatArray | npt.NDArray[np.float32]) -> _SlotStats:
    if len(rows) == 0:
        nan = np.full(len(FEATURES), np.nan)
        return _SlotStats(nan, nan, 0)
    median = np.median(rows, axis=0).astype(np.float64)
    mad = np.median(np.abs(rows - median), axis=0).astype(np.float64)
    return _SlotStats(median, MAD_TO_SIGMA * mad, len(rows))

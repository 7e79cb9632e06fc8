"""Aggregates on slices of the real UCI household data, against pandas as the reference."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from energy_tracker_addon.aggregates import EnergyBuckets, RollingMean, local_zone

from .uci import UCI_TZ, read_uci

PARIS = ZoneInfo("Europe/Paris")
KEYS = ["mains", "kitchen", "laundry", "water_heater_ac"]


def _slice(start: str, days: int) -> pd.DataFrame:
    begin = datetime.fromisoformat(start).replace(tzinfo=UCI_TZ)
    return read_uci(begin, begin + timedelta(days=days))


def _counter_readings(data: pd.DataFrame) -> list[tuple[datetime, dict[str, float]]]:
    """What the meter reports: cumulative kWh at the end of each minute (row = minute mean)."""
    cumulative = data[KEYS].cumsum() / 60_000.0
    first = data.index[0].to_pydatetime()
    readings = [(first, dict.fromkeys(KEYS, 0.0))]
    for moment, row in zip(data.index, cumulative.to_dict("records"), strict=True):
        readings.append((moment.to_pydatetime() + timedelta(minutes=1), row))
    return readings


def _reference(data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """kWh per local hour/day/month computed directly from the minute rows with pandas."""
    kwh = data[KEYS] / 60_000.0
    local = kwh.index.tz_convert(PARIS)
    hour_start = kwh.index.tz_convert(UTC).floor("h").tz_convert(PARIS)
    return {
        "hour": kwh.groupby([t.isoformat() for t in hour_start]).sum(),
        "day": kwh.groupby(local.strftime("%Y-%m-%d")).sum(),
        "month": kwh.groupby(local.strftime("%Y-%m")).sum(),
    }


@pytest.mark.parametrize("size", [1, 5, 12])
def test_rolling_mean_matches_pandas_on_real_mains(size: int) -> None:
    mains = _slice("2008-02-12 17:00", 1)["mains"]
    rolling = RollingMean(size)
    ours = []
    for value in mains:
        rolling.add(float(value))
        ours.append(rolling.value)
    reference = mains.rolling(size, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(np.array(ours, dtype=float), reference, rtol=1e-12)


def test_rolling_mean_rejects_bad_readings_and_keeps_its_window() -> None:
    rolling = RollingMean()
    assert rolling.size == 5
    assert rolling.value is None
    rolling.add(100.0)
    with pytest.raises(ValueError, match="non-finite"):
        rolling.add(float("nan"))
    assert rolling.value == 100.0
    rolling.clear()
    assert rolling.value is None
    with pytest.raises(ValueError, match="at least 1"):
        RollingMean(0)


@pytest.mark.parametrize(
    ("start", "dst_day", "dst_day_hours"),
    [
        ("2009-03-28 20:00", "2009-03-29", 23),  # spring forward, then a month boundary
        ("2009-10-24 20:00", "2009-10-25", 25),  # fall back: two local 02:00 hours
    ],
)
def test_energy_per_hour_day_month_equals_pandas(
    start: str, dst_day: str, dst_day_hours: int
) -> None:
    data = _slice(start, 8)
    buckets = EnergyBuckets(PARIS, keep={"hour": 1000})
    for moment, counters in _counter_readings(data):
        buckets.record(moment, counters)
    reference = _reference(data)
    for period in ("hour", "day", "month"):
        ours = pd.DataFrame.from_dict(buckets.energy(period), orient="index")[KEYS]
        assert set(ours.index) == set(reference[period].index)
        expected = reference[period].loc[ours.index]
        np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)
    hours = list(buckets.energy("hour"))
    assert sum(key.startswith(dst_day) for key in hours) == dst_day_hours
    starts = [datetime.fromisoformat(key) for key in hours]
    assert all(later - earlier == timedelta(hours=1) for earlier, later in pairwise(starts))


def test_a_reading_gap_across_hours_is_spread_in_proportion_to_time() -> None:
    buckets = EnergyBuckets(PARIS)
    start = datetime(2024, 5, 1, 9, 50, tzinfo=PARIS)
    buckets.record(start, {"total": 10.0})
    buckets.record(start + timedelta(minutes=80), {"total": 18.0})  # 8 kWh over 09:50-11:10
    hours = buckets.energy("hour")
    assert list(hours) == ["2024-05-01T09:00:00+02:00", "2024-05-01T10:00:00+02:00",
                           "2024-05-01T11:00:00+02:00"]
    np.testing.assert_allclose([h["total"] for h in hours.values()],
                               [8 * 10 / 80, 8 * 60 / 80, 8 * 10 / 80])
    assert buckets.energy("day") == {"2024-05-01": pytest.approx({"total": 8.0})}


@pytest.mark.parametrize("zone", ["Australia/Lord_Howe", "Asia/Kolkata", "Europe/Paris"])
def test_a_gap_over_a_clock_change_of_any_size_is_spread_and_nothing_lost(zone: str) -> None:
    """Lord Howe Island falls back by 30 minutes (2026-04-04 15:00Z): the add-on used to
    loop there for ever, on its event loop. India is on half hours all year."""
    buckets = EnergyBuckets(ZoneInfo(zone))
    start = datetime(2026, 4, 4, 14, 29, tzinfo=UTC)
    buckets.record(start, {"total": 1.0})
    done = threading.Event()
    worker = threading.Thread(target=lambda: (buckets.record(
        start + timedelta(minutes=152), {"total": 3.0}), done.set()), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert done.is_set(), "recording a reading did not return"
    hours = buckets.energy("hour")
    assert sum(h["total"] for h in hours.values()) == pytest.approx(2.0)
    assert all(h["total"] > 0 for h in hours.values())
    assert sum(d["total"] for d in buckets.energy("day").values()) == pytest.approx(2.0)


def test_state_restored_from_json_continues_as_if_never_stopped() -> None:
    readings = _counter_readings(_slice("2009-05-30 12:00", 3))
    uninterrupted = EnergyBuckets(PARIS)
    for moment, counters in readings:
        uninterrupted.record(moment, counters)
    first = EnergyBuckets(PARIS)
    half = len(readings) // 2
    for moment, counters in readings[:half]:
        first.record(moment, counters)
    restored = EnergyBuckets.from_dict(json.loads(json.dumps(first.to_dict())), PARIS)
    for moment, counters in readings[half:]:
        restored.record(moment, counters)
    for period in ("hour", "day", "month"):
        ours = pd.DataFrame.from_dict(restored.energy(period), orient="index")
        expected = pd.DataFrame.from_dict(uninterrupted.energy(period), orient="index")
        pd.testing.assert_frame_equal(ours, expected, rtol=1e-12)
    assert restored.as_json("month")["buckets"][0]["start"] == "2009-05-01T00:00:00+02:00"


def test_only_the_newest_buckets_are_kept() -> None:
    buckets = EnergyBuckets(PARIS, keep={"hour": 24, "day": 2})
    for moment, counters in _counter_readings(_slice("2009-06-01 00:00", 3)):
        buckets.record(moment, counters)
    hours = list(buckets.energy("hour"))
    assert len(hours) == 24
    assert hours[-1] == "2009-06-04T00:00:00+02:00"  # the last minute ends at 00:00 CET
    assert list(buckets.energy("day")) == ["2009-06-03", "2009-06-04"]


def test_bad_counters_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    buckets = EnergyBuckets(PARIS)
    t0 = datetime(2024, 5, 1, 10, 0, tzinfo=PARIS)
    caplog.set_level(logging.WARNING)
    buckets.record(t0, {"total": 5.0})
    buckets.record(t0 + timedelta(minutes=1), {"total": 1.0})  # counter reset
    buckets.record(t0 + timedelta(minutes=2), {"total": float("nan")})
    buckets.record(t0 + timedelta(minutes=3), {"total": 1.5})  # new baseline after NaN
    buckets.record(t0 + timedelta(minutes=4), {"total": 2.0})
    buckets.record(t0 + timedelta(minutes=1), {"total": 9.0})  # the clock went back
    # Counted in that reading's hour, not dropped; and the clock goes on from there.
    buckets.record(t0 + timedelta(minutes=2), {"total": 9.5})
    assert buckets.energy("hour") == {"2024-05-01T10:00:00+02:00": {"total": 8.0}}
    messages = " ".join(caplog.messages)
    assert "went down from 5.000000 to 1.000000" in messages
    assert "is nan" in messages
    assert "older than the previous one" in messages
    with pytest.raises(ValueError, match="aware"):
        buckets.record(datetime(2024, 5, 1), {"total": 3.0})


def test_malformed_state_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match="malformed aggregates state"):
        EnergyBuckets.from_dict({"version": 1, "buckets": {}}, PARIS)
    saved = EnergyBuckets(PARIS)
    saved.record(datetime(2024, 5, 1, 10, tzinfo=PARIS), {"total": 1.0})
    state = saved.to_dict()
    state["last_time"] = "2024-05-01T10:00:00"  # no zone: every reading would raise
    with pytest.raises(ValueError, match="no time zone"):
        EnergyBuckets.from_dict(state, PARIS)


def test_a_clock_that_ran_ahead_does_not_freeze_the_totals() -> None:
    """Saved while the clock was a year ahead; NTP set it right before the restart."""
    ahead = EnergyBuckets(PARIS)
    ahead.record(datetime(2025, 5, 1, 10, tzinfo=PARIS), {"total": 1.0})
    buckets = EnergyBuckets.from_dict(ahead.to_dict(), PARIS)
    t0 = datetime(2024, 5, 1, 10, tzinfo=PARIS)
    for minute, total in enumerate((1.5, 2.0, 2.5)):
        buckets.record(t0 + timedelta(minutes=minute), {"total": total})
    assert buckets.energy("hour")["2024-05-01T10:00:00+02:00"] == {"total": 1.5}
    assert buckets.energy("day")["2024-05-01"] == {"total": 1.5}


def test_a_new_time_zone_keeps_the_hours_and_restarts_days_and_months(
    caplog: pytest.LogCaptureFixture,
) -> None:
    helsinki, new_york = ZoneInfo("Europe/Helsinki"), ZoneInfo("America/New_York")
    saved = EnergyBuckets(helsinki)
    start = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)  # across Helsinki's midnight
    for minute in range(0, 61, 10):
        saved.record(start + timedelta(minutes=minute), {"total": minute / 60})
    restored = EnergyBuckets.from_dict(saved.to_dict(), new_york)
    hours = restored.energy("hour")
    assert list(hours) == ["2026-12-05T16:00:00-05:00", "2026-12-05T17:00:00-05:00"]
    assert sum(h["total"] for h in hours.values()) == pytest.approx(1.0)
    assert restored.energy("day") == {}
    assert restored.energy("month") == {}
    assert "kept in time zone Europe/Helsinki, now America/New_York" in caplog.text
    # New readings make New York days: one day bucket, starting at its midnight.
    restored.record(start + timedelta(minutes=70), {"total": 1.5})
    assert restored.as_json("day")["buckets"][0]["start"] == "2026-12-05T00:00:00-05:00"


@pytest.mark.parametrize(("saved_zone", "new_zone"), [
    ("Europe/Paris", "Europe/Brussels"), ("UTC", "Etc/UTC"), ("Europe/Kiev", "Europe/Kyiv")])
def test_a_zone_renamed_to_the_same_clock_keeps_the_day_and_the_month(
    saved_zone: str, new_zone: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Paris to Brussels (same midnights): "Energy today" and the month were thrown away at
    the next restart, with no repairs issue to say so (helper 103)."""
    saved = EnergyBuckets(UTC if saved_zone == "UTC" else ZoneInfo(saved_zone))
    start = datetime(2026, 10, 20, 10, tzinfo=UTC)
    for minute in range(0, 61, 10):
        saved.record(start + timedelta(minutes=minute), {"total": minute / 60})
    restored = EnergyBuckets.from_dict(saved.to_dict(), ZoneInfo(new_zone))
    assert sum(d["total"] for d in restored.energy("day").values()) == pytest.approx(1.0)
    assert sum(m["total"] for m in restored.energy("month").values()) == pytest.approx(1.0)
    assert "start again" not in caplog.text


def test_time_zone_comes_from_the_name_or_tz_and_falls_back_to_utc(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert local_zone() == ZoneInfo("America/New_York")
    assert local_zone("Europe/Paris") == PARIS
    assert local_zone("Mars/Olympus_Mons") is UTC
    assert "Unknown time zone 'Mars/Olympus_Mons'" in caplog.text

"""The energy forecast wired into the real service: a history store pre-filled with real UCI
minutes, live minutes through a pty board on a clock the test moves, read back from the
state and compared with the forecaster run independently on the same store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from energy_tracker_addon import forecasting
from energy_tracker_addon.forecast import (
    Forecaster,
    ForecastResult,
    HourlyHistory,
    hourly_history,
)
from energy_tracker_addon.history import HistoryStore, Reading
from energy_tracker_addon.meter import iso_utc

from .analytics_rig import Clocks, Rig
from .ptys import PtyPort
from .uci import read_uci

pytestmark = pytest.mark.usefixtures("socket_enabled")

PARIS = "Europe/Paris"
HISTORY_START = datetime.fromisoformat("2009-03-02T00:00+01:00")
# Ten minutes before midnight after two weeks of history: the live minutes turn two hours.
LIVE_START = datetime.fromisoformat("2009-03-16T23:50+01:00")
SHIFT = timedelta(weeks=(datetime.now(UTC) - LIVE_START) // timedelta(weeks=1))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture(autouse=True)
def paris(monkeypatch: pytest.MonkeyPatch) -> None:
    """The add-on's local zone ($TZ, as the Supervisor sets it): the curve's hours."""
    monkeypatch.setenv("TZ", PARIS)


def _prefill(data_dir: Path, start: datetime, end: datetime, shift: timedelta = SHIFT,
             house: str = "mains") -> None:
    """Real minutes as the add-on would have stored them (its gaps left out); `house`
    "other": the UCI load outside the sub-metered circuits, a house of its own."""
    data = read_uci(start, end)
    data = data[~data["filled"]]
    data["other"] = data["mains"] - data[["kitchen", "laundry", "water_heater_ac"]].sum(axis=1)
    data_dir.mkdir()
    store = HistoryStore(data_dir / "history.sqlite3", retention_days=None, max_size_mb=None)
    store.append([
        Reading(moment.to_pydatetime() + shift, total, 0.0, row.voltage,
                {1: row.mains, 2: row.kitchen, 3: row.water_heater_ac})
        for moment, row, total in zip(data.index, data.itertuples(), data[house], strict=True)
    ])
    store.close()


def _stored_history(data_dir: Path, now: datetime) -> HourlyHistory:
    """The hourly history in the store, read outside the service."""
    store = HistoryStore(data_dir / "history.sqlite3", retention_days=None, max_size_mb=None)
    try:
        minutes, rows = store.minute_means(["total_power_w"], now - timedelta(days=60))
    finally:
        store.close()
    return hourly_history(minutes, [row[0] for row in rows], now)


def _independent_forecast(data_dir: Path, now: datetime) -> ForecastResult:
    """The shipped forecaster on the store's minute means."""
    return Forecaster.load().predict(now, _stored_history(data_dir, now), ZoneInfo(PARIS))


async def _settled(rig: Rig, generated_after: str | None = None) -> dict[str, Any]:
    """The state once the forecast task has run (at start, or for a new hour)."""
    def done() -> bool:
        state = rig.state
        if state["forecast_reason"] == forecasting.STARTING:
            return False
        forecast = state["forecast"]
        return generated_after is None or (
            forecast is not None and forecast["generated"] > generated_after)

    # A retrain takes about a second alone, 14 s was seen on a loaded machine
    await rig._until(done, "the forecast", timeout=120)
    return rig.state


async def _forecast_within(rig: Rig, seconds: float) -> bool:
    try:
        await rig._until(lambda: rig.state["forecast"] is not None, "a forecast", seconds)
    except TimeoutError:
        return False
    return True


async def test_forecast_follows_the_hours_matches_the_model_and_scores_itself(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "data"
    _prefill(data_dir, HISTORY_START, LIVE_START)
    live = read_uci(LIVE_START, LIVE_START + timedelta(minutes=72))
    first_hour = (live.index[10] + SHIFT).to_pydatetime()  # midnight
    second_hour = first_hour + timedelta(hours=1)
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), pty_port("ttyRPICT"))
    await rig.start()
    try:
        at_start = (await _settled(rig))["forecast"]
        await rig.replay(live.iloc[:11], SHIFT)  # up to the first reading after midnight
        after_turn = (await _settled(rig, at_start["generated"]))["forecast"]
        await rig.replay(live.iloc[11:71], SHIFT)  # the whole first hour, then 01:00
        after_hour = await _settled(rig, after_turn["generated"])
        status, over_api = await rig.get(session, "state")
    finally:
        await rig.stop()

    # At start: the hour in progress; after the turn: the 24 hours from midnight, local.
    paris = ZoneInfo(PARIS)
    assert at_start["curve"][0]["hour"] == (first_hour - timedelta(hours=1)).astimezone(
        paris).isoformat()
    assert [point["hour"] for point in after_turn["curve"]] == [
        (first_hour + timedelta(hours=h)).astimezone(paris).isoformat() for h in range(24)]
    expected = _independent_forecast(data_dir, first_hour)
    assert after_turn["next_hour_kwh"] == expected.next_hour_kwh
    assert after_turn["next_24h_kwh"] == expected.next_24h_kwh
    assert [(p["hour"], p["kwh"]) for p in after_turn["curve"]] == expected.curve
    assert after_turn["next_24h_kwh"] == pytest.approx(
        sum(p["kwh"] for p in after_turn["curve"]), abs=2e-3)
    assert after_turn["model"] == {"source": "shipped", "version": "1.0.0", "trained": None}
    assert after_turn["drift"]["hours"] == 0

    # 01:00: the first hour was measured and scored against its forecast.
    measured = live["mains"].iloc[10:70].mean() / 1000  # 00:00..00:59, kWh
    last_week = read_uci(first_hour - SHIFT - timedelta(days=7),
                         second_hour - SHIFT - timedelta(days=7))
    naive = last_week.loc[~last_week["filled"], "mains"].mean() / 1000
    error = after_turn["next_hour_kwh"] - measured
    drift = after_hour["forecast"]["drift"]
    assert drift["hours"] == 1
    assert drift["mae_kwh"] == pytest.approx(abs(error), abs=1e-4)
    assert drift["bias_kwh"] == pytest.approx(error, abs=1e-4)
    assert drift["mape_pct"] == pytest.approx(100 * abs(error) / measured, abs=0.1)
    assert drift["skill"] == pytest.approx(1 - abs(error) / abs(naive - measured), abs=2e-3)
    assert after_hour["forecast"]["curve"][0]["hour"] == second_hour.astimezone(
        paris).isoformat()
    assert after_hour["forecast_reason"] is None
    assert status == 200
    assert over_api["forecast"] == after_hour["forecast"]

    await rig.start()  # the drift survives a restart
    try:
        restarted = (await _settled(rig))["forecast"]
    finally:
        await rig.stop()
    assert restarted["drift"] == drift


async def test_no_forecast_is_shown_an_hour_after_the_last_reading(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    """The meter stopped: an hour later the forecast goes (docs: "no reading for over an
    hour"), and the meter going stale does not issue a fresh-looking one meanwhile. The
    stream says so too: nothing else published while the meter was stale, and Home
    Assistant showed the expired forecast for the whole outage (helper 84)."""
    data_dir = tmp_path / "data"
    _prefill(data_dir, HISTORY_START, LIVE_START)
    live = read_uci(LIVE_START, LIVE_START + timedelta(minutes=12))  # crosses midnight
    clocks = Clocks(LIVE_START + SHIFT)
    rig = Rig(data_dir, clocks, pty_port("ttyRPICT"))
    service = await rig.start()
    sent: list[dict[str, Any]] = []
    service.meter.add_listener(sent.append)  # as the stream does
    try:
        at_start = (await _settled(rig))["forecast"]
        await rig.replay(live, SHIFT)
        shown = (await _settled(rig, at_start["generated"]))["forecast"]
        last_reading = live.index[-1].to_pydatetime() + SHIFT
        clocks.set(last_reading + timedelta(minutes=50))
        await rig._until(lambda: not rig.state["available"], "the meter stale")
        still = rig.state
        clocks.set(last_reading + timedelta(minutes=61))
        await rig._until(lambda: rig.state["forecast"] is None, "the forecast hidden")
        await rig._until(lambda: sent[-1]["forecast"] is None, "the stream told")
        await asyncio.sleep(0.5)  # a forecast task the stale meter might have started
        gone = rig.state
    finally:
        await rig.stop()
    assert still["forecast"] == shown  # within the hour: the last forecast stands
    assert gone["forecast"] is None
    assert sent[-1]["forecast_reason"] == "out of date: no reading for over an hour"
    assert gone["forecast_reason"] == "out of date: no reading for over an hour"


@pytest.mark.parametrize("model_file", ["missing", "corrupt"])
async def test_without_a_usable_model_the_forecast_is_null_and_the_rest_works(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, model_file: str,
) -> None:
    model = tmp_path / "model.json"
    if model_file == "corrupt":
        model.write_text('{"format": "energy_tracker_forecast", "weights": [')
    monkeypatch.setattr(forecasting, "MODEL_PATH", model)
    data_dir = tmp_path / "data"
    _prefill(data_dir, HISTORY_START, LIVE_START)
    live = read_uci(LIVE_START, LIVE_START + timedelta(minutes=12))
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), pty_port("ttyRPICT"))
    with caplog.at_level(logging.ERROR, logger=forecasting.__name__):
        await rig.start()
    try:
        await rig.replay(live, SHIFT)  # crosses midnight
        status, state = await rig.get(session, "state")
    finally:
        await rig.stop()

    assert status == 200
    assert state["forecast"] is None
    assert state["forecast_reason"].startswith("no forecast model")
    assert str(model) in state["forecast_reason"]
    logged = [r.getMessage() for r in caplog.records
              if r.name == forecasting.__name__ and r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].startswith("Energy forecast off: ")
    assert str(model) in logged[0]
    assert state["total_power_w"] == pytest.approx(live["mains"].iloc[-1], abs=0.1)
    assert state["energy_today_kwh"] > 0


async def test_the_forecast_starts_once_a_day_of_hours_is_measured(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    # 23 h before the live minutes: 22 whole hours stored, the 23rd completed live.
    data_dir = tmp_path / "data"
    _prefill(data_dir, LIVE_START - timedelta(hours=23), LIVE_START)
    live = read_uci(LIVE_START, LIVE_START + timedelta(minutes=90))
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), pty_port("ttyRPICT"))
    await rig.start()
    try:
        at_start = await _settled(rig)
        await rig.replay(live.iloc[:70], SHIFT)  # midnight turns with 23 hours: not yet
        # The turn's task runs beside the readings (on a loaded machine, after them).
        await rig._until(lambda: rig.state["forecast_reason"].endswith("have 23"),
                         "the midnight turn counted", timeout=30)
        before = rig.state
        # From 01:00 the 24th hour is complete. Minute by minute, as the meter sends them:
        # a turn met while the midnight turn's task still runs waits for the next reading.
        for row in range(70, len(live)):
            await rig.replay(live.iloc[row:row + 1], SHIFT)
            if await _forecast_within(rig, seconds=2):
                break
        after = await _settled(rig, "")
    finally:
        await rig.stop()
    # How far it got, for the user waiting on the Forecast status sensor.
    for state, measured in ((at_start, 22), (before, 23)):
        assert state["forecast"] is None
        assert state["forecast_reason"] == (
            f"learning: need 24 measured hours in the last 4 weeks to forecast; have {measured}")
    assert after["forecast"]["next_hour_kwh"] >= 0
    assert after["forecast_reason"] is None


async def test_the_model_is_retrained_on_the_houses_history_and_kept(
    tmp_path: Path, pty_port: Callable[[str], PtyPort]
) -> None:
    # Six weeks of another house (held-out 2010 minutes): enough to refit and to check it.
    end = datetime.fromisoformat("2010-04-05T23:50+01:00")
    shift = timedelta(weeks=(datetime.now(UTC) - end) // timedelta(weeks=1))
    now = end + shift
    data_dir = tmp_path / "data"
    _prefill(data_dir, end - timedelta(days=42), end, shift, house="other")
    history = _stored_history(data_dir, now)
    report = Forecaster.load().retrain(history, ZoneInfo(PARIS))
    assert report.accepted, report  # the data chosen for this test; the refit is not faked
    expected = report.model.predict(now, history, ZoneInfo(PARIS))

    clocks = Clocks(now)
    rig = Rig(data_dir, clocks, pty_port("ttyRPICT"))
    await rig.start()
    try:
        retrained = (await _settled(rig))["forecast"]
    finally:
        await rig.stop()
    assert retrained["model"] == {"source": "retrained", "version": report.model.version,
                                  "trained": iso_utc(now)}
    assert [(p["hour"], p["kwh"]) for p in retrained["curve"]] == expected.curve

    await rig.start()  # the refit is kept, and not redone within the week
    try:
        restarted = (await _settled(rig))["forecast"]
        clocks.set(now + timedelta(hours=2))  # and no reading since: out of date
        stale = rig.state
    finally:
        await rig.stop()
    assert restarted["model"] == retrained["model"]
    assert restarted["curve"] == retrained["curve"]
    assert stale["forecast"] is None
    assert stale["forecast_reason"].startswith("out of date")


async def test_an_unusable_forecast_state_file_is_logged_and_started_afresh(
    tmp_path: Path, pty_port: Callable[[str], PtyPort], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    _prefill(data_dir, HISTORY_START, LIVE_START)
    (data_dir / forecasting.STATE_FILE).write_text('{"version": 1, "drift": {"errors": 3}}')
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), pty_port("ttyRPICT"))
    with caplog.at_level(logging.ERROR, logger=forecasting.__name__):
        await rig.start()
    try:
        forecast = (await _settled(rig))["forecast"]
    finally:
        await rig.stop()
    assert [r.getMessage() for r in caplog.records
            if r.name == forecasting.__name__ and r.levelno >= logging.ERROR] == [
        f"Forecast state {data_dir / forecasting.STATE_FILE} unusable "
        "(malformed drift state (KeyError('window_hours'))): shipped model, drift afresh"]
    assert forecast["model"]["source"] == "shipped"
    assert forecast["next_hour_kwh"] == _independent_forecast(
        data_dir, LIVE_START + SHIFT).next_hour_kwh

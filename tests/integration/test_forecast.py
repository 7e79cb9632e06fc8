"""Forecast sensors against the real add-on service on a pty board, with two weeks of real
UCI history in its store and a clock the test moves (see tests/addon/analytics_rig.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.models import InvalidData, MeterState
from energy_tracker_addon import forecasting
from energy_tracker_addon.history import HistoryStore, Reading
from energy_tracker_addon.meter import iso_utc
from tests.addon.analytics_rig import TOKEN, Clocks, Rig
from tests.addon.ptys import PtyPort
from tests.addon.uci import read_uci

from .conftest import HOST, wait_for

HISTORY_START = datetime.fromisoformat("2009-03-02T00:00+01:00")
LIVE_START = datetime.fromisoformat("2009-03-16T23:50+01:00")  # 10 minutes before midnight
SHIFT = timedelta(weeks=(datetime.now(UTC) - LIVE_START) // timedelta(weeks=1))
SENSORS = ("forecast_next_hour", "forecast_next_24h", "forecast_error")


@pytest.fixture(autouse=True)
def paris(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The add-on on a pty board with two weeks of real history in its store."""
    data_dir = tmp_path / "addon"
    data_dir.mkdir()
    history = read_uci(HISTORY_START, LIVE_START)
    history = history[~history["filled"]]
    store = HistoryStore(data_dir / "history.sqlite3", None, None)
    store.append([
        Reading(moment.to_pydatetime() + SHIFT, row.mains, 0.0, row.voltage,
                {1: row.mains, 2: row.kitchen, 3: row.water_heater_ac})
        for moment, row in zip(history.index, history.itertuples(), strict=True)
    ])
    store.close()
    port = PtyPort(tmp_path / "ttyRPICT")
    rig = Rig(data_dir, Clocks(LIVE_START + SHIFT), port)
    await rig.start()
    yield rig
    await rig.stop()
    port.unplug()


async def _entry(hass: HomeAssistant, rig: Rig) -> MockConfigEntry:
    assert rig.service is not None
    await rig._until(lambda: rig.state["forecast_reason"] != forecasting.STARTING, "forecast")
    await rig.replay(read_uci(LIVE_START, LIVE_START + timedelta(minutes=1)), SHIFT)
    entry = MockConfigEntry(
        domain=DOMAIN, title="Energy Tracker", unique_id=rig.service.meter_id,
        data={CONF_HOST: HOST, CONF_PORT: rig.service.port, CONF_API_TOKEN: TOKEN},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


def _entity_ids(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    registry = er.async_get(hass)
    ids = {key: registry.async_get_entity_id("sensor", DOMAIN, f"{entry.unique_id}_{key}")
           for key in SENSORS}
    assert all(ids.values()), ids
    return {key: str(entity_id) for key, entity_id in ids.items()}


async def test_forecast_sensors_show_the_addons_forecast_and_its_error(
    hass: HomeAssistant, rig: Rig
) -> None:
    entry = await _entry(hass, rig)
    ids = _entity_ids(hass, entry)
    live = read_uci(LIVE_START + timedelta(minutes=1), LIVE_START + timedelta(minutes=72))

    async def turn_hour(minutes: Any) -> dict[str, Any]:
        """Replay up to an hour's first minute; the new forecast goes out with the next."""
        before = rig.state["forecast"]["generated"]
        await rig.replay(minutes.iloc[:-1], SHIFT)
        await rig._until(lambda: rig.state["forecast"]["generated"] > before, "new forecast")
        await rig.replay(minutes.iloc[-1:], SHIFT)
        return dict(rig.state["forecast"])

    forecast = await turn_hour(live.iloc[:11])  # 23:51 .. 00:00 (the turn), 00:01

    def shown(key: str) -> str:
        return str(hass.states.get(ids[key]).state)

    await wait_for(lambda: shown("forecast_next_hour") == str(forecast["next_hour_kwh"]), 5,
                   "the next-hour forecast")
    next_hour = hass.states.get(ids["forecast_next_hour"])
    day = hass.states.get(ids["forecast_next_24h"])
    assert float(day.state) == forecast["next_24h_kwh"]
    for state in (next_hour, day):
        assert state.attributes["unit_of_measurement"] == "kWh"
        assert state.attributes["device_class"] == "energy"
        assert "state_class" not in state.attributes  # no long-term statistics
        assert state.attributes["model_source"] == "shipped"
        assert state.attributes["generated"] == forecast["generated"]
    assert next_hour.attributes["start"] == forecast["curve"][0]["hour"]
    assert day.attributes["curve"] == forecast["curve"]
    assert len(day.attributes["curve"]) == 24
    # No hour scored yet: the error is unknown, not 0.
    assert shown("forecast_error") == STATE_UNAVAILABLE
    # Two weeks of history: both analytics have learned, and say so.
    assert _status(hass, entry, "forecast_status") == ("ready", {"detail": None})
    assert _status(hass, entry, "anomaly_detection") == ("ready", {"ready_at": None})
    assert er.async_get(hass).async_get(ids["forecast_error"]).entity_category == "diagnostic"

    drift = (await turn_hour(live.iloc[11:]))["drift"]  # 00:02 .. 01:00 (the turn), 01:01
    await wait_for(lambda: shown("forecast_error") != STATE_UNAVAILABLE, 5, "the first error")
    error = hass.states.get(ids["forecast_error"])
    assert drift["hours"] == 1
    assert float(error.state) == drift["mae_kwh"]
    assert error.attributes["unit_of_measurement"] == "kWh"
    assert "state_class" not in error.attributes  # not offered by the Energy dashboard
    assert {key: error.attributes[key] for key in ("mape_pct", "bias_kwh", "skill", "hours")} \
        == {key: drift[key] for key in ("mape_pct", "bias_kwh", "skill", "hours")}


async def test_forecast_sensors_are_unavailable_without_a_forecast(
    hass: HomeAssistant, rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Restarted on a build whose model file is missing: the add-on serves forecast null.
    await rig.stop()
    monkeypatch.setattr(forecasting, "MODEL_PATH", tmp_path / "missing.json")
    await rig.start()
    entry = await _entry(hass, rig)
    ids = _entity_ids(hass, entry)
    assert rig.state["forecast"] is None
    for entity_id in ids.values():
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE
    # Why, in the add-on's words, on the device page.
    state, attributes = _status(hass, entry, "forecast_status")
    assert state == "no_model"
    assert attributes["detail"].startswith("no forecast model (")
    assert "missing.json" in attributes["detail"]
    total = er.async_get(hass).async_get_entity_id("sensor", DOMAIN,
                                                   f"{entry.unique_id}_total_power")
    assert total is not None
    assert float(hass.states.get(total).state) == rig.state["total_power_w"]


async def test_a_new_install_says_what_it_learns_and_until_when(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """No history: the forecast and anomaly sensors are unavailable, and the status
    sensors tell why and, for the anomalies, when alerts start (a week after the first
    reading)."""
    port = PtyPort(tmp_path / "ttyRPICT")
    rig = Rig(tmp_path / "addon", Clocks(LIVE_START + SHIFT), port)
    await rig.start()
    try:
        entry = await _entry(hass, rig)
        first_reading = LIVE_START + SHIFT
        forecast = _status(hass, entry, "forecast_status")
        anomaly = _status(hass, entry, "anomaly_detection")
    finally:
        await rig.stop()
        port.unplug()
    assert forecast[0] == "learning"
    # The add-on's reason, without the "learning: " the state already says.
    assert forecast[1]["detail"] == (
        "need 24 measured hours in the last 4 weeks to forecast; have 0")
    assert anomaly == ("learning", {"ready_at": iso_utc(first_reading + timedelta(days=7))})
    for key in SENSORS:
        entity_id = er.async_get(hass).async_get_entity_id(
            "sensor", DOMAIN, f"{entry.unique_id}_{key}")
        assert hass.states.get(str(entity_id)).state == STATE_UNAVAILABLE
    status_id = er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{entry.unique_id}_forecast_status")
    registered = er.async_get(hass).async_get(str(status_id))
    assert registered is not None
    assert registered.entity_category == "diagnostic"
    assert registered.capabilities == {"options": [
        "ready", "starting", "learning", "no_model", "out_of_date", "failed"]}


def _status(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> tuple[str, dict[str, Any]]:
    entity_id = er.async_get(hass).async_get_entity_id("sensor", DOMAIN,
                                                       f"{entry.unique_id}_{key}")
    state = hass.states.get(str(entity_id))
    assert state is not None, key
    attributes = {k: v for k, v in state.attributes.items()
                  if k not in ("friendly_name", "icon", "device_class", "options")}
    return state.state, attributes


@pytest.mark.parametrize(
    ("key", "bad"),
    [("next_hour_kwh", "0.52"), ("next_24h_kwh", float("nan")), ("curve", []),
     ("drift", {"hours": 1})],
)
async def test_a_malformed_forecast_is_invalid_data(rig: Rig, key: str, bad: object) -> None:
    await rig._until(lambda: rig.state["forecast"] is not None, "a forecast")
    served = rig.state
    parsed = MeterState.from_json(json.loads(json.dumps(served))).analytics.forecast
    assert parsed is not None
    assert parsed.next_24h_kwh == served["forecast"]["next_24h_kwh"]
    served["forecast"][key] = bad
    with pytest.raises(InvalidData):
        MeterState.from_json(json.loads(json.dumps(served)))

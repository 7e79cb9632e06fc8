"""The logbook tells appliance runs and anomalies (logbook.py), in a real logbook."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.events import EVENT_ENERGY_TRACKER


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """conftest's, with the recorder the logbook needs set up before `hass` (its rule)."""


async def logbook_lines(
    hass: HomeAssistant, recorder: Recorder, hass_ws_client: WebSocketGenerator,
    entry: MockConfigEntry, fired: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The integration's lines in a real logbook after firing these events for `entry`."""
    assert await async_setup_component(hass, "logbook", {})
    await hass.async_block_till_done()
    start = dt_util.utcnow()
    for data in fired:
        hass.bus.async_fire(EVENT_ENERGY_TRACKER, {**data, "device_id": None,
                                                   "config_entry_id": entry.entry_id})
    await hass.async_block_till_done()
    await hass.async_add_executor_job(recorder.block_till_done)
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "logbook/get_events",
                                    "start_time": start.isoformat()})
    answer = await client.receive_json()
    assert answer["success"], answer
    return [e for e in answer["result"] if e.get("domain") == DOMAIN]


async def test_appliance_runs_and_anomalies_read_as_sentences(
    recorder_mock: Recorder, hass: HomeAssistant, loaded_entry: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """A relay switched off by demand response was a bare "turned off", and appliance
    starts and finishes or anomalies were not in the logbook at all."""
    fired: list[dict[str, Any]] = [
        {"type": "appliance_finished", "appliance": "relay_1", "name": "Water heater",
         "relay_id": 1, "shed": True},
        {"type": "appliance_started", "appliance": "nilm_kettle", "name": "Kettle",
         "power_w": 2043.6},
        {"type": "appliance_finished", "appliance": "channel_2", "name": "Kitchen",
         "power_w": 3.0},
        {"type": "anomaly_detected", "kind": "high", "series": "total",
         "reason": "base load 2.1 kW, usually 0.3 kW at this time of the week"},
    ]
    lines = [(e.get("name"), e.get("message")) for e in await logbook_lines(
        hass, recorder_mock, hass_ws_client, loaded_entry, fired)]
    assert lines == [
        ("Water heater", "finished: switched off by demand response (shed load)"),
        ("Kettle", "started (2044 W)"),
        ("Kitchen", "finished"),
        ("Energy Tracker", "detected unusual consumption: base load 2.1 kW, usually 0.3 kW "
                           "at this time of the week"),
    ]


async def test_run_lines_link_to_their_entities(
    recorder_mock: Recorder, hass: HomeAssistant, loaded_entry: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """A run's line was plain text; it now opens the entity it is about (the relay's
    switch, the appliance's Running sensor, the circuit's power)."""
    registry = er.async_get(hass)
    meter = loaded_entry.unique_id

    def entity(domain: str, key: str) -> str:
        found = registry.async_get_entity_id(domain, DOMAIN, f"{meter}_{key}")
        assert found is not None, key
        return found

    heater = entity("switch", "relay_1_switch")
    kettle = entity("binary_sensor", "appliance_kettle_running")
    kitchen = entity("sensor", "channel_2_power")
    fired = [{"type": "appliance_started", "appliance": appliance, "name": appliance}
             for appliance in ("relay_1", "nilm_kettle", "channel_2", "relay_9")]
    linked = {e["name"]: e.get("entity_id") for e in await logbook_lines(
        hass, recorder_mock, hass_ws_client, loaded_entry, fired)}
    assert linked == {"relay_1": heater, "nilm_kettle": kettle, "channel_2": kitchen,
                      "relay_9": None}  # a relay the meter does not have: plain text

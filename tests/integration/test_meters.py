"""Several meters: an extra simulated meter of the add-on is its own device in HA, and the
comparison sensor shows what /api/v1/compare serves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import conversation
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.sensor import ATTR_STATE_CLASS, SensorStateClass
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, STATE_UNAVAILABLE
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automations,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.energy_tracker.const import DOMAIN
from tests.addon.ptys import PtyPort

from .conftest import Addon, device_with, wait_for

GARAGE = {"id": "garage", "name": "Garage"}


@pytest.fixture
async def two_meter_addon(tmp_path: Path) -> AsyncIterator[Addon]:
    """The add-on with one extra simulated meter."""
    data_dir = tmp_path / "addon"
    data_dir.mkdir()
    addon = Addon(data_dir)
    await addon.start(extra_meters=[GARAGE])
    yield addon
    await addon.stop()


@pytest.fixture
async def two_meter_entry(hass: HomeAssistant, two_meter_addon: Addon) -> MockConfigEntry:
    async def both_used_energy() -> bool:
        meters = (await two_meter_addon.get("compare?period=day"))["meters"]
        return all(m["share_pct"] for m in meters)

    await wait_for(both_used_energy, 15, "energy of both meters today")
    entry = MockConfigEntry(domain=DOMAIN, title="Energy Tracker",
                            unique_id=two_meter_addon.meter_id,
                            data=two_meter_addon.entry_data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def steady_reading(addon: Addon, entry: MockConfigEntry) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """A state HA shows right now whose comparison is what /api/v1/compare serves."""
    for _ in range(200):
        compared = await addon.get("compare?period=day")
        served: dict[str, Any] = await addon.get("state")
        await asyncio.sleep(0.05)  # let the pushed message of that reading arrive
        if (entry.runtime_data.data.seq == served["seq"]
                and served["meter_comparison"] == compared
                and await addon.get("compare?period=day") == compared):
            return served, compared
    raise AssertionError("never caught HA, the state and /compare on the same reading")


def shown(hass: HomeAssistant, entity: str) -> Any:
    state = hass.states.get(entity)
    assert state is not None
    return state


async def test_extra_meter_is_its_own_device_with_the_served_values(
    hass: HomeAssistant, two_meter_addon: Addon, two_meter_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, device_registry: dr.DeviceRegistry,
) -> None:
    served, compared = await steady_reading(two_meter_addon, two_meter_entry)
    garage = served["meters"][0]
    assert garage["id"] == "garage"
    device = device_with(device_registry, (DOMAIN, garage["meter_id"]))
    assert device is not None
    assert device.name == "Garage"
    main = device_with(device_registry, (DOMAIN, two_meter_addon.meter_id))
    assert main is not None
    assert device.via_device_id == main.id

    power_id = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{garage['meter_id']}_total_power")
    energy_id = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{garage['meter_id']}_total_energy")
    assert power_id is not None
    assert energy_id is not None
    assert entity_registry.async_get(power_id).device_id == device.id  # type: ignore[union-attr]
    assert float(shown(hass, power_id).state) == garage["total_power_w"]
    energy = shown(hass, energy_id)
    assert float(energy.state) == round(garage["total_energy_kwh"], 3)  # recorded to the Wh
    # Usable as an individual device in the Energy dashboard.
    assert energy.attributes[ATTR_STATE_CLASS] == SensorStateClass.TOTAL_INCREASING
    assert energy.attributes[ATTR_UNIT_OF_MEASUREMENT] == "kWh"
    # The two simulated meters replay different weeks.
    assert garage["total_power_w"] != served["total_power_w"]

    comparison_id = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{two_meter_addon.meter_id}_meter_comparison")
    assert comparison_id is not None
    comparison = shown(hass, comparison_id)
    by_id = {m["id"]: m for m in compared["meters"]}
    assert comparison.state != STATE_UNAVAILABLE
    assert float(comparison.state) == by_id["main"]["share_pct"]
    assert comparison.attributes[ATTR_UNIT_OF_MEASUREMENT] == "%"
    assert comparison.attributes["meters"] == compared["meters"]
    assert comparison.attributes["total_kwh"] == compared["total_kwh"]
    assert comparison.attributes["friendly_name"] == "Energy Tracker Main meter share today"


async def test_an_extra_meter_offers_power_thresholds_as_device_triggers(
    hass: HomeAssistant, two_meter_addon: Addon, two_meter_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
) -> None:
    garage_id = (await two_meter_addon.get("meters"))["meters"][1]["meter_id"]
    garage = device_with(device_registry, (DOMAIN, garage_id))
    assert garage is not None
    power = entity_registry.async_get(
        entity_registry.async_get_entity_id("sensor", DOMAIN, f"{garage_id}_total_power") or "")
    assert power is not None
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, garage.id)
    # Its own power only: appliances, anomalies and the circuits are the main meter's.
    assert {(t["type"], t.get("entity_id")) for t in triggers if t["domain"] == DOMAIN} == {
        ("power_above", power.id), ("power_below", power.id)}


async def test_one_meter_add_on_has_no_comparison_sensor(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    assert entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_meter_comparison") is None
    assert loaded_entry.runtime_data.data.extra_meters == {}


async def test_a_meter_taken_out_of_the_addon_can_be_deleted_and_served_ones_cannot(
    hass: HomeAssistant, hass_ws_client: WebSocketGenerator, two_meter_addon: Addon,
    two_meter_entry: MockConfigEntry, device_registry: dr.DeviceRegistry,
) -> None:
    assert await async_setup_component(hass, "config", {})
    client = await hass_ws_client(hass)

    async def delete(device: dr.DeviceEntry) -> bool:
        await client.send_json_auto_id({
            "type": "config/device_registry/remove_config_entry",
            "config_entry_id": two_meter_entry.entry_id, "device_id": device.id})
        return bool((await client.receive_json())["success"])

    garage_id = (await two_meter_addon.get("meters"))["meters"][1]["meter_id"]
    garage = device_with(device_registry, (DOMAIN, garage_id))
    main = device_with(device_registry, (DOMAIN, two_meter_addon.meter_id))
    assert garage is not None
    assert main is not None
    assert not await delete(garage)  # still served: deleting it would only bring it back
    assert not await delete(main)

    # The user removes the garage from the add-on's options; the add-on restarts.
    await two_meter_addon.stop()
    await two_meter_addon.start()
    await hass.config_entries.async_reload(two_meter_entry.entry_id)
    await hass.async_block_till_done()
    assert two_meter_entry.runtime_data.data.extra_meters == {}
    assert device_registry.async_get(garage.id) is not None  # never removed behind their back
    # The main meter's "share today" means nothing with one meter: gone, not unavailable.
    assert er.async_get(hass).async_get_entity_id(
        "sensor", DOMAIN, f"{two_meter_addon.meter_id}_meter_comparison") is None

    assert await delete(garage)
    assert device_registry.async_get(garage.id) is None
    assert not await delete(main)
    devices = dr.async_entries_for_config_entry(device_registry, two_meter_entry.entry_id)
    for device in devices:
        assert not await delete(device), f"{device.name} is served but could be deleted"


async def test_an_extra_meter_added_to_the_addon_appears_without_a_reload(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert loaded_entry.runtime_data.data.extra_meters == {}
    # The user adds a garage meter and renames a channel in the add-on's options; the
    # add-on restarts. Its first state (a new meter) and its info (a new channel name)
    # both differ from what the entities were made of: one reload, not two.
    channels = (await addon.get("info"))["channels"]
    await addon.stop()
    await addon.start(extra_meters=[GARAGE], channels=[
        {"id": c["id"], "name": "Heat pump" if c["id"] == 3 else c["name"], "role": c["role"]}
        for c in channels])
    garage_id = (await addon.get("meters"))["meters"][1]["meter_id"]

    def garage_shown() -> bool:
        entity = entity_registry.async_get_entity_id("sensor", DOMAIN,
                                                     f"{garage_id}_total_energy")
        state = None if entity is None else hass.states.get(entity)
        return state is not None and state.state != STATE_UNAVAILABLE

    await wait_for(garage_shown, 20, "the garage's energy sensor")
    device = device_with(device_registry, (DOMAIN, garage_id))
    assert device is not None
    assert device.name == "Garage"
    assert loaded_entry.state is ConfigEntryState.LOADED
    await hass.async_block_till_done()
    assert caplog.text.count("devices changed; reloading") == 1


async def test_assist_answers_for_an_extra_meter(
    hass: HomeAssistant, two_meter_addon: Addon, two_meter_entry: MockConfigEntry,
) -> None:
    for component in ("homeassistant", "conversation", "intent"):
        assert await async_setup_component(hass, component, {})
    await hass.async_block_till_done()  # our sentences register once Assist has loaded
    coordinator = two_meter_entry.runtime_data

    async def ask(text: str) -> str:
        result = await conversation.async_converse(hass, text, None, Context(), language="en")
        speech: str = result.response.speech["plain"]["speech"]
        return speech

    served = []
    for _ in range(50):  # an answer given from a state HA held before and after asking
        before = coordinator.data.extra_meters["garage"].total_power_w
        answer = await ask("how much power is the garage using")
        if coordinator.data.extra_meters["garage"].total_power_w == before:
            served.append((before, answer))
            break
    assert served, "the garage's power never held still for one question"
    watts, answer = served[0]
    assert watts is not None
    assert answer == f"Garage uses {round(watts)} watts."
    # A detected appliance by its name: still warming up here, so unknown, not 0.
    assert coordinator.data.appliances
    kettle = coordinator.data.appliances["kettle"]
    assert kettle.power_w is None
    assert await ask("how much power does the kettle use") == (
        "I don't know how much power Kettle uses right now.")


async def test_a_simulated_extra_meter_given_its_board_shows_the_boards_model(
    hass: HomeAssistant, two_meter_addon: Addon, two_meter_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, tmp_path: Path,
) -> None:
    garage_id = (await two_meter_addon.get("meters"))["meters"][1]["meter_id"]
    device = device_with(device_registry, (DOMAIN, garage_id))
    assert device is not None
    assert device.model == "Extra meter (simulated)"
    garage = PtyPort(tmp_path / "ttyGARAGE")
    garage.plug()

    async def board_prints() -> None:
        while True:
            await garage.write(b"11 300.0 0.0 0.0 21.5\r\n")
            await asyncio.sleep(0.3)

    printing = asyncio.create_task(board_prints())
    try:
        # The user connects the garage's real board: rpict_port set, the add-on restarts.
        await two_meter_addon.stop()
        await two_meter_addon.start(extra_meters=[{**GARAGE, "rpict_port": str(garage.path)}])

        def board_model() -> bool:
            device = device_with(device_registry, (DOMAIN, garage_id))
            return device is not None and device.model == "Extra meter (RPICT)"

        await wait_for(board_model, 20, "the garage device's model from its board")
        assert two_meter_entry.state is ConfigEntryState.LOADED
    finally:
        printing.cancel()
        garage.unplug()

"""Relay switches and their settings, against the real add-on service."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from homeassistant.components.number import ATTR_VALUE, SERVICE_SET_VALUE
from homeassistant.components.switch import DOMAIN as SWITCH_DOMAIN
from homeassistant.components.switch import SwitchDeviceClass
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_ENTITY_ID,
    ATTR_FRIENDLY_NAME,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    EntityCategory,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.energy_tracker.const import DOMAIN

from .boards import (  # noqa: F401 (fixtures)
    AckingBoards,
    Boards,
    acking_boards_fixture,
    boards_fixture,
)
from .conftest import Addon, device_with, loaded_entry_with_interval, wait_for


def relay_entity(registry: er.EntityRegistry, addon: Addon, relay_id: int,
                 key: str = "switch", platform: str = "switch") -> str:
    found = registry.async_get_entity_id(platform, DOMAIN,
                                         f"{addon.meter_id}_relay_{relay_id}_{key}")
    assert found is not None, f"no {platform} for relay {relay_id} {key}"
    return found


async def served_relay(addon: Addon, relay_id: int) -> dict[str, Any]:
    relays: list[dict[str, Any]] = (await addon.get("relays"))["relays"]
    return next(r for r in relays if r["id"] == relay_id)


def shown(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


async def test_switches_are_named_after_the_relays_on_their_own_devices(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, device_registry: dr.DeviceRegistry,
) -> None:
    meter = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert meter is not None
    for relay in (await addon.get("relays"))["relays"]:
        entity_id = relay_entity(entity_registry, addon, relay["id"])
        state = hass.states.get(entity_id)
        assert state is not None
        # The relay's own name (not "Energy Tracker …"): what Assist and users call it.
        assert state.attributes[ATTR_FRIENDLY_NAME] == relay["name"]
        assert state.state == (STATE_ON if relay["state"] else STATE_OFF)
        # A relay switches a circuit or an appliance (a water heater's contactor), not a
        # plug: voice assistants and HomeKit must not offer it as an outlet.
        assert state.attributes[ATTR_DEVICE_CLASS] == SwitchDeviceClass.SWITCH
        entry = entity_registry.async_get(entity_id)
        assert entry is not None
        device = device_registry.async_get(entry.device_id or "")
        assert device is not None
        assert device.name == relay["name"]
        assert device.via_device_id == meter.id


async def test_a_relay_renamed_in_the_addon_is_renamed_in_home_assistant(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    switch = relay_entity(entity_registry, addon, 1)
    await addon.stop()
    await addon.start(relays=[
        {"id": 1, "name": "Hot water tank", "source": "board", "channel": 3},
        {"id": 2, "name": "Kitchen", "source": "board", "channel": 2},
        {"id": 3, "name": "Laundry", "source": "board"},
    ])
    await wait_for(lambda: (state := hass.states.get(switch)) is not None
                   and state.attributes.get(ATTR_FRIENDLY_NAME) == "Hot water tank", 15,
                   "the new relay name")
    assert relay_entity(entity_registry, addon, 1) == switch  # same entity, new name


async def test_turn_off_and_on_round_trip(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    heater = relay_entity(entity_registry, addon, 1)
    assert (await served_relay(addon, 1))["name"] == "Water heater"
    assert shown(hass, heater) == STATE_ON

    await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: heater},
                                   blocking=True)
    # Shown at once from the acknowledgement, and the add-on reports the same.
    assert shown(hass, heater) == STATE_OFF
    assert (await served_relay(addon, 1))["state"] is False

    await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_ON, {ATTR_ENTITY_ID: heater},
                                   blocking=True)
    assert shown(hass, heater) == STATE_ON
    assert (await served_relay(addon, 1))["state"] is True
    # Later stream messages keep it (no flip back to a stale state).
    seq = loaded_entry.runtime_data.data.seq
    await wait_for(lambda: loaded_entry.runtime_data.data.seq >= seq + 3, 15, "3 readings")
    assert shown(hass, heater) == STATE_ON


async def test_a_reading_held_back_by_the_update_interval_does_not_undo_a_switch(
    hass: HomeAssistant, acking_boards: AckingBoards, addon: Addon,
    entity_registry: er.EntityRegistry,
) -> None:
    # "Minimum update interval" 5 s: readings in between wait, the newest one is shown when
    # it ends. Readings taken before the command must not flip the switch back.
    entry = await loaded_entry_with_interval(hass, addon, 5)
    coordinator = entry.runtime_data
    heater = relay_entity(entity_registry, addon, 1)
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the board's relay states")
    seq = coordinator.data.seq
    await wait_for(lambda: coordinator.data.seq > seq, 10, "a shown reading")
    shown_seq = coordinator.data.seq
    await wait_for(lambda: coordinator.newest_seq >= shown_seq + 2, 5, "two held back")
    acking_boards.paused = True  # nothing new until the held-back one has been shown
    await asyncio.sleep(1)  # a reading already printed lands
    assert coordinator.data.seq == shown_seq, "still held back"
    held_back = coordinator.newest_seq
    await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: heater},
                                   blocking=True)
    assert shown(hass, heater) == STATE_OFF
    # The add-on streams the switched relay at once (with the newest reading's seq): it
    # supersedes the readings held back, which were taken before the command.
    await wait_for(lambda: coordinator.data.relays[1].state is False, 10, "the relay's change")
    assert coordinator.data.seq == held_back, "no new reading meanwhile"
    await asyncio.sleep(1)
    assert shown(hass, heater) == STATE_OFF
    acking_boards.paused = False
    seq = coordinator.data.seq
    await wait_for(lambda: coordinator.data.seq > seq, 10, "a reading after the command")
    assert coordinator.data.relays[1].state is False
    assert shown(hass, heater) == STATE_OFF


async def test_a_change_right_after_a_switch_is_not_hidden_by_its_answer(
    hass: HomeAssistant, acking_boards: AckingBoards, addon: Addon,
    entity_registry: er.EntityRegistry,
) -> None:
    """The switch showed its own command's answer over every change streamed before the
    next reading (a shed, another client, the board's watchdog): they carry the reading's
    seq. With a long update interval the relay showed on while off for minutes (helper 78)."""
    entry = await loaded_entry_with_interval(hass, addon, 60)
    coordinator = entry.runtime_data
    heater = relay_entity(entity_registry, addon, 1)
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the board's relay states")
    acking_boards.paused = True  # no reading from now on: every message has the same seq
    await asyncio.sleep(1)
    await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: heater},
                                   blocking=True)
    assert shown(hass, heater) == STATE_OFF
    seq = coordinator.data.seq
    # Another client of the add-on (a second Home Assistant) switches it on right after.
    assert addon.service is not None
    await addon.service.relays.switch(1, True)
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the change after the answer")
    assert coordinator.newest_seq == seq, "no new reading meanwhile"


async def test_water_heater_off_takes_its_load_out_of_the_mains(
    hass: HomeAssistant, addon: Addon, entity_registry: er.EntityRegistry,
) -> None:
    """The simulated meter replays a real house: the rest of its load moves too.

    At 600x (so the replayed heater runs within seconds) two readings are 20 replayed
    minutes apart, and in ~6 % of the heater's runs the other loads grow by more than the
    heater draws meanwhile; so up to three tries.
    """
    await addon.stop()
    await addon.start(simulation_speed=600)
    await addon.wait_for_reading()
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    coordinator = entry.runtime_data
    heater = relay_entity(entity_registry, addon, 1)
    heater_power = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_channel_3_power")
    assert heater_power is not None
    drops: list[tuple[float, float]] = []
    for _ in range(3):
        await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_ON,
                                       {ATTR_ENTITY_ID: heater}, blocking=True)
        await wait_for(lambda: float(shown(hass, heater_power)) >= 1000, 120,
                       "the water heater to run in the replay")
        total_on = coordinator.data.total_power_w
        await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF,
                                       {ATTR_ENTITY_ID: heater}, blocking=True)
        seq = coordinator.data.seq
        await wait_for(lambda seq=seq: coordinator.data.seq > seq, 10, "the next reading")
        # Its circuit reads nothing while the relay is open.
        assert float(shown(hass, heater_power)) == 0
        total_off = coordinator.data.total_power_w
        assert total_on is not None
        assert total_off is not None
        drops.append((total_on, total_off))
        if total_off < total_on:
            return
    raise AssertionError(f"the mains never dropped with the water heater off: {drops}")


async def test_unacknowledged_command_raises_and_keeps_the_state(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    heater = relay_entity(entity_registry, addon, 1)
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the board's relay states")

    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF,
                                       {ATTR_ENTITY_ID: heater}, blocking=True)
    assert raised.value.translation_key == "relay_timeout"
    assert str(raised.value) == (
        "Water heater did not acknowledge the command in time: it may still be carried out, "
        "and its state is unknown until the board answers again"
    )
    # Unknown in the add-on until the board's next frame (an unanswered board is sent no
    # more commands), which says the relay never moved.
    async def served_on() -> bool:
        return (await served_relay(addon, 1))["state"] is True

    await wait_for(served_on, 10, "the board's next frame")
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the relay's state")


async def test_relay_settings_stay_settable_while_the_board_is_unplugged(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The add-on keeps priorities and minimum times itself: they went unavailable with
    the board, and could not be seen nor set before plugging it back in (helper 83)."""
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    heater = relay_entity(entity_registry, addon, 1)
    priority = relay_entity(entity_registry, addon, 1, "priority", "number")
    await wait_for(lambda: shown(hass, heater) == STATE_ON, 10, "the board's relay states")
    boards.paused = True
    boards.voltage.unplug()

    async def hat() -> None:  # the meter goes on without the voltage board
        while True:
            await boards.rpict.write(b"11 100.0 0.0 0.0 21.5\r\n")
            await asyncio.sleep(0.5)

    printing = asyncio.create_task(hat())
    try:
        await wait_for(lambda: shown(hass, heater) == STATE_UNAVAILABLE, 20,
                       "the switch unavailable with its board")
        assert shown(hass, priority) == "50"
        await hass.services.async_call("number", SERVICE_SET_VALUE,
                                       {ATTR_ENTITY_ID: priority, ATTR_VALUE: 10},
                                       blocking=True)
        assert shown(hass, priority) == "10"
        assert (await served_relay(addon, 1))["priority"] == 10
    finally:
        printing.cancel()
        boards.voltage.plug()


async def test_priority_and_minimum_on_time_are_written_to_the_addon(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    priority = relay_entity(entity_registry, addon, 2, "priority", "number")
    min_on = relay_entity(entity_registry, addon, 2, "min_on_s", "number")
    for entity_id in (priority, min_on):
        entry = entity_registry.async_get(entity_id)
        assert entry is not None
        assert entry.entity_category is EntityCategory.CONFIG
    relay = await served_relay(addon, 2)
    assert float(shown(hass, priority)) == relay["priority"]

    await hass.services.async_call("number", SERVICE_SET_VALUE,
                                   {ATTR_ENTITY_ID: priority, ATTR_VALUE: 7}, blocking=True)
    await hass.services.async_call("number", SERVICE_SET_VALUE,
                                   {ATTR_ENTITY_ID: min_on, ATTR_VALUE: 900}, blocking=True)
    relay = await served_relay(addon, 2)
    assert (relay["priority"], relay["min_on_s"]) == (7, 900)
    assert float(shown(hass, priority)) == 7
    assert float(shown(hass, min_on)) == 900
    state = hass.states.get(min_on)
    assert state is not None
    assert state.attributes[ATTR_FRIENDLY_NAME] == "Kitchen Minimum on time"


async def test_a_relay_resting_after_off_says_when_it_may_switch_on(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, hass_ws_client: WebSocketGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A compressor on a relay (heat pump, air conditioner) gets a minimum off time; a
    switch on inside it is refused with when it may, not a bare "answered 409"."""
    min_off = relay_entity(entity_registry, addon, 2, "min_off_s", "number")
    entry = entity_registry.async_get(min_off)
    assert entry is not None
    assert entry.entity_category is EntityCategory.CONFIG
    state = hass.states.get(min_off)
    assert state is not None
    assert state.attributes[ATTR_FRIENDLY_NAME] == "Kitchen Minimum off time"
    await hass.services.async_call("number", SERVICE_SET_VALUE,
                                   {ATTR_ENTITY_ID: min_off, ATTR_VALUE: 300}, blocking=True)
    assert (await served_relay(addon, 2))["min_off_s"] == 300
    assert float(shown(hass, min_off)) == 300

    kitchen = relay_entity(entity_registry, addon, 2)
    await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: kitchen},
                                   blocking=True)
    # The caller asked too soon: a validation error (HA logs one line, not a traceback,
    # when the dashboard asks), not a failure.
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(SWITCH_DOMAIN, SERVICE_TURN_ON,
                                       {ATTR_ENTITY_ID: kitchen}, blocking=True)
    assert raised.value.translation_key == "relay_min_off_time"
    assert re.fullmatch(
        r"Kitchen was switched off less than its minimum off time ago: it can be switched on"
        r" again in (5 min|4 min [1-5]?\d s)", str(raised.value)), str(raised.value)
    assert shown(hass, kitchen) == STATE_OFF
    assert (await served_relay(addon, 2))["state"] is False
    # From the dashboard: the message, and one log line instead of a traceback each time.
    client = await hass_ws_client(hass)
    await client.send_json_auto_id({"type": "call_service", "domain": SWITCH_DOMAIN,
                                    "service": SERVICE_TURN_ON,
                                    "target": {ATTR_ENTITY_ID: kitchen}})
    answer = await client.receive_json()
    assert answer["error"]["code"] == "service_validation_error"
    assert "Kitchen was switched off less than" in answer["error"]["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.exc_info]

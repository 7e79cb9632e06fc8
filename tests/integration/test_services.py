"""shed_load / restore_load against the real add-on's demand response."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import voluptuous as vol
from homeassistant.components.number import ATTR_VALUE, SERVICE_SET_VALUE
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_OFF, SERVICE_TURN_ON, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.energy_tracker.action_context import STREAM_LAG_S
from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.events import EVENT_ENERGY_TRACKER, relay_device_identifier

from .boards import Boards, boards_fixture  # noqa: F401 (fixture)
from .conftest import HOST, Addon, device_with, loaded_entry_with_interval, wait_for
from .test_switch import relay_entity, served_relay, shown

WATER_HEATER, KITCHEN, LAUNDRY = 1, 2, 3


async def set_number(hass: HomeAssistant, entity_id: str, value: float) -> None:
    await hass.services.async_call("number", SERVICE_SET_VALUE,
                                   {ATTR_ENTITY_ID: entity_id, ATTR_VALUE: value}, blocking=True)


async def test_shed_by_priority_skipping_minimum_on_time_then_restore(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, device_registry: dr.DeviceRegistry,
) -> None:
    for relay_id, priority in ((WATER_HEATER, 90), (KITCHEN, 20), (LAUNDRY, 10)):
        await set_number(hass, relay_entity(entity_registry, addon, relay_id, "priority",
                                            "number"), priority)
    # Just switched on, with a 10 minute minimum: shedding must leave it alone.
    await set_number(hass, relay_entity(entity_registry, addon, WATER_HEATER, "min_on_s",
                                        "number"), 600)
    heater = relay_entity(entity_registry, addon, WATER_HEATER)
    for service in (SERVICE_TURN_OFF, SERVICE_TURN_ON):
        await hass.services.async_call("switch", service, {ATTR_ENTITY_ID: heater},
                                       blocking=True)

    # The report names a relay as its events do: by the name the user gave its device.
    washer = device_with(device_registry, relay_device_identifier(addon.meter_id, LAUNDRY))
    assert washer is not None
    device_registry.async_update_device(washer.id, name_by_user="Washer")

    # A limit of 0 W cannot be reached: everything allowed is shed, in priority order.
    shed = await hass.services.async_call(
        DOMAIN, "shed_load", {"config_entry_id": loaded_entry.entry_id, "limit_w": 0},
        blocking=True, return_response=True)
    assert shed is not None
    assert [(r["id"], r["name"]) for r in shed["shed"]] == [(LAUNDRY, "Washer"),
                                                           (KITCHEN, "Kitchen")]
    assert shed["skipped"] == [{"id": WATER_HEATER, "name": "Water heater",
                                "reason": "min_on_time"}]
    assert shed["reached"] is False
    assert (await served_relay(addon, WATER_HEATER))["state"] is True
    for relay_id in (LAUNDRY, KITCHEN):
        assert (await served_relay(addon, relay_id))["shed"] is True
        switch = relay_entity(entity_registry, addon, relay_id)
        await wait_for(lambda s=switch: shown(hass, s) == "off", 10, f"{switch} off")

    restored = await hass.services.async_call(
        DOMAIN, "restore_load", {"stagger_s": 0}, blocking=True, return_response=True)
    assert restored == {"restored": [{"id": KITCHEN, "name": "Kitchen"},
                                     {"id": LAUNDRY, "name": "Washer"}], "failed": [],
                      "pending": [], "interrupted": False}
    for relay_id in (LAUNDRY, KITCHEN):
        switch = relay_entity(entity_registry, addon, relay_id)
        await wait_for(lambda s=switch: shown(hass, s) == STATE_ON, 10, f"{switch} on")


async def test_shed_by_device_with_a_reduction(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    meter = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert meter is not None
    shed = await hass.services.async_call(
        DOMAIN, "shed_load", {"device_id": meter.id, "reduce_w": 100000},
        blocking=True, return_response=True)
    assert shed is not None
    assert shed["reached"] is False
    assert {r["id"] for r in shed["shed"]} == {WATER_HEATER, KITCHEN, LAUNDRY}


async def test_bad_calls_get_clear_errors(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "shed_load", {}, blocking=True,
                                       return_response=True)
    assert raised.value.translation_key == "shed_amount_required"
    with pytest.raises(ServiceValidationError) as raised:  # was vol.Exclusive's raw text
        await hass.services.async_call(DOMAIN, "shed_load", {"limit_w": 1, "reduce_w": 1},
                                       blocking=True, return_response=True)
    assert raised.value.translation_key == "shed_amount_both"
    with pytest.raises(vol.Invalid, match="higher than 0"):  # the add-on refused it (400)
        await hass.services.async_call(DOMAIN, "shed_load", {"reduce_w": 0},
                                       blocking=True, return_response=True)
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "shed_load",
                                       {"config_entry_id": "nope", "limit_w": 1},
                                       blocking=True, return_response=True)
    assert raised.value.translation_key == "unknown_meter"
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "restore_load", {"device_id": "nope"},
                                       blocking=True, return_response=True)
    assert raised.value.translation_key == "unknown_meter"
    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "restore_load", {}, blocking=True,
                                       return_response=True)
    assert raised.value.translation_key == "meter_required"
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "restore_load", {"config_entry_id": loaded_entry.entry_id},
            blocking=True, return_response=True)
    assert raised.value.translation_key == "not_loaded"


async def test_addon_refusals_and_outages_are_translated_errors(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    with pytest.raises(ServiceValidationError) as raised:  # the caller's mistake
        # Over the add-on's 1 000 000 W, which the action's schema leaves to it.
        await hass.services.async_call(DOMAIN, "shed_load", {"limit_w": 2_000_000},
                                       blocking=True, return_response=True)
    assert raised.value.translation_key == "command_invalid"
    assert "limit_w" in str(raised.value)
    await addon.stop()
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(DOMAIN, "restore_load", {}, blocking=True,
                                       return_response=True)
    assert raised.value.translation_key == "cannot_connect"


async def test_calibrate_voltage_against_a_multimeter(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    """The action on the simulated board (tests/firmware/ checks the real firmware then
    reads the multimeter's voltage)."""
    assert addon.service is not None
    await wait_for(lambda: addon.service.voltage_calibration.cal is not None
                   and addon.service.meter.snapshot()["voltage_v"] is not None,
                   10, "the voltage board's hello and voltage")
    board_v = addon.service.meter.snapshot()["voltage_v"]
    measured = round(board_v * 1.02, 1)
    answer = await hass.services.async_call(
        DOMAIN, "calibrate_voltage", {"measured_v": measured},
        blocking=True, return_response=True)
    assert answer is not None
    assert answer["cal_before"] == 2.4  # the firmware's default
    assert answer["cal"] == pytest.approx(
        answer["cal_before"] * answer["measured_v"] / answer["board_v_before"], abs=1e-5)
    assert addon.service.voltage_calibration.cal == answer["cal"]
    # Again at once: the last reading was taken under the old factor, and correcting it
    # again overshot (+2 % twice); it waits for one under the new factor.
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(DOMAIN, "calibrate_voltage", {"measured_v": measured},
                                       blocking=True)
    assert raised.value.translation_key == "calibration_unavailable"
    assert "try again in a second" in str(raised.value.translation_placeholders)
    # The simulated board reads like the firmware: what the multimeter said (the replayed
    # voltage itself moves a little from one reading to the next).
    await wait_for(lambda: addon.service.meter.snapshot()["voltage_v"] != board_v, 10,
                   "a reading under the new factor")
    assert addon.service.meter.snapshot()["voltage_v"] == pytest.approx(measured, rel=0.02)
    # Far from what the board reads: the caller's mistake, said with the reason.
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "calibrate_voltage",
                                       {"measured_v": round(board_v * 1.5, 1)}, blocking=True)
    assert raised.value.translation_key == "calibration_refused"
    assert "trimmer" in str(raised.value.translation_placeholders)
    with pytest.raises(vol.Invalid):  # not a mains voltage at all
        await hass.services.async_call(DOMAIN, "calibrate_voltage", {"measured_v": 2300},
                                       blocking=True)


async def test_a_shed_shows_at_once_whatever_the_minimum_update_interval(
    hass: HomeAssistant, addon: Addon, entity_registry: er.EntityRegistry,
) -> None:
    # 30 s between entity updates: readings wait, but a relay the add-on switched (a shed,
    # a restore) is news the user acts on, shown with the state that carries it.
    await loaded_entry_with_interval(hass, addon, 30)
    laundry = relay_entity(entity_registry, addon, LAUNDRY)
    await wait_for(lambda: shown(hass, laundry) == STATE_ON, 10, "the relays")
    await asyncio.sleep(1.0)  # a reading was just shown: the next waits up to 30 s
    shed = await hass.services.async_call(
        DOMAIN, "shed_load", {"reduce_w": 100000}, blocking=True, return_response=True)
    assert shed is not None
    assert LAUNDRY in {r["id"] for r in shed["shed"]}
    # Well before the 30 s interval ends.
    await wait_for(lambda: shown(hass, laundry) == "off", 10, "the shed relay off")


async def test_relays_switched_by_an_action_carry_its_context(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The add-on switches the relays and the change comes back through the stream: it had
    a context of its own, so the logbook said "turned off" but not that shed_load (and
    which user or automation) did it."""
    laundry = relay_entity(entity_registry, addon, LAUNDRY)
    await wait_for(lambda: shown(hass, laundry) == STATE_ON, 10, "the relays")
    events = async_capture_events(hass, EVENT_ENERGY_TRACKER)
    shed_by = Context(user_id="a-user")
    await hass.services.async_call(DOMAIN, "shed_load", {"reduce_w": 100000}, blocking=True,
                                   context=shed_by)
    await wait_for(lambda: shown(hass, laundry) == "off", 10, "the shed relay off")
    state = hass.states.get(laundry)
    assert state is not None
    assert state.context.id == shed_by.id
    finished = [e for e in events if e.data.get("relay_id") == LAUNDRY]
    assert [e.context.id for e in finished] == [shed_by.id]

    restored_by = Context()
    await hass.services.async_call(DOMAIN, "restore_load", {"stagger_s": 0}, blocking=True,
                                   context=restored_by)
    await wait_for(lambda: shown(hass, laundry) == STATE_ON, 10, "the relay restored")
    state = hass.states.get(laundry)
    assert state is not None
    assert state.context.id == restored_by.id

    # Switched later by another client of the add-on: no action of Home Assistant's.
    await asyncio.sleep(STREAM_LAG_S + 0.5)
    async with aiohttp.ClientSession() as session, session.put(
        f"http://{HOST}:{addon.port}/api/v1/relays/{LAUNDRY}", json={"state": False},
        headers={"Authorization": f"Bearer {addon.token}"},
    ) as response:
        response.raise_for_status()
    await wait_for(lambda: shown(hass, laundry) == "off", 10, "the relay switched elsewhere")
    state = hass.states.get(laundry)
    assert state is not None
    assert state.context.id not in (shed_by.id, restored_by.id)


async def test_shedding_without_a_current_total_says_why(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    """The add-on's 503 "unavailable" read "The add-on answered 503 to the command for
    shed_load: unavailable" (helper 91)."""
    boards.powers = [3000.0, 0.0, 0.0]
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    boards.paused = True  # the CT hat falls silent: no current total
    await wait_for(lambda: config_entry.runtime_data.data.total_power_w is None, 20,
                   "the total unknown")
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(DOMAIN, "shed_load", {"limit_w": 1000},
                                       blocking=True, return_response=True)
    assert raised.value.translation_key == "shed_no_total"
    assert str(raised.value).startswith("Cannot shed load now: the meter has no current "
                                        "total power (its board sends no readings)")

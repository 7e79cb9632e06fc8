"""Device triggers firing automations, driven through the real add-on."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import automation
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_OFF, SERVICE_TURN_ON
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automation_capabilities,
    async_get_device_automations,
    async_mock_service,
)

from custom_components.energy_tracker import device_trigger
from custom_components.energy_tracker import events as events_module
from custom_components.energy_tracker.const import CONF_UPDATE_INTERVAL, DOMAIN
from energy_tracker_addon.analytics import TOTAL
from energy_tracker_addon.anomaly import Anomaly

from .boards import Boards, acking_boards_fixture, boards_fixture  # noqa: F401 (fixture)
from .conftest import Addon, device_with, set_up_entry, wait_for
from .test_switch import relay_entity


async def automation_calls(hass: HomeAssistant, trigger: dict[str, Any]) -> list[ServiceCall]:
    """An automation with `trigger` that calls test.fired with what triggered it."""
    calls = async_mock_service(hass, "test", "fired")
    assert await async_setup_component(hass, automation.DOMAIN, {automation.DOMAIN: {
        "triggers": trigger,
        "actions": {"action": "test.fired", "data": {
            "what": "{{ trigger.event.data.name if trigger.event is defined "
                    "else trigger.to_state.state }}",
        }},
    }})
    await hass.async_block_till_done()
    return calls


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def meter_device(device_registry: dr.DeviceRegistry, addon: Addon) -> dr.DeviceEntry:
    device = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert device is not None
    return device


async def test_offered_triggers(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
) -> None:
    meter = meter_device(device_registry, addon)
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, meter.id)
    ours = [t for t in triggers if t["domain"] == DOMAIN]
    kinds = {(t["type"], t.get("entity_id")) for t in ours}
    power_sensors = {entity_registry.async_get(f"sensor.energy_tracker_{name}").id  # type: ignore[union-attr]
                     for name in ("total_power", "mains_power", "kitchen_power",
                                  "water_heater_ac_power")}
    assert {("appliance_started", None), ("appliance_finished", None),
            ("anomaly_detected", None)} <= kinds
    assert {(kind, sensor) for kind in ("power_above", "power_below")
            for sensor in power_sensors} <= kinds
    energy = entity_registry.async_get("sensor.energy_tracker_total_energy")
    assert energy is not None
    assert ("power_above", energy.id) not in kinds  # only power sensors
    started = next(t for t in ours if t["type"] == "appliance_started")
    capabilities = await async_get_device_automation_capabilities(
        hass, DeviceAutomationType.TRIGGER, started)
    [field] = capabilities["extra_fields"]
    assert (field["name"], field["type"], field["optional"]) == ("appliance", "select", True)
    # The relays and circuits (appliances NILM detects follow them).
    assert field["options"][:5] == [
        ("relay_1", "Water heater (relay)"), ("relay_2", "Kitchen (relay)"),
        ("relay_3", "Laundry (relay)"), ("channel_2", "Kitchen (circuit)"),
        ("channel_3", "Water heater & AC (circuit)")]
    above = next(t for t in ours if t["type"] == "power_above")
    capabilities = await async_get_device_automation_capabilities(
        hass, DeviceAutomationType.TRIGGER, above)
    assert [f["name"] for f in capabilities["extra_fields"]] == ["threshold", "for"]

    heater_switch = entity_registry.async_get(relay_entity(entity_registry, addon, 1))
    assert heater_switch is not None
    relay_triggers = await async_get_device_automations(
        hass, DeviceAutomationType.TRIGGER, heater_switch.device_id)
    assert {t["type"] for t in relay_triggers if t["domain"] == DOMAIN} == {
        "appliance_started", "appliance_finished"}


async def test_relay_switched_fires_appliance_finished_and_started(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    switch = relay_entity(entity_registry, addon, 1)
    device_id = entity_registry.async_get(switch).device_id  # type: ignore[union-attr]
    calls = await automation_calls(hass, [
        {"trigger": "device", "domain": DOMAIN, "device_id": device_id,
         "type": kind} for kind in ("appliance_finished", "appliance_started")])
    await hass.services.async_call("switch", SERVICE_TURN_OFF, {ATTR_ENTITY_ID: switch},
                                   blocking=True)
    await wait_for(lambda: len(calls) == 1, 10, "appliance finished")
    await hass.services.async_call("switch", SERVICE_TURN_ON, {ATTR_ENTITY_ID: switch},
                                   blocking=True)
    await wait_for(lambda: len(calls) == 2, 10, "appliance started")
    assert [call.data["what"] for call in calls] == ["Water heater", "Water heater"]


async def test_circuit_power_crossing_fires_appliance_started_and_finished(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_module, "APPLIANCE_OFF_HOLD_S", 2.0)  # 120 s in use
    await set_up(hass, config_entry)
    meter = meter_device(device_registry, addon)
    events: list[dict[str, Any]] = []
    hass.bus.async_listen("energy_tracker_event", callback(lambda e: events.append(dict(e.data))))
    calls = await automation_calls(hass, [
        {"trigger": "device", "domain": DOMAIN, "device_id": meter.id, "type": kind,
         "appliance": "channel_2"} for kind in ("appliance_started", "appliance_finished")])
    await asyncio.sleep(2.5)  # idle for the hold since Home Assistant started: not running
    boards.powers = [2000.0, 2000.0, 0.0]
    await wait_for(lambda: len(calls) == 1, 10, "the kitchen circuit to start")
    boards.powers = [300.0, 20.0, 0.0]  # between the thresholds: still running
    await asyncio.sleep(1.0)
    # A pause shorter than the hold (a cycling load between two bursts): the same run.
    boards.powers = [0.0, 5.0, 0.0]
    await asyncio.sleep(1.0)
    boards.powers = [2000.0, 2000.0, 0.0]
    await asyncio.sleep(1.0)
    assert len(calls) == 1
    boards.powers = [0.0, 5.0, 0.0]
    idle = hass.loop.time()
    await wait_for(lambda: len(calls) == 2, 10, "the kitchen circuit to finish")
    assert hass.loop.time() - idle >= 2.0
    assert [e["type"] for e in events] == ["appliance_started", "appliance_finished"]
    assert events[0] | {"device_id": None, "config_entry_id": None} == {
        "type": "appliance_started", "appliance": "channel_2", "name": "Kitchen",
        "channel_id": 2, "power_w": 2000.0, "device_id": None, "config_entry_id": None}
    assert events[0]["device_id"] == meter.id


async def circuit_events(hass: HomeAssistant) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    hass.bus.async_listen("energy_tracker_event", callback(lambda e: events.append(
        (e.data["type"], e.data["appliance"]))))
    return events


async def test_a_circuit_low_when_home_assistant_starts_is_not_started_by_its_next_burst(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cycling load (a thermostat's 60 W / 0 W) read between two bursts at the start:
    # its next burst is the run it was in, not a new one. Its end is news.
    monkeypatch.setattr(events_module, "APPLIANCE_OFF_HOLD_S", 2.0)  # 120 s in use
    boards.powers = [0.0, 0.0, 0.0]
    await set_up(hass, config_entry)
    events = await circuit_events(hass)
    for _ in range(3):
        boards.powers = [60.0, 0.0, 60.0]
        await asyncio.sleep(0.6)
        boards.powers = [0.0, 0.0, 0.0]
        await asyncio.sleep(0.6)
    assert events == []
    await wait_for(lambda: bool(events), 10, "the run to finish")
    await asyncio.sleep(2.5)
    assert events == [("appliance_finished", "channel_3")]


async def test_a_reload_neither_starts_a_run_again_nor_loses_its_finish(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_module, "APPLIANCE_OFF_HOLD_S", 2.0)  # 120 s in use
    await set_up(hass, config_entry)
    events = await circuit_events(hass)
    await asyncio.sleep(2.5)  # idle for the hold: decided
    boards.powers = [2000.0, 2000.0, 0.0]
    await wait_for(lambda: len(events) == 1, 10, "the kitchen to start")
    # Between two bursts when the options are saved, then on again: the same run.
    boards.powers = [0.0, 0.0, 0.0]
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    boards.powers = [2000.0, 2000.0, 0.0]
    await asyncio.sleep(1.0)
    assert len(events) == 1
    # It ends during the hold of a second reload: its finish still comes, once.
    boards.powers = [0.0, 0.0, 0.0]
    await asyncio.sleep(1.0)
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await wait_for(lambda: len(events) == 2, 10, "the kitchen to finish")
    await asyncio.sleep(2.5)
    assert events == [("appliance_started", "channel_2"), ("appliance_finished", "channel_2")]


@pytest.mark.parametrize("update_interval", [0, 3])
async def test_a_circuit_its_relay_switched_is_said_once_by_the_relay(
    hass: HomeAssistant, acking_boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, monkeypatch: pytest.MonkeyPatch, update_interval: int,
) -> None:
    """Relay 1 switches the water heater's circuit (channel 3): switching it off used to
    fire the relay's finish and, after the hold, the circuit's too (two notifications);
    the circuit's own finish (its thermostat) still fires. States a minimum update
    interval apart decide the circuit's finish that much later: still the relay's."""
    monkeypatch.setattr(events_module, "APPLIANCE_OFF_HOLD_S", 1.0)  # 120 s in use
    monkeypatch.setattr(events_module, "RELAY_EXPLAINS_S", 3.0)  # 180 s in use
    acking_boards.powers = [2000.0, 0.0, 2000.0]
    config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        config_entry, options={**config_entry.options, CONF_UPDATE_INTERVAL: update_interval})
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    await wait_for(lambda: hass.states.get("sensor.energy_tracker_water_heater_ac_power")
                   .state == "2000.0", 10, "the water heater running")
    events: list[dict[str, Any]] = []
    hass.bus.async_listen("energy_tracker_event", callback(lambda e: events.append(dict(e.data))))
    switch = relay_entity(entity_registry, addon, 1)

    await hass.services.async_call("switch", SERVICE_TURN_OFF, {ATTR_ENTITY_ID: switch},
                                   blocking=True)
    acking_boards.powers = [0.0, 0.0, 0.0]  # the relay cut the circuit
    await asyncio.sleep(3.0 + 2 * update_interval)  # past the hold: the circuit is idle
    await hass.services.async_call("switch", SERVICE_TURN_ON, {ATTR_ENTITY_ID: switch},
                                   blocking=True)
    acking_boards.powers = [2000.0, 0.0, 2000.0]
    await asyncio.sleep(4.0 + 2 * update_interval)  # past RELAY_EXPLAINS_S and an interval
    acking_boards.powers = [0.0, 0.0, 0.0]  # the thermostat: hot enough
    await wait_for(lambda: len(events) == 3, 10, "the circuit's own finish")
    assert [(e["type"], e["appliance"], e.get("shed")) for e in events] == [
        ("appliance_finished", "relay_1", False),
        ("appliance_started", "relay_1", None),
        ("appliance_finished", "channel_3", None),
    ]


@pytest.mark.parametrize(("kind", "threshold", "power"),
                         [("power_above", 1500, 2000.0), ("power_below", 50, 10.0)])
async def test_power_threshold_for_a_duration(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
    kind: str, threshold: float, power: float,
) -> None:
    boards.powers = [500.0, 0.0, 0.0]
    await set_up(hass, config_entry)
    total = entity_registry.async_get("sensor.energy_tracker_total_power")
    assert total is not None
    calls = await automation_calls(hass, {
        "trigger": "device", "domain": DOMAIN, "device_id": meter_device(
            device_registry, addon).id,
        "type": kind, "entity_id": total.id, "threshold": threshold, "for": {"seconds": 1}})
    await wait_for(lambda: hass.states.get(total.entity_id).state == "500.0", 10, "500 W")
    boards.powers = [power, 0.0, 0.0]
    waited = await wait_for(lambda: len(calls) == 1, 10, f"{kind} {threshold}")
    assert waited >= 1.0  # only after the duration
    assert float(calls[0].data["what"]) == power


async def test_power_threshold_is_in_watts_whatever_unit_the_sensor_shows(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
) -> None:
    """The form asks for watts; a sensor the user shows in kW compared 3.9 with 3000 and
    never fired."""
    boards.powers = [500.0, 0.0, 0.0]
    await set_up(hass, config_entry)
    total = entity_registry.async_get("sensor.energy_tracker_total_power")
    assert total is not None
    entity_registry.async_update_entity_options(total.entity_id, "sensor",
                                                {"unit_of_measurement": "kW"})
    await wait_for(lambda: hass.states.get(total.entity_id).state == "0.5", 10, "0.5 kW")
    calls = await automation_calls(hass, {
        "trigger": "device", "domain": DOMAIN,
        "device_id": meter_device(device_registry, addon).id,
        "type": "power_above", "entity_id": total.id, "threshold": 1500})
    boards.powers = [1000.0, 0.0, 0.0]  # 1 kW: above 1500 mW but not 1500 W
    await wait_for(lambda: hass.states.get(total.entity_id).state == "1.0", 10, "1 kW")
    await asyncio.sleep(0.5)
    assert calls == []
    boards.powers = [2000.0, 0.0, 0.0]
    await wait_for(lambda: len(calls) == 1, 10, "above 1500 W shown as 2 kW")
    assert float(calls[0].data["what"]) == 2.0  # the state as shown, in kW


async def total_power_trigger(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    kind: str, threshold: float, watts: float, **duration: Any,
) -> tuple[er.RegistryEntry, list[ServiceCall]]:
    """The entry set up at `watts`, then an automation on its total power's threshold
    (for `duration`, the trigger's `for`, if given)."""
    boards.powers = [watts, 0.0, 0.0]
    await set_up(hass, config_entry)
    total = er.async_get(hass).async_get("sensor.energy_tracker_total_power")
    assert total is not None
    await wait_for(lambda: hass.states.get(total.entity_id).state == str(watts), 10, "steady")
    calls = await automation_calls(hass, {
        "trigger": "device", "domain": DOMAIN, "device_id": meter_device(
            dr.async_get(hass), addon).id,
        "type": kind, "entity_id": total.id, "threshold": threshold,
    } | ({"for": duration} if duration else {}))
    return total, calls


@pytest.mark.parametrize(("kind", "threshold", "steady", "crossing"),
                         [("power_above", 1500, 2000.0, 500.0), ("power_below", 50, 10.0, 500.0)])
async def test_power_threshold_ignores_a_reload(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    kind: str, threshold: float, steady: float, crossing: float,
) -> None:
    # Saving the options reloads the entry: the sensor is unavailable, then back on the
    # same side of the threshold. Nothing crossed it, so nothing fires.
    total, calls = await total_power_trigger(hass, boards, addon, config_entry, kind,
                                             threshold, steady)
    seen: list[str] = []
    hass.bus.async_listen("state_changed", callback(lambda event: seen.append(
        event.data["new_state"].state if event.data["new_state"] else "removed")
        if event.data["entity_id"] == total.entity_id else None))
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await wait_for(lambda: hass.states.get(total.entity_id).state == str(steady), 10,
                   "steady after the reload")
    assert "unavailable" in seen  # what used to arm the trigger
    await asyncio.sleep(1.0)
    assert calls == []
    # A real crossing still fires, once.
    boards.powers = [crossing, 0.0, 0.0]
    await wait_for(lambda: hass.states.get(total.entity_id).state == str(crossing), 10, "away")
    boards.powers = [steady, 0.0, 0.0]
    await wait_for(lambda: len(calls) == 1, 10, f"{kind} {threshold}")
    await hass.async_block_till_done()
    assert [float(call.data["what"]) for call in calls] == [steady]


@pytest.mark.parametrize(("kind", "threshold", "before", "after"),
                         [("power_above", 1500, 500.0, 2000.0), ("power_below", 50, 500.0, 10.0)])
async def test_power_threshold_crossed_while_unavailable_fires_once_back(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    kind: str, threshold: float, before: float, after: float,
) -> None:
    # The washer finished while the entry reloaded (or the add-on was updated): the
    # first reading back is past the threshold the last one before was not.
    total, calls = await total_power_trigger(hass, boards, addon, config_entry, kind,
                                             threshold, before)
    assert await hass.config_entries.async_unload(config_entry.entry_id)
    assert hass.states.get(total.entity_id).state == "unavailable"
    boards.powers = [after, 0.0, 0.0]
    await asyncio.sleep(1.0)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await wait_for(lambda: len(calls) == 1, 10, f"{kind} {threshold}")
    await asyncio.sleep(1.0)
    assert [float(call.data["what"]) for call in calls] == [after]


async def test_a_reload_during_a_power_triggers_wait_does_not_lose_the_crossing(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
) -> None:
    # Below 50 W for 2 s: the reload comes 0.5 s into the wait, which Home Assistant
    # cancels and starts again from `unavailable` once the sensor is back, still below.
    total, calls = await total_power_trigger(hass, boards, addon, config_entry,
                                             "power_below", 50, 500.0, seconds=2)
    boards.powers = [10.0, 0.0, 0.0]
    await wait_for(lambda: hass.states.get(total.entity_id).state == "10.0", 10, "below")
    await asyncio.sleep(0.5)
    assert await hass.config_entries.async_reload(config_entry.entry_id)
    await wait_for(lambda: len(calls) == 1, 10, "the crossing, once")
    await asyncio.sleep(2.5)
    assert [float(call.data["what"]) for call in calls] == [10.0]


async def test_anomaly_from_the_addon_fires_anomaly_detected(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    calls = await automation_calls(hass, {
        "trigger": "device", "domain": DOMAIN,
        "device_id": meter_device(device_registry, addon).id, "type": "anomaly_detected"})
    assert addon.service is not None
    # What the add-on's detector reports when one starts (learning a baseline takes weeks).
    addon.service.analytics._log_event(TOTAL, Anomaly(
        kind="high", series="total", started=datetime.now(UTC), power_w=2500.0,
        usual_w=400.0, slot="Monday 03:00", reason="base load 2.5 kW, usually 0.4 kW"))
    await wait_for(lambda: len(calls) == 1, 10, "the anomaly")
    await hass.async_block_till_done()
    assert len(calls) == 1


async def test_incomplete_power_trigger_is_refused(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    calls = await automation_calls(hass, {
        "trigger": "device", "domain": DOMAIN,
        "device_id": meter_device(device_registry, addon).id, "type": "power_above"})
    assert hass.states.get("automation.automation_0").state == "unavailable"
    assert calls == []


async def test_a_detected_appliance_named_like_a_relay_fires_its_own_triggers(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    # A fine-tuned bundle may call an appliance "dryer_relay_1": its device is still the
    # appliance's, so its events (appliance_events.py) carry `appliance_device_id`.
    dryer = device_registry.async_get_or_create(
        config_entry_id=loaded_entry.entry_id, name="Dryer",
        identifiers={(DOMAIN, f"{addon.meter_id}_appliance_dryer_relay_1")})
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, dryer.id)
    assert {t["type"] for t in triggers if t["domain"] == DOMAIN} == {
        "appliance_started", "appliance_finished"}
    calls = await automation_calls(hass, {"trigger": "device", "domain": DOMAIN,
                                          "device_id": dryer.id, "type": "appliance_started"})
    hass.bus.async_fire("energy_tracker_event", {
        "type": "appliance_started", "appliance": "nilm_dryer_relay_1", "name": "Dryer",
        "appliance_device_id": dryer.id, "device_id": meter_device(device_registry, addon).id})
    await hass.async_block_till_done()
    assert [call.data["what"] for call in calls] == ["Dryer"]


async def test_triggers_a_device_does_not_offer_are_refused(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
) -> None:
    """Written by hand (YAML, the config API), these used to be accepted and never fire."""
    from homeassistant.components.device_automation.exceptions import (
        InvalidDeviceAutomationConfig,
    )
    from homeassistant.components.device_automation.trigger import (
        async_validate_trigger_config,
    )

    meter = meter_device(device_registry, addon)
    devices = dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id)
    board = next(d for d in devices if d.name == "RPICT hat")
    relay = entity_registry.async_get(relay_entity(entity_registry, addon, 1))
    assert relay is not None

    def trigger(device: dr.DeviceEntry, kind: str, **extra: Any) -> dict[str, Any]:
        return {"platform": "device", "domain": DOMAIN, "device_id": device.id,
                "type": kind, **extra}

    fine = [trigger(meter, "appliance_finished", appliance="relay_1"),
            trigger(meter, "anomaly_detected"),
            trigger(meter, "power_above", entity_id="sensor.energy_tracker_total_power",
                    threshold=1000)]
    for config in fine:
        assert await async_validate_trigger_config(hass, config)
    relay_device = device_registry.async_get(relay.device_id)  # type: ignore[arg-type]
    assert relay_device is not None
    wrong = [
        (trigger(meter, "appliance_finished", appliance="toaster"), "for toaster"),
        (trigger(board, "appliance_finished"), "RPICT hat has no appliance_finished"),
        (trigger(relay_device, "anomaly_detected"), "no anomaly_detected trigger"),
        (trigger(meter, "power_above", entity_id="sensor.energy_tracker_total_energy",
                 threshold=1000), "for sensor.energy_tracker_total_energy"),
    ]
    # Each language words the subject itself (an English " for" was pasted into French).
    messages = json.loads((Path(__file__).resolve().parents[2] / "custom_components"
                           / DOMAIN / "translations" / "en.json").read_text())["exceptions"]
    for config, said in wrong:
        with pytest.raises(InvalidDeviceAutomationConfig) as raised:
            await async_validate_trigger_config(hass, config)
        assert raised.value.translation_key in ("trigger_not_offered", "trigger_not_offered_for")
        placeholders = raised.value.translation_placeholders or {}
        assert all(" for " not in value and " on " not in value
                   for value in placeholders.values()), placeholders
        message = messages[raised.value.translation_key]["message"].format(**placeholders)
        assert said in message, message


async def test_an_appliance_trigger_stays_valid_while_detection_is_off(
    hass: HomeAssistant, addon: Addon
) -> None:
    """A bundle being copied to /share, the add-on restarted meanwhile: every "washing
    machine finished" automation was refused as offered for no such appliance, and stayed
    off until the next reload (helper 81)."""
    entry = await set_up_entry(hass, addon)
    meter = device_with(dr.async_get(hass), (DOMAIN, addon.meter_id))
    assert meter is not None
    config = {"platform": "device", "domain": DOMAIN, "device_id": meter.id,
              "type": "appliance_finished", "appliance": "nilm_washing_machine"}
    await wait_for(lambda: entry.runtime_data.data.appliances is not None, 20, "appliances")
    assert await device_trigger.async_validate_trigger_config(hass, config)
    await addon.stop()
    await addon.start(nilm_bundle_dir="/nonexistent")
    await wait_for(lambda: entry.runtime_data.last_update_success
                   and entry.runtime_data.data.appliances is None, 30, "detection off")
    assert await device_trigger.async_validate_trigger_config(hass, config)

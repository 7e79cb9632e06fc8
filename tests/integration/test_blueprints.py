"""The automation blueprints (blueprints/automation/energy_tracker), run by HA's machinery."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import automation
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_OFF
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util.yaml import load_yaml_dict
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_mock_service

from custom_components.energy_tracker.const import DOMAIN
from energy_tracker_addon.analytics import TOTAL
from energy_tracker_addon.anomaly import Anomaly

from .boards import Boards, boards_fixture  # noqa: F401 (fixture)
from .conftest import Addon, device_with, wait_for
from .test_switch import relay_entity, served_relay

BLUEPRINTS = Path(__file__).parents[2] / "blueprints" / "automation" / "energy_tracker"
REPOSITORY = "https://github.com/energy-tracker/energy_tracker"


@pytest.fixture
def installed(hass: HomeAssistant, tmp_path: Path) -> None:
    """The blueprints installed in a config dir of the test's own."""
    hass.config.config_dir = str(tmp_path)
    shutil.copytree(BLUEPRINTS, tmp_path / "blueprints" / "automation" / "energy_tracker")


@pytest.fixture
def notify(hass: HomeAssistant, installed: None) -> list[ServiceCall]:
    """notify.notify, recorded: where the blueprints send their messages."""
    return async_mock_service(hass, "notify", "notify")


async def use_blueprint(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> None:
    assert await async_setup_component(hass, automation.DOMAIN, {automation.DOMAIN: {
        "use_blueprint": {"path": f"energy_tracker/{name}.yaml", "input": inputs}}})
    await hass.async_block_till_done()
    state = hass.states.get("automation.automation_0")
    assert state is not None
    assert state.state == "on", f"{name} did not set up"


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()


def last_triggered(hass: HomeAssistant) -> datetime:
    state = hass.states.get("automation.automation_0")
    assert state is not None
    when: datetime | None = state.attributes["last_triggered"]
    assert when is not None, "the automation never ran"
    return when


def meter_id(device_registry: dr.DeviceRegistry, addon: Addon) -> str:
    device = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert device is not None
    return device.id


def test_every_blueprint_is_importable_from_the_repository() -> None:
    for path in BLUEPRINTS.glob("*.yaml"):
        blueprint = load_yaml_dict(path)["blueprint"]
        assert blueprint["source_url"] == f"{REPOSITORY}/blob/main/{path.relative_to(
            BLUEPRINTS.parents[2])}"
        assert blueprint["domain"] == "automation"


async def test_power_above_a_threshold_notifies(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    notify: list[ServiceCall],
) -> None:
    boards.powers = [500.0, 0.0, 0.0]
    await set_up(hass, config_entry)
    await use_blueprint(hass, "power_threshold_notify", {
        "sensor": "sensor.energy_tracker_total_power", "threshold": 3000})
    boards.powers = [3500.0, 0.0, 0.0]
    await wait_for(lambda: len(notify) == 1, 10, "the notification")
    assert notify[0].data == {
        "title": "Energy Tracker",
        "message": "Energy Tracker Total power is at 3500 W, above 3000 W.",
    }


@pytest.mark.parametrize(
    ("threshold", "before", "after", "said"),
    [
        # kWh values were rounded to whole numbers: "… is at 0 kWh, above 0.05 kWh".
        (0.05, "0.01", "0.073", "is at 0.07 kWh, above 0.05 kWh."),
        # Two decimals made 0.0536 read "0.05 kWh, above 0.053 kWh": below its own limit.
        (0.053, "0.05", "0.0536", "is at 0.054 kWh, above 0.053 kWh."),
        # Just over: "at 0.25 kWh, above 0.25 kWh" read as not above at all.
        (0.25, "0.24", "0.2512", "is at 0.251 kWh, above 0.25 kWh."),
    ],
)
async def test_energy_above_a_threshold_says_kwh_with_the_thresholds_decimals(
    hass: HomeAssistant, notify: list[ServiceCall],
    threshold: float, before: str, after: str, said: str,
) -> None:
    attributes = {"device_class": "energy", "unit_of_measurement": "kWh",
                  "friendly_name": "Energy today"}
    hass.states.async_set("sensor.energy_today", before, attributes)
    await use_blueprint(hass, "power_threshold_notify", {
        "sensor": "sensor.energy_today", "threshold": threshold})
    hass.states.async_set("sensor.energy_today", after, attributes)
    await wait_for(lambda: len(notify) == 1, 10, "the notification")
    assert notify[0].data["message"] == f"Energy today {said}"


async def test_a_counter_back_from_an_addon_restart_is_no_new_crossing(
    hass: HomeAssistant, notify: list[ServiceCall],
) -> None:
    """An energy counter over its threshold went unavailable while the add-on restarted and
    came back over it: that used to notify again at every add-on update."""
    attributes = {"device_class": "energy", "unit_of_measurement": "kWh",
                  "friendly_name": "Total energy"}
    hass.states.async_set("sensor.total_energy", "0.2", attributes)
    await use_blueprint(hass, "power_threshold_notify", {
        "sensor": "sensor.total_energy", "threshold": 0.25})
    hass.states.async_set("sensor.total_energy", "0.3", attributes)
    await wait_for(lambda: len(notify) == 1, 10, "the crossing")
    hass.states.async_set("sensor.total_energy", "unavailable", attributes)
    await hass.async_block_till_done()
    hass.states.async_set("sensor.total_energy", "0.31", attributes)
    await hass.async_block_till_done()
    await asyncio.sleep(0.5)
    assert len(notify) == 1


async def test_power_above_its_rolling_average_notifies(
    hass: HomeAssistant, boards: Boards, addon: Addon, config_entry: MockConfigEntry,
    notify: list[ServiceCall],
) -> None:
    boards.powers = [400.0, 0.0, 0.0]
    # The rolling average the README tells users to create: a Statistics helper.
    assert await async_setup_component(hass, "sensor", {"sensor": {
        "platform": "statistics", "name": "Power average",
        "entity_id": "sensor.energy_tracker_total_power",
        # 20 samples: 2000 W stays above twice the mean for four readings, not just the
        # first one, which a busy event loop could let pass unseen.
        "state_characteristic": "mean", "sampling_size": 20}})
    await set_up(hass, config_entry)
    await wait_for(lambda: hass.states.get("sensor.power_average").state == "400.0", 10,
                   "the average to settle")
    await use_blueprint(hass, "power_threshold_notify", {
        "sensor": "sensor.energy_tracker_total_power", "compare_to": "average",
        "average_sensor": "sensor.power_average", "factor": 2})
    boards.powers = [700.0, 0.0, 0.0]  # under twice the average: nothing
    await wait_for(lambda: hass.states.get("sensor.energy_tracker_total_power").state
                   == "700.0", 10, "700 W")
    # above twice the average, the average holding 700 W and 400 W readings and this one
    boards.powers = [2000.0, 0.0, 0.0]
    await wait_for(lambda: hass.states.get("sensor.energy_tracker_total_power").state
                   == "2000.0", 10, "2000 W")
    await wait_for(lambda: len(notify) == 1, 10, "the notification")
    assert "Energy Tracker Total power is at 2000 W" in notify[0].data["message"]
    assert "(2\u00d7 its average)" in notify[0].data["message"]


async def test_appliance_finished_notifies(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, device_registry: dr.DeviceRegistry,
    notify: list[ServiceCall],
) -> None:
    await use_blueprint(hass, "appliance_finished_notify",
                        {"meter": meter_id(device_registry, addon)})
    await hass.services.async_call("switch", SERVICE_TURN_OFF, {
        ATTR_ENTITY_ID: relay_entity(entity_registry, addon, 3)}, blocking=True)
    await wait_for(lambda: len(notify) >= 1, 10, "the notification")
    # A relay switched off is said as such, not as an appliance that ended its job.
    assert notify[0].data == {"title": "Energy Tracker",
                              "message": "Laundry was switched off."}


async def test_anomaly_notifies(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, notify: list[ServiceCall],
) -> None:
    await use_blueprint(hass, "anomaly_notify", {"meter": meter_id(device_registry, addon)})
    assert addon.service is not None
    addon.service.analytics._log_event(TOTAL, Anomaly(
        kind="high", series="total", started=datetime.now(UTC), power_w=2500.0,
        usual_w=400.0, slot="Monday 03:00", reason="Base load far above the usual"))
    await wait_for(lambda: len(notify) == 1, 10, "the notification")
    assert notify[0].data == {
        "title": "Unusual energy use",
        "message": "Base load far above the usual (now 2500 W, usually 400 W).",
    }
    # A low reason already says the power: it is not said twice.
    addon.service.analytics._log_event(TOTAL, Anomaly(
        kind="low", series="total", started=datetime.now(UTC), power_w=500.0,
        usual_w=8000.0, slot="Sunday 04:00",
        reason="7.5 kW below the usual for Sunday 04:00 (now 0.5 kW)"))
    await wait_for(lambda: len(notify) == 2, 10, "the second notification")
    assert notify[1].data["message"] == "7.5 kW below the usual for Sunday 04:00 (now 0.5 kW)."


async def test_demand_response_sheds_and_restores(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, installed: None,
) -> None:
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"peak": {}}})
    # The grid's view of the house: a power sensor the test controls.
    hass.states.async_set("sensor.grid_power", "50", {"device_class": "power",
                                                     "unit_of_measurement": "W"})
    await use_blueprint(hass, "demand_response", {
        "meter": loaded_entry.entry_id, "power_sensor": "sensor.grid_power",
        "limit_w": 100, "over_for": {"seconds": 0}, "signal": ["input_boolean.peak"],
        "restore_below_w": 30, "restore_after": {"seconds": 0}, "stagger_s": 0})

    async def all_relays(on: bool) -> bool:
        return all([(await served_relay(addon, i))["state"] is on for i in (1, 2, 3)])

    # The simulated house draws far more than 100 W: everything is shed.
    hass.states.async_set("sensor.grid_power", "200", {"device_class": "power"})
    await wait_for(lambda: all_relays(False), 20, "shedding over the limit")
    hass.states.async_set("sensor.grid_power", "20", {"device_class": "power"})
    await wait_for(lambda: all_relays(True), 20, "restoring under the limit")

    await hass.services.async_call("input_boolean", "turn_on",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: all_relays(False), 20, "shedding on the grid signal")
    await hass.services.async_call("input_boolean", "turn_off",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: all_relays(True), 20, "restoring when the signal ends")

    # The power sensor unavailable when the signal ends: unknown power is not low power.
    await hass.services.async_call("input_boolean", "turn_on",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: all_relays(False), 20, "shedding on the grid signal")
    hass.states.async_set("sensor.grid_power", "unavailable", {"device_class": "power"})
    await hass.services.async_call("input_boolean", "turn_off",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await hass.async_block_till_done()
    await asyncio.sleep(1)
    assert await all_relays(False)


async def test_the_power_back_after_an_addon_restart_does_not_restore_at_once(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, installed: None,
) -> None:
    """The power sensor unavailable (the add-on restarting) and back under the restore
    level: that restored the shed relays at once, skipping "Below that for"."""
    hass.states.async_set("sensor.grid_power", "50", {"device_class": "power"})
    await use_blueprint(hass, "demand_response", {
        "meter": loaded_entry.entry_id, "power_sensor": "sensor.grid_power",
        "limit_w": 100, "over_for": {"seconds": 0}, "restore_below_w": 30,
        "restore_after": {"hours": 1}, "stagger_s": 0})

    async def all_relays(on: bool) -> bool:
        return all([(await served_relay(addon, i))["state"] is on for i in (1, 2, 3)])

    hass.states.async_set("sensor.grid_power", "200", {"device_class": "power"})
    await wait_for(lambda: all_relays(False), 20, "shedding over the limit")
    shed_at = last_triggered(hass)
    hass.states.async_set("sensor.grid_power", "unavailable", {"device_class": "power"})
    await hass.async_block_till_done()
    hass.states.async_set("sensor.grid_power", "20", {"device_class": "power"})
    await hass.async_block_till_done()
    await asyncio.sleep(1)
    assert await all_relays(False)
    # A run that did nothing is not the automation's last trigger.
    assert last_triggered(hass) == shed_at
    hass.states.async_set("sensor.grid_power", "50", {"device_class": "power"})
    await hass.async_block_till_done()  # ends the hour's wait of "Below that for"


async def test_demand_response_reads_a_kw_sensor_in_watts(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, installed: None,
) -> None:
    """The limits are in W: a power sensor shown in kW (a P1 meter, or Total power shown in
    kW) compared 0.2 with 100 and never shed, and read as always under the restore level
    (helper 91). The add-on sheds down to the limit by its own total, far above 100 W."""
    kw = {"device_class": "power", "unit_of_measurement": "kW"}
    hass.states.async_set("sensor.grid_power", "0.05", kw)
    await use_blueprint(hass, "demand_response", {
        "meter": loaded_entry.entry_id, "power_sensor": "sensor.grid_power",
        "limit_w": 100, "over_for": {"seconds": 0}, "restore_below_w": 30,
        "restore_after": {"seconds": 0}, "stagger_s": 0})

    async def all_relays(on: bool) -> bool:
        return all([(await served_relay(addon, i))["state"] is on for i in (1, 2, 3)])

    hass.states.async_set("sensor.grid_power", "0.2", kw)
    await wait_for(lambda: all_relays(False), 20, "shedding at 0.2 kW over a 100 W limit")
    hass.states.async_set("sensor.grid_power", "0.04", kw)  # under the limit, over 30 W
    await hass.async_block_till_done()
    await asyncio.sleep(1)
    assert await all_relays(False)
    hass.states.async_set("sensor.grid_power", "0.02", kw)
    await wait_for(lambda: all_relays(True), 20, "restoring at 0.02 kW under 30 W")


async def test_a_relay_switched_back_on_during_the_signal_stays_on_after_an_outage(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, installed: None,
) -> None:
    """The user's override: the power sensor back from unavailable (an add-on restart, an
    entry reload) crossed "above 0" again and shed it (helper 91)."""
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"peak": {}}})
    watts = {"device_class": "power", "unit_of_measurement": "W"}
    hass.states.async_set("sensor.grid_power", "500", watts)
    await use_blueprint(hass, "demand_response", {
        "meter": loaded_entry.entry_id, "power_sensor": "sensor.grid_power",
        "limit_w": 100000, "over_for": {"seconds": 0}, "signal": ["input_boolean.peak"],
        "restore_below_w": 100, "restore_after": {"hours": 1}, "stagger_s": 0})

    async def relays_are(states: list[bool]) -> bool:
        return [(await served_relay(addon, i))["state"] for i in (1, 2, 3)] == states

    await hass.services.async_call("input_boolean", "turn_on",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: relays_are([False, False, False]), 20, "shedding on the signal")
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: relay_entity(er.async_get(hass), addon, 1)},
        blocking=True)
    await wait_for(lambda: relays_are([True, False, False]), 20, "the user's override")
    hass.states.async_set("sensor.grid_power", "unavailable", watts)
    await hass.async_block_till_done()
    hass.states.async_set("sensor.grid_power", "600", watts)
    await hass.async_block_till_done()
    await asyncio.sleep(1)
    assert await relays_are([True, False, False])
    # A real new excess while signalled still sheds (a known power crossing the limit).
    hass.states.async_set("sensor.grid_power", "0", watts)
    hass.states.async_set("sensor.grid_power", "700", watts)
    await wait_for(lambda: relays_are([False, False, False]), 20, "shedding a new excess")
    hass.states.async_set("sensor.grid_power", "500", watts)
    await hass.async_block_till_done()  # ends the hour's wait of "Below that for"


async def test_the_grid_signal_sheds_on_its_own(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, installed: None,
) -> None:
    """The signal used to shed only down to the ordinary limit: with the house under it
    (here a limit nothing reaches), turning the signal on switched nothing off."""
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"peak": {}}})
    await use_blueprint(hass, "demand_response", {
        "meter": loaded_entry.entry_id, "power_sensor": "sensor.energy_tracker_total_power",
        "limit_w": 100000, "signal": ["input_boolean.peak"], "restore_below_w": 100000,
        "restore_after": {"seconds": 0}, "stagger_s": 0})

    async def relays_are(states: list[bool]) -> bool:
        return [(await served_relay(addon, i))["state"] for i in (1, 2, 3)] == states

    assert await relays_are([True, True, True])
    await hass.services.async_call("input_boolean", "turn_on",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: relays_are([False, False, False]), 20, "shedding on the signal")
    await hass.services.async_call("input_boolean", "turn_off",
                                   {ATTR_ENTITY_ID: "input_boolean.peak"}, blocking=True)
    await wait_for(lambda: relays_are([True, True, True]), 20, "restoring after it")


async def test_anomaly_without_figures_still_notifies(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, notify: list[ServiceCall],
) -> None:
    # The event schema allows null powers (events.py passes what the add-on sent).
    await use_blueprint(hass, "anomaly_notify", {"meter": meter_id(device_registry, addon)})
    hass.bus.async_fire("energy_tracker_event", {
        "type": "anomaly_detected", "kind": "low", "series": "total", "reason": None,
        "power_w": None, "usual_w": None,
        "device_id": meter_id(device_registry, addon)})
    await hass.async_block_till_done()
    assert [call.data for call in notify] == [
        {"title": "Unusual energy use", "message": "Unusual low consumption."}]


def _offered(selector: dict[str, Any], device: dr.DeviceEntry, domains: set[str]) -> bool:
    """Whether a device selector's filter lets the user pick `device` (as the frontend
    filters: any one entry of the list matching on every key it names)."""
    filters = selector.get("filter", [selector])
    return any(
        ("integration" not in f or f["integration"] in domains)
        and ("model" not in f or f["model"] == device.model)
        for f in filters
    )


@pytest.mark.parametrize("name", ["anomaly_notify", "appliance_finished_notify"])
async def test_device_pickers_offer_exactly_the_devices_that_can_fire(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, name: str,
) -> None:
    """An extra meter (whose model was the main meter's) was offered and never fired."""
    from homeassistant.components.device_automation import (
        DeviceAutomationType,
        async_get_device_automations,
    )

    await addon.stop()
    await addon.start(extra_meters=[{"id": "garage", "name": "Garage"}])
    await addon.wait_for_reading()
    loaded_entry = config_entry
    await set_up(hass, loaded_entry)
    assert any(d.name == "Garage" for d in
               dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id))

    blueprint = load_yaml_dict(str(BLUEPRINTS / f"{name}.yaml"))
    (trigger,) = blueprint["triggers"]
    selector = blueprint["blueprint"]["input"][trigger["device_id"].name]["selector"]["device"]
    devices = dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id)
    assert len(devices) >= 4  # the meter, its boards, relays (and appliances)
    found = await async_get_device_automations(
        hass, DeviceAutomationType.TRIGGER, [d.id for d in devices])
    fires = {d.id for d in devices
             if any(t["type"] == trigger["type"] for t in found[d.id])}
    offered = {d.id for d in devices if _offered(selector, d, {DOMAIN})}
    assert fires
    assert offered == fires

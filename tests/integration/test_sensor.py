"""Entities as a user sees them, compared with what the real add-on serves."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.sensor import ATTR_STATE_CLASS
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    ATTR_DEVICE_CLASS,
    ATTR_FRIENDLY_NAME,
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_UNAVAILABLE,
    EntityCategory,
)
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, mock_restore_cache

from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.sensor import HATS_WITHOUT_TEMPERATURE, HATS_WITHOUT_VOLTAGE
from energy_tracker_addon.protocol import RPICT_PRINTS_TEMPERATURE, RPICT_PRINTS_VOLTAGE
from tests.addon.ptys import PtyPort

from .boards import Boards
from .conftest import Addon, device_with, wait_for


def entity_id(registry: er.EntityRegistry, addon: Addon, key: str,
              platform: str = "sensor") -> str:
    found = registry.async_get_entity_id(platform, DOMAIN, f"{addon.meter_id}_{key}")
    assert found is not None, f"no entity for {key}"
    return found


async def matching_reading(hass: HomeAssistant, addon: Addon,
                           entry: MockConfigEntry) -> dict[str, Any]:
    """A state of the add-on that HA is showing right now (same reading `seq`)."""
    for _ in range(100):
        served: dict[str, Any] = await addon.get("state")
        await asyncio.sleep(0.05)  # let the pushed message of that reading arrive
        if entry.runtime_data.data.seq == served["seq"]:
            return served
    raise AssertionError("HA never showed the reading the add-on served")


def value(hass: HomeAssistant, entity: str) -> float | None:
    state = hass.states.get(entity)
    assert state is not None
    return None if state.state == STATE_UNAVAILABLE else float(state.state)


async def test_states_are_the_served_values(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    registry = entity_registry
    # The served state's voltage and frequency are the newest board frame's, which may come
    # between two readings (one `seq`) and reaches HA with the next: a few tries.
    for _ in range(10):
        served = await matching_reading(hass, addon, loaded_entry)
        expected = {
            "total_power": served["total_power_w"],
            "total_energy": served["total_energy_kwh"],
            "voltage": served["voltage_v"],
            "frequency": served["frequency_hz"],
            "temperature": served["temperature_c"],
        }
        for channel in served["channels"]:
            for key, field in (("power", "power_w"), ("current", "current_a"),
                               ("energy", "energy_kwh")):
                expected[f"channel_{channel['id']}_{key}"] = channel[field]
        assert expected["total_power"] is not None, "the simulated meter is running"
        shown = {key: value(hass, entity_id(registry, addon, key)) for key in expected}
        if shown == expected:
            break
    assert shown == expected

    for board_id, board in served["boards"].items():
        rejected = entity_id(registry, addon, f"{board_id}_lines_rejected")
        assert value(hass, rejected) == board["lines_rejected"]
        connected = hass.states.get(entity_id(registry, addon, f"{board_id}_connected",
                                              "binary_sensor"))
        assert connected is not None
        assert connected.state == ("on" if board["connected"] else "off")


async def test_states_follow_new_readings(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    energy = entity_id(entity_registry, addon, "total_energy")
    first = value(hass, energy)
    assert first is not None
    # 60x replay: the energy counter grows within seconds.
    await wait_for(lambda: (value(hass, energy) or 0) > first, 15, "energy to grow")


async def test_units_and_classes_fit_the_energy_dashboard(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    info = await addon.get("info")
    expected = {
        "total_power": ("power", "W", "measurement"),
        "total_energy": ("energy", "kWh", "total_increasing"),
        "voltage": ("voltage", "V", "measurement"),
        "frequency": ("frequency", "Hz", "measurement"),
        "temperature": ("temperature", "°C", "measurement"),
    }
    for channel in info["channels"]:
        expected[f"channel_{channel['id']}_power"] = ("power", "W", "measurement")
        expected[f"channel_{channel['id']}_current"] = ("current", "A", "measurement")
        expected[f"channel_{channel['id']}_energy"] = ("energy", "kWh", "total_increasing")
    for key, (device_class, unit, state_class) in expected.items():
        state = hass.states.get(entity_id(entity_registry, addon, key))
        assert state is not None
        assert state.attributes[ATTR_DEVICE_CLASS] == device_class, key
        assert state.attributes[ATTR_UNIT_OF_MEASUREMENT] == unit, key
        assert state.attributes[ATTR_STATE_CLASS] == state_class, key


async def test_names_use_the_addon_channel_names(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    info = await addon.get("info")
    total = hass.states.get(entity_id(entity_registry, addon, "total_power"))
    assert total is not None
    assert total.attributes[ATTR_FRIENDLY_NAME] == f"{info['name']} Total power"
    for channel in info["channels"]:
        state = hass.states.get(entity_id(entity_registry, addon,
                                          f"channel_{channel['id']}_energy"))
        assert state is not None
        assert state.attributes[ATTR_FRIENDLY_NAME] == f"{info['name']} {channel['name']} energy"


async def test_the_addons_default_names_are_shown_in_home_assistants_language(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, device_registry: dr.DeviceRegistry,
) -> None:
    """A French Home Assistant read "Puissance Kitchen" and a relay called "Water heater":
    the add-on's default names are shown in its language, names the user chose as written."""
    await addon.stop()
    await addon.start(
        channels=[{"id": 1, "name": "Mains", "role": "mains"},
                  {"id": 2, "name": "Kitchen", "role": "circuit"},
                  {"id": 3, "name": "Atelier", "role": "circuit"}],
        relays=[{"id": 1, "name": "Water heater", "source": "board", "channel": 3},
                {"id": 2, "name": "Pompe", "source": "board"}],
    )
    await addon.wait_for_reading()
    hass.config.language = "fr"
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()

    def friendly_name(key: str, platform: str = "sensor") -> str:
        state = hass.states.get(entity_id(entity_registry, addon, key, platform))
        assert state is not None
        return str(state.attributes[ATTR_FRIENDLY_NAME])

    assert friendly_name("channel_1_power") == "Energy Tracker Puissance Compteur général"
    assert friendly_name("channel_2_energy") == "Energy Tracker Énergie Cuisine"
    assert friendly_name("channel_3_energy") == "Energy Tracker Énergie Atelier"
    assert friendly_name("relay_1_switch", "switch") == "Chauffe-eau"
    assert friendly_name("relay_2_switch", "switch") == "Pompe"
    heater = device_with(device_registry, (DOMAIN, f"{addon.meter_id}_relay_1"))
    assert heater is not None
    assert heater.name == "Chauffe-eau"


async def test_devices_meter_and_its_boards(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry, entity_registry: er.EntityRegistry,
) -> None:
    info = await addon.get("info")
    meter = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert meter is not None
    assert meter.name == info["name"]
    assert meter.sw_version == info["version"]
    names = {"rpict": "RPICT hat", "voltage": "Voltage board"}
    for board in info["boards"]:
        device = device_with(device_registry, (DOMAIN, f"{addon.meter_id}_{board['id']}"))
        assert device is not None
        assert device.via_device_id == meter.id
        # As their makers write them, not the add-on's ids.
        assert device.model == {"rpict3t1": "RPICT3T1", "esp8266-zmpt101b": "ESP8266 + ZMPT101B"
                                }[board["model"]]
        assert device.manufacturer == {"rpict": "LeChacal", "voltage": "Energy Tracker"}[
            board["id"]]
        assert device.name == names[board["id"]]
        rejected = entity_registry.async_get(
            entity_id(entity_registry, addon, f"{board['id']}_lines_rejected"))
        assert rejected is not None
        assert rejected.device_id == device.id
        assert rejected.entity_category is EntityCategory.DIAGNOSTIC
    power = entity_registry.async_get(entity_id(entity_registry, addon, "total_power"))
    assert power is not None
    assert power.device_id == meter.id


async def test_board_connectivity_is_named_connected(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    state = hass.states.get(entity_id(entity_registry, addon, "rpict_connected",
                                      "binary_sensor"))
    assert state is not None
    assert state.attributes[ATTR_FRIENDLY_NAME] == "RPICT hat Connected"


async def test_the_voltage_boards_boot_cause_is_a_diagnostic_enum(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The (simulated) board's hello says it started from power on; a crash or watchdog
    would show there, among the device's diagnostics."""
    served = await matching_reading(hass, addon, loaded_entry)
    assert served["boards"]["voltage"]["boot_cause"] == "power_on"
    boot = entity_id(entity_registry, addon, "voltage_boot_cause")
    state = hass.states.get(boot)
    assert state is not None
    assert state.state == "power_on"
    assert state.attributes[ATTR_FRIENDLY_NAME] == "Voltage board Boot cause"
    assert "soft_watchdog" in state.attributes["options"]
    registered = entity_registry.async_get(boot)
    assert registered is not None
    assert registered.entity_category is EntityCategory.DIAGNOSTIC
    # The RPICT hat has no firmware hello.
    assert entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_rpict_boot_cause") is None


async def test_unknown_values_are_unavailable_not_zero(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The RPICT3T1 has no voltage input: the add-on serves power factor as null."""
    config_entry.add_to_hass(hass)
    # Power factor is disabled by default; a user enabling it sees `unavailable`.
    entity_registry.async_get_or_create("sensor", DOMAIN, f"{addon.meter_id}_power_factor",
                                        config_entry=config_entry)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    served = await matching_reading(hass, addon, config_entry)
    assert served["power_factor"] is None
    power_factor = hass.states.get(entity_id(entity_registry, addon, "power_factor"))
    assert power_factor is not None
    assert power_factor.state == STATE_UNAVAILABLE


async def test_chatty_and_empty_entities_are_disabled_by_default(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    keys = ("power_factor", "rpict_lines_ok", "rpict_last_frame")
    for key in keys:
        entry = entity_registry.async_get(entity_id(entity_registry, addon, key))
        assert entry is not None
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION, key
    # Still so after a reload (the power factor, never measured by the RPICT3T1, was
    # taken for "measured now" and enabled, to stay unavailable).
    assert await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    for key in keys:
        entry = entity_registry.async_get(entity_id(entity_registry, addon, key))
        assert entry is not None
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION, key


async def test_a_channel_the_addon_drops_keeps_its_entities_for_when_it_returns(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Taken out of the add-on's options for a while (not the integration's): its
    entities stay, unavailable, with the user's entity id, and come back with it."""
    energy = entity_id(entity_registry, addon, "channel_3_energy")
    renamed = "sensor.my_water_heater_energy"
    entity_registry.async_update_entity(energy, new_entity_id=renamed)
    channels = [{"id": 1, "name": "Mains", "role": "mains"},
                {"id": 2, "name": "Kitchen", "role": "circuit"}]

    await addon.stop()
    await addon.start(channels=channels)
    def reloaded_with_two_channels() -> bool:
        coordinator = getattr(loaded_entry, "runtime_data", None)  # absent mid-reload
        return loaded_entry.state is ConfigEntryState.LOADED and coordinator is not None \
            and [c.id for c in coordinator.info.channels] == [1, 2]

    await wait_for(reloaded_with_two_channels, 15, "the reload for the new channels")
    await hass.async_block_till_done()
    assert entity_registry.async_get(renamed) is not None
    assert hass.states.get(renamed) is None or hass.states.get(renamed).state \
        == STATE_UNAVAILABLE

    await addon.stop()
    await addon.start(channels=[*channels, {"id": 3, "name": "Water heater & AC",
                                            "role": "circuit"}])
    await wait_for(lambda: (state := hass.states.get(renamed)) is not None
                   and state.state != STATE_UNAVAILABLE, 15, "channel 3 back")
    assert entity_id(entity_registry, addon, "channel_3_energy") == renamed


async def test_a_counter_shown_unrounded_by_an_older_version_does_not_dip(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Integrations before 0.2.10 showed counters unrounded and kept no memory: after the
    upgrade the first value, rounded to the Wh, could be below the last one shown (a
    counter under 5 Wh then read as a new meter in the statistics)."""
    config_entry.add_to_hass(hass)
    # Registered by the older version, before its last state (a state older than the
    # entity's registration is another entity's: never_backwards.py).
    entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"{addon.meter_id}_total_energy", config_entry=config_entry,
        suggested_object_id="energy_tracker_total_energy")
    raw = (await addon.get("state"))["total_energy_kwh"]
    restored = math.floor(raw * 1000) / 1000 + 0.0004  # more than its rounding shows
    mock_restore_cache(hass, (State("sensor.energy_tracker_total_energy", str(restored),
                                    {"unit_of_measurement": "kWh"}),))
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    shown = [float(hass.states.get("sensor.energy_tracker_total_energy").state)]
    assert shown[0] >= restored
    for _ in range(3):  # and on from there, never below
        await asyncio.sleep(1.2)
        shown.append(float(hass.states.get("sensor.energy_tracker_total_energy").state))
    assert shown == sorted(shown)


@pytest.mark.parametrize(("model", "line", "unmeasured"), [
    ("rpict3t1", b"11 100.0 50.0 20.0 21.5\r\n",
     {"voltage", "frequency", "gas", "power_factor"}),
    ("rpict3v1", b"11 100.0 50.0 20.0 500 250 100 231.0\r\n",
     {"temperature", "frequency", "gas"}),
])
async def test_values_nothing_measures_are_created_disabled(
    hass: HomeAssistant, addon: Addon, tmp_path: Path, entity_registry: er.EntityRegistry,
    model: str, line: bytes, unmeasured: set[str],
) -> None:
    """A hat alone: Voltage, Frequency and Gas were enabled and unavailable for ever on the
    default RPICT3T1, as no board of it measures them (helper 83); a hat with a voltage
    input measures voltage and power factor, none of the others temperature."""
    await addon.stop()
    hat = PtyPort(tmp_path / "ttyHAT")
    hat.plug()

    async def prints() -> None:
        while True:
            await hat.write(line)
            await asyncio.sleep(0.5)

    keys = ("total_power", "temperature", "voltage", "frequency", "gas", "power_factor")
    printing = asyncio.create_task(prints())
    try:
        await addon.start(rpict_port=str(hat.path), rpict_model=model)
        await addon.wait_for_reading()
        entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        disabled = {key for key in keys
                    if entity_registry.async_get(entity_id(entity_registry, addon, key))
                    .disabled_by is er.RegistryEntryDisabler.INTEGRATION}  # type: ignore[union-attr]
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        printing.cancel()
        await addon.stop()
        hat.unplug()
    assert disabled == unmeasured


async def test_a_voltage_board_plugged_in_later_enables_what_it_measures(
    hass: HomeAssistant, addon: Addon, tmp_path: Path, entity_registry: er.EntityRegistry,
) -> None:
    """Gas (an Energy dashboard source), voltage and frequency, created disabled with the
    hat alone, come with the board; one the user disabled stays disabled (helper 87)."""
    await addon.stop()
    boards = Boards(tmp_path)
    boards.start()
    try:
        await addon.start(rpict_port=str(boards.rpict.path))
        await addon.wait_for_reading()
        entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        gas, voltage, frequency, power_factor = (
            entity_id(entity_registry, addon, key)
            for key in ("gas", "voltage", "frequency", "power_factor"))
        assert entity_registry.async_get(gas).disabled_by is (  # type: ignore[union-attr]
            er.RegistryEntryDisabler.INTEGRATION)
        # The user also disables the frequency (so nothing turns it back on).
        entity_registry.async_update_entity(frequency,
                                            disabled_by=er.RegistryEntryDisabler.USER)
        # The voltage board (with the gas meter's pulse input) is plugged in; the add-on
        # restarts with voltage_port set, and the entry reloads with the new board.
        await addon.stop()
        await addon.start(rpict_port=str(boards.rpict.path),
                          voltage_port=str(boards.voltage.path))

        def gas_shown() -> bool:
            state = hass.states.get(gas)
            return state is not None and state.state == "0.0"

        await wait_for(gas_shown, 20, "the gas meter's state")
        assert entity_registry.async_get(gas).disabled_by is None  # type: ignore[union-attr]
        assert entity_registry.async_get(voltage).disabled_by is None  # type: ignore[union-attr]
        assert entity_registry.async_get(frequency).disabled_by is (  # type: ignore[union-attr]
            er.RegistryEntryDisabler.USER)
        # Not the power factor: the hat's powers are still Irms x an estimated voltage.
        assert entity_registry.async_get(power_factor).disabled_by is (  # type: ignore[union-attr]
            er.RegistryEntryDisabler.INTEGRATION)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await addon.stop()
        await boards.stop()


def test_the_hats_known_to_lack_a_value_are_the_addons() -> None:
    assert {m for m, has in RPICT_PRINTS_VOLTAGE.items() if not has} == HATS_WITHOUT_VOLTAGE
    assert {
        m for m, has in RPICT_PRINTS_TEMPERATURE.items() if not has} == HATS_WITHOUT_TEMPERATURE

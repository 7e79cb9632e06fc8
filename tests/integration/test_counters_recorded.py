"""What the recorder holds of the integration's entities: lifetime counters that never go
below a recorded value (never_backwards.py), attributes kept out of the database."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.components.recorder.history import get_last_state_changes
from homeassistant.core import Event, HomeAssistant, State, callback
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.energy_tracker.const import DOMAIN

from .conftest import Addon, wait_for
from .test_appliances import setup_entry
from .test_meters import GARAGE

TOTAL_ENERGY = "sensor.energy_tracker_total_energy"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """conftest's, with the recorder set up before `hass` (its rule)."""


def registered(hass: HomeAssistant, addon: Addon, entry: MockConfigEntry,
               display_unit: str = "kWh") -> None:
    """The total's registry entry as a running Home Assistant holds it (created, its
    display precision stored), shown in `display_unit`."""
    registry = er.async_get(hass)
    entity = registry.async_get_or_create(
        "sensor", DOMAIN, f"{addon.meter_id}_total_energy", config_entry=entry,
        suggested_object_id="energy_tracker_total_energy")
    registry.async_update_entity_options(entity.entity_id, "sensor", {
        "suggested_display_precision": 3,
        **({"unit_of_measurement": display_unit} if display_unit != "kWh" else {})})


@pytest.mark.parametrize("display_unit", ["kWh", "Wh"])
async def test_the_seconds_a_power_cut_lost_do_not_dip_a_counter(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry, display_unit: str
) -> None:
    """The whole host lost power: the add-on resumed from its last save (up to
    persist_interval_s old), and Home Assistant's restore data, written every 15 minutes,
    was older still; only the recorder held the last value shown. The counter showed
    less than that, which the statistics count as negative energy (helper 79)."""
    config_entry.add_to_hass(hass)
    registered(hass, addon, config_entry, display_unit)
    raw = (await addon.get("state"))["total_energy_kwh"]
    recorded = round(raw + 0.05, 3)  # shown before the cut, past the add-on's last save
    factor = 1000.0 if display_unit == "Wh" else 1.0
    unit = {"unit_of_measurement": display_unit}
    hass.states.async_set(TOTAL_ENERGY, str(round(recorded * factor, 3)), unit)
    await async_wait_recording_done(hass)
    hass.states.async_remove(TOTAL_ENERGY)
    await async_wait_recording_done(hass)
    older = raw  # the restore data's last dump
    mock_restore_cache_with_extra_data(hass, ((
        State(TOTAL_ENERGY, str(round(older * factor, 3)), unit),
        {"offset": 0.0, "last_raw": older, "last_shown": older},
    ),))
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    shown = []
    for _ in range(3):
        state = hass.states.get(TOTAL_ENERGY)
        assert state is not None
        shown.append(float(state.state) / factor)
        await asyncio.sleep(1.2)
    # Shown in Wh, the recorder's states were not read at all (helper 101).
    assert shown[0] >= recorded, shown
    assert shown == sorted(shown)


async def seeded(addon: Addon, total_kwh: float) -> None:
    """The add-on restarted with its lifetime counter at `total_kwh`."""
    await addon.stop()
    for path in addon.data_dir.glob("energy_counters.json*"):
        path.unlink()
    (addon.data_dir / "energy_counters.json").write_text(json.dumps({
        "version": 1, "total_kwh": total_kwh, "channels_kwh": {"1": total_kwh},
        "since": "2026-01-01T00:00:00Z", "revision": 10**9}))
    await addon.start()
    await addon.wait_for_reading()


def written_totals(hass: HomeAssistant) -> list[str]:
    written: list[str] = []

    @callback
    def record(event: Event) -> None:
        if event.data["entity_id"] == TOTAL_ENERGY and event.data["new_state"] is not None:
            written.append(event.data["new_state"].state)

    hass.bus.async_listen("state_changed", record)
    return written


def numbers(states: list[str]) -> list[float]:
    return [float(state) for state in states if state not in ("unknown", "unavailable")]


async def test_a_new_meter_under_a_deleted_ones_entity_id_starts_from_its_own_count(
    hass: HomeAssistant, addon: Addon, other_addon: Addon
) -> None:
    """The docs' advice for a reinstalled add-on (delete the entry, add the new meter): the
    new meter's total, first shown raw, then took the old meter's 5000 kWh as its own; the
    statistics counted a new meter plus 5000 kWh (helper 101)."""
    await seeded(addon, 5000.0)
    old = await setup_entry(hass, addon)
    assert await hass.config_entries.async_remove(old.entry_id)
    await hass.async_block_till_done()
    await other_addon.wait_for_reading()
    written = written_totals(hass)
    new = await setup_entry(hass, other_addon)
    await asyncio.sleep(1.5)
    assert numbers(written), written
    assert max(numbers(written)) < 1.0, written  # the new meter's Wh, not 5000 kWh
    assert await hass.config_entries.async_unload(new.entry_id)


async def test_the_same_meter_added_again_never_shows_its_count_without_the_offset(
    hass: HomeAssistant, addon: Addon
) -> None:
    """Its counter went back once (an offset kept), then the entry was deleted and added
    again: the first state was the raw counter, 1000 kWh below, and the statistics read a
    new meter (helper 101)."""
    await seeded(addon, 5000.0)
    entry = await setup_entry(hass, addon)
    await seeded(addon, 4000.0)  # an older add-on backup restored on its own
    await asyncio.sleep(2)
    assert float(hass.states.get(TOTAL_ENERGY).state) >= 5000.0
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    written = written_totals(hass)
    entry = await setup_entry(hass, addon)
    await asyncio.sleep(1.5)
    assert numbers(written), written
    assert min(numbers(written)) >= 5000.0, written
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_the_meter_share_records_no_attributes_that_change_at_every_update(
    hass: HomeAssistant, tmp_path: Path
) -> None:
    """Each meter's kWh and share, recorded with every state, made a new attributes row in
    the database at every update (helper 101)."""
    data_dir = tmp_path / "two-meters"
    data_dir.mkdir()
    addon = Addon(data_dir)
    await addon.start(extra_meters=[GARAGE])
    try:
        entry = await setup_entry(hass, addon)
        share = er.async_get(hass).async_get_entity_id(
            "sensor", DOMAIN, f"{addon.meter_id}_meter_comparison")
        assert share is not None
        await wait_for(lambda: (state := hass.states.get(share)) is not None
                       and "meters" in state.attributes, 30, "the shares")
        await async_wait_recording_done(hass)
        recorded = await get_instance(hass).async_add_executor_job(
            get_last_state_changes, hass, 1, share)
        [state] = recorded[share]
        assert "start" in state.attributes
        assert "meters" not in state.attributes
        assert "total_kwh" not in state.attributes
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await addon.stop()

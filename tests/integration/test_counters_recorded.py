"""Lifetime counters against what the recorder holds (never_backwards.py)."""

from __future__ import annotations

import asyncio

import pytest
from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant, State
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from .conftest import Addon

TOTAL_ENERGY = "sensor.energy_tracker_total_energy"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """conftest's, with the recorder set up before `hass` (its rule)."""


async def test_the_seconds_a_power_cut_lost_do_not_dip_a_counter(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry
) -> None:
    """The whole host lost power: the add-on resumed from its last save (up to
    persist_interval_s old), and Home Assistant's restore data, written every 15 minutes,
    was older still; only the recorder held the last value shown. The counter showed
    less than that, which the statistics count as negative energy (helper 79)."""
    raw = (await addon.get("state"))["total_energy_kwh"]
    recorded = round(raw + 0.05, 3)  # shown before the cut, past the add-on's last save
    unit = {"unit_of_measurement": "kWh"}
    hass.states.async_set(TOTAL_ENERGY, str(recorded), unit)
    await async_wait_recording_done(hass)
    hass.states.async_remove(TOTAL_ENERGY)
    await async_wait_recording_done(hass)
    older = raw  # the restore data's last dump
    mock_restore_cache_with_extra_data(hass, ((
        State(TOTAL_ENERGY, str(older), unit),
        {"offset": 0.0, "last_raw": older, "last_shown": older},
    ),))
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    shown = []
    for _ in range(3):
        state = hass.states.get(TOTAL_ENERGY)
        assert state is not None
        shown.append(float(state.state))
        await asyncio.sleep(1.2)
    assert shown[0] >= recorded, shown
    assert shown == sorted(shown)

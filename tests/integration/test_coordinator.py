"""The push stream: outages, recovery, repairs issue, token change."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from homeassistant.config_entries import ConfigEntryDisabler, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.energy_tracker import coordinator as coordinator_module
from custom_components.energy_tracker.const import (
    CONF_CHANNELS,
    CONF_UPDATE_INTERVAL,
    DOMAIN,
    UNREACHABLE_ISSUE_AFTER,
)

from .conftest import Addon, loaded_entry_with_interval, new_token_on_the_addon, wait_for


def our_states(hass: HomeAssistant) -> list[str]:
    return [state.state for state in hass.states.async_all()
            if state.entity_id.startswith(("sensor.", "binary_sensor."))]


def all_unavailable(hass: HomeAssistant) -> bool:
    states = our_states(hass)
    return bool(states) and all(state == STATE_UNAVAILABLE for state in states)


def power_state(hass: HomeAssistant, registry: er.EntityRegistry, addon: Addon) -> str:
    entity = registry.async_get_entity_id("sensor", DOMAIN, f"{addon.meter_id}_total_power")
    assert entity is not None
    state = hass.states.get(entity)
    assert state is not None
    return state.state


async def addon_down(hass: HomeAssistant, addon: Addon) -> None:
    """Stop the add-on and wait until Home Assistant shows the outage."""
    await addon.stop()
    await wait_for(lambda: all_unavailable(hass), 5, "entities to become unavailable")


async def past_the_issue_delay(hass: HomeAssistant) -> datetime:
    """Move HA's clock past UNREACHABLE_ISSUE_AFTER (1 s more); the time it moved to."""
    later = dt_util.utcnow() + UNREACHABLE_ISSUE_AFTER + timedelta(seconds=1)
    async_fire_time_changed(hass, later)
    await hass.async_block_till_done()
    return later


def unreachable_issue(registry: ir.IssueRegistry, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return registry.async_get_issue(DOMAIN, f"addon_unreachable_{entry.entry_id}")


async def test_addon_restart_unavailable_then_back_within_10_s(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, caplog: pytest.LogCaptureFixture,
) -> None:
    assert power_state(hass, entity_registry, addon) != STATE_UNAVAILABLE
    caplog.set_level(logging.INFO, "custom_components.energy_tracker")

    await addon_down(hass, addon)

    restarted = asyncio.get_running_loop().time()
    await addon.start()
    await wait_for(lambda: power_state(hass, entity_registry, addon) != STATE_UNAVAILABLE,
                   10, "total power to come back")
    assert asyncio.get_running_loop().time() - restarted < 10
    assert loaded_entry.state is ConfigEntryState.LOADED
    # A restart (an update, an options change) is routine: one info line each way.
    ours = [r for r in caplog.records if r.name == "custom_components.energy_tracker"]
    assert [r.levelno for r in ours] == [logging.INFO, logging.INFO], [
        r.getMessage() for r in ours]
    assert "unavailable" in ours[0].getMessage()
    assert "restored" in ours[1].getMessage()


async def test_long_outage_raises_a_repairs_issue_that_clears_on_reconnect(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry, entity_registry: er.EntityRegistry,
) -> None:
    await addon_down(hass, addon)
    assert unreachable_issue(issue_registry, loaded_entry) is None, "not after a blip"

    await past_the_issue_delay(hass)
    issue = unreachable_issue(issue_registry, loaded_entry)
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.ERROR
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["port"] == str(addon.port)

    await addon.start()
    await wait_for(lambda: power_state(hass, entity_registry, addon) != STATE_UNAVAILABLE,
                   10, "total power to come back")
    assert unreachable_issue(issue_registry, loaded_entry) is None


async def test_new_token_on_the_addon_asks_for_reauth(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry, caplog: pytest.LogCaptureFixture,
) -> None:
    await new_token_on_the_addon(hass, addon, "a-brand-new-token")
    assert all_unavailable(hass)
    # Said once in the log (a prompt may wait behind another flow of the entry).
    refused = [r for r in caplog.records
               if r.name.startswith("custom_components") and "refused the API token" in
               r.getMessage() and r.levelno == logging.WARNING]
    assert len(refused) == 1
    # The add-on answers, it only refuses the token: the reauth flow says so, and no
    # "add-on unreachable" issue may contradict it however long the user takes.
    await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, loaded_entry) is None


async def test_a_refused_token_through_an_addon_restart_raises_no_unreachable_issue(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The user had not answered the reauth prompt yet when the add-on restarted (an
    update): the restart started the outage clock, the refusals after it never stopped
    it, and "add-on unreachable, check that it is running" joined the prompt (helper 80)."""
    monkeypatch.setattr(coordinator_module, "AUTH_RETRY_DELAY", 0.5)
    await new_token_on_the_addon(hass, addon, "a-brand-new-token")
    await addon.stop()
    await asyncio.sleep(1.5)  # a retry finds it down
    await addon.start(api_token="a-brand-new-token")
    await asyncio.sleep(2)  # and the next ones refused again
    await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, loaded_entry) is None


async def test_the_old_token_back_on_the_addon_recovers_without_the_user(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A refused token is tried again now and then: an add-on restored from a backup
    takes it again, and the entities come back with no reload and no prompt left."""
    monkeypatch.setattr(coordinator_module, "AUTH_RETRY_DELAY", 0.5)
    await new_token_on_the_addon(hass, addon, "a-brand-new-token")
    assert all_unavailable(hass)

    await addon.stop()
    await addon.start()  # its generated token again, which the entry holds
    await wait_for(lambda: power_state(hass, entity_registry, addon) != STATE_UNAVAILABLE,
                   10, "total power to come back")
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []


async def test_a_new_token_found_at_setup_raises_no_unreachable_issue(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    # The add-on was down at first (setup retries), then came back with a new token.
    await addon.stop()
    config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.SETUP_RETRY
    await addon.start(api_token="a-brand-new-token")
    await hass.config_entries.async_reload(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.SETUP_RETRY
    await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, config_entry) is None


async def test_another_meter_on_the_port_never_shows_its_values(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, issue_registry: ir.IssueRegistry,
) -> None:
    """The add-on's data was reset (new meter_id): our entities must not take its values."""
    token = addon.token
    await addon.stop()
    impostor = Addon(tmp_path / "impostor")
    impostor.data_dir.mkdir()
    impostor.port = addon.port
    await impostor.start(api_token=token)
    try:
        await impostor.wait_for_reading()
        await wait_for(lambda: "answers instead of" in caplog.text, 10,
                       "the mismatch to be logged")
        assert all_unavailable(hass)
        # Not an outage: set up again, the entry says which meter answers, and no
        # "add-on unreachable, check that it is running" follows (helper 80).
        await wait_for(lambda: loaded_entry.state is ConfigEntryState.SETUP_RETRY, 10,
                       "setup again")
        assert loaded_entry.reason is not None
        assert "serves meter" in loaded_entry.reason
        await past_the_issue_delay(hass)
        assert unreachable_issue(issue_registry, loaded_entry) is None
    finally:
        await impostor.stop()


@pytest.mark.shipped_update_interval
@pytest.mark.parametrize("from_options", [False, True])
async def test_update_interval_option_throttles_entity_updates(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry, from_options: bool,
) -> None:
    """With a 5 s minimum interval, readings every 2 s give at most one update per 5 s:
    a new entry's default (its recorder rows), or chosen in the options."""
    assert CONF_UPDATE_INTERVAL not in loaded_entry.options
    if from_options:
        result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
        assert result["data_schema"]({CONF_CHANNELS: ["1", "2", "3"]})[
            CONF_UPDATE_INTERVAL] == 5  # offered as the default
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {CONF_CHANNELS: ["1", "2", "3"], CONF_UPDATE_INTERVAL: 5})
        await hass.async_block_till_done()
        assert loaded_entry.options[CONF_UPDATE_INTERVAL] == 5
    energy_id = entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_total_energy")
    assert energy_id is not None

    changes: list[float] = []

    @callback
    def record(_event: Event[EventStateChangedData]) -> None:
        changes.append(time.monotonic())

    unsub = async_track_state_change_event(hass, [energy_id], record)
    seq_before = (await addon.get("state"))["seq"]
    await asyncio.sleep(11)
    seq_after = (await addon.get("state"))["seq"]
    unsub()

    assert seq_after - seq_before >= 5  # the meter kept reading every 2 s
    assert 1 <= len(changes) <= 3, changes
    assert all(b - a >= 4.9 for a, b in itertools.pairwise(changes)), changes


@pytest.mark.shipped_update_interval
async def test_a_reading_held_back_is_dropped_when_the_connection_is_lost(
    hass: HomeAssistant, addon: Addon,
) -> None:
    """A reading held back by the minimum update interval, published after the stream
    dropped, would bring the entities back with the old power for a while (automations
    on it would run; helper 109's mutation run found nothing checking it)."""
    entry = await loaded_entry_with_interval(hass, addon, 10)
    coordinator = entry.runtime_data
    await wait_for(lambda: coordinator._pending is not None, 15, "a reading held back")
    await addon.stop()
    await wait_for(lambda: not coordinator.last_update_success, 10, "the outage")
    await asyncio.sleep(11)  # past the held-back reading's time
    assert not coordinator.last_update_success
    power = hass.states.get("sensor.energy_tracker_total_power")
    assert power is not None
    assert power.state == STATE_UNAVAILABLE


async def test_an_outage_across_a_reload_still_raises_and_clears_the_issue(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry, entity_registry: er.EntityRegistry,
) -> None:
    # An options change while the add-on is down reloads the entry, which then waits in
    # setup retry: the outage clock must survive the coordinator it started in.
    await addon_down(hass, addon)
    await hass.config_entries.async_reload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.SETUP_RETRY

    later = await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, loaded_entry) is not None

    await addon.start()
    async_fire_time_changed(hass, later + timedelta(minutes=10))  # the next setup retry
    await wait_for(lambda: loaded_entry.state is ConfigEntryState.LOADED, 10, "setup")
    await wait_for(lambda: power_state(hass, entity_registry, addon) != STATE_UNAVAILABLE,
                   10, "total power to come back")
    assert unreachable_issue(issue_registry, loaded_entry) is None


async def test_an_entry_removed_during_an_outage_leaves_no_issue(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    await addon_down(hass, addon)
    assert await hass.config_entries.async_remove(loaded_entry.entry_id)
    await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, loaded_entry) is None


async def test_disabling_an_entry_that_waits_to_retry_ends_its_outage(
    hass: HomeAssistant, addon: Addon, config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """HA unloads nothing when an entry in setup retry is disabled: its outage went on, and
    "add-on unreachable" came for an entry the user had switched off (helper 80)."""
    await addon.stop()
    config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.SETUP_RETRY
    later = await past_the_issue_delay(hass)
    assert unreachable_issue(issue_registry, config_entry) is not None
    await hass.config_entries.async_set_disabled_by(config_entry.entry_id,
                                                    ConfigEntryDisabler.USER)
    await hass.async_block_till_done()
    assert unreachable_issue(issue_registry, config_entry) is None
    async_fire_time_changed(hass, later + UNREACHABLE_ISSUE_AFTER * 2)
    await hass.async_block_till_done()
    assert unreachable_issue(issue_registry, config_entry) is None

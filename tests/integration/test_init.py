"""Setting up and unloading an entry against the real add-on service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryDisabler, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.energy_tracker.addon_version_issue import MIN_ADDON_VERSION
from custom_components.energy_tracker.const import DOMAIN
from energy_tracker_addon import service as addon_service

from .conftest import Addon, set_up_entry, wait_for


async def test_unload_stops_the_stream_and_the_entities(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    power = entity_registry.async_get_entity_id("sensor", DOMAIN,
                                                f"{addon.meter_id}_total_power")
    assert power is not None
    assert hass.states.get(power).state != STATE_UNAVAILABLE

    assert await hass.config_entries.async_unload(loaded_entry.entry_id)
    await hass.async_block_till_done()
    assert loaded_entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(power).state == STATE_UNAVAILABLE
    # The add-on saw the WebSocket close: no client left streaming.
    async def no_stream_client() -> bool:
        return "energy_tracker_websocket_clients 0.0" in await addon.get_text("/metrics")

    await wait_for(no_stream_client, 5, "the add-on to see the stream close")


async def test_unreachable_addon_retries_setup(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    entry = await set_up_entry(hass, addon, port=closed_port)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_refused_token_starts_reauth(hass: HomeAssistant, addon: Addon) -> None:
    entry = await set_up_entry(hass, addon, api_token="wrong")
    assert entry.state is ConfigEntryState.SETUP_RETRY  # retried, with a reauth prompt
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]

    # Fixed another way than the reauth dialog (discovery brought the token): the
    # "Reauthentication required" prompt goes with the successful setup.
    hass.config_entries.async_update_entry(entry, data=addon.entry_data)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []


async def test_another_meter_at_the_address_retries_setup(
    hass: HomeAssistant, addon: Addon
) -> None:
    """Retried, not given up: the right add-on may come back at this address."""
    entry = await set_up_entry(hass, addon, unique_id="some-other-meter")
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert entry.reason is not None
    assert addon.meter_id in entry.reason


async def test_a_token_refused_at_setup_is_tried_again(
    hass: HomeAssistant, addon: Addon
) -> None:
    """The add-on had another token when Home Assistant started; it gets the stored one
    back (a restored backup): the entry loads at the next setup retry, prompt closed."""
    entry = await set_up_entry(hass, addon, api_token="the-old-token-0123")
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert len(hass.config_entries.flow.async_progress_by_handler(DOMAIN)) == 1

    await addon.stop()
    await addon.start(api_token="the-old-token-0123")
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=2))
    await wait_for(lambda: entry.state is ConfigEntryState.LOADED, 10, "the retried setup")
    await hass.async_block_till_done()
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []


async def test_an_addon_older_than_the_integration_needs_is_a_repairs_issue(
    hass: HomeAssistant, addon: Addon, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HACS and the add-on store update each on its own: an older add-on lacks routes
    (voltage calibration, withdrawing the carbon intensity) and nothing said so."""
    monkeypatch.setattr(addon_service, "__version__", "0.3.8")
    entry = await set_up_entry(hass, addon)
    assert entry.state is ConfigEntryState.LOADED  # its entities work all the same
    issue_id = f"addon_outdated_{entry.entry_id}"
    issue = ir.async_get(hass).async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders == {
        "title": entry.title, "version": "0.3.8", "minimum": MIN_ADDON_VERSION}

    # The add-on updated: its new version reloads the entry, which clears the issue.
    monkeypatch.setattr(addon_service, "__version__", MIN_ADDON_VERSION)
    await addon.stop()
    await addon.start()
    await wait_for(lambda: ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None,
                   20, "the issue to clear after the update")
    assert entry.state is ConfigEntryState.LOADED


async def test_a_disabled_entry_keeps_no_addon_update_issue(
    hass: HomeAssistant, addon: Addon, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing to update for an entry the user disabled; the issue stayed (helper 80)."""
    monkeypatch.setattr(addon_service, "__version__", "0.3.8")
    entry = await set_up_entry(hass, addon)
    issue_id = f"addon_outdated_{entry.entry_id}"
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    await hass.config_entries.async_set_disabled_by(entry.entry_id, ConfigEntryDisabler.USER)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None

"""Diagnostics download: useful content, no secrets."""

from __future__ import annotations

import json

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .conftest import HOST, Addon, set_up_entry, wait_for


async def test_diagnostics_redact_the_token_and_host(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, addon: Addon,
    loaded_entry: MockConfigEntry,
) -> None:
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)

    assert diagnostics["entry"]["data"]["api_token"] == "**REDACTED**"
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    dumped = json.dumps(diagnostics)
    assert addon.token not in dumped
    assert HOST not in dumped
    # What a maintainer needs: which meter, its boards and its last reading.
    assert diagnostics["info"]["meter_id"] == addon.meter_id
    assert diagnostics["state"]["meter_id"] == addon.meter_id
    assert diagnostics["connected"] is True


async def test_diagnostics_of_a_lost_connection_still_hide_the_host(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, addon: Addon,
    loaded_entry: MockConfigEntry,
) -> None:
    coordinator = loaded_entry.runtime_data
    await addon.stop()
    await wait_for(lambda: not coordinator.last_update_success, 5, "the outage")
    await wait_for(lambda: "refused" in str(coordinator.last_exception), 10, "a reconnect")

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded_entry)

    assert diagnostics["connected"] is False
    # A short reason instead of aiohttp's ConnectionKey(host=..., port=..., ssl=...) dump.
    assert "Connection refused" in diagnostics["last_error"]
    assert "ConnectionKey" not in diagnostics["last_error"]
    assert HOST not in json.dumps(diagnostics)


async def test_diagnostics_of_an_entry_that_could_not_set_up(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, addon: Addon,
) -> None:
    """When the add-on refused the token at setup, which is when a user needs them."""
    entry = await set_up_entry(hass, addon, api_token="an-old-token-0123")
    assert entry.state is ConfigEntryState.SETUP_RETRY  # retried, with a reauth prompt

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert diagnostics["entry"]["state"] == "setup_retry"
    assert diagnostics["connected"] is False
    assert diagnostics["info"] is None
    assert diagnostics["last_error"] == entry.reason
    dumped = json.dumps(diagnostics)
    assert "an-old-token-0123" not in dumped
    assert HOST not in dumped

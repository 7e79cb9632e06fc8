"""Config flow against the real add-on service: user, discovery, reauth, reconfigure, options."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import voluptuous as vol
from aiohttp import web
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState, ConfigFlowResult
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.translation import async_get_translations
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.energy_tracker as integration
from custom_components.energy_tracker.const import (
    CONF_CHANNELS,
    CONF_CO2_INTENSITY_ENTITY,
    CONF_UPDATE_INTERVAL,
    DEFAULT_PORT,
    DOMAIN,
)

from .conftest import HOST, Addon, new_token_on_the_addon, set_up_entry, wait_for


@pytest.fixture(autouse=True)
def newer_home_assistant_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Home Assistant 2026.12 refuses a flow's own reload of an entry that has an update
    listener (2026.6-2026.11 log it; 2025.4 allows it): the flows must pass here too."""
    update_reload_and_abort = config_entries.ConfigFlow.async_update_reload_and_abort

    def refusing(flow: config_entries.ConfigFlow, entry: config_entries.ConfigEntry,
                 **kwargs: Any) -> ConfigFlowResult:
        if entry.update_listeners:
            raise ValueError("has an update listener and should use it for scheduling a "
                             "reload")
        return update_reload_and_abort(flow, entry, **kwargs)

    monkeypatch.setattr(config_entries.ConfigFlow, "async_update_reload_and_abort", refusing)


def discovery(config: dict[str, object]) -> HassioServiceInfo:
    return HassioServiceInfo(config=config, name="Energy Tracker", slug="energy_tracker",
                             uuid="1234")


async def start_user_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    # The port may be left as offered: the add-on's default.
    filled = result["data_schema"]({CONF_HOST: HOST, CONF_API_TOKEN: "token"})
    assert filled[CONF_PORT] == DEFAULT_PORT
    return str(result["flow_id"])


async def test_user_flow_creates_an_entry_named_after_the_meter(
    hass: HomeAssistant, addon: Addon
) -> None:
    info = await addon.get("info")
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, addon.entry_data)
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == info["name"]
    assert result["data"] == addon.entry_data
    entry = result["result"]
    assert entry.unique_id == info["meter_id"]
    assert entry.state is ConfigEntryState.LOADED


async def test_closed_port_is_cannot_connect_and_the_form_recovers(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_PORT: closed_port})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(flow_id, addon.entry_data)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_a_host_name_reaches_the_addon(hass: HomeAssistant, addon: Addon) -> None:
    # Through HA's own resolver (aiodns): with pycares 5 every host name failed here with
    # a TypeError, shown as "Unknown error".
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_HOST: "localhost"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_HOST] == "localhost"


async def test_wrong_token_is_invalid_auth(hass: HomeAssistant, addon: Addon) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_API_TOKEN: "not-the-token"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}


async def test_pasted_values_work_without_their_surrounding_spaces(
    hass: HomeAssistant, addon: Addon
) -> None:
    # A token copied from the add-on's log or options comes with a line break or a space.
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {
        **addon.entry_data, CONF_HOST: f" {HOST} ", CONF_API_TOKEN: f"{addon.token}\n"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == addon.entry_data


@pytest.mark.parametrize("token", ["two words", "line\nbreak", "tab\tinside"])
async def test_a_token_no_addon_can_have_is_invalid_auth(
    hass: HomeAssistant, addon: Addon, token: str
) -> None:
    # Not a server error: a line break cannot even go in the request's header.
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_API_TOKEN: token})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}


async def test_same_meter_twice_is_already_configured(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, addon.entry_data)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_addon_discovery_asks_then_creates_the_entry(
    hass: HomeAssistant, addon: Addon
) -> None:
    info = await addon.get("info")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": addon.port, "api_token": addon.token}))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "hassio_confirm"
    assert result["description_placeholders"] == {"name": info["name"]}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == addon.entry_data
    assert result["result"].unique_id == info["meter_id"]
    assert result["result"].state is ConfigEntryState.LOADED


async def test_adding_by_hand_while_its_discovered_card_waits(
    hass: HomeAssistant, addon: Addon
) -> None:
    """The user typed the address instead of confirming the discovered card: the manual
    flow ended on the bare key "already_in_progress", untranslated (helper 83)."""
    card = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": addon.port, "api_token": addon.token}))
    assert card["step_id"] == "hassio_confirm"
    flow = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], addon.entry_data)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    # The card is gone with it, not left to add the same meter twice.
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    # Every abort a flow can end on has its text, in both languages.
    for language in ("en", "fr"):
        texts = await async_get_translations(hass, language, "config", [DOMAIN])
        assert texts.get(f"component.{DOMAIN}.config.abort.already_in_progress")


async def test_a_new_announcement_replaces_a_card_holding_the_old_token(
    hass: HomeAssistant, addon: Addon
) -> None:
    """The user set api_token in the add-on's options while its card waited: the new
    announcement ended on "already_in_progress", and confirming the card created an entry
    the add-on refused at once (helper 99)."""
    card = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": addon.port, "api_token": addon.token}))
    assert card["step_id"] == "hassio_confirm"
    await addon.stop()
    await addon.start(api_token="a-new-token-of-the-user-0123")
    again = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": addon.port, "api_token": addon.token}))
    assert again["type"] is FlowResultType.FORM
    assert [flow["flow_id"] for flow in hass.config_entries.flow.async_progress_by_handler(
        DOMAIN)] == [again["flow_id"]]
    result = await hass.config_entries.flow.async_configure(again["flow_id"], {})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].state is ConfigEntryState.LOADED
    assert result["result"].data[CONF_API_TOKEN] == "a-new-token-of-the-user-0123"


async def test_rediscovery_updates_the_known_entry(
    hass: HomeAssistant, addon: Addon, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The add-on moved (new port): discovery fixes the entry instead of asking again."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id,
                            data={**addon.entry_data, CONF_PORT: closed_port})
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": addon.port, "api_token": addon.token}))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == addon.port
    # Said: a second add-on on a copy of the folder would flip the entry unseen.
    assert f"now answers at {HOST}:{addon.port} (was {HOST}:{closed_port})" in caplog.text


async def test_discovery_of_an_unreachable_addon_aborts(
    hass: HomeAssistant, closed_port: int
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": closed_port, "api_token": "x"}))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_discovery_without_a_token_aborts(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": HOST, "port": DEFAULT_PORT}))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "invalid_discovery_info"


async def test_reauth_with_the_new_token_loads_the_entry(
    hass: HomeAssistant, addon: Addon
) -> None:
    entry = await set_up_entry(hass, addon, api_token="old-token")
    assert entry.state is ConfigEntryState.SETUP_RETRY  # retried, with a reauth prompt

    [flow] = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == config_entries.SOURCE_REAUTH
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_TOKEN: "still-wrong"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_TOKEN: addon.token})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_API_TOKEN] == addon.token
    assert entry.state is ConfigEntryState.LOADED


async def test_reauth_of_a_running_entry_sets_it_up_once_with_the_new_token(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The add-on got a new token while Home Assistant ran: the stream asks for it.
    flow = await new_token_on_the_addon(hass, addon, "a-brand-new-token-0123")
    setups: list[str] = []
    set_up = integration.async_setup_entry

    async def counted(hass: HomeAssistant, entry: Any) -> bool:
        setups.append(entry.data[CONF_API_TOKEN])
        return await set_up(hass, entry)

    monkeypatch.setattr(integration, "async_setup_entry", counted)
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_API_TOKEN: "a-brand-new-token-0123"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert setups == ["a-brand-new-token-0123"]  # set up again once, with the new token
    assert loaded_entry.state is ConfigEntryState.LOADED
    await wait_for(lambda: hass.states.get("sensor.energy_tracker_total_power").state
                   != "unavailable", 10, "total power back")


async def test_reconfigure_to_the_new_port(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    entry = await set_up_entry(hass, addon, port=closed_port)
    assert entry.state is ConfigEntryState.SETUP_RETRY

    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(result["flow_id"], addon.entry_data)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == addon.port
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_without_a_token_keeps_the_stored_one(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    """The token the add-on generated cannot be read from Home Assistant: a new address
    alone must do (the field was required, and the form could not be sent)."""
    entry = await set_up_entry(hass, addon, port=closed_port)
    result = await entry.start_reconfigure_flow(hass)
    token_field = next(key for key in result["data_schema"].schema if key == CONF_API_TOKEN)
    assert isinstance(token_field, vol.Optional)
    assert "suggested_value" not in (token_field.description or {})  # never shown
    assert "Leave the token empty" in await shown_text(hass, result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: HOST, CONF_PORT: addon.port})
    await hass.async_block_till_done()
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == addon.entry_data
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_keeps_what_was_typed_after_an_error(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry, closed_port: int
) -> None:
    result = await loaded_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**addon.entry_data, CONF_PORT: closed_port})
    assert result["errors"] == {"base": "cannot_connect"}
    suggested = {str(key): key.description["suggested_value"]
                 for key in result["data_schema"].schema
                 if key.description and "suggested_value" in key.description}
    assert suggested[CONF_PORT] == closed_port


async def test_reconfigure_refuses_another_meter(
    hass: HomeAssistant, addon: Addon, other_addon: Addon, loaded_entry: MockConfigEntry
) -> None:
    result = await loaded_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], other_addon.entry_data)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_meter"
    assert loaded_entry.data[CONF_PORT] == addon.port


async def test_options_keep_entities_of_the_chosen_channels_only(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    channel_ids = [channel["id"] for channel in (await addon.get("info"))["channels"]]
    assert len(channel_ids) >= 2
    kept, dropped = channel_ids[0], channel_ids[1:]

    def channel_entities(channel_id: int) -> list[str]:
        prefix = f"{addon.meter_id}_channel_{channel_id}_"
        return [e.entity_id for e in er.async_entries_for_config_entry(
            entity_registry, loaded_entry.entry_id) if e.unique_id.startswith(prefix)]

    assert all(channel_entities(channel_id) for channel_id in channel_ids)

    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_CHANNELS: [str(kept)]})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.state is ConfigEntryState.LOADED

    assert channel_entities(kept)
    for channel_id in dropped:
        assert channel_entities(channel_id) == []
        assert not [s for s in hass.states.async_all("sensor")
                    if f"channel_{channel_id}" in s.entity_id]
    # The totals stay whatever channels are shown.
    assert entity_registry.async_get_entity_id(
        "sensor", DOMAIN, f"{addon.meter_id}_total_power") is not None


async def test_options_leave_out_a_channel_the_addon_no_longer_serves(
    hass: HomeAssistant, addon: Addon,
) -> None:
    # Channel 9 was chosen once; the add-on's channels option has dropped it since.
    await addon.wait_for_reading()
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data,
                            options={CONF_CHANNELS: ["1", "9"]})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    # What the frontend submits when the user only changes the interval: the defaults.
    defaults = {str(key): key.default() for key in result["data_schema"].schema
                if callable(getattr(key, "default", None))}
    assert defaults[CONF_CHANNELS] == ["1"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], defaults | {CONF_UPDATE_INTERVAL: 7})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_CHANNELS] == ["1"]


async def test_a_cleared_carbon_sensor_stays_cleared_after_a_form_error(
    hass: HomeAssistant, addon: Addon,
) -> None:
    """Cleared together with a mistyped interval, the sensor came back in the form shown
    again, and was saved again when the user fixed the interval (helper 99)."""
    hass.states.async_set("sensor.grid_intensity", "250", {"unit_of_measurement": "g/kWh"})
    await addon.wait_for_reading()
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data,
                            options={CONF_UPDATE_INTERVAL: 5,
                                     CONF_CO2_INTENSITY_ENTITY: "sensor.grid_intensity"})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    channels = [str(c["id"]) for c in (await addon.get("info"))["channels"]]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_CHANNELS: channels, CONF_UPDATE_INTERVAL: 2.5})
    assert result["errors"] == {CONF_UPDATE_INTERVAL: "whole_seconds"}
    shown = {str(key): (key.description or {}).get("suggested_value")
             for key in result["data_schema"].schema}
    assert shown[CONF_CO2_INTENSITY_ENTITY] is None
    # The user fixes the interval and sends the form as shown.
    resent = {key: value for key, value in shown.items() if value is not None}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], resent | {CONF_UPDATE_INTERVAL: 3})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_CO2_INTENSITY_ENTITY not in entry.options


async def test_options_refuse_a_carbon_intensity_sensor_that_does_not_exist_or_is_not_one(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    channels = [str(c["id"]) for c in (await addon.get("info"))["channels"]]
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: channels, CONF_CO2_INTENSITY_ENTITY: "sensor.does_not_exist"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_CO2_INTENSITY_ENTITY: "entity_not_found"}
    assert CONF_CO2_INTENSITY_ENTITY not in loaded_entry.options

    # The picker offers every sensor: a power sensor is refused, naming its unit.
    hass.states.async_set("sensor.house_power", "346.02", {"unit_of_measurement": "W"})
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: channels, CONF_CO2_INTENSITY_ENTITY: "sensor.house_power"})
    assert result["errors"] == {CONF_CO2_INTENSITY_ENTITY: "not_carbon_intensity"}
    assert result["description_placeholders"] == {"unit": "W"}
    assert CONF_CO2_INTENSITY_ENTITY not in loaded_entry.options

    # One without a unit (a template sensor): said in words of its own, not "no unit"
    # pasted into a French sentence (helper 83).
    hass.states.async_set("sensor.grid_intensity", "312")
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: channels, CONF_CO2_INTENSITY_ENTITY: "sensor.grid_intensity"})
    assert result["errors"] == {CONF_CO2_INTENSITY_ENTITY: "not_carbon_intensity_no_unit"}

    hass.states.async_set("sensor.grid_co2", "250", {"unit_of_measurement": "gCO2eq/kWh"})
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: channels, CONF_CO2_INTENSITY_ENTITY: "sensor.grid_co2"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[CONF_CO2_INTENSITY_ENTITY] == "sensor.grid_co2"


async def test_options_need_a_running_entry(hass: HomeAssistant, closed_port: int) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id="meter",
                            data={CONF_HOST: HOST, CONF_PORT: closed_port, CONF_API_TOKEN: "x"})
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_loaded"


async def shown_text(hass: HomeAssistant, result: Any) -> str:
    """The English text the frontend shows for a form's description, an abort, or the
    form's error."""
    texts = await async_get_translations(hass, "en", "config", [DOMAIN])
    prefix = f"component.{DOMAIN}.config"
    if result["type"] is FlowResultType.ABORT:
        key = f"{prefix}.abort.{result['reason']}"
    elif result["errors"]:
        [error] = result["errors"].values()
        key = f"{prefix}.error.{error}"
    else:
        key = f"{prefix}.step.{result['step_id']}.description"
    return str(texts[key]).format(**(result.get("description_placeholders") or {}))


def reauth_prompts(hass: HomeAssistant, entry: MockConfigEntry) -> tuple[int, bool]:
    """The reauth forms open for the entry, and whether the "Reauthentication required"
    repair shows."""
    flows = list(entry.async_get_active_flows(hass, {config_entries.SOURCE_REAUTH}))
    issue = ir.async_get(hass).async_get_issue(
        "homeassistant", f"config_entry_reauth_{DOMAIN}_{entry.entry_id}")
    return len(flows), issue is not None


async def refused_entry(hass: HomeAssistant, addon: Addon,
                        token: str = "old-token-0123456789") -> MockConfigEntry:
    """An entry whose token the add-on refused at setup (it changed while HA was down)."""
    entry = await set_up_entry(hass, addon, api_token=token)
    assert entry.state is ConfigEntryState.SETUP_RETRY  # retried, with a reauth prompt
    assert reauth_prompts(hass, entry) == (1, True)
    return entry


async def discover(hass: HomeAssistant, data: dict[str, Any]) -> Any:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_HASSIO},
        data=discovery({"host": data[CONF_HOST], "port": data[CONF_PORT],
                        "api_token": data[CONF_API_TOKEN]}))
    await hass.async_block_till_done()
    return result


def assert_fixed(hass: HomeAssistant, entry: MockConfigEntry, result: ConfigFlowResult,
                 reason: str) -> None:
    """The flow ended with `reason`, the entry works, and nothing asks for the token."""
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason
    assert entry.state is ConfigEntryState.LOADED
    assert reauth_prompts(hass, entry) == (0, False)


async def test_discovery_with_the_new_token_sets_up_a_refused_entry(
    hass: HomeAssistant, addon: Addon
) -> None:
    entry = await refused_entry(hass, addon)
    result = await discover(hass, addon.entry_data)
    assert_fixed(hass, entry, result, "already_configured")
    assert entry.data[CONF_API_TOKEN] == addon.token


async def test_discovery_with_the_same_token_sets_up_an_entry_that_failed(
    hass: HomeAssistant, addon: Addon
) -> None:
    # The add-on had another token when HA started, then got its old one back (a restored
    # backup): its announcement carries what the entry has.
    entry = await refused_entry(hass, addon)
    await addon.stop()
    await addon.start(api_token=entry.data[CONF_API_TOKEN])
    result = await discover(hass, dict(entry.data))
    assert_fixed(hass, entry, result, "already_configured")


async def test_adding_the_meter_again_with_the_new_token_fixes_its_entry(
    hass: HomeAssistant, addon: Addon
) -> None:
    entry = await refused_entry(hass, addon)
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, addon.entry_data)
    await hass.async_block_till_done()
    assert_fixed(hass, entry, result, "already_configured")
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert entry.data[CONF_API_TOKEN] == addon.token


async def test_reconfigure_with_the_new_token_closes_the_reauth_prompt(
    hass: HomeAssistant, addon: Addon
) -> None:
    entry = await refused_entry(hass, addon)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], addon.entry_data)
    await hass.async_block_till_done()
    assert_fixed(hass, entry, result, "reconfigure_successful")


async def test_reauth_form_says_how_to_get_the_token(hass: HomeAssistant, addon: Addon) -> None:
    entry = await refused_entry(hass, addon)
    [flow] = entry.async_get_active_flows(hass, {config_entries.SOURCE_REAUTH})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert result["step_id"] == "reauth_confirm"
    text = await shown_text(hass, result)
    assert f"{HOST}:{addon.port}" in text
    assert "`api_token` option" in text
    assert "set a token there and restart the add-on" in text
    assert "/data/api_token" in text


@pytest.fixture(params=[
    pytest.param(("<html>router login</html>", "text/html"), id="html"),
    pytest.param(("{}", "application/json"), id="empty-object"),
    pytest.param(("[1, 2]", "application/json"), id="list"),
    pytest.param(('{"meter_id": 5, "name": null, "version": 1, "source": "x", "boards": {}, '
                  '"channels": "all"}', "application/json"), id="wrong-types"),
    # Most web servers have no such page, or ask for their own login.
    pytest.param(("404: Not Found", "text/plain", 404), id="not-found"),
    pytest.param(("<html>Log in</html>", "text/html", 401), id="login-page"),
])
async def not_the_addon(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    """The port of another web server answering the add-on's info request."""
    body, content_type, *status = request.param

    async def info(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type,
                            status=status[0] if status else 200)

    app = web.Application()
    app.router.add_get("/api/v1/info", info)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    yield int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    await runner.cleanup()


async def test_another_web_server_is_not_energy_tracker(
    hass: HomeAssistant, not_the_addon: int, caplog: pytest.LogCaptureFixture
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_HOST: HOST, CONF_PORT: not_the_addon, CONF_API_TOKEN: "token"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_energy_tracker"}
    assert "not as an Energy Tracker add-on" in await shown_text(hass, result)
    # The user's mistake, not a bug: no error, no traceback in the log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

    result = await discover(
        hass, {CONF_HOST: HOST, CONF_PORT: not_the_addon, CONF_API_TOKEN: "token"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_energy_tracker"


@pytest.mark.parametrize("disguise", ["padded", "gzip", "redirect"])
async def test_an_answer_no_addon_gives_is_not_read_whole_nor_followed(
    hass: HomeAssistant, addon: Addon, disguise: str
) -> None:
    """Whatever answers at the typed address (the link is plain HTTP) is read up to a few
    MB, never decompressed and never followed elsewhere: the real add-on's answer behind
    40 MB of padding, gzipped, or a redirect to it, used to be read whole and accepted
    (a 1 MB gzip of 1 GB took Home Assistant to 4 GB)."""
    info = json.dumps(await addon.get("info")).encode()

    async def answer(request: web.Request) -> web.StreamResponse:
        if disguise == "redirect":
            raise web.HTTPFound(f"http://{HOST}:{addon.port}/api/v1/info")
        padded = b" " * (40 * 1024 * 1024) + info
        if disguise == "gzip":
            return web.Response(body=gzip.compress(padded, compresslevel=1),
                                content_type="application/json",
                                headers={"Content-Encoding": "gzip"})
        return web.Response(body=padded, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/info", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    try:
        port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        flow_id = await start_user_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            flow_id, {CONF_HOST: HOST, CONF_PORT: port, CONF_API_TOKEN: addon.token})
    finally:
        await runner.cleanup()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_energy_tracker"}
    assert not hass.config_entries.async_entries(DOMAIN)


@pytest.mark.parametrize("typed", [
    "http://{host}:{port}/", "{host}:{port}", "HTTP://{host}:{port}/api/v1/info",
])
async def test_a_pasted_address_with_its_port_reaches_the_addon(
    hass: HomeAssistant, addon: Addon, typed: str
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {
        CONF_HOST: typed.format(host=HOST, port=addon.port), CONF_PORT: DEFAULT_PORT,
        CONF_API_TOKEN: addon.token})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == addon.entry_data


async def test_a_port_typed_in_its_field_wins_over_one_after_the_host(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_HOST: f"{HOST}:{closed_port}"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == addon.entry_data


@pytest.mark.parametrize("typed", ["http://", f"{HOST}:port", f"{HOST}:70000", "my addon"])
async def test_what_is_no_host_is_refused_on_its_field(
    hass: HomeAssistant, addon: Addon, typed: str
) -> None:
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**addon.entry_data, CONF_HOST: typed})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_HOST: "invalid_host"}
    assert "host name or IP address" in await shown_text(hass, result)


async def test_reconfigure_to_a_pasted_url(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    entry = await set_up_entry(hass, addon, port=closed_port)
    result = await entry.start_reconfigure_flow(hass)
    # The port field still shows the stored port.
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {
        CONF_HOST: f"http://{HOST}:{addon.port}/", CONF_PORT: closed_port,
        CONF_API_TOKEN: addon.token})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == addon.entry_data
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_at_a_reinstalled_addon_says_to_add_it_again(
    hass: HomeAssistant, addon: Addon
) -> None:
    # The entry's meter was served here before the add-on was reinstalled (new meter id).
    entry = await set_up_entry(hass, addon, unique_id="meter-before-reinstall")
    assert entry.state is not ConfigEntryState.LOADED
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], addon.entry_data)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_meter"
    text = await shown_text(hass, result)
    assert "reinstalled" in text
    assert "delete this entry and add the add-on again" in text


async def test_options_update_interval_is_whole_seconds(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    channels = [str(c["id"]) for c in (await addon.get("info"))["channels"]]
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_CHANNELS: channels, CONF_UPDATE_INTERVAL: 2.5})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_UPDATE_INTERVAL: "whole_seconds"}
    assert CONF_UPDATE_INTERVAL not in loaded_entry.options

    # What the frontend's number box sends.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_CHANNELS: channels, CONF_UPDATE_INTERVAL: 3.0})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[CONF_UPDATE_INTERVAL] == 3
    assert isinstance(loaded_entry.options[CONF_UPDATE_INTERVAL], int)

"""Config flow against the real add-on service: user, discovery, reauth, reconfigure, options."""

from __future__ import annotations

import pytest
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker.const import (
    CONF_CHANNELS,
    CONF_CO2_INTENSITY_ENTITY,
    CONF_UPDATE_INTERVAL,
    DEFAULT_PORT,
    DOMAIN,
)

from .conftest import HOST, Addon


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


async def test_rediscovery_updates_the_known_entry(
    hass: HomeAssistant, addon: Addon, closed_port: int
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
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id,
                            data={**addon.entry_data, CONF_API_TOKEN: "old-token"})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR

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


async def test_reconfigure_to_the_new_port(
    hass: HomeAssistant, addon: Addon, closed_port: int
) -> None:
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id,
                            data={**addon.entry_data, CONF_PORT: closed_port})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY

    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(result["flow_id"], addon.entry_data)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == addon.port
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


async def test_options_refuse_a_carbon_intensity_sensor_that_does_not_exist(
    hass: HomeAssistant, addon: Addon, loaded_entry: MockConfigEntry,
) -> None:
    channels = [str(c["id"]) for c in (await addon.get("info"))["channels"]]
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(result["flow_id"], {
        CONF_CHANNELS: channels, CONF_CO2_INTENSITY_ENTITY: "sensor.does_not_exist"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_CO2_INTENSITY_ENTITY: "entity_not_found"}
    assert CONF_CO2_INTENSITY_ENTITY not in loaded_entry.options

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

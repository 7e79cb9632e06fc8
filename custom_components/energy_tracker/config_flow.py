"""Config flow: manual setup, Supervisor add-on discovery, reauth, reconfigure, options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol
from homeassistant.config_entries import (
    SOURCE_HASSIO,
    SOURCE_IGNORE,
    SOURCE_REAUTH,
    SOURCE_USER,
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, CONF_API_TOKEN, CONF_HOST, CONF_PORT
from homeassistant.core import callback
from homeassistant.data_entry_flow import AbortFlow
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.hassio import HassioServiceInfo

from .api import CannotConnect, EnergyTrackerClient, InvalidAuth, InvalidData
from .carbon import unreadable_unit
from .const import (
    CONF_CHANNELS,
    CONF_CO2_INTENSITY_ENTITY,
    CONF_UPDATE_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_UPDATE_INTERVAL,
    DOMAIN,
    LOGGER,
    MAX_UPDATE_INTERVAL,
)
from .coordinator import EnergyTrackerConfigEntry, async_abort_reauth_flows
from .models import MeterInfo

PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))
TOKEN = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


def _connection_schema(defaults: Mapping[str, Any], *, token_required: bool = True
                       ) -> vol.Schema:
    # Reconfigure keeps the stored token when the field is left empty: the token the add-on
    # generated cannot be read from Home Assistant, and a new host or port needs none.
    token = vol.Required(CONF_API_TOKEN) if token_required else vol.Optional(CONF_API_TOKEN)
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, vol.UNDEFINED)): str,
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_PORT)): PORT,
            token: TOKEN,
        }
    )


def _typed_again(user_input: dict[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """What reconfigure shows after an error: what was typed, but never the stored token
    (an empty token field keeps it)."""
    if user_input[CONF_API_TOKEN] == stored[CONF_API_TOKEN]:
        return {key: value for key, value in user_input.items() if key != CONF_API_TOKEN}
    return user_input


def _cleaned(user_input: dict[str, Any]) -> dict[str, Any]:
    """Typed or pasted values without the spaces around them (the add-on's tokens and
    host names have none)."""
    return {key: value.strip() if key in (CONF_HOST, CONF_API_TOKEN) else value
            for key, value in user_input.items()}


def _split_address(text: str) -> tuple[str, int | None] | None:
    """The host in what was typed or pasted in the host field, and the port written after
    it, if any; None if it is no host.

    Takes a host name or IP address, `host:port`, `[IPv6]:port` and a pasted URL
    (`http://host:port/…`). A bare IPv6 literal has several colons: none is a port.
    """
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if text.count(":") > 1 and not text.startswith("["):
        host, port = text, None
    else:
        try:
            address = urlsplit(f"//{text}")
            host, port = address.hostname or "", address.port
        except ValueError:  # a port that is no number, or above 65535
            return None
    if not host or port == 0 or any(c.isspace() for c in host):
        return None
    return host, port


def _address_errors(user_input: dict[str, Any], shown_port: int) -> dict[str, str]:
    """Put the host, and a port written after it, where they belong in `user_input`.

    The port field keeps precedence if the user changed it from `shown_port`, the port the
    form showed.
    """
    if (address := _split_address(user_input[CONF_HOST])) is None:
        return {CONF_HOST: "invalid_host"}
    user_input[CONF_HOST], port = address
    if port is not None and user_input[CONF_PORT] == shown_port:
        user_input[CONF_PORT] = port
    return {}


class EnergyTrackerConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up one config entry per meter (the add-on's meter_id)."""

    VERSION = 1

    def __init__(self) -> None:
        """Nothing discovered yet."""
        self._discovered: dict[str, Any] = {}
        self._discovered_info: MeterInfo | None = None
        self._shown_port = DEFAULT_PORT

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: EnergyTrackerConfigEntry) -> OptionsFlow:
        """Choose which channels get entities."""
        return EnergyTrackerOptionsFlow()

    async def _async_try_connect(
        self, data: Mapping[str, Any]
    ) -> tuple[MeterInfo | None, dict[str, str]]:
        """The meter's info, or the form errors explaining why it could not be read."""
        token = data[CONF_API_TOKEN]
        if not token.isprintable() or any(c.isspace() for c in token):
            # No add-on token has these, and a line break cannot go in a request header.
            return None, {"base": "invalid_auth"}
        client = EnergyTrackerClient(
            async_get_clientsession(self.hass),
            data[CONF_HOST],
            data[CONF_PORT],
            data[CONF_API_TOKEN],
        )
        try:
            return await client.get_info(), {}
        except InvalidAuth:
            return None, {"base": "invalid_auth"}
        except CannotConnect as err:
            LOGGER.debug("Cannot connect to the add-on: %s", err)
            return None, {"base": "cannot_connect"}
        except InvalidData as err:
            # Another web server at that address, most likely: the user's mistake to
            # correct, not a bug to trace.
            LOGGER.debug("Not the Energy Tracker add-on's API: %s", err)
            return None, {"base": "not_energy_tracker"}

    @callback
    def _abort_if_meter_configured(self, data: Mapping[str, Any]) -> None:
        """Abort if the meter has an entry, giving that entry `data`, which just worked.

        Unlike _abort_if_unique_id_configured, this also sets up again an entry that
        failed to (refused token, wrong meter at its address) or waits for a new token,
        and closes its reauth prompt.
        """
        assert self.unique_id is not None
        entry = self.hass.config_entries.async_entry_for_domain_unique_id(
            self.handler, self.unique_id
        )
        if entry is None or (entry.source == SOURCE_IGNORE and self.source == SOURCE_USER):
            return  # a meter the user ignored can still be added by hand
        if entry.source != SOURCE_IGNORE:
            old_address = (entry.data.get(CONF_HOST), entry.data.get(CONF_PORT))
            new_address = (data.get(CONF_HOST, old_address[0]), data.get(CONF_PORT, old_address[1]))
            if new_address != old_address:
                # Normal after a reinstall; a second add-on on a copy of this one's folder
                # flips the entry at each announcement, unseen without this line.
                LOGGER.warning("Energy Tracker meter %s (%s) now answers at %s:%s (was "
                               "%s:%s): the entry follows it", self.unique_id, entry.title,
                               *new_address, *old_address)
            # Also set up again an entry that does not work with the data it had: the
            # add-on may be back with it (a restored backup, its old address).
            failing = entry.state in (
                ConfigEntryState.SETUP_ERROR, ConfigEntryState.SETUP_RETRY
            ) or any(entry.async_get_active_flows(self.hass, {SOURCE_REAUTH}))
            if entry.disabled_by is None and entry.state.recoverable:
                self._async_update_and_reload(entry, {**entry.data, **data}, always=failing)
            else:
                self.hass.config_entries.async_update_entry(entry, data={**entry.data, **data})
            async_abort_reauth_flows(self.hass, entry)
        raise AbortFlow("already_configured")

    @callback
    def _async_update_and_reload(self, entry: ConfigEntry, data: Mapping[str, Any],
                                 *, always: bool = True) -> None:
        """Give the entry new data and set it up again with it (unchanged too if `always`).

        A loaded entry's update listener reloads it on a data change: Home Assistant from
        2026.6 reports, and from 2026.12 refuses, a flow's own reload of an entry that has
        one (async_update_reload_and_abort).
        """
        listens = bool(entry.update_listeners)  # before: the listener starts unloading at once
        changed = self.hass.config_entries.async_update_entry(entry, data=data)
        if changed and listens:
            return
        if changed or always:
            self.hass.config_entries.async_schedule_reload(entry.entry_id)

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Host, port and API token typed by the user."""
        errors: dict[str, str] = {}
        if user_input is not None:
            user_input = _cleaned(user_input)
            if not (errors := _address_errors(user_input, self._shown_port)):
                info, errors = await self._async_try_connect(user_input)
                if info is not None:
                    # Not refused while its discovered card waits: the entry made here
                    # closes that card (Home Assistant aborts flows of the same meter).
                    await self.async_set_unique_id(info.meter_id, raise_on_progress=False)
                    # Typed for a meter that has an entry: that entry gets this address.
                    self._abort_if_meter_configured(user_input)
                    return self.async_create_entry(title=info.name, data=user_input)
        self._shown_port = (user_input or {}).get(CONF_PORT, DEFAULT_PORT)
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                _connection_schema({}), user_input
            ),
            errors=errors,
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The add-on announced itself through Supervisor discovery."""
        config = discovery_info.config
        try:
            data = {
                CONF_HOST: str(config[CONF_HOST]),
                CONF_PORT: PORT(config[CONF_PORT]),
                CONF_API_TOKEN: str(config[CONF_API_TOKEN]),
            }
        except (KeyError, vol.Invalid):
            LOGGER.error("Add-on discovery without host, port and api_token: %s", config.keys())
            return self.async_abort(reason="invalid_discovery_info")
        info, errors = await self._async_try_connect(data)
        if info is None:
            LOGGER.debug("Discovered add-on not added: %s", errors["base"])
            return self.async_abort(reason=errors["base"])
        # A card still waiting from an earlier announcement holds the token of then (the
        # add-on restarted with a new api_token): the newest announcement replaces it.
        for flow in self._async_in_progress(
                include_uninitialized=True,
                match_context={"source": SOURCE_HASSIO, "unique_id": info.meter_id}):
            self.hass.config_entries.flow.async_abort(flow["flow_id"])
        await self.async_set_unique_id(info.meter_id)
        # A known meter whose add-on moved or got a new token is simply updated.
        self._abort_if_meter_configured(data)
        self._discovered = data
        self._discovered_info = info
        self.context["title_placeholders"] = {"name": info.name}
        return await self.async_step_hassio_confirm()

    async def async_step_hassio_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before adding the discovered add-on."""
        assert self._discovered_info is not None
        if user_input is not None:
            return self.async_create_entry(
                title=self._discovered_info.name, data=self._discovered
            )
        self._set_confirm_only()
        return self.async_show_form(
            step_id="hassio_confirm",
            description_placeholders={"name": self._discovered_info.name},
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The add-on refused the stored token."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the add-on's current API token."""
        errors: dict[str, str] = {}
        entry = self._get_reauth_entry()
        if user_input is not None:
            data = {**entry.data, **_cleaned(user_input)}
            info, errors = await self._async_try_connect(data)
            if info is not None:
                await self.async_set_unique_id(info.meter_id)
                self._abort_if_unique_id_mismatch(reason="wrong_meter")
                self._async_update_and_reload(entry, data)
                return self.async_abort(reason="reauth_successful")
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_API_TOKEN): TOKEN}),
            description_placeholders={
                "host": entry.data[CONF_HOST], "port": str(entry.data[CONF_PORT])
            },
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point the entry at a new host, port or token of the same meter."""
        errors: dict[str, str] = {}
        entry = self._get_reconfigure_entry()
        if user_input is not None:
            user_input = _cleaned(user_input)
            if not user_input.get(CONF_API_TOKEN):
                user_input[CONF_API_TOKEN] = entry.data[CONF_API_TOKEN]
            if not (errors := _address_errors(user_input, self._shown_port)):
                info, errors = await self._async_try_connect(user_input)
                if info is not None:
                    await self.async_set_unique_id(info.meter_id)
                    self._abort_if_unique_id_mismatch(reason="wrong_meter")
                    async_abort_reauth_flows(self.hass, entry)
                    self._async_update_and_reload(entry, {**entry.data, **user_input})
                    return self.async_abort(reason="reconfigure_successful")
        self._shown_port = (user_input or entry.data)[CONF_PORT]
        return self.async_show_form(
            step_id="reconfigure",
            # After an error the form shows what was typed, not the stored values again.
            data_schema=self.add_suggested_values_to_schema(
                _connection_schema(entry.data, token_required=False),
                None if user_input is None else _typed_again(user_input, entry.data),
            ),
            errors=errors,
        )


class EnergyTrackerOptionsFlow(OptionsFlow):
    """Which CT channels get entities, how often entities (and the recorder) update, and
    which entity gives the grid's carbon intensity."""

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Multi-select of the add-on's channels."""
        entry: EnergyTrackerConfigEntry = self.config_entry
        if entry.state is not ConfigEntryState.LOADED:
            # The channel list comes from the running add-on.
            return self.async_abort(reason="not_loaded")
        errors: dict[str, str] = {}
        placeholders: dict[str, str] = {}
        if user_input is not None:
            intensity = user_input.get(CONF_CO2_INTENSITY_ENTITY)
            # The selector offers existing sensors; typed or sent by API, a missing one
            # would silently never forward anything.
            if intensity and self.hass.states.get(intensity) is None:
                errors[CONF_CO2_INTENSITY_ENTITY] = "entity_not_found"
            # The selector offers every sensor: a power sensor was taken without a word.
            elif intensity and (unit := unreadable_unit(state := self.hass.states.get(
                    intensity))):
                if state is not None and not state.attributes.get(ATTR_UNIT_OF_MEASUREMENT):
                    # Its own message: the words "no unit" would be English in any language.
                    errors[CONF_CO2_INTENSITY_ENTITY] = "not_carbon_intensity_no_unit"
                else:
                    errors[CONF_CO2_INTENSITY_ENTITY] = "not_carbon_intensity"
                    placeholders["unit"] = unit
            # Whole seconds, as the box's step says (which the selector does not enforce).
            interval = user_input[CONF_UPDATE_INTERVAL]
            if not float(interval).is_integer():
                errors[CONF_UPDATE_INTERVAL] = "whole_seconds"
            if not errors:
                return self.async_create_entry(
                    data={**user_input, CONF_UPDATE_INTERVAL: int(interval)}
                )
        channels = entry.runtime_data.info.channels
        served = [str(channel.id) for channel in channels]
        # A channel the add-on no longer serves cannot be unticked in the list, and the
        # selector would refuse the form with it: leave it out.
        shown = [c for c in entry.options.get(CONF_CHANNELS, served) if c in served]
        schema = vol.Schema(
            {
                vol.Required(CONF_CHANNELS, default=shown): SelectSelector(
                    SelectSelectorConfig(
                        options=[
                            SelectOptionDict(
                                value=str(c.id),
                                label=f"{c.id}: {entry.runtime_data.shown_name(c.name)}")
                            for c in channels
                        ],
                        multiple=True,
                        mode=SelectSelectorMode.LIST,
                    )
                ),
                vol.Required(
                    CONF_UPDATE_INTERVAL,
                    default=entry.options.get(CONF_UPDATE_INTERVAL, DEFAULT_UPDATE_INTERVAL),
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=0,
                        max=MAX_UPDATE_INTERVAL,
                        step=1,
                        mode=NumberSelectorMode.BOX,
                        unit_of_measurement="s",
                    )
                ),
                vol.Optional(
                    CONF_CO2_INTENSITY_ENTITY,
                    # A cleared field is absent from user_input: after a form error the
                    # stored sensor came back in it, and was saved again.
                    description={"suggested_value": (
                        entry.options if user_input is None else user_input
                    ).get(CONF_CO2_INTENSITY_ENTITY)},
                ): EntitySelector(EntitySelectorConfig(domain="sensor")),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )

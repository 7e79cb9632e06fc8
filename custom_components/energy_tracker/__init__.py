"""The Energy Tracker integration: entities fed by the Energy Tracker add-on's API."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.typing import ConfigType

from .addon_version_issue import async_check_addon_version, async_forget_addon_version
from .api import CannotConnect, EnergyTrackerClient, InvalidAuth, InvalidData
from .appliance_events import ApplianceEvents
from .carbon import CarbonIntensityForwarder, async_withdraw_intensity
from .const import CONF_CO2_INTENSITY_ENTITY, DOMAIN
from .coordinator import (
    EnergyTrackerConfigEntry,
    EnergyTrackerCoordinator,
    async_abort_reauth_flows,
)
from .default_names import async_shown_default_names
from .devices import is_stale
from .entity import meter_device_info
from .events import MeterEvents, async_forget_circuit_runs
from .export_action import async_setup_export_action
from .label_action import async_setup_label_action
from .meter_issue import NoReadingsIssue
from .nilm_repair import NilmIssue
from .outage import async_forget_outage, async_outage
from .services import async_setup_services
from .time_zone_issue import TimeZoneIssue
from .voice import async_setup_voice

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR, Platform.NUMBER, Platform.SENSOR, Platform.SWITCH
]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Actions and Assist sentences exist once, whether or not an entry is loaded."""
    async_setup_services(hass)
    async_setup_export_action(hass)
    async_setup_label_action(hass)
    await async_setup_voice(hass)
    return True


def _client(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> EnergyTrackerClient:
    return EnergyTrackerClient(async_get_clientsession(hass), entry.data[CONF_HOST],
                               entry.data[CONF_PORT], entry.data[CONF_API_TOKEN])


async def async_setup_entry(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> bool:
    """Connect to the add-on, read its first state and start the stream."""
    client = _client(hass, entry)
    try:
        info = await client.get_info()
    except InvalidAuth as err:
        async_outage(hass, entry).async_end()  # it answers; the reauth flow says why
        # The reauth prompt asks for the new token, and setup is retried meanwhile (not
        # ConfigEntryAuthFailed, which never retries): an add-on that takes the stored
        # token again (a restored backup) brings the entry back by itself.
        entry.async_start_reauth(hass)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="invalid_auth"
        ) from err
    except (CannotConnect, InvalidData) as err:
        # Timed across the retries: a long outage still raises its repairs issue.
        async_outage(hass, entry).async_lost()
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    async_outage(hass, entry).async_end()
    if info.meter_id != entry.unique_id:
        # Retried: the right add-on may come back at this address (another one stood in
        # meanwhile); a reinstalled one never will, which the message says.
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="wrong_meter",
            translation_placeholders={"expected": str(entry.unique_id), "found": info.meter_id},
        )

    async_check_addon_version(hass, entry, info.version)
    coordinator = EnergyTrackerCoordinator(hass, entry, client, info,
                                           await async_shown_default_names(hass))
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    async_abort_reauth_flows(hass, entry)  # the token works (fixed another way, if at all)
    # The boards' devices point at the meter (via its device id): it must exist first.
    coordinator.meter_device_id = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, **meter_device_info(info)
    ).id
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # After the platforms: relay events carry the relays' device ids.
    entry.async_on_unload(MeterEvents(hass, coordinator).async_start())
    entry.async_on_unload(ApplianceEvents(hass, coordinator).async_start())
    entry.async_on_unload(NilmIssue(hass, coordinator).async_start())
    entry.async_on_unload(NoReadingsIssue(hass, coordinator).async_start())
    entry.async_on_unload(TimeZoneIssue(hass, coordinator).async_start())
    if intensity_entity := entry.options.get(CONF_CO2_INTENSITY_ENTITY):
        entry.async_on_unload(
            CarbonIntensityForwarder(hass, coordinator, intensity_entity).async_start()
        )
    coordinator.async_start_stream()

    options_at_setup, data_at_setup = dict(entry.options), dict(entry.data)

    async def _async_reload_on_change(
        hass: HomeAssistant, entry: EnergyTrackerConfigEntry
    ) -> None:
        # The shown channels decide which entities exist; new data (reauth, reconfigure,
        # discovery) is a new address or token. A new title alone changes nothing.
        if entry.options == options_at_setup and entry.data == data_at_setup:
            return
        if options_at_setup.get(CONF_CO2_INTENSITY_ENTITY) and not entry.options.get(
                CONF_CO2_INTENSITY_ENTITY):
            # The add-on would hold the sensor's last value for two hours.
            await async_withdraw_intensity(coordinator.client)
        await hass.config_entries.async_reload(entry.entry_id)

    entry.async_on_unload(entry.add_update_listener(_async_reload_on_change))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> bool:
    """Unload platforms; the stream task and the coordinator stop with the entry. An
    outage is still timed through a reload, not once the user disabled the entry."""
    if entry.disabled_by is not None:
        async_outage(hass, entry).async_end()
        async_forget_addon_version(hass, entry)  # nothing to update for a disabled entry
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> None:
    """A removed entry has no outage to report, nor an add-on to update, nor a carbon
    intensity to send (the add-on would hold its last one for two hours)."""
    async_forget_outage(hass, entry)
    async_forget_addon_version(hass, entry)
    async_forget_circuit_runs(hass, entry)
    if entry.options.get(CONF_CO2_INTENSITY_ENTITY):
        await async_withdraw_intensity(_client(hass, entry))



async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EnergyTrackerConfigEntry, device: DeviceEntry
) -> bool:
    """Let the user delete a device only once the add-on no longer serves it (which is
    only known while the entry is loaded)."""
    return entry.state is ConfigEntryState.LOADED and is_stale(entry.runtime_data, device)

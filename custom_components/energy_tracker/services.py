"""Actions: demand response through the add-on (shed_load, restore_load)."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr

from .commands import run_command
from .const import DOMAIN
from .coordinator import EnergyTrackerConfigEntry
from .device_lookup import device_by_identifier, device_entry_ids
from .events import relay_device_identifier

SERVICE_SHED_LOAD: Final = "shed_load"
SERVICE_RESTORE_LOAD: Final = "restore_load"
SERVICE_CALIBRATE_VOLTAGE: Final = "calibrate_voltage"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_LIMIT_W: Final = "limit_w"
ATTR_REDUCE_W: Final = "reduce_w"
ATTR_STAGGER_S: Final = "stagger_s"
ATTR_MEASURED_V: Final = "measured_v"
# The calibration's API errors → its own messages (not the relays' "the board of …").
_CALIBRATION_ERRORS: Final = {
    "board_unavailable": "calibration_unavailable",
    "invalid": "calibration_refused",
    "board_timeout": "calibration_timeout",
    "board_rejected": "calibration_rejected",
    "not_stored": "calibration_not_stored",
    "not_found": "needs_newer_addon",  # an add-on before 0.3.9 has no such route
}

_TARGET: dict[vol.Marker, Any] = {
    vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
    vol.Optional(ATTR_DEVICE_ID): cv.string,
}
SHED_LOAD_SCHEMA = vol.Schema(
    {
        **_TARGET,
        # One of them, checked by the action: vol.Exclusive's error is untranslated text.
        vol.Optional(ATTR_LIMIT_W): vol.All(vol.Coerce(float), vol.Range(min=0)),
        # The add-on refuses 0 (nothing to shed): said here, as the form's minimum.
        vol.Optional(ATTR_REDUCE_W): vol.All(vol.Coerce(float),
                                             vol.Range(min=0, min_included=False)),
    }
)
RESTORE_LOAD_SCHEMA = vol.Schema(
    {**_TARGET, vol.Optional(ATTR_STAGGER_S): vol.All(vol.Coerce(float), vol.Range(0, 600))}
)
CALIBRATE_VOLTAGE_SCHEMA = vol.Schema(
    {**_TARGET, vol.Required(ATTR_MEASURED_V): vol.All(vol.Coerce(float), vol.Range(50, 500))}
)


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions once for the integration (not per entry)."""
    hass.services.async_register(
        DOMAIN, SERVICE_SHED_LOAD, _async_shed_load, schema=SHED_LOAD_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_RESTORE_LOAD, _async_restore_load, schema=RESTORE_LOAD_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_CALIBRATE_VOLTAGE, _async_calibrate_voltage,
        schema=CALIBRATE_VOLTAGE_SCHEMA, supports_response=SupportsResponse.OPTIONAL,
    )


async def _async_calibrate_voltage(call: ServiceCall) -> ServiceResponse:
    """Make the voltage board read the mains voltage a multimeter measured."""
    entry = _target_entry(call)
    return await run_command(
        entry.runtime_data.client.calibrate_voltage(call.data[ATTR_MEASURED_V]),
        SERVICE_CALIBRATE_VOLTAGE, _CALIBRATION_ERRORS,
    )


async def _async_shed_load(call: ServiceCall) -> ServiceResponse:
    """Switch relays off, lowest priority first, until the limit or reduction is met."""
    if ATTR_LIMIT_W not in call.data and ATTR_REDUCE_W not in call.data:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="shed_amount_required")
    if ATTR_LIMIT_W in call.data and ATTR_REDUCE_W in call.data:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="shed_amount_both")
    entry = _target_entry(call)
    async with entry.runtime_data.action_context.acting_for(call.context):
        report = await run_command(
            entry.runtime_data.client.shed(limit_w=call.data.get(ATTR_LIMIT_W),
                                           reduce_w=call.data.get(ATTR_REDUCE_W)),
            SERVICE_SHED_LOAD,
            # 503 "unavailable": no current total to shed down from (its board is silent).
            errors={"unavailable": "shed_no_total"},
        )
    return _named_as_in_home_assistant(call.hass, entry, report, ("shed", "skipped"))


async def _async_restore_load(call: ServiceCall) -> ServiceResponse:
    """Switch back on what the last sheds switched off, staggered."""
    entry = _target_entry(call)
    async with entry.runtime_data.action_context.acting_for(call.context):
        report = await run_command(
            entry.runtime_data.client.restore(call.data.get(ATTR_STAGGER_S),
                                              relays=len(entry.runtime_data.data.relays)),
            SERVICE_RESTORE_LOAD,
        )
    return _named_as_in_home_assistant(call.hass, entry, report,
                                       ("restored", "failed", "pending"))


def _named_as_in_home_assistant(hass: HomeAssistant, entry: EnergyTrackerConfigEntry,
                                 report: dict[str, Any], lists: tuple[str, ...]
                                 ) -> dict[str, Any]:
    """Each relay in the add-on's report under the name the user gave its device, as the
    relay's events say it ("Switched off: Boiler" for the relay renamed Boiler)."""
    coordinator = entry.runtime_data
    relays = coordinator.data.relays
    for key in lists:
        for item in report.get(key, []):
            device = device_by_identifier(hass, relay_device_identifier(
                coordinator.info.meter_id, item["id"]), entry.entry_id)
            if device is not None and device.name_by_user:
                item["name"] = device.name_by_user
            elif "name" in item:
                item["name"] = coordinator.shown_name(item["name"])
            elif (relay := relays.get(item["id"])) is not None:
                # The add-on names skipped relays by id only.
                item["name"] = coordinator.shown_name(relay.name)
    return report


def _target_entry(call: ServiceCall) -> EnergyTrackerConfigEntry:
    """The chosen meter (entry or one of its devices), or the only one there is."""
    hass = call.hass
    entry_id: str | None = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id is None and (device_id := call.data.get(ATTR_DEVICE_ID)) is not None:
        device = dr.async_get(hass).async_get(device_id)
        entry_id = next(
            (e for e in device_entry_ids(device)
             if (ce := hass.config_entries.async_get_entry(e)) and ce.domain == DOMAIN),
            None,
        ) if device is not None else None
        if entry_id is None:
            raise ServiceValidationError(translation_domain=DOMAIN,
                                         translation_key="unknown_meter",
                                         translation_placeholders={"target": device_id})
    if entry_id is None:
        loaded = hass.config_entries.async_loaded_entries(DOMAIN)
        if len(loaded) != 1:
            raise ServiceValidationError(translation_domain=DOMAIN,
                                         translation_key="meter_required")
        return loaded[0]
    entry: EnergyTrackerConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="unknown_meter",
                                     translation_placeholders={"target": entry_id})
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_loaded",
                                     translation_placeholders={"title": entry.title})
    return entry

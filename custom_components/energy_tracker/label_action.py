"""The `energy_tracker.label_appliance` action: tell the add-on when a detected appliance
really ran (or did not: `was_running: false` corrects a false detection). The add-on keeps
the labels for fine-tuning its models (models/README.md, "Feedback").
`energy_tracker.remove_label` takes back a wrong one (the same fields)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

import voluptuous as vol
from homeassistant.const import ATTR_DEVICE_ID
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.util import dt as dt_util

from .appliance_entity import appliance_device_identifier
from .commands import CALLER_MISTAKES, run_command
from .const import DOMAIN
from .coordinator import EnergyTrackerConfigEntry
from .device_lookup import device_names
from .services import ATTR_CONFIG_ENTRY_ID, _target_entry

SERVICE_LABEL_APPLIANCE: Final = "label_appliance"
SERVICE_REMOVE_LABEL: Final = "remove_label"
ATTR_APPLIANCE: Final = "appliance"
ATTR_START: Final = "start"
ATTR_END: Final = "end"
ATTR_WAS_RUNNING: Final = "was_running"
# The add-on's model ids (its nilm_appliances option), with the events' "nilm_" or not.
_APPLIANCE_ID: Final = re.compile(r"(?:nilm_)?([a-z0-9_]{1,64})")
LABEL_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Optional(ATTR_DEVICE_ID): cv.string,
        vol.Required(ATTR_APPLIANCE): cv.string,
        vol.Required(ATTR_START): cv.datetime,
        vol.Required(ATTR_END): cv.datetime,
        vol.Optional(ATTR_WAS_RUNNING, default=True): cv.boolean,
    }
)


def async_setup_label_action(hass: HomeAssistant) -> None:
    """Register the actions once for the integration."""
    hass.services.async_register(
        DOMAIN, SERVICE_LABEL_APPLIANCE, _async_label, schema=LABEL_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_REMOVE_LABEL, _async_remove_label, schema=LABEL_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


async def _async_label(call: ServiceCall) -> ServiceResponse:
    """Send the label to the add-on; answers the label it stored."""
    entry, label = _label(call, any_id=False)
    return await run_command(entry.runtime_data.client.add_label(label),
                             SERVICE_LABEL_APPLIANCE, {"invalid": "label_refused"})


async def _async_remove_label(call: ServiceCall) -> ServiceResponse:
    """Remove the label given with these fields; answers the label removed."""
    # Any appliance id: its label may be of a model not running now (left out of
    # nilm_appliances, detection off), which the add-on removes all the same.
    entry, label = _label(call, any_id=True)
    return await run_command(
        entry.runtime_data.client.remove_label(label), SERVICE_REMOVE_LABEL,
        {"invalid": "label_refused", "not_found": "label_not_found",
         "method_not_allowed": "needs_newer_addon"},
        caller_mistakes=CALLER_MISTAKES | {"not_found"})


def _label(call: ServiceCall, *, any_id: bool
           ) -> tuple[EnergyTrackerConfigEntry, dict[str, Any]]:
    """The entry and the label as the add-on's API takes it."""
    # A time without a zone is Home Assistant's local time, as in the UI.
    start, end = (_aware(call.data[key]) for key in (ATTR_START, ATTR_END))
    if end <= start:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="label_end_before_start")
    entry = _target_entry(call)
    appliance = _appliance_id(call.hass, entry, str(call.data[ATTR_APPLIANCE]), any_id=any_id)
    return entry, {"appliance": appliance, "start": start.isoformat(), "end": end.isoformat(),
                   "was_running": call.data[ATTR_WAS_RUNNING]}


def _appliance_id(hass: HomeAssistant, entry: EnergyTrackerConfigEntry, given: str, *,
                  any_id: bool) -> str:
    """The add-on's id of the appliance the user named: its id, the key of events and
    triggers ("nilm_kettle"), or its name as the add-on gives it or as Home Assistant shows
    its device ("Bouilloire" in French, a name the user gave it, or "Kettle (detected)" as
    the device-trigger list shows it). `any_id`: an id of no appliance running now too."""
    known = entry.runtime_data.data.appliances
    wanted = given.strip().casefold().removesuffix(" (detected)").strip()
    for appliance in (known or {}).values():
        names = [appliance.id, f"nilm_{appliance.id}", appliance.name, *device_names(
            hass, appliance_device_identifier(entry.runtime_data.info.meter_id, appliance.id),
            entry.entry_id)]
        if wanted in (name.casefold() for name in names):
            return appliance.id
    if any_id and (match := _APPLIANCE_ID.fullmatch(wanted)):
        return match[1]
    if not known:
        raise ServiceValidationError(translation_domain=DOMAIN,
                                     translation_key="label_no_appliances")
    raise ServiceValidationError(
        translation_domain=DOMAIN, translation_key="label_unknown_appliance",
        translation_placeholders={"appliance": given,
                                  "known": ", ".join(a.name for a in known.values())},
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(
        tzinfo=dt_util.get_default_time_zone())

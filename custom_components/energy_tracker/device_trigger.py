"""Device triggers: appliances starting / finishing, power thresholds, anomalies.

Appliance and anomaly triggers listen for `energy_tracker_event` (events.py); power
thresholds are numeric_state triggers on the meter's power sensors, with the threshold (in
W, whatever unit the user shows the sensor in) and duration the user picks, that take a
sensor back from unavailable for a crossing only if they have not fired since the power was
last on the other side.
"""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.components.homeassistant.triggers import (
    numeric_state as numeric_state_trigger,
)
from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    CONF_ABOVE,
    CONF_BELOW,
    CONF_DEVICE_ID,
    CONF_DOMAIN,
    CONF_ENTITY_ID,
    CONF_EVENT_DATA,
    CONF_FOR,
    CONF_PLATFORM,
    CONF_TYPE,
    CONF_VALUE_TEMPLATE,
    UnitOfPower,
)
from homeassistant.core import (
    CALLBACK_TYPE,
    Context,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import translation
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType
from homeassistant.util.unit_conversion import PowerConverter

from .appliance_entity import (
    appliance_device_identifier,
    device_appliance_id,
    known_appliances,
    nilm_appliance,
)
from .const import DOMAIN
from .coordinator import EnergyTrackerConfigEntry
from .device_lookup import device_entry_ids, device_names
from .entity import state_number
from .events import (
    ANOMALY_DETECTED,
    APPLIANCE_FINISHED,
    APPLIANCE_STARTED,
    EVENT_ENERGY_TRACKER,
    channel_appliance,
    is_relay_device,
    relay_appliance,
    relay_device_identifier,
)

CONF_EVENT_TYPE: Final = "event_type"
CONF_APPLIANCE: Final = "appliance"
CONF_THRESHOLD: Final = "threshold"
POWER_ABOVE: Final = "power_above"
POWER_BELOW: Final = "power_below"
APPLIANCE_TYPES: Final = (APPLIANCE_STARTED, APPLIANCE_FINISHED)
POWER_TYPES: Final = (POWER_ABOVE, POWER_BELOW)
TRIGGER_TYPES: Final = (*APPLIANCE_TYPES, ANOMALY_DETECTED, *POWER_TYPES)

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend(
    {
        vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES),
        vol.Optional(CONF_ENTITY_ID): cv.entity_id_or_uuid,
        vol.Optional(CONF_APPLIANCE): cv.string,
        vol.Optional(CONF_THRESHOLD): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional(CONF_FOR): cv.positive_time_period_dict,
    }
)


async def async_validate_trigger_config(hass: HomeAssistant, config: ConfigType) -> ConfigType:
    """A power trigger needs its sensor and threshold, and every trigger must be one its
    device offers: one written by hand (YAML, the API) could otherwise never fire."""
    config = TRIGGER_SCHEMA(config)
    kind = config[CONF_TYPE]
    if kind in POWER_TYPES and (CONF_ENTITY_ID not in config or CONF_THRESHOLD not in config):
        raise InvalidDeviceAutomationConfig(
            translation_domain=DOMAIN, translation_key="power_trigger_incomplete"
        )
    device = dr.async_get(hass).async_get(config[CONF_DEVICE_ID])
    if device is None:
        return config  # Home Assistant reports an unknown device itself
    offered = await async_get_triggers(hass, device.id)
    if kind in POWER_TYPES:
        registry = er.async_get(hass)
        wanted = er.async_validate_entity_id(registry, config[CONF_ENTITY_ID])
        fits = any(t[CONF_TYPE] == kind
                   and er.async_validate_entity_id(registry, t[CONF_ENTITY_ID]) == wanted
                   for t in offered)
        subject: str | None = wanted
    else:
        # The appliances are known once the entry is loaded (not yet at startup).
        appliances = _appliances(hass, device) if CONF_APPLIANCE in config else {}
        fits = any(t[CONF_TYPE] == kind for t in offered) and (
            not appliances or config[CONF_APPLIANCE] in appliances)
        subject = config.get(CONF_APPLIANCE)
    if not fits:
        # The subject's own message: a connector word pasted in would be English everywhere.
        placeholders = {"type": kind, "device": device.name or device.id}
        raise InvalidDeviceAutomationConfig(
            translation_domain=DOMAIN,
            translation_key="trigger_not_offered" if subject is None
            else "trigger_not_offered_for",
            translation_placeholders=placeholders if subject is None
            else placeholders | {"subject": subject},
        )
    return config


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """The meter offers all types (power per power sensor); a relay or detected appliance
    its start / finish; an extra meter its power thresholds; a board none."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        return []
    base = {CONF_PLATFORM: "device", CONF_DOMAIN: DOMAIN, CONF_DEVICE_ID: device_id}
    if _own_device_key(hass, device) is not None:
        return [{**base, CONF_TYPE: kind} for kind in APPLIANCE_TYPES]
    triggers = []
    if _is_meter_device(hass, device):
        triggers = [{**base, CONF_TYPE: kind} for kind in (*APPLIANCE_TYPES, ANOMALY_DETECTED)]
    registry = er.async_get(hass)
    for entry in er.async_entries_for_device(registry, device_id):
        if entry.domain == "sensor" and entry.original_device_class == SensorDeviceClass.POWER:
            triggers.extend(
                {**base, CONF_TYPE: kind, CONF_ENTITY_ID: entry.id} for kind in POWER_TYPES
            )
    return triggers


async def async_get_trigger_capabilities(
    hass: HomeAssistant, config: ConfigType
) -> dict[str, vol.Schema]:
    """Threshold and duration for power; optionally one appliance on the meter."""
    kind = config[CONF_TYPE]
    if kind in POWER_TYPES:
        return {
            "extra_fields": vol.Schema(
                {
                    vol.Required(CONF_THRESHOLD, description={"suffix": UnitOfPower.WATT}):
                        vol.Coerce(float),
                    vol.Optional(CONF_FOR): cv.positive_time_period_dict,
                }
            )
        }
    device = dr.async_get(hass).async_get(config[CONF_DEVICE_ID])
    if (
        kind in APPLIANCE_TYPES and device is not None
        and _own_device_key(hass, device) is None
        and (appliances := _appliances(hass, device))
    ):
        # A relay and a circuit often share a name ("Kitchen"): say which is which.
        kinds = await _kind_labels(hass)
        choices = {key: f"{name} ({kinds[kind]})" for key, (name, kind) in appliances.items()}
        return {"extra_fields": vol.Schema({vol.Optional(CONF_APPLIANCE): vol.In(choices)})}
    return {}


async def _kind_labels(hass: HomeAssistant) -> dict[str, str]:
    """"relay", "circuit", "detected" in Home Assistant's language (the choices' suffixes)."""
    prefix = f"component.{DOMAIN}.selector.appliance_kind.options."
    strings = await translation.async_get_translations(
        hass, hass.config.language, "selector", {DOMAIN})
    return {kind: strings.get(prefix + kind, kind) for kind in ("relay", "circuit", "detected")}


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    """Attach an event trigger, or a numeric_state trigger for the power types."""
    kind = config[CONF_TYPE]
    if kind in POWER_TYPES:
        numeric_config: dict[str, Any] = {
            CONF_PLATFORM: "numeric_state",
            CONF_ENTITY_ID: config[CONF_ENTITY_ID],
            CONF_ABOVE if kind == POWER_ABOVE else CONF_BELOW: config[CONF_THRESHOLD],
            # The threshold is in W: a sensor shown in kW compared 3.9 with 3000.
            CONF_VALUE_TEMPLATE: WATTS_TEMPLATE,
        }
        if CONF_FOR in config:
            numeric_config[CONF_FOR] = config[CONF_FOR]
        numeric_config = await numeric_state_trigger.async_validate_trigger_config(
            hass, numeric_config
        )
        crossings = _Crossings(hass, numeric_config[CONF_ENTITY_ID], kind,
                               config[CONF_THRESHOLD])
        detach = await numeric_state_trigger.async_attach_trigger(
            hass, numeric_config, crossings.only_crossings(action), trigger_info,
            platform_type="device",
        )

        @callback
        def async_detach() -> None:
            detach()
            crossings.async_stop()

        return async_detach
    device = dr.async_get(hass).async_get(config[CONF_DEVICE_ID])
    # A relay's device: its own starts and finishes; the meter: any, or the chosen one.
    device_key = (device is not None and _own_device_key(hass, device)) or CONF_DEVICE_ID
    event_data: dict[str, Any] = {device_key: config[CONF_DEVICE_ID], CONF_TYPE: kind}
    if CONF_APPLIANCE in config:
        event_data[CONF_APPLIANCE] = config[CONF_APPLIANCE]
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            CONF_PLATFORM: "event",
            CONF_EVENT_TYPE: EVENT_ENERGY_TRACKER,
            CONF_EVENT_DATA: event_data,
        }
    )
    return await event_trigger.async_attach_trigger(
        hass, event_config, action, trigger_info, platform_type="device"
    )


# A power state in W, whatever unit it is shown in; the state itself when not a number
# (unavailable: numeric_state then neither fires nor arms on it).
_TO_WATTS: Final = {str(unit): round(PowerConverter.convert(1.0, unit, UnitOfPower.WATT), 6)
                    for unit in PowerConverter.VALID_UNITS if unit is not None}
WATTS_TEMPLATE: Final = (
    "{% set value = state.state | float(none) %}"
    f"{{{{ value * {_TO_WATTS!r}.get(state.attributes.unit_of_measurement, 1.0) "
    "if value is not none else state.state }}"
)


def watts(state: State | None) -> float | None:
    """What WATTS_TEMPLATE gives, for the crossings' own bookkeeping."""
    value = state_number(state)
    if value is None or state is None:
        return None
    return value * _TO_WATTS.get(str(state.attributes.get("unit_of_measurement")), 1.0)


class _Crossings:
    """Home Assistant's numeric_state arms on `unavailable`, so a reload, a restart or an
    add-on outage would read as the power crossing the threshold. Back from one, a reading
    past the threshold fires only if the trigger had not said so since the power was last
    on the other side: the washer finished during an add-on update, or an outage cut a
    `for:` wait short. With nothing known before it (Home Assistant just started), nothing
    fires."""

    def __init__(self, hass: HomeAssistant, entity_ids: list[str], kind: str,
                 threshold: float) -> None:
        self._kind, self._threshold = kind, threshold
        # entity -> whether the trigger has fired since its last reading on the other side
        # (None: unknown, no reading yet)
        self._said: dict[str, bool | None] = {}
        for entity_id in entity_ids:
            power = watts(hass.states.get(entity_id))
            self._said[entity_id] = None if power is None else self._past(power)
        self._unsubscribe = async_track_state_change_event(hass, entity_ids, self._on_change)

    @callback
    def _on_change(self, event: Event[EventStateChangedData]) -> None:
        power = watts(event.data["new_state"])
        if power is not None and not self._past(power):
            self._said[event.data["entity_id"]] = False

    @callback
    def async_stop(self) -> None:
        self._unsubscribe()

    def _past(self, watts: float) -> bool:
        return watts > self._threshold if self._kind == POWER_ABOVE \
            else watts < self._threshold

    def only_crossings(self, action: TriggerActionType) -> TriggerActionType:
        async def crossing(run_variables: dict[str, Any],
                           context: Context | None = None) -> None:
            trigger = run_variables["trigger"]
            entity_id = trigger["entity_id"]
            back = watts(trigger["from_state"]) is None  # from unavailable
            if back and self._said.get(entity_id) is not False:
                return
            self._said[entity_id] = True
            if (running := action(run_variables, context)) is not None:
                await running

        return crossing


def _our_entries(hass: HomeAssistant, device: dr.DeviceEntry) -> list[EnergyTrackerConfigEntry]:
    """This integration's config entries that hold this device."""
    entries = (hass.config_entries.async_get_entry(entry_id)
               for entry_id in device_entry_ids(device))
    return [entry for entry in entries if entry is not None and entry.domain == DOMAIN]


def _meter_ids(hass: HomeAssistant, device: dr.DeviceEntry) -> list[str]:
    """The ids of the meters whose entries hold this device."""
    return [str(entry.unique_id) for entry in _our_entries(hass, device)]


def _own_device_key(hass: HomeAssistant, device: dr.DeviceEntry) -> str | None:
    """The event data key naming this device when it is one relay's or one detected
    appliance's (appliance_events.py), else None. Matched on the meter's exact identifiers:
    a detected appliance may be called "dryer_relay_1"."""
    for meter_id in _meter_ids(hass, device):
        if device_appliance_id(meter_id, device) is not None:
            return "appliance_device_id"
        if is_relay_device(meter_id, device):
            return "relay_device_id"
    return None


def _is_meter_device(hass: HomeAssistant, device: dr.DeviceEntry) -> bool:
    return any((DOMAIN, meter_id) in device.identifiers for meter_id in _meter_ids(hass, device))


def _appliances(hass: HomeAssistant, device: dr.DeviceEntry) -> dict[str, tuple[str, str]]:
    """Appliance keys → (name, kind): the relays, circuits and detected appliances of the
    meter, while loaded."""
    for entry in _our_entries(hass, device):
        if entry.state is not ConfigEntryState.LOADED:
            continue
        coordinator = entry.runtime_data
        meter_id = coordinator.info.meter_id
        appliances = {
            relay_appliance(relay.id): (_device_name(
                hass, entry.entry_id, relay_device_identifier(meter_id, relay.id),
                coordinator.shown_name(relay.name)), "relay")
            for relay in coordinator.data.relays.values()
        }
        appliances.update(
            (channel_appliance(channel.id), (coordinator.shown_name(channel.name), "circuit"))
            for channel in coordinator.info.channels if channel.role == "circuit"
        )
        # Detection off for now (a bundle being replaced, the option): its appliances are
        # still the registry's, and an automation on them must stay valid meanwhile.
        for appliance_id, name in known_appliances(hass, entry).items():
            appliances[nilm_appliance(appliance_id)] = (_device_name(
                hass, entry.entry_id, appliance_device_identifier(meter_id, appliance_id),
                name), "detected")
        return appliances
    return {}


def _device_name(hass: HomeAssistant, entry_id: str, identifier: tuple[str, str],
                 fallback: str) -> str:
    """As the device is called: renamed by the user, or translated; else `fallback`."""
    return next(iter(device_names(hass, identifier, entry_id)), fallback)

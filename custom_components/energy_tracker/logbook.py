"""Logbook lines for `energy_tracker_event` (events.py): appliance runs and anomalies.

Without them the logbook showed relays switched by demand response as a bare "turned off",
and none of the appliances' starts and finishes or the anomalies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeassistant.components.logbook.const import (
    LOGBOOK_ENTRY_ENTITY_ID,
    LOGBOOK_ENTRY_MESSAGE,
    LOGBOOK_ENTRY_NAME,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er

from .const import DOMAIN
from .events import ANOMALY_DETECTED, APPLIANCE_FINISHED, APPLIANCE_STARTED, EVENT_ENERGY_TRACKER


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the integration's events in the logbook."""

    @callback
    def describe(event: Event) -> dict[str, str]:
        return describe_event(hass, event)

    async_describe_event(DOMAIN, EVENT_ENERGY_TRACKER, describe)


# The entity a run's line is about, by the event's `appliance` prefix: the line opens it.
_LINKED: dict[str, tuple[str, str]] = {
    "nilm_": ("binary_sensor", "appliance_{}_running"),
    "relay_": ("switch", "relay_{}_switch"),
    "channel_": ("sensor", "channel_{}_power"),
}


@callback
def describe_event(hass: HomeAssistant, event: Event) -> dict[str, str]:
    data = event.data
    kind = data.get("type")
    if kind in (APPLIANCE_STARTED, APPLIANCE_FINISHED):
        message = "started" if kind == APPLIANCE_STARTED else "finished"
        if kind == APPLIANCE_FINISHED and data.get("shed"):
            message += ": switched off by demand response (shed load)"
        elif (power := _number(data.get("power_w"))) is not None and kind == APPLIANCE_STARTED:
            message += f" ({power:.0f} W)"
        line = {LOGBOOK_ENTRY_NAME: str(data.get("name") or "Appliance"),
                LOGBOOK_ENTRY_MESSAGE: message}
        if (entity_id := _linked_entity(hass, data)) is not None:
            line[LOGBOOK_ENTRY_ENTITY_ID] = entity_id
        return line
    if kind == ANOMALY_DETECTED:
        reason = data.get("reason")
        return {LOGBOOK_ENTRY_NAME: "Energy Tracker",
                LOGBOOK_ENTRY_MESSAGE: f"detected unusual consumption: {reason}" if reason
                else f"detected unusual consumption ({data.get('kind')})"}
    return {LOGBOOK_ENTRY_NAME: "Energy Tracker", LOGBOOK_ENTRY_MESSAGE: f"event {kind}"}


def _linked_entity(hass: HomeAssistant, data: Mapping[str, Any]) -> str | None:
    entry = hass.config_entries.async_get_entry(str(data.get("config_entry_id") or ""))
    appliance = data.get("appliance")
    if entry is None or entry.unique_id is None or not isinstance(appliance, str):
        return None
    for prefix, (domain, key) in _LINKED.items():
        if appliance.startswith(prefix):
            return er.async_get(hass).async_get_entity_id(
                domain, DOMAIN, f"{entry.unique_id}_{key.format(appliance.removeprefix(prefix))}")
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None

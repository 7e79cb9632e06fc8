"""Logbook lines for `energy_tracker_event` (events.py): appliance runs and anomalies.

Without them the logbook showed relays switched by demand response as a bare "turned off",
and none of the appliances' starts and finishes or the anomalies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components.logbook.const import LOGBOOK_ENTRY_MESSAGE, LOGBOOK_ENTRY_NAME
from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN
from .events import ANOMALY_DETECTED, APPLIANCE_FINISHED, APPLIANCE_STARTED, EVENT_ENERGY_TRACKER


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, str]]], None],
) -> None:
    """Describe the integration's events in the logbook."""
    async_describe_event(DOMAIN, EVENT_ENERGY_TRACKER, describe_event)


@callback
def describe_event(event: Event) -> dict[str, str]:
    data = event.data
    kind = data.get("type")
    if kind in (APPLIANCE_STARTED, APPLIANCE_FINISHED):
        message = "started" if kind == APPLIANCE_STARTED else "finished"
        if kind == APPLIANCE_FINISHED and data.get("shed"):
            message += ": switched off by demand response (shed load)"
        elif (power := _number(data.get("power_w"))) is not None and kind == APPLIANCE_STARTED:
            message += f" ({power:.0f} W)"
        return {LOGBOOK_ENTRY_NAME: str(data.get("name") or "Appliance"),
                LOGBOOK_ENTRY_MESSAGE: message}
    if kind == ANOMALY_DETECTED:
        reason = data.get("reason")
        return {LOGBOOK_ENTRY_NAME: "Energy Tracker",
                LOGBOOK_ENTRY_MESSAGE: f"detected unusual consumption: {reason}" if reason
                else f"detected unusual consumption ({data.get('kind')})"}
    return {LOGBOOK_ENTRY_NAME: "Energy Tracker", LOGBOOK_ENTRY_MESSAGE: f"event {kind}"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None

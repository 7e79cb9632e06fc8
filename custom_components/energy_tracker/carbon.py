"""The grid's live carbon intensity, read from a Home Assistant sensor (option
`co2_intensity_entity`, e.g. Electricity Maps) and sent to the add-on.

The add-on counts each reading's CO2 at the intensity it holds and falls back to its own
`co2_g_per_kwh` option after two hours without a value, so a steady value is sent again
every RESEND_INTERVAL, and at once when the add-on is back after an outage.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers.event import async_track_state_change_event, async_track_time_interval

from .api import EnergyTrackerClient, EnergyTrackerError
from .const import DOMAIN, LOGGER
from .coordinator import EnergyTrackerCoordinator
from .entity import state_number

RESEND_INTERVAL: Final = timedelta(minutes=30)
# Units seen on intensity sensors, without their "CO2"/"CO2eq" marker, to g/kWh
UNIT_FACTORS: Final = {"g/kwh": 1.0, "kg/mwh": 1.0, "kg/kwh": 1000.0, "t/mwh": 1000.0}


def _unit_key(unit: object) -> str:
    text = str(unit).lower().replace(" ", "")
    for marker in ("co2eq", "co2e", "co₂eq", "co₂e", "co₂", "co2"):
        text = text.replace(marker, "")
    return text


def intensity_g_per_kwh(state: State | None) -> float | None:
    """The sensor's value in g/kWh; None when unknown or in a unit it cannot be read in."""
    if state is None or (value := state_number(state)) is None:
        return None
    factor = UNIT_FACTORS.get(_unit_key(state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)))
    if factor is None or not math.isfinite(value):
        return None
    return value * factor


def unreadable_unit(state: State | None) -> str | None:
    """The unit of a sensor no carbon intensity can be read from (a power sensor's "W"),
    or None if it can be read, or cannot be told yet (unknown, unavailable)."""
    if state is None or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE):
        return None
    unit = state.attributes.get(ATTR_UNIT_OF_MEASUREMENT)
    return None if _unit_key(unit) in UNIT_FACTORS else str(unit or "no unit")


class CarbonIntensityForwarder:
    """Sends the intensity sensor's value to the add-on on change, periodically and after
    an outage."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator,
                 entity_id: str) -> None:
        self._hass = hass
        self._coordinator = coordinator
        self._entity_id = entity_id
        self._warned: str | None = None  # the state last warned about, to warn once
        self._connected = coordinator.last_update_success

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Forward until the returned callback is called (at unload)."""
        removers = [
            async_track_state_change_event(self._hass, [self._entity_id], self._on_change),
            async_track_time_interval(self._hass, self._on_interval, RESEND_INTERVAL),
            self._coordinator.async_add_listener(self._on_state),
        ]
        self._send()

        @callback
        def stop() -> None:
            for remove in removers:
                remove()

        return stop

    @callback
    def _on_change(self, _event: Event[EventStateChangedData]) -> None:
        self._send()

    @callback
    def _on_interval(self, _now: datetime) -> None:
        self._send()

    @callback
    def _on_state(self) -> None:
        connected = self._coordinator.last_update_success
        if connected and not self._connected:
            self._send()  # the add-on may have restarted without the value
        self._connected = connected

    @callback
    def _send(self) -> None:
        state = self._hass.states.get(self._entity_id)
        value = intensity_g_per_kwh(state)
        if value is None:
            # Once per reason: a sensor in the wrong unit changes every few seconds.
            reason = unreadable_unit(state) or (state.state if state is not None else None)
            if state is not None and state.state not in (STATE_UNKNOWN, STATE_UNAVAILABLE) \
                    and self._warned != reason:
                self._warned = reason
                LOGGER.warning(
                    "%s is %s %s: not a carbon intensity in g/kWh, gCO2eq/kWh, kg/MWh or "
                    "kg/kWh; the add-on keeps its own", self._entity_id, state.state,
                    state.attributes.get(ATTR_UNIT_OF_MEASUREMENT))
            return
        self._coordinator.config_entry.async_create_background_task(
            self._hass, self._push(value), f"{DOMAIN} carbon intensity"
        )

    async def _push(self, value: float) -> None:
        try:
            await self._coordinator.client.set_co2_intensity(value)
        except EnergyTrackerError as err:
            # The stream reports outages; a value refused by the add-on is worth a line.
            LOGGER.warning("Could not send the carbon intensity %g g/kWh to the add-on: %s",
                           value, err)


async def async_withdraw_intensity(client: EnergyTrackerClient) -> None:
    """No intensity sensor: the add-on goes back to its own co2_g_per_kwh option now."""
    try:
        await client.clear_co2_intensity()
    except EnergyTrackerError as err:  # an add-on before 0.3.10, or down: no harm
        LOGGER.debug("Could not withdraw the carbon intensity: %s", err)

"""`appliance_started` / `appliance_finished` events of the appliances the add-on detects.

The same `energy_tracker_event` types and data as events.py's relays and circuits, so the
meter's appliance device triggers (device_trigger.py) and automations see detected
appliances too: `appliance` is `nilm_<id>`, and `appliance_device_id` the appliance's
device. Only a change of `running` between two published states fires (unknown on either
side — detection off, warming up — is neither a start nor a finish).
"""

from __future__ import annotations

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback

from .appliance_entity import appliance_device_identifier, nilm_appliance
from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator
from .device_lookup import device_by_identifier
from .events import APPLIANCE_FINISHED, APPLIANCE_STARTED, EVENT_ENERGY_TRACKER


class ApplianceEvents:
    """Compares each published state's detected appliances with the previous one."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Take the first state as the baseline (a restart of HA announces nothing)."""
        self._hass = hass
        self._coordinator = coordinator
        self._running = self._current()
        self._run_start: dict[str, str] = {}  # appliance id -> `since` of its current run

    def _current(self) -> dict[str, bool | None]:
        appliances = self._coordinator.data.appliances or {}
        return {a.id: a.running for a in appliances.values()}

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Listen until the returned callback is called (at unload)."""
        return self._coordinator.async_add_listener(self._async_on_state)

    @callback
    def _async_on_state(self) -> None:
        if not self._coordinator.last_update_success:
            return
        running = self._current()
        appliances = self._coordinator.data.appliances or {}
        for key, appliance in appliances.items():
            if appliance.running and appliance.since is not None:
                self._run_start[key] = appliance.since
        for key, now in running.items():
            before = self._running.get(key)
            if now is None or before is None or now == before:
                continue
            appliance = appliances[key]
            meter_id = self._coordinator.info.meter_id
            entry_id = self._coordinator.config_entry.entry_id
            device = device_by_identifier(self._hass, appliance_device_identifier(meter_id, key),
                                          entry_id)
            meter = device_by_identifier(self._hass, (DOMAIN, meter_id), entry_id)
            self._hass.bus.async_fire(EVENT_ENERGY_TRACKER, {
                "type": APPLIANCE_STARTED if now else APPLIANCE_FINISHED,
                "appliance": nilm_appliance(key),
                # As relays' events: the name the user gave the device, else its own (in
                # Home Assistant's language), else the add-on's.
                "name": (device.name_by_user or device.name if device is not None else None)
                or appliance.name,
                "power_w": appliance.power_w,
                # The add-on's `since` is null once a run is over: a finish names the
                # start of the run it ends, so automations can tell how long it ran.
                "since": appliance.since if now else self._run_start.pop(key, None),
                "appliance_device_id": None if device is None else device.id,
                "device_id": None if meter is None else meter.id,
                "config_entry_id": self._coordinator.config_entry.entry_id,
            })
        # Unknown keeps the last known state: a warm-up gap is not a finish and a start.
        self._running = {k: v if v is not None else self._running.get(k)
                         for k, v in running.items()}

"""`energy_tracker_event` bus events, derived from the meter's pushed states.

Fired (event data `type`):

* `appliance_started` / `appliance_finished` — a relay acknowledged on / off (`shed`: true
  when demand response switched it off), or a circuit channel's power rose above
  APPLIANCE_ON_W / stayed below APPLIANCE_OFF_W for APPLIANCE_OFF_HOLD_S (hysteresis and a
  hold, so neither a reading hovering at one threshold nor a cycling load's short pauses
  flap). A circuit's start or finish that its relay caused (the relay switched the same way
  within RELAY_EXPLAINS_S) is not fired again: the relay's event said it. Appliances
  detected by NILM fire the same types (appliance_events.py).
* `anomaly_detected` — an anomaly episode appeared in the state's `anomalies` list.

Only changes between two published states fire: whatever is already on, running or
anomalous when Home Assistant starts is not announced again. A circuit below
APPLIANCE_ON_W then is undecided (a cycling load may be between two bursts) until it runs
or stays idle for the hold, silently. The circuits' runs outlive a reload of the entry
(an options save), so a reload neither starts a run again nor loses its finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, Context, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator
from .device_lookup import device_by_identifier
from .models import Anomaly, MeterState

EVENT_ENERGY_TRACKER: Final = f"{DOMAIN}_event"
APPLIANCE_STARTED: Final = "appliance_started"
APPLIANCE_FINISHED: Final = "appliance_finished"
ANOMALY_DETECTED: Final = "anomaly_detected"
# A circuit drawing more than this runs something; below the lower bound it is idle
# (standby loads of a few watts stay "idle").
APPLIANCE_ON_W: Final = 30.0
APPLIANCE_OFF_W: Final = 10.0
# A run ends only after this long below APPLIANCE_OFF_W: a small load cycling on and off
# (a circuit's 30 W average metered as 60 W / 0 W minutes) is one run, not 250 a day.
APPLIANCE_OFF_HOLD_S: Final = 120.0
# A circuit that starts or finishes this soon after its relay switched the same way did so
# because of the relay (a finish shows only after the hold), plus two minimum update
# intervals (the option): the relay's change is streamed at once, the circuit's first idle
# state up to one interval later, and the state that ends its hold one more.
RELAY_EXPLAINS_S: Final = APPLIANCE_OFF_HOLD_S + 60.0


def relay_appliance(relay_id: int) -> str:
    """The `appliance` key of a relay in events and device triggers."""
    return f"relay_{relay_id}"


def channel_appliance(channel_id: int) -> str:
    """The `appliance` key of a circuit channel in events and device triggers."""
    return f"channel_{channel_id}"


def relay_device_identifier(meter_id: str, relay_id: int) -> tuple[str, str]:
    """Device registry identifier of a relay's device (see relay_entity.py)."""
    return (DOMAIN, f"{meter_id}_relay_{relay_id}")


def is_relay_device(meter_id: str, device: dr.DeviceEntry) -> bool:
    """Whether this is the device of one of this meter's relays."""
    prefix = f"{meter_id}_relay_"
    return any(domain == DOMAIN and ident.startswith(prefix)
               and ident.removeprefix(prefix).isdigit() for domain, ident in device.identifiers)


@dataclass(slots=True)
class CircuitRuns:
    """What each circuit was doing; one per entry, kept in hass.data across reloads."""

    running: dict[int, bool | None] = field(default_factory=dict)  # None: undecided
    idle_since: dict[int, float] = field(default_factory=dict)  # loop time, below OFF_W
    # channel id -> (on, loop time) of the last switch of the relay linked to it
    relay_switched: dict[int, tuple[bool, float]] = field(default_factory=dict)


_CIRCUIT_RUNS: HassKey[dict[str, CircuitRuns]] = HassKey(f"{DOMAIN}_circuit_runs")


@callback
def async_forget_circuit_runs(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The entry is gone: nothing to carry over."""
    hass.data.get(_CIRCUIT_RUNS, {}).pop(entry.entry_id, None)


@dataclass(frozen=True, slots=True)
class _Appliance:
    key: str
    name: str
    relay_id: int | None = None
    channel_id: int | None = None
    shed: bool = False


class MeterEvents:
    """Compares each published state with the previous one and fires the differences."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Take the first state as the baseline, and the circuits' runs from before a
        reload."""
        self._hass = hass
        self._coordinator = coordinator
        self._circuits = {c.id: coordinator.shown_name(c.name)
                          for c in coordinator.info.channels if c.role == "circuit"}
        first = coordinator.data
        self._relay_on = {r.id: r.state for r in first.relays.values()}
        self._runs = hass.data.setdefault(_CIRCUIT_RUNS, {}).setdefault(
            coordinator.config_entry.entry_id, CircuitRuns())
        for cid in self._runs.running.keys() - self._circuits.keys():
            del self._runs.running[cid]  # a channel no longer a circuit
            self._runs.idle_since.pop(cid, None)
        for cid in self._circuits.keys() - self._runs.running.keys():
            self._runs.running[cid] = True if _above(first, cid, APPLIANCE_ON_W) else None
        self._anomalies = {_anomaly_key(a) for a in first.anomalies}

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Listen until the returned callback is called (at unload)."""
        return self._coordinator.async_add_listener(self._async_on_state)

    @callback
    def _async_on_state(self) -> None:
        if not self._coordinator.last_update_success:
            return  # an outage changes nothing about the appliances
        state = self._coordinator.data
        now = self._hass.loop.time()
        for relay in state.relays.values():
            was_on = self._relay_on.get(relay.id)
            self._relay_on[relay.id] = relay.state
            if relay.state is None or was_on is None or relay.state == was_on:
                continue  # unknown on either side is not a start or a finish
            if relay.channel is not None:
                self._runs.relay_switched[relay.channel] = (relay.state, now)
            self._async_fire_appliance(relay.state, _Appliance(
                relay_appliance(relay.id), self._coordinator.shown_name(relay.name),
                relay_id=relay.id,
                shed=not relay.state and relay.shed))
        runs = self._runs
        for cid, name in self._circuits.items():
            running = runs.running[cid]
            if running is not True and _above(state, cid, APPLIANCE_ON_W):
                runs.running[cid] = True
            elif running is not False and _below(state, cid, APPLIANCE_OFF_W):
                idle_since = runs.idle_since.setdefault(cid, now)
                if now - idle_since < APPLIANCE_OFF_HOLD_S:
                    continue
                runs.running[cid] = False
                del runs.idle_since[cid]
            else:
                runs.idle_since.pop(cid, None)  # running again (or unknown): no end yet
                continue
            if running is None:
                continue  # undecided until now: neither a start nor a finish was seen
            switched = runs.relay_switched.get(cid)
            if switched is not None and switched[0] == runs.running[cid] \
                    and now - switched[1] <= RELAY_EXPLAINS_S + 2 * self._coordinator.min_interval:
                continue  # the relay did it, and its own event said so
            self._async_fire_appliance(
                bool(runs.running[cid]),
                _Appliance(channel_appliance(cid), name, channel_id=cid),
                power_w=state.channels[cid].power_w,
            )
        current = {_anomaly_key(a): a for a in state.anomalies}
        for key in current.keys() - self._anomalies:
            self._async_fire_anomaly(current[key])
        self._anomalies = set(current)

    @callback
    def _async_fire_appliance(self, started: bool, appliance: _Appliance,
                              power_w: float | None = None) -> None:
        data: dict[str, Any] = {
            "type": APPLIANCE_STARTED if started else APPLIANCE_FINISHED,
            "appliance": appliance.key,
            "name": appliance.name,
        }
        if appliance.relay_id is not None:
            data["relay_id"] = appliance.relay_id
            device = self._device(relay_device_identifier(
                self._coordinator.info.meter_id, appliance.relay_id))
            if device is not None:
                data["relay_device_id"] = device.id
                # The name the user gave the relay's device is the one they know it by.
                data["name"] = device.name_by_user or appliance.name
            if not started:
                data["shed"] = appliance.shed
        if appliance.channel_id is not None:
            data["channel_id"] = appliance.channel_id
            data["power_w"] = power_w
        # A relay switched by shed_load / restore_load: its line names the action.
        self._async_fire(data, self._coordinator.action_context.current
                         if appliance.relay_id is not None else None)

    @callback
    def _async_fire_anomaly(self, anomaly: Anomaly) -> None:
        self._async_fire({
            "type": ANOMALY_DETECTED,
            "kind": anomaly.kind,
            "series": anomaly.series,
            "started": anomaly.started,
            "power_w": anomaly.power_w,
            "usual_w": anomaly.usual_w,
            "reason": anomaly.reason,
        })

    @callback
    def _async_fire(self, data: dict[str, Any], context: Context | None = None) -> None:
        meter = self._device((DOMAIN, self._coordinator.info.meter_id))
        data["device_id"] = None if meter is None else meter.id
        data["config_entry_id"] = self._coordinator.config_entry.entry_id
        self._hass.bus.async_fire(EVENT_ENERGY_TRACKER, data, context=context)

    def _device(self, identifier: tuple[str, str]) -> dr.DeviceEntry | None:
        return device_by_identifier(self._hass, identifier,
                                    self._coordinator.config_entry.entry_id)


def _power(state: MeterState, channel_id: int) -> float | None:
    channel = state.channels.get(channel_id)
    return None if channel is None else channel.power_w


def _above(state: MeterState, channel_id: int, watts: float) -> bool:
    power = _power(state, channel_id)
    return power is not None and power >= watts


def _below(state: MeterState, channel_id: int, watts: float) -> bool:
    # Unknown (stale board) is not "finished": the appliance may well still run.
    power = _power(state, channel_id)
    return power is not None and power < watts


def _anomaly_key(anomaly: Anomaly) -> tuple[str, str, str]:
    return (anomaly.series, anomaly.kind, anomaly.started)

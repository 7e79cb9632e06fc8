"""Base of the per-relay entities: the relay's device and its newest known state."""

from __future__ import annotations

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo

from .commands import run_command
from .coordinator import EnergyTrackerCoordinator
from .device_lookup import linked_to_meter
from .entity import EnergyTrackerEntity
from .events import relay_device_identifier
from .models import RelayState

# A stream message may already be on its way when a command is answered; from an add-on
# without relay revisions (before 0.3.20) the answer wins over readings up to this many
# after the newest one HA had then (shown or held back).
_IN_FLIGHT_READINGS = 1


def relay_device_info(coordinator: EnergyTrackerCoordinator, relay: RelayState) -> DeviceInfo:
    """One device per relay, named after it in the add-on, so users rename it and put it in
    an area, and Assist finds it by that name ("turn off the water heater")."""
    return linked_to_meter(DeviceInfo(
        identifiers={relay_device_identifier(coordinator.info.meter_id, relay.id)},
        name=coordinator.shown_name(relay.name),
        manufacturer="Energy Tracker",
        model="Relay",
    ), coordinator)


class RelayEntity(EnergyTrackerEntity):
    """An entity of one relay's device."""

    def __init__(self, coordinator: EnergyTrackerCoordinator, relay: RelayState,
                 key: str) -> None:
        """Attach the entity to the relay's device."""
        super().__init__(coordinator, f"relay_{relay.id}_{key}")
        self._attr_device_info = relay_device_info(coordinator, relay)
        self._relay_id = relay.id
        self._answer: RelayState | None = None
        self._answer_seq = 0

    @property
    def relay(self) -> RelayState | None:
        """The add-on's answer to our last command, until the stream has caught up."""
        if self._answer is not None:
            return self._answer
        return self.coordinator.data.relays.get(self._relay_id)

    # False for a setting the add-on keeps itself (a priority): it is read and written
    # while the relay's board is unplugged too.
    _needs_board = True

    @property
    def available(self) -> bool:
        """Unavailable when the add-on or the relay is, or (`_needs_board`) its board."""
        relay = self.relay
        return (super().available and relay is not None
                and (relay.available or not self._needs_board))

    async def _async_set(self, **changes: bool | int) -> None:
        """PUT the changes; show the acknowledged relay at once."""
        relay = self.relay
        name = relay.name if relay is not None else str(self._relay_id)
        self._answer = await run_command(
            self.coordinator.client.set_relay(self._relay_id, **changes), name
        )
        self._answer_seq = self.coordinator.newest_seq
        self.async_write_ha_state()

    @callback
    def _handle_coordinator_update(self) -> None:
        self._forget_answer_once_streamed()
        super()._handle_coordinator_update()

    def _forget_answer_once_streamed(self) -> None:
        answer = self._answer
        if answer is None:
            return
        seq = self.coordinator.data.seq
        streamed = self.coordinator.data.relays.get(self._relay_id)
        if streamed is None or seq < self._answer_seq:
            # Gone, or a lower seq: the add-on restarted (its count starts again).
            self._answer = None
        elif answer.revision is not None and streamed.revision is not None:
            # Not older than the answer: what changed since (a shed, the board's watchdog,
            # an unplugged board) must show, though streamed with the same seq.
            if streamed.revision >= answer.revision:
                self._answer = None
        elif seq > self._answer_seq + _IN_FLIGHT_READINGS:
            self._answer = None

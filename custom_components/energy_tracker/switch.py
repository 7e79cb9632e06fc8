"""One switch per relay the add-on drives (board, GPIO or simulated)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import (
    SwitchDeviceClass,
    SwitchEntity,
    SwitchEntityDescription,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .models import RelayState
from .relay_entity import RelayEntity

# No limit here: the add-on serialises each relay's commands (and waits for its
# acknowledgement), so switching several relays at once runs side by side.
PARALLEL_UPDATES = 0

# A relay switches a circuit or an appliance (a water heater's contactor), not a socket.
RELAY = SwitchEntityDescription(key="switch", device_class=SwitchDeviceClass.SWITCH)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyTrackerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """A switch for every relay in the first state."""
    coordinator = entry.runtime_data
    async_add_entities(
        RelaySwitch(coordinator, relay) for relay in coordinator.data.relays.values()
    )


class RelaySwitch(RelayEntity, SwitchEntity):
    """The relay's acknowledged state; commands wait for the acknowledgement."""

    entity_description = RELAY
    # The device carries the relay's name: the switch is its main feature.
    _attr_name = None

    def __init__(self, coordinator: EnergyTrackerCoordinator, relay: RelayState) -> None:
        """Attach the switch to the relay's device."""
        super().__init__(coordinator, relay, RELAY.key)

    @property
    def is_on(self) -> bool | None:
        """What the relay acknowledged last; None while unknown."""
        relay = self.relay
        return None if relay is None else relay.state

    @callback
    def _handle_coordinator_update(self) -> None:
        self._forget_answer_once_streamed()
        shown = self.hass.states.get(self.entity_id)
        if shown is not None and shown.state != self.state \
                and (context := self.coordinator.action_context.current) is not None:
            # A shed or restore switched it: the logbook names the action and who ran it.
            self.async_set_context(context)
        self.async_write_ha_state()

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Close the relay; raises a translated error when it does not acknowledge."""
        await self._async_set(state=True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Open the relay; raises a translated error when it does not acknowledge."""
        await self._async_set(state=False)

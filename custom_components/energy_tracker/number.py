"""Per-relay settings: priority and minimum on time for demand response, and the minimum
off time that protects a compressor from restarting too soon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.number import (
    NumberDeviceClass,
    NumberEntity,
    NumberEntityDescription,
    NumberMode,
)
from homeassistant.const import EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .models import RelayState
from .relay_entity import RelayEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class RelayNumberDescription(NumberEntityDescription):
    """A relay setting; `key` is also its field in PUT /api/v1/relays/{id}."""

    value_fn: Callable[[RelayState], int | None]


def _duration(key: str, translation_key: str,
              value_fn: Callable[[RelayState], int | None]) -> RelayNumberDescription:
    """A relay's time setting: whole seconds, up to a day."""
    return RelayNumberDescription(
        key=key,
        translation_key=translation_key,
        entity_category=EntityCategory.CONFIG,
        device_class=NumberDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        native_min_value=0,
        native_max_value=86400,
        native_step=1,
        mode=NumberMode.BOX,
        value_fn=value_fn,
    )


RELAY_NUMBERS: tuple[RelayNumberDescription, ...] = (
    RelayNumberDescription(
        key="priority",
        translation_key="priority",
        entity_category=EntityCategory.CONFIG,
        native_min_value=0,
        native_max_value=100,
        native_step=1,
        mode=NumberMode.BOX,
        value_fn=lambda r: r.priority,
    ),
    _duration("min_on_s", "min_on_time", lambda r: r.min_on_s),
    _duration("min_off_s", "min_off_time", lambda r: r.min_off_s),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyTrackerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """The settings of every relay in the first state."""
    coordinator = entry.runtime_data
    async_add_entities(
        RelayNumber(coordinator, relay, description)
        for relay in coordinator.data.relays.values()
        for description in RELAY_NUMBERS
        # An older add-on has no such setting: no entity that could never be set.
        if description.value_fn(relay) is not None
    )


class RelayNumber(RelayEntity, NumberEntity):
    """A setting kept by the add-on (in its data directory), written through the API."""

    entity_description: RelayNumberDescription
    _needs_board = False  # kept in the add-on's data, set before the board is plugged in

    def __init__(self, coordinator: EnergyTrackerCoordinator, relay: RelayState,
                 description: RelayNumberDescription) -> None:
        """Attach the setting to the relay's device."""
        super().__init__(coordinator, relay, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> int | None:
        """The add-on's value."""
        relay = self.relay
        return None if relay is None else self.entity_description.value_fn(relay)

    async def async_set_native_value(self, value: float) -> None:
        """Write the setting; the add-on answers the stored relay."""
        await self._async_set(**{self.entity_description.key: round(value)})

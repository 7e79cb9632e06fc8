"""Connectivity of each serial board."""

from __future__ import annotations

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .entity import EnergyTrackerEntity
from .models import BoardInfo

PARALLEL_UPDATES = 0

CONNECTED = BinarySensorEntityDescription(
    key="connected",
    translation_key="connected",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyTrackerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """One connectivity sensor per board the add-on reads."""
    coordinator = entry.runtime_data
    async_add_entities(
        BoardConnectedSensor(coordinator, board) for board in coordinator.info.boards
    )


class BoardConnectedSensor(EnergyTrackerEntity, BinarySensorEntity):
    """On while the add-on has the board's serial port open."""

    entity_description = CONNECTED

    def __init__(self, coordinator: EnergyTrackerCoordinator, board: BoardInfo) -> None:
        """Attach the sensor to the board's device."""
        super().__init__(coordinator, CONNECTED.key, board)
        self._board_id = board.id

    @property
    def available(self) -> bool:
        """Unknown when the add-on is unreachable or no longer reports the board."""
        return super().available and self._board_id in self.coordinator.data.boards

    @property
    def is_on(self) -> bool | None:
        """Whether the board's port is open."""
        board = self.coordinator.data.boards.get(self._board_id)
        return None if board is None else board.connected

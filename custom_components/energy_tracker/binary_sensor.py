"""Connectivity of each serial board, and the meter's anomaly detection."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .appliance_entity import appliance_binary_sensors
from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .entity import EnergyTrackerEntity
from .models import BoardInfo

PARALLEL_UPDATES = 0

ANOMALY = BinarySensorEntityDescription(
    key="anomaly",
    translation_key="anomaly",
    device_class=BinarySensorDeviceClass.PROBLEM,
)

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
    async_add_entities([AnomalySensor(coordinator)])
    appliance_binary_sensors(hass, entry, async_add_entities)


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


class AnomalySensor(EnergyTrackerEntity, BinarySensorEntity):
    """On while the add-on reports unusual consumption; unavailable while it is learning
    what is usual (its first week of history)."""

    entity_description = ANOMALY

    def __init__(self, coordinator: EnergyTrackerCoordinator) -> None:
        """Attach the sensor to the meter device."""
        super().__init__(coordinator, ANOMALY.key)

    @property
    def available(self) -> bool:
        """Unknown until the detection has learned (or from an add-on without it)."""
        return super().available and self.is_on is not None

    @property
    def is_on(self) -> bool | None:
        """Whether an anomaly is in progress on the total or any channel."""
        status = self.coordinator.data.analytics.anomaly
        return None if status is None else status.active

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Why, and the latest episode (also after it ended)."""
        status = self.coordinator.data.analytics.anomaly
        if status is None:
            return None
        return {
            "reason": status.reason,
            "last": status.last,
            "series": [s.get("series") for s in status.series if s.get("active")],
        }

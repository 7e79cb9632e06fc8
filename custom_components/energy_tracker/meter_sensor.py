"""Sensors of the add-on's extra meters (one device each, via the main meter) and the
"Meter comparison" sensor of the main meter.

An extra meter's total energy is total_increasing, so the Energy dashboard can show it as
an individual device. A null from the add-on (stale board, no reading today) makes the
sensor unavailable, never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, UnitOfEnergy, UnitOfPower
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator
from .device_lookup import linked_to_meter
from .entity import EnergyTrackerEntity, counter
from .meters_models import ExtraMeterState
from .never_backwards import NeverBackwards

MAIN_METER = "main"  # the add-on's id of the main meter in the comparison


@dataclass(frozen=True, kw_only=True)
class ExtraMeterSensorDescription(SensorEntityDescription):
    """A value of one extra meter."""

    value_fn: Callable[[ExtraMeterState], float | None]


EXTRA_METER_SENSORS: tuple[ExtraMeterSensorDescription, ...] = (
    ExtraMeterSensorDescription(
        key="total_power",
        translation_key="total_power",
        native_unit_of_measurement=UnitOfPower.WATT,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda m: m.total_power_w,
    ),
    ExtraMeterSensorDescription(
        key="total_energy",
        translation_key="total_energy",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda m: counter(m.total_energy_kwh),
    ),
)


def meter_sensors(coordinator: EnergyTrackerCoordinator) -> list[SensorEntity]:
    """The extra meters' sensors and the comparison (none when the add-on has one meter)."""
    state = coordinator.data
    entities: list[SensorEntity] = [
        ExtraMeterSensor(coordinator, description, meter)
        for meter in state.extra_meters.values()
        for description in EXTRA_METER_SENSORS
    ]
    if state.meter_comparison is not None:
        entities.append(MeterComparisonSensor(coordinator))
    return entities


@callback
def remove_unused_comparison(hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
    """Drop the comparison sensor's registry entry once the add-on has no extra meter left.

    It lives on the main meter's device, which is never stale, so unlike an extra meter's
    sensors it would otherwise linger as an unavailable "share today" nobody can delete.
    """
    if coordinator.data.meter_comparison is not None:
        return
    registry = er.async_get(hass)
    entity_id = registry.async_get_entity_id(
        "sensor", DOMAIN, f"{coordinator.info.meter_id}_meter_comparison")
    if entity_id is not None:
        registry.async_remove(entity_id)


class ExtraMeterSensor(NeverBackwards, CoordinatorEntity[EnergyTrackerCoordinator],
                       SensorEntity):
    """A value of an extra meter, on that meter's own device."""

    _attr_has_entity_name = True
    entity_description: ExtraMeterSensorDescription

    def __init__(
        self,
        coordinator: EnergyTrackerCoordinator,
        description: ExtraMeterSensorDescription,
        meter: ExtraMeterState,
    ) -> None:
        """Key the device and the unique id on the extra meter's own stable id."""
        super().__init__(coordinator)
        self.entity_description = description
        self._id = meter.id
        self._track_counter(description.key)
        self._attr_unique_id = f"{meter.meter_id}_{description.key}"
        self._attr_device_info = linked_to_meter(DeviceInfo(
            identifiers={(DOMAIN, meter.meter_id)},
            name=meter.name,
            manufacturer="Energy Tracker",
            # Not the main meter's models: blueprints pick the main meter by model, and
            # only it fires appliance and anomaly triggers.
            model=("Extra meter (simulated)" if meter.source == "simulated"
                   else "Extra meter (RPICT)"),
        ), coordinator)

    @property
    def native_value(self) -> float | None:
        """The value, or None when the meter is gone from the state."""
        meter = self.coordinator.data.extra_meters.get(self._id)
        return None if meter is None else self._shown(self.entity_description.value_fn(meter))

    @property
    def available(self) -> bool:
        """Unknown right now (stale board): unavailable, never 0."""
        return super().available and self.native_value is not None


class MeterComparisonSensor(EnergyTrackerEntity, SensorEntity):
    """The main meter's share of all meters' energy today; each meter's kWh and share in
    the attributes."""

    _attr_translation_key = "meter_comparison"
    # They change at every update: a new attributes row in the database each time
    # (~300 bytes with two meters, ~50 MB over the recorder's 10 days).
    _unrecorded_attributes = frozenset({"total_kwh", "meters"})
    _attr_native_unit_of_measurement = PERCENTAGE
    _attr_suggested_display_precision = 1

    def __init__(self, coordinator: EnergyTrackerCoordinator) -> None:
        """Attach the sensor to the main meter's device."""
        super().__init__(coordinator, "meter_comparison")

    @property
    def native_value(self) -> float | None:
        """The main meter's share today, None before any meter used energy today."""
        comparison = self.coordinator.data.meter_comparison
        if comparison is None:
            return None
        return next((m.share_pct for m in comparison.meters if m.id == MAIN_METER), None)

    @property
    def available(self) -> bool:
        """No energy measured today yet: unavailable, never 0."""
        return super().available and self.native_value is not None

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Today's start, the sum, and every meter's kWh and share."""
        comparison = self.coordinator.data.meter_comparison
        if comparison is None:
            return None
        return {
            "start": comparison.start,
            "total_kwh": comparison.total_kwh,
            "meters": [
                {"id": m.id, "name": m.name, "energy_kwh": m.energy_kwh,
                 "share_pct": m.share_pct}
                for m in comparison.meters
            ],
        }

"""Forecast sensors of the meter: next hour, next 24 hours, and the forecast's own error.

No state class on the forecasts nor their error: they are not consumption and must stay
out of the long-term statistics (and the Energy dashboard's pickers). Unavailable while
the add-on has no forecast (no model, too little history), never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
)
from homeassistant.const import EntityCategory, UnitOfEnergy

from .coordinator import EnergyTrackerCoordinator
from .entity import EnergyTrackerEntity
from .forecast_models import ForecastState


@dataclass(frozen=True, kw_only=True)
class ForecastSensorDescription(SensorEntityDescription):
    """A value of the add-on's current forecast."""

    value_fn: Callable[[ForecastState], float | None]
    attrs_fn: Callable[[ForecastState], dict[str, Any]]


def _model(forecast: ForecastState) -> dict[str, Any]:
    return {
        "generated": forecast.generated,
        "model_source": forecast.model_source,
        "model_version": forecast.model_version,
        "model_trained": forecast.model_trained,
    }


FORECAST_SENSORS: tuple[ForecastSensorDescription, ...] = (
    ForecastSensorDescription(
        key="forecast_next_hour",
        translation_key="forecast_next_hour",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        suggested_display_precision=2,
        value_fn=lambda f: f.next_hour_kwh,
        attrs_fn=lambda f: {"start": f.curve[0]["hour"]} | _model(f),
    ),
    ForecastSensorDescription(
        key="forecast_next_24h",
        translation_key="forecast_next_24h",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        suggested_display_precision=1,
        value_fn=lambda f: f.next_24h_kwh,
        attrs_fn=lambda f: {"curve": [dict(point) for point in f.curve]} | _model(f),
    ),
    ForecastSensorDescription(
        key="forecast_error",
        translation_key="forecast_error",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        # An error, not energy used: with a state class its kWh statistics were offered
        # as a device in the Energy dashboard. Its history still shows drift.
        entity_category=EntityCategory.DIAGNOSTIC,
        suggested_display_precision=3,
        value_fn=lambda f: f.drift.mae_kwh,
        attrs_fn=lambda f: {
            "mape_pct": f.drift.mape_pct,
            "bias_kwh": f.drift.bias_kwh,
            "skill": f.drift.skill,
            "hours": f.drift.hours,
        } | _model(f),
    ),
)


def forecast_sensors(coordinator: EnergyTrackerCoordinator) -> list[SensorEntity]:
    """The forecast sensors of the meter (sensor.py's platform adds them)."""
    return [ForecastSensor(coordinator, description) for description in FORECAST_SENSORS]


class ForecastSensor(EnergyTrackerEntity, SensorEntity):
    """One figure of the forecast in the last state."""

    entity_description: ForecastSensorDescription
    # A 24-point list every hour would bloat the recorder's database.
    _unrecorded_attributes = frozenset({"curve"})

    def __init__(
        self, coordinator: EnergyTrackerCoordinator, description: ForecastSensorDescription
    ) -> None:
        """Attach the sensor to the meter device."""
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def _forecast(self) -> ForecastState | None:
        return self.coordinator.data.analytics.forecast

    @property
    def available(self) -> bool:
        """No forecast (or no error measured yet): unavailable, never 0."""
        return super().available and self.native_value is not None

    @property
    def native_value(self) -> float | None:
        """The figure of the current forecast."""
        forecast = self._forecast
        return None if forecast is None else self.entity_description.value_fn(forecast)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """The curve, the model and the error figures."""
        forecast = self._forecast
        return None if forecast is None else self.entity_description.attrs_fn(forecast)

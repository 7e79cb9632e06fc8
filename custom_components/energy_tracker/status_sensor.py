"""Status of the forecast and of the anomaly detection, as diagnostic enum sensors of the
meter: what each waits for while its own sensors are unavailable (a new install forecasts
from its second day and judges anomalies after a week), and why a forecast is missing.

Unavailable with an add-on that does not report the feature; `ready_at` is None with an
add-on before 0.3.16.
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
from homeassistant.const import EntityCategory

from .analytics_models import AnalyticsState
from .coordinator import EnergyTrackerCoordinator
from .entity import EnergyTrackerEntity

# The add-on's `forecast_reason` prefixes (docs/api.md, "Forecast"), as enum states.
FORECAST_REASONS: tuple[tuple[str, str], ...] = (
    ("starting", "starting"),
    ("learning", "learning"),
    ("no forecast model", "no_model"),
    ("out of date", "out_of_date"),
    ("forecast failed", "failed"),
)
READY = "ready"
LEARNING = "learning"


def _parsed_reason(reason: str | None) -> tuple[str | None, str | None]:
    """The state a forecast reason names, and the reason without the prefix that state
    already says ("learning: "); (None, reason) for a reason of no known kind."""
    for prefix, state in FORECAST_REASONS:
        if reason is not None and reason.startswith(prefix):
            rest = reason.removeprefix(prefix)
            return state, rest.removeprefix(": ") if rest.startswith(": ") else reason
    return None, reason


def forecast_status(analytics: AnalyticsState) -> str | None:
    """`ready` with a forecast, else the state its reason names (None: not reported)."""
    if analytics.forecast is not None:
        return READY
    return _parsed_reason(analytics.forecast_reason)[0]


def anomaly_detection_status(analytics: AnalyticsState) -> str | None:
    """`ready` once a series has learned its week, `learning` before (None: not reported)."""
    anomaly = analytics.anomaly
    if anomaly is None:
        return None
    return READY if anomaly.active is not None else LEARNING


@dataclass(frozen=True, kw_only=True)
class StatusSensorDescription(SensorEntityDescription):
    """A status read from the analytics of the last state."""

    value_fn: Callable[[AnalyticsState], str | None]
    attrs_fn: Callable[[AnalyticsState], dict[str, Any]]


STATUS_SENSORS: tuple[StatusSensorDescription, ...] = (
    StatusSensorDescription(
        key="forecast_status",
        translation_key="forecast_status",
        device_class=SensorDeviceClass.ENUM,
        options=[READY, *(state for _, state in FORECAST_REASONS)],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=forecast_status,
        attrs_fn=lambda a: {"detail": _parsed_reason(a.forecast_reason)[1]},
    ),
    StatusSensorDescription(
        key="anomaly_detection",
        translation_key="anomaly_detection",
        device_class=SensorDeviceClass.ENUM,
        options=[READY, LEARNING],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=anomaly_detection_status,
        attrs_fn=lambda a: {"ready_at": None if a.anomaly is None else a.anomaly.ready_at},
    ),
)


def status_sensors(coordinator: EnergyTrackerCoordinator) -> list[SensorEntity]:
    """The status sensors of the meter (sensor.py's platform adds them)."""
    return [StatusSensor(coordinator, description) for description in STATUS_SENSORS]


class StatusSensor(EnergyTrackerEntity, SensorEntity):
    """One analytics feature's status in the last state."""

    entity_description: StatusSensorDescription

    def __init__(
        self, coordinator: EnergyTrackerCoordinator, description: StatusSensorDescription
    ) -> None:
        """Attach the sensor to the meter device."""
        super().__init__(coordinator, description.key)
        self.entity_description = description

    @property
    def available(self) -> bool:
        """Not reported by the add-on: unavailable."""
        return super().available and self.native_value is not None

    @property
    def native_value(self) -> str | None:
        """The status, or None when the add-on does not report it."""
        return self.entity_description.value_fn(self.coordinator.data.analytics)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """The add-on's own words (the forecast), or when learning ends (anomalies)."""
        return self.entity_description.attrs_fn(self.coordinator.data.analytics)

"""Typed view of the analytics fields of the add-on's state (docs/api.md, "Analytics").

Validated on their own (models.MeterState.from_json applies ANALYTICS_SCHEMA), so an
add-on without analytics (an older version) gives `None`s, and a malformed analytics field
is refused like any other bad payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from .forecast_models import FORECAST_SCHEMA, ForecastState


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise vol.Invalid(f"expected a finite number, got {value!r}")
    return float(value)


NUMBER_OR_NULL = vol.Any(None, _number)
TEXT_OR_NULL = vol.Any(None, str)

_RECOMMENDATION = vol.Schema(
    {vol.Required("text"): str, vol.Optional("share_pct"): NUMBER_OR_NULL},
    extra=vol.ALLOW_EXTRA,
)
_ANOMALY_STATE = vol.Schema(
    {
        vol.Required("ready"): bool,
        vol.Optional("ready_at"): TEXT_OR_NULL,
        vol.Required("active"): vol.Any(None, bool),
        vol.Required("reason"): TEXT_OR_NULL,
        vol.Optional("last"): vol.Any(None, dict),
        vol.Optional("series", default=list): [dict],
    },
    extra=vol.ALLOW_EXTRA,
)
ANALYTICS_SCHEMA = vol.Schema(
    {
        vol.Optional("rolling_power_w"): NUMBER_OR_NULL,
        vol.Optional("energy_today_kwh"): NUMBER_OR_NULL,
        vol.Optional("time_zone"): TEXT_OR_NULL,
        vol.Optional("co2_kg_today"): NUMBER_OR_NULL,
        vol.Optional("co2_g_per_kwh"): NUMBER_OR_NULL,
        vol.Optional("gas_m3"): NUMBER_OR_NULL,
        vol.Optional("recommendations", default=list): [_RECOMMENDATION],
        vol.Optional("anomaly"): vol.Any(None, _ANOMALY_STATE),
        vol.Optional("forecast"): FORECAST_SCHEMA,
        vol.Optional("forecast_reason"): TEXT_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)


@dataclass(frozen=True, slots=True)
class AnomalyStatus:
    """The anomaly detection: `active` is None while it is still learning, until
    `ready_at` (None once ready, or before any reading)."""

    active: bool | None
    ready_at: str | None
    reason: str | None
    last: dict[str, Any] | None
    series: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class AnalyticsState:
    """Derived values of one state; None: unknown (or an add-on without analytics)."""

    rolling_power_w: float | None = None
    energy_today_kwh: float | None = None
    time_zone: str | None = None  # the zone the add-on's days are in
    co2_kg_today: float | None = None
    co2_g_per_kwh: float | None = None
    gas_m3: float | None = None
    recommendations: tuple[dict[str, Any], ...] = ()
    anomaly: AnomalyStatus | None = None
    forecast: ForecastState | None = None
    forecast_reason: str | None = None  # why `forecast` is None (None: from an old add-on)

    @classmethod
    def from_validated(cls, data: dict[str, Any]) -> AnalyticsState:
        """From a state payload that passed ANALYTICS_SCHEMA."""
        anomaly = data.get("anomaly")
        return cls(
            rolling_power_w=data.get("rolling_power_w"),
            energy_today_kwh=data.get("energy_today_kwh"),
            time_zone=data.get("time_zone"),
            co2_kg_today=data.get("co2_kg_today"),
            co2_g_per_kwh=data.get("co2_g_per_kwh"),
            gas_m3=data.get("gas_m3"),
            recommendations=tuple(data["recommendations"]),
            anomaly=None if anomaly is None else AnomalyStatus(
                active=anomaly["active"] if anomaly["ready"] else None,
                ready_at=None if anomaly["ready"] else anomaly.get("ready_at"),
                reason=anomaly["reason"],
                last=anomaly.get("last"),
                series=tuple(anomaly["series"]),
            ),
            forecast=ForecastState.from_validated(data.get("forecast")),
            forecast_reason=data.get("forecast_reason"),
        )

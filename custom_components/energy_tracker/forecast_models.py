"""Typed view of the add-on's `forecast` state field (docs/api.md, "Forecast").

Null (or absent, from an add-on without forecasting) means no forecast right now: the
forecast sensors are then unavailable, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import voluptuous as vol


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise vol.Invalid(f"expected a finite number, got {value!r}")
    return float(value)


NUMBER_OR_NULL = vol.Any(None, _number)
TEXT_OR_NULL = vol.Any(None, str)
_POINT = vol.Schema({vol.Required("hour"): str, vol.Required("kwh"): _number},
                    extra=vol.ALLOW_EXTRA)
_DRIFT = vol.Schema(
    {
        vol.Required("hours"): int,
        vol.Required("mae_kwh"): NUMBER_OR_NULL,
        vol.Required("mape_pct"): NUMBER_OR_NULL,
        vol.Required("bias_kwh"): NUMBER_OR_NULL,
        vol.Required("skill"): NUMBER_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
_MODEL = vol.Schema(
    {vol.Required("source"): str, vol.Optional("version"): TEXT_OR_NULL,
     vol.Optional("trained"): TEXT_OR_NULL},
    extra=vol.ALLOW_EXTRA,
)
FORECAST_SCHEMA = vol.Any(None, vol.Schema(
    {
        vol.Required("next_hour_kwh"): _number,
        vol.Required("next_24h_kwh"): _number,
        vol.Required("curve"): vol.All([_POINT], vol.Length(min=1)),
        vol.Required("generated"): str,
        vol.Required("model"): _MODEL,
        vol.Required("drift"): _DRIFT,
    },
    extra=vol.ALLOW_EXTRA,
))


@dataclass(frozen=True, slots=True)
class ForecastDrift:
    """Error of the past next-hour forecasts over the last `hours` measured hours."""

    hours: int
    mae_kwh: float | None
    mape_pct: float | None
    bias_kwh: float | None
    skill: float | None


@dataclass(frozen=True, slots=True)
class ForecastState:
    """The add-on's current forecast."""

    next_hour_kwh: float
    next_24h_kwh: float
    curve: tuple[dict[str, Any], ...]  # {"hour": local ISO start, "kwh": x}
    generated: str
    model_source: str
    model_version: str | None
    model_trained: str | None
    drift: ForecastDrift

    @classmethod
    def from_validated(cls, data: dict[str, Any] | None) -> ForecastState | None:
        """From a `forecast` field that passed FORECAST_SCHEMA."""
        if data is None:
            return None
        model, drift = data["model"], data["drift"]
        return cls(
            next_hour_kwh=data["next_hour_kwh"],
            next_24h_kwh=data["next_24h_kwh"],
            curve=tuple({"hour": p["hour"], "kwh": p["kwh"]} for p in data["curve"]),
            generated=data["generated"],
            model_source=model["source"],
            model_version=model.get("version"),
            model_trained=model.get("trained"),
            drift=ForecastDrift(
                hours=drift["hours"], mae_kwh=drift["mae_kwh"], mape_pct=drift["mape_pct"],
                bias_kwh=drift["bias_kwh"], skill=drift["skill"],
            ),
        )

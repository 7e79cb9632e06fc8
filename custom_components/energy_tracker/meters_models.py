"""Typed view of the add-on's `meters` and `meter_comparison` state fields (docs/api.md,
"Several meters").

Both are absent when the add-on serves one meter: then there are no extra meters and no
comparison. Validated on their own (models.MeterState.from_json applies METERS_SCHEMA).
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
_EXTRA_METER = vol.Schema(
    {
        vol.Required("id"): str,
        vol.Required("meter_id"): vol.All(str, vol.Length(min=1)),
        vol.Required("name"): str,
        vol.Optional("source"): vol.Any(None, str),
        vol.Required("available"): bool,
        vol.Required("total_power_w"): NUMBER_OR_NULL,
        vol.Required("total_energy_kwh"): NUMBER_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
_SHARE = vol.Schema(
    {
        vol.Required("id"): str,
        vol.Required("name"): str,
        vol.Required("energy_kwh"): NUMBER_OR_NULL,
        vol.Required("share_pct"): NUMBER_OR_NULL,
    },
    extra=vol.ALLOW_EXTRA,
)
_COMPARISON = vol.Schema(
    {
        vol.Required("period"): str,
        vol.Required("start"): str,
        vol.Required("total_kwh"): NUMBER_OR_NULL,
        vol.Required("meters"): vol.All([_SHARE], vol.Length(min=1)),
    },
    extra=vol.ALLOW_EXTRA,
)
METERS_SCHEMA = vol.Schema(
    {
        vol.Optional("meters"): [_EXTRA_METER],
        vol.Optional("meter_comparison"): vol.Any(None, _COMPARISON),
    },
    extra=vol.ALLOW_EXTRA,
)


@dataclass(frozen=True, slots=True)
class ExtraMeterState:
    """Another meter of the same add-on; None means unknown right now."""

    id: str
    meter_id: str
    name: str
    source: str | None
    available: bool
    total_power_w: float | None
    total_energy_kwh: float | None


@dataclass(frozen=True, slots=True)
class MeterShare:
    """One meter's energy in the compared period and its share of all meters'."""

    id: str
    name: str
    energy_kwh: float | None
    share_pct: float | None


@dataclass(frozen=True, slots=True)
class MeterComparison:
    """Energy of every meter today (the main meter first)."""

    start: str
    total_kwh: float | None
    meters: tuple[MeterShare, ...]


def extra_meters_from_validated(data: dict[str, Any]) -> dict[str, ExtraMeterState]:
    """By add-on meter id (`garage`), from a payload that passed METERS_SCHEMA."""
    return {
        m["id"]: ExtraMeterState(
            m["id"], m["meter_id"], m["name"], m.get("source"), m["available"],
            m["total_power_w"], m["total_energy_kwh"],
        )
        for m in data.get("meters", [])
    }


def comparison_from_validated(data: dict[str, Any]) -> MeterComparison | None:
    """The comparison, or None when the add-on serves one meter."""
    raw = data.get("meter_comparison")
    if raw is None:
        return None
    return MeterComparison(
        start=raw["start"],
        total_kwh=raw["total_kwh"],
        meters=tuple(
            MeterShare(m["id"], m["name"], m["energy_kwh"], m["share_pct"])
            for m in raw["meters"]
        ),
    )

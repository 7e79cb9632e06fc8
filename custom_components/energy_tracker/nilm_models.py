"""Typed view of the add-on's `appliances` state field (docs/api.md, "Appliances").

Null (or absent, from an add-on without NILM) means appliance detection is off right now:
the appliance entities are then unavailable, never 0.
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
_APPLIANCE = vol.Schema(
    {
        vol.Required("id"): vol.All(str, vol.Length(min=1)),
        vol.Required("name"): str,
        vol.Optional("kind"): vol.Any(None, str),
        vol.Required("power_w"): NUMBER_OR_NULL,
        vol.Required("energy_kwh"): NUMBER_OR_NULL,
        vol.Required("running"): vol.Any(None, bool),
        vol.Optional("since"): vol.Any(None, str),
    },
    extra=vol.ALLOW_EXTRA,
)
APPLIANCES_SCHEMA = vol.Schema(
    {vol.Optional("appliances"): vol.Any(None, [_APPLIANCE])}, extra=vol.ALLOW_EXTRA
)


@dataclass(frozen=True, slots=True)
class ApplianceState:
    """One appliance as the add-on estimates it; None: not known right now."""

    id: str
    name: str
    kind: str | None
    power_w: float | None
    energy_kwh: float | None
    running: bool | None
    since: str | None


def appliances_from_validated(data: dict[str, Any]) -> dict[str, ApplianceState] | None:
    """From a state payload that passed APPLIANCES_SCHEMA; None while NILM is off."""
    appliances = data.get("appliances")
    if appliances is None:
        return None
    return {
        a["id"]: ApplianceState(a["id"], a["name"], a.get("kind"), a["power_w"],
                                a["energy_kwh"], a["running"], a.get("since"))
        for a in appliances
    }

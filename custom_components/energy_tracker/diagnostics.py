"""Diagnostics: what the add-on reported, with the token and host redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.const import CONF_API_TOKEN, CONF_HOST
from homeassistant.core import HomeAssistant

from .coordinator import EnergyTrackerConfigEntry

# The token grants access to the add-on; the host identifies the user's network.
TO_REDACT = {CONF_API_TOKEN, CONF_HOST}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EnergyTrackerConfigEntry
) -> dict[str, Any]:
    """Entry data, add-on info, the last state and the connection health."""
    coordinator = entry.runtime_data
    return {
        "entry": {
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": dict(entry.options),
        },
        "info": asdict(coordinator.info),
        "state": asdict(coordinator.data) if coordinator.data is not None else None,
        "connected": coordinator.last_update_success,
        "last_error": _redacted_error(coordinator.last_exception, str(entry.data[CONF_HOST])),
    }


def _redacted_error(error: Exception | None, host: str) -> str | None:
    """The last error as text, without the host it may name."""
    if error is None:
        return None
    return repr(error).replace(host, REDACTED) if host else repr(error)

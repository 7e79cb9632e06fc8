"""Diagnostics: what the add-on reported, with the token and host redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST
from homeassistant.core import HomeAssistant

from .coordinator import EnergyTrackerConfigEntry
from .outage import async_outage

# The token grants access to the add-on; the host identifies the user's network.
TO_REDACT = {CONF_API_TOKEN, CONF_HOST}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: EnergyTrackerConfigEntry
) -> dict[str, Any]:
    """Entry data, add-on info, the last state and the connection health; while the entry
    is not loaded (the add-on down or refusing the token at setup), why not."""
    entry_part = {
        "data": async_redact_data(dict(entry.data), TO_REDACT),
        "options": dict(entry.options),
        "state": entry.state.value,
        "reason": _redacted(entry.reason, str(entry.data[CONF_HOST])),
    }
    coordinator = getattr(entry, "runtime_data", None)  # set only by a successful setup
    if entry.state is not ConfigEntryState.LOADED or coordinator is None:
        return {"entry": entry_part, "info": None, "state": None, "connected": False,
                "last_error": entry_part["reason"],
                "outage": async_outage(hass, entry).ongoing}
    return {
        "entry": entry_part,
        "info": asdict(coordinator.info),
        "state": asdict(coordinator.data) if coordinator.data is not None else None,
        "connected": coordinator.last_update_success,
        "last_error": _redacted_error(coordinator.last_exception, str(entry.data[CONF_HOST])),
    }


def _redacted_error(error: Exception | None, host: str) -> str | None:
    """The last error as text, without the host it may name."""
    return None if error is None else _redacted(repr(error), host)


def _redacted(text: str | None, host: str) -> str | None:
    return text.replace(host, REDACTED) if text and host else text

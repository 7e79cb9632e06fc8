"""Commands to the add-on (relays, shedding): its errors as translated HA errors."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Final

from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    HomeAssistantError,
    ServiceValidationError,
)

from .api import CannotConnect, CommandFailed, InvalidAuth, InvalidData
from .const import DOMAIN

# docs/api.md error codes → translation keys under "exceptions".
_COMMAND_ERRORS = {
    "relay_timeout": "relay_timeout",
    "relay_rejected": "relay_rejected",
    "board_unavailable": "board_unavailable",
    "not_found": "relay_not_found",
    "invalid": "command_invalid",
    "storage_full": "addon_storage_full",
    "storage_error": "addon_storage_error",
    "min_off_time": "relay_min_off_time",
}

# Refusals of what was asked: the caller's to fix, logged by HA without a traceback when the
# dashboard or the WebSocket API asks (service_validation_error). Too soon counts: retrying
# a resting compressor logged a traceback at every try.
CALLER_MISTAKES: Final = frozenset({"invalid", "min_off_time"})


async def run_command[T](command: Awaitable[T], target: str,
                         errors: Mapping[str, str] | None = None,
                         caller_mistakes: frozenset[str] = CALLER_MISTAKES) -> T:
    """Await one command; any failure becomes a HomeAssistantError the user can read.

    `target` names what was commanded (a relay's name, "shed_load") in the message;
    `errors` maps API error codes to this command's own messages (translation keys);
    `caller_mistakes` are the codes that mean the caller asked for something wrong.
    """
    try:
        return await command
    except CommandFailed as err:
        # The add-on refused what the caller asked (a label in the future, reduce_w 0).
        error = ServiceValidationError if err.code in caller_mistakes \
            else HomeAssistantError
        key = (errors or {}).get(err.code) or _COMMAND_ERRORS.get(err.code, "command_failed")
        raise error(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={
                "target": target, "detail": err.detail or err.code, "status": str(err.status),
                "retry_after": _duration(err.retry_after_s),
            },
        ) from err
    except InvalidAuth as err:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="invalid_auth"
        ) from err
    except (CannotConnect, InvalidData) as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err


def _duration(seconds: int | None) -> str:
    """"2 min 20 s", "45 s" (unit symbols read the same in English and French)."""
    if seconds is None:
        return "?"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "",
             f"{rest} s" if rest or not (hours or minutes) else ""]
    return " ".join(p for p in parts if p)

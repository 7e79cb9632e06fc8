"""The context of the action (shed_load, restore_load) whose relay changes are arriving.

The add-on switches the relays itself, and the changes reach Home Assistant through the
stream like any other reading: without this their state changes had a context of their
own, so the logbook said "turned off" but not which action, user or automation did it.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from homeassistant.core import Context

# The stream may deliver an action's last change a little after the action's answer.
STREAM_LAG_S: Final = 5.0


class ActionContext:
    """Which action's context relay changes carry now; one per coordinator."""

    def __init__(self) -> None:
        """No action yet."""
        self._context: Context | None = None
        self._until = -math.inf  # monotonic

    @asynccontextmanager
    async def acting_for(self, context: Context) -> AsyncIterator[None]:
        """Relay changes carry `context` while the action runs and STREAM_LAG_S after."""
        self._context, self._until = context, math.inf
        try:
            yield
        finally:
            if self._context is context:  # a later action's context stays
                self._until = time.monotonic() + STREAM_LAG_S

    @property
    def current(self) -> Context | None:
        """The running (or just answered) action's context, else None."""
        return self._context if time.monotonic() <= self._until else None

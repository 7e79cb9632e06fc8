"""A repairs issue of one entry, judged at every state of its coordinator.

The base of the entry's state-driven issues (`nilm_repair.NilmIssue`,
`time_zone_issue.TimeZoneIssue`): listening, a first check at start, and clearing the issue
when the entry unloads are the same for each; what a state means is each one's own.
"""

from __future__ import annotations

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator


class CoordinatorIssue:
    """Subclasses judge each state in `_async_state` and raise or delete `_issue_id`."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator,
                 issue: str) -> None:
        """Nothing is checked before `async_start`."""
        self._hass = hass
        self._coordinator = coordinator
        self._issue_id = f"{issue}_{coordinator.config_entry.entry_id}"

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Check now and on every state; the returned callback stops and clears."""
        remove_listener = self._coordinator.async_add_listener(self._async_state)
        self._async_state()

        @callback
        def stop() -> None:
            remove_listener()
            ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)

        return stop

    @callback
    def _async_state(self) -> None:
        raise NotImplementedError

"""A repairs issue while the add-on's appliance detection is broken.

The add-on runs on without NILM when its models are missing or unusable (a wrong
`nilm_bundle_dir`, a corrupt file, `nilm_appliances` naming none of the models); the
appliance entities are then unavailable and only the add-on's log said why. This says it
in Home Assistant too. Switching detection off with `nilm_enabled` raises nothing.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .api import CannotConnect, InvalidAuth, InvalidData
from .const import DOMAIN, ISSUE_NILM_BROKEN
from .coordinator import EnergyTrackerCoordinator
from .coordinator_issue import CoordinatorIssue


class NilmIssue(CoordinatorIssue):
    """Asks the add-on why each time its appliances turn null; clears when they return."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Nothing is checked before `async_start`."""
        super().__init__(hass, coordinator, ISSUE_NILM_BROKEN)
        self._off: bool | None = None

    @callback
    def _async_state(self) -> None:
        state = self._coordinator.data
        if state is None or not self._coordinator.last_update_success:
            # An outage says nothing about the models, but the add-on may come back with
            # other options (appliances null before and after): ask again then.
            self._off = None
            return
        off = state.appliances is None
        if off == self._off:
            return
        self._off = off
        if off:
            self._coordinator.config_entry.async_create_background_task(
                self._hass, self._async_ask_why(), f"{DOMAIN} NILM status"
            )
        else:
            ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)

    async def _async_ask_why(self) -> None:
        try:
            status = await self._coordinator.client.get_nilm_status()
        except (CannotConnect, InvalidAuth, InvalidData):
            self._off = None  # unknown: ask again with the next state
            return
        if not status.broken:  # switched off with nilm_enabled
            ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)
            return
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_NILM_BROKEN,
            translation_placeholders={
                "title": self._coordinator.config_entry.title,
                "reason": status.reason or "",
            },
        )

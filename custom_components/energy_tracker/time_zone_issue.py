"""A repairs issue while the add-on counts days in another time zone than Home Assistant.

The add-on's hours, days and months (energy and CO2 today, the daily figures) are in its
$TZ, which the Supervisor sets to Home Assistant's time zone when the add-on starts. After
the time zone is changed in Home Assistant the add-on keeps the old one until it restarts,
and "today" ends at another midnight than the user's. An add-on that does not say its zone
(before 0.3.13) raises nothing.
"""

from __future__ import annotations

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, ISSUE_TIME_ZONE
from .coordinator import EnergyTrackerCoordinator


class TimeZoneIssue:
    """Compares the zones at every state; raises or clears the issue when that changes."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Nothing is checked before `async_start`."""
        self._hass = hass
        self._coordinator = coordinator
        self._issue_id = f"{ISSUE_TIME_ZONE}_{coordinator.config_entry.entry_id}"
        self._raised_for: tuple[str, str] | None = None

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
        state = self._coordinator.data
        if state is None or state.analytics.time_zone is None:
            return  # an outage or an older add-on: nothing new is known
        zones = (state.analytics.time_zone, self._hass.config.time_zone)
        differ = zones[0] != zones[1]
        if (zones if differ else None) == self._raised_for:
            return
        self._raised_for = zones if differ else None
        if not differ:
            ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)
            return
        ir.async_create_issue(
            self._hass, DOMAIN, self._issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_TIME_ZONE,
            translation_placeholders={
                "title": self._coordinator.config_entry.title,
                "addon_zone": zones[0], "ha_zone": zones[1],
            },
        )

"""A repairs issue while the add-on counts days in another time zone than Home Assistant.

The add-on's hours, days and months (energy and CO2 today, the daily figures) are in its
$TZ, which the Supervisor sets to Home Assistant's time zone when the add-on starts. After
the time zone is changed in Home Assistant the add-on keeps the old one until it restarts,
and "today" ends at another midnight than the user's. Two names of one zone ("UTC" and
Debian's "Etc/UTC") are the same zone. An add-on that does not say its zone (before 0.3.13)
raises nothing.
"""

from __future__ import annotations

from datetime import timedelta

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from .const import DOMAIN, ISSUE_TIME_ZONE
from .coordinator import EnergyTrackerCoordinator

# Zones are the same clock when they agree at these instants of the coming year: names
# differ for one zone ("UTC", "Etc/UTC"; "US/Pacific", "America/Los_Angeles").
_SAMPLES = [timedelta(hours=6 * step) for step in range(4 * 366)]


class TimeZoneIssue:
    """Compares the zones at every state; raises or clears the issue when that changes."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Nothing is checked before `async_start`."""
        self._hass = hass
        self._coordinator = coordinator
        self._issue_id = f"{ISSUE_TIME_ZONE}_{coordinator.config_entry.entry_id}"
        self._zones: tuple[str, str] | None = None

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
        if zones == self._zones:
            return
        self._zones = zones
        self._coordinator.config_entry.async_create_background_task(
            self._hass, self._async_check(zones), f"{DOMAIN} time zones"
        )

    async def _async_check(self, zones: tuple[str, str]) -> None:
        same = zones[0] == zones[1] or await _same_clock(*zones)
        if zones != self._zones:
            return  # another state has been checked meanwhile
        if same:
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


async def _same_clock(first: str, second: str) -> bool:
    """Both names are known zones with the same offsets over the coming year."""
    zones = [await dt_util.async_get_time_zone(name) for name in (first, second)]
    if zones[0] is None or zones[1] is None:
        return False
    now = dt_util.utcnow()
    return all(zones[0].utcoffset(now + step) == zones[1].utcoffset(now + step)
               for step in _SAMPLES)

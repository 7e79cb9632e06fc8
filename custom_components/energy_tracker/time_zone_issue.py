"""A repairs issue while the add-on counts days in another time zone than Home Assistant.

The add-on's hours, days and months (energy and CO2 today, the daily figures) are in its
$TZ, which the Supervisor sets to Home Assistant's time zone when the add-on starts. After
the time zone is changed in Home Assistant the add-on keeps the old one until it restarts,
and "today" ends at another midnight than the user's. Two names of one zone ("UTC" and
Debian's "Etc/UTC") are the same zone. An add-on that does not say its zone (before 0.3.13)
raises nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from .const import DOMAIN, ISSUE_TIME_ZONE
from .coordinator import EnergyTrackerCoordinator
from .coordinator_issue import CoordinatorIssue

# Zones are the same clock when they agree at every quarter hour (UTC) of the coming year:
# names differ for one zone ("UTC", "Etc/UTC"; "US/Pacific", "America/Los_Angeles"), and
# two zones may differ only for the hours around a DST change.
_STEP = timedelta(minutes=15)
_SPAN = timedelta(days=366)


class TimeZoneIssue(CoordinatorIssue):
    """Compares the zones at every state; raises or clears the issue when that changes."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Nothing is checked before `async_start`."""
        super().__init__(hass, coordinator, ISSUE_TIME_ZONE)
        self._checked: tuple[str, str, str] | None = None  # the zones and the entry's title

    @callback
    def _async_state(self) -> None:
        state = self._coordinator.data
        if state is None or state.analytics.time_zone is None:
            return  # an outage or an older add-on: nothing new is known
        zones = (state.analytics.time_zone, self._hass.config.time_zone)
        checked = (*zones, self._coordinator.config_entry.title)  # a rename is said too
        if checked == self._checked:
            return
        self._checked = checked
        self._coordinator.config_entry.async_create_background_task(
            self._hass, self._async_check(checked), f"{DOMAIN} time zones"
        )

    async def _async_check(self, checked: tuple[str, str, str]) -> None:
        zones = checked[:2]
        same = zones[0] == zones[1] or await self._async_same_clock(*zones)
        if checked != self._checked:
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
                "title": checked[2], "addon_zone": zones[0], "ha_zone": zones[1],
            },
        )

    async def _async_same_clock(self, first: str, second: str) -> bool:
        """Both names are known zones with the same offsets over the coming year."""
        zones = [await dt_util.async_get_time_zone(name) for name in (first, second)]
        if zones[0] is None or zones[1] is None:
            return False
        return await self._hass.async_add_executor_job(
            same_offsets, zones[0], zones[1], dt_util.utcnow())


def same_offsets(first: tzinfo, second: tzinfo, now: datetime) -> bool:
    """The zones agree at every quarter hour (UTC) of the year from `now` (35 136 instants;
    DST changes fall on quarter hours in every zone)."""
    moment = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    end = moment + _SPAN
    while moment < end:
        if moment.astimezone(first).utcoffset() != moment.astimezone(second).utcoffset():
            return False
        moment += _STEP
    return True

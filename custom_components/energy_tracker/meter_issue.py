"""A repairs issue while the meter gives no readings although the add-on runs.

A hat whose port opens but sends nothing (the wrong port, the Raspberry Pi's serial
console on it), lines of the wrong kind (swapped ports, the wrong `rpict_model` or baud
rate) or a port that cannot be opened left every value unavailable, and only the add-on's
log said why: Home Assistant showed the board *Connected* beside unavailable values. After
METER_ISSUE_AFTER without a reading this says so, and which of the cases it is; the issue
goes once readings come.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later

from .const import DOMAIN, ISSUE_NO_READINGS
from .coordinator import EnergyTrackerCoordinator
from .coordinator_issue import CoordinatorIssue
from .models import MeterState

# Long enough for a hat to start and for a replug; short enough to be found the same day.
METER_ISSUE_AFTER: Final = timedelta(minutes=5)
RPICT: Final = "rpict"


class NoReadingsIssue(CoordinatorIssue):
    """Times how long the main meter has had no reading; raises the issue after a while."""

    def __init__(self, hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
        """Nothing is checked before `async_start`."""
        super().__init__(hass, coordinator, ISSUE_NO_READINGS)
        self._cancel_timer: CALLBACK_TYPE | None = None
        # The hat's rejected lines at its last reading: one noisy line weeks ago must not
        # make a hat that went silent read as "lines cannot be read".
        self._rejected_while_reading = 0

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """As the base, and the timer goes with the entry."""
        stop = super().async_start()

        @callback
        def stop_all() -> None:
            self._async_cancel_timer()
            stop()

        return stop_all

    @callback
    def _async_state(self) -> None:
        if not self._coordinator.last_update_success:
            return  # the add-on is unreachable: the outage issue says so
        if self._coordinator.data.available:
            self._rejected_while_reading = _lines_rejected(self._coordinator.data)
            self._async_cancel_timer()
            ir.async_delete_issue(self._hass, DOMAIN, self._issue_id)
        elif self._cancel_timer is None:
            self._cancel_timer = async_call_later(
                self._hass, METER_ISSUE_AFTER,
                HassJob(self._async_still_without_readings, cancel_on_shutdown=True))

    @callback
    def _async_still_without_readings(self, _now: datetime) -> None:
        self._cancel_timer = None
        state = self._coordinator.data
        if not self._coordinator.last_update_success or state.available:
            return
        board = state.boards.get(RPICT)
        rejected = _lines_rejected(state)
        if rejected >= self._rejected_while_reading:  # else the add-on restarted: from 0
            rejected -= self._rejected_while_reading
        if board is None or not board.connected:
            case = "port_closed"
        elif rejected:
            case = "lines_rejected"
        else:
            case = "nothing_sent"
        ir.async_create_issue(
            self._hass, DOMAIN, self._issue_id, is_fixable=False,
            severity=ir.IssueSeverity.ERROR, translation_key=f"{ISSUE_NO_READINGS}_{case}",
            translation_placeholders={
                "title": self._coordinator.config_entry.title,
                "minutes": str(int(METER_ISSUE_AFTER.total_seconds() // 60)),
                "rejected": str(rejected),
            },
        )

    @callback
    def _async_cancel_timer(self) -> None:
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None


def _lines_rejected(state: MeterState) -> int:
    """The hat's rejected lines since the add-on started (0 without a hat)."""
    board = state.boards.get(RPICT)
    return (board.lines_rejected or 0) if board else 0

"""An add-on outage of one config entry, and the repairs issue it raises when long.

It outlives the coordinator: an outage that spans an entry reload (an options change) or
setup retries (the add-on was down when the entry loaded) still raises the issue after
UNREACHABLE_ISSUE_AFTER, and the issue goes when the add-on answers again.
"""

from __future__ import annotations

from datetime import datetime

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN, ISSUE_UNREACHABLE, LOGGER, UNREACHABLE_ISSUE_AFTER

_OUTAGES: HassKey[dict[str, Outage]] = HassKey(f"{DOMAIN}_outages")


@callback
def async_outage(hass: HomeAssistant, entry: ConfigEntry) -> Outage:
    """The outage record of `entry` (one per entry, created on first use)."""
    outages = hass.data.setdefault(_OUTAGES, {})
    if (outage := outages.get(entry.entry_id)) is None:
        outage = outages[entry.entry_id] = Outage(hass, entry)
    return outage


@callback
def async_forget_outage(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The entry is gone: no timer, no issue, no record. (An issue may be older than the
    record: issues outlive a restart of Home Assistant.)"""
    outage = hass.data.get(_OUTAGES, {}).pop(entry.entry_id, None) or Outage(hass, entry)
    outage.async_end()
    outage.async_stop_watching()


class Outage:
    """Lost → (after UNREACHABLE_ISSUE_AFTER) issue; ended → no timer, no issue."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        self._hass = hass
        self._entry = entry
        self._cancel_timer: CALLBACK_TYPE | None = None
        self.ongoing = False
        # Disabling an entry that waits to retry its setup unloads nothing (HA calls no
        # async_unload_entry): the state change is the only sign.
        self._stop_watching: CALLBACK_TYPE | None = entry.async_on_state_change(
            self._async_entry_state_changed)

    @property
    def issue_id(self) -> str:
        return f"{ISSUE_UNREACHABLE}_{self._entry.entry_id}"

    @callback
    def async_stop_watching(self) -> None:
        if self._stop_watching is not None:
            self._stop_watching()
            self._stop_watching = None

    @callback
    def _async_entry_state_changed(self) -> None:
        if self._entry.disabled_by is not None and (
                self._entry.state is ConfigEntryState.NOT_LOADED):
            self.async_end()

    @callback
    def async_lost(self) -> None:
        """The add-on did not answer; the first call of an outage starts its clock."""
        if self.ongoing or self._entry.disabled_by is not None:
            return
        self.ongoing = True
        self._cancel_timer = async_call_later(
            self._hass, UNREACHABLE_ISSUE_AFTER,
            HassJob(self._async_raise_issue, cancel_on_shutdown=True),
        )

    @callback
    def async_end(self) -> None:
        """No outage to report any more: answered, or the entry is disabled or removed."""
        self.ongoing = False
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
        ir.async_delete_issue(self._hass, DOMAIN, self.issue_id)

    @callback
    def _async_raise_issue(self, _now: datetime) -> None:
        self._cancel_timer = None
        if self._entry.disabled_by is not None:
            self.async_end()  # disabled meanwhile: the user no longer expects it to answer
            return
        LOGGER.warning("The Energy Tracker add-on has been unreachable for more than %s",
                       UNREACHABLE_ISSUE_AFTER)
        ir.async_create_issue(
            self._hass, DOMAIN, self.issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_UNREACHABLE,
            translation_placeholders={
                "title": self._entry.title,
                "host": str(self._entry.data[CONF_HOST]),
                "port": str(self._entry.data[CONF_PORT]),
            },
        )

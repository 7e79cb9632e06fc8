"""A repairs issue while the add-on is older than what this integration calls.

HACS updates the integration and the add-on store the add-on, each on its own: with an
older add-on most entities work, but some actions answered "no longer has
calibrate_voltage" and the carbon-intensity option logged a 404 at every change, and
nothing said the add-on needs an update. A new add-on version reloads the entry
(coordinator.py: the version is part of the device layout), which checks again.
"""

from __future__ import annotations

from typing import Final

from awesomeversion import AwesomeVersion, AwesomeVersionException
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, ISSUE_ADDON_OUTDATED
from .coordinator import EnergyTrackerConfigEntry

# The oldest add-on with every route the client uses (docs/api.md; addon/CHANGELOG.md):
# voltage calibration came with 0.3.9, withdrawing the carbon intensity with 0.3.10,
# removing a label with 0.3.18.
MIN_ADDON_VERSION: Final = "0.3.18"


def issue_id(entry: EnergyTrackerConfigEntry) -> str:
    return f"{ISSUE_ADDON_OUTDATED}_{entry.entry_id}"


def addon_outdated(version: str) -> bool:
    """Whether an add-on of `version` lacks routes this integration calls."""
    try:
        return AwesomeVersion(version) < AwesomeVersion(MIN_ADDON_VERSION)
    except AwesomeVersionException:
        return False  # a build whose version is not a release number: nothing to say


@callback
def async_check_addon_version(hass: HomeAssistant, entry: EnergyTrackerConfigEntry,
                              version: str) -> None:
    """Raise the issue for an add-on older than MIN_ADDON_VERSION, else clear it."""
    if not addon_outdated(version):
        ir.async_delete_issue(hass, DOMAIN, issue_id(entry))
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(entry),
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key=ISSUE_ADDON_OUTDATED,
        translation_placeholders={"title": entry.title, "version": version,
                                  "minimum": MIN_ADDON_VERSION},
    )


@callback
def async_forget_addon_version(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> None:
    """A removed entry has no add-on to update."""
    ir.async_delete_issue(hass, DOMAIN, issue_id(entry))

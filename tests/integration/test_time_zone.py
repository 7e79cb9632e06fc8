"""The add-on's days in another time zone than Home Assistant's are a repairs issue."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.time_zone_issue import same_offsets

from .conftest import HA_TEST_ZONE, Addon, set_up_entry, wait_for


async def test_an_addon_counting_days_in_another_zone_is_a_repairs_issue(
    hass: HomeAssistant, addon: Addon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Home Assistant's zone was changed while the add-on ran (it keeps the one it started
    with): its "today" ends at another midnight until it restarts."""
    await addon.stop()
    monkeypatch.setenv("TZ", "Europe/Paris")
    await addon.start()
    await addon.wait_for_reading()
    entry = await set_up_entry(hass, addon)
    issue_id = f"time_zone_mismatch_{entry.entry_id}"
    issues = ir.async_get(hass)

    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is not None, 10,
                   "the issue")
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.translation_placeholders == {
        "title": entry.title, "addon_zone": "Europe/Paris", "ha_zone": HA_TEST_ZONE}

    # Renamed: the issue names the entry as it is called now.
    hass.config_entries.async_update_entry(entry, title="Cellar meter")
    await wait_for(lambda: (issues.async_get_issue(DOMAIN, issue_id).translation_placeholders
                            or {}).get("title") == "Cellar meter", 20, "the new title")

    # Restarted as the Supervisor does, with Home Assistant's zone: gone, entry loaded.
    await addon.stop()
    monkeypatch.setenv("TZ", HA_TEST_ZONE)
    await addon.start()
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is None, 20,
                   "the issue cleared by the add-on's restart")

    # The user moves Home Assistant to another zone: said again at the next reading.
    await hass.config.async_update(time_zone="Europe/Berlin")
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is not None, 20,
                   "the issue raised again")
    raised = issues.async_get_issue(DOMAIN, issue_id)
    assert raised is not None
    assert raised.translation_placeholders is not None
    assert raised.translation_placeholders["ha_zone"] == "Europe/Berlin"

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert issues.async_get_issue(DOMAIN, issue_id) is None


@pytest.mark.parametrize("addon_zone", [HA_TEST_ZONE, "America/Los_Angeles"])
async def test_an_addon_in_home_assistant_zone_raises_nothing(
    hass: HomeAssistant, addon: Addon, monkeypatch: pytest.MonkeyPatch, addon_zone: str
) -> None:
    """Also under another name of the same zone (Debian's /etc/timezone says "Etc/UTC"
    where $TZ may say "UTC")."""
    await addon.stop()
    monkeypatch.setenv("TZ", addon_zone)
    await addon.start()
    await addon.wait_for_reading()
    entry = await set_up_entry(hass, addon)
    issue_id = f"time_zone_mismatch_{entry.entry_id}"
    issues = ir.async_get(hass)
    await asyncio.sleep(1)  # a few readings, each checked
    assert entry.runtime_data.data.analytics.time_zone == addon_zone
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    # The check does run: another zone in Home Assistant is said, and the same cleared.
    await hass.config.async_update(time_zone="Europe/Berlin")
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is not None, 20,
                   "the issue")
    await hass.config.async_update(time_zone=HA_TEST_ZONE)
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is None, 20,
                   "the issue cleared")


@pytest.mark.parametrize("hour", range(0, 24, 5))
def test_zones_that_differ_only_around_a_dst_change_are_not_the_same(hour: int) -> None:
    """Havana changes at local midnight, New York at 02:00: a few hours a year apart,
    whatever the time of day the check runs."""
    now = datetime(2026, 12, 6, hour, 1, tzinfo=UTC)
    assert not same_offsets(ZoneInfo("America/Havana"), ZoneInfo("America/New_York"), now)
    assert not same_offsets(ZoneInfo("Europe/Chisinau"), ZoneInfo("Europe/Bucharest"), now)
    assert same_offsets(ZoneInfo("US/Pacific"), ZoneInfo("America/Los_Angeles"), now)
    assert same_offsets(ZoneInfo("Etc/UTC"), UTC, now)

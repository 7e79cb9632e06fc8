"""The repairs issue while the meter gives no readings (meter_issue.py), against the real
add-on reading a pty RPICT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker import meter_issue
from custom_components.energy_tracker.const import DOMAIN, ISSUE_NO_READINGS
from tests.addon.ptys import PtyPort

from .conftest import Addon, wait_for
from .test_appliances import setup_entry, start_addon

RPICT_LINE = b"11 500.0 120.0 0.0 21.5\r\n"


@pytest.fixture(autouse=True)
def soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five minutes in the product; a moment here."""
    monkeypatch.setattr(meter_issue, "METER_ISSUE_AFTER", timedelta(seconds=0.5))


@pytest.fixture
async def silent_hat(tmp_path: Path) -> AsyncIterator[tuple[Addon, PtyPort]]:
    """The add-on on a pty RPICT that has sent nothing yet."""
    port = PtyPort(tmp_path / "ttyRPICT")
    port.plug()
    data = tmp_path / "addon"
    data.mkdir()
    addon = Addon(data)
    # Stale 2 s after the last reading: a hat that stops is seen to stop within a test.
    await start_addon(addon, rpict_port=str(port.path), nilm_enabled=False, stale_after_s=2)
    yield addon, port
    await addon.stop()
    port.unplug()


def issue(hass: HomeAssistant, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{ISSUE_NO_READINGS}_{entry.entry_id}")


async def raised_issue(hass: HomeAssistant, entry: MockConfigEntry,
                       timeout: float = 5) -> ir.IssueEntry:
    await wait_for(lambda: issue(hass, entry) is not None, timeout, "the issue")
    raised = issue(hass, entry)
    assert raised is not None
    return raised


def shows_a_reading(hass: HomeAssistant) -> bool:
    """The total power shows RPICT_LINE's 500 W."""
    state = hass.states.get("sensor.energy_tracker_total_power")
    return state is not None and state.state == "500.0"


def rejected_lines(addon: Addon) -> int:
    """The hat's rejected lines as the add-on counts them."""
    return int(addon.service.meter.snapshot()["boards"]["rpict"]["lines_rejected"])


async def test_a_hat_that_sends_nothing_is_a_repairs_issue_until_it_reads(
    hass: HomeAssistant, silent_hat: tuple[Addon, PtyPort]
) -> None:
    """Home Assistant showed the board Connected beside unavailable values; only the
    add-on's log said the port was silent."""
    addon, port = silent_hat
    entry = await setup_entry(hass, addon)
    raised = await raised_issue(hass, entry)
    assert raised.translation_key == "no_readings_nothing_sent"
    assert raised.severity is ir.IssueSeverity.ERROR
    assert raised.translation_placeholders == {"title": "Energy Tracker", "minutes": "0",
                                               "rejected": "0"}
    await port.write(RPICT_LINE)
    await wait_for(lambda: issue(hass, entry) is None, 5, "the issue gone with a reading")


async def test_lines_of_the_wrong_kind_are_said_as_such(
    hass: HomeAssistant, silent_hat: tuple[Addon, PtyPort]
) -> None:
    addon, port = silent_hat
    # The voltage board's frames on the hat's port: the ports are swapped.
    for _ in range(3):
        await port.write(b"$ETM,14,230.4,50.00,000,0*3809\r\n")
    await wait_for(lambda: rejected_lines(addon) == 3, 5, "the lines read and refused")
    entry = await setup_entry(hass, addon)
    raised = await raised_issue(hass, entry)
    assert raised.translation_key == "no_readings_lines_rejected"
    assert raised.translation_placeholders is not None
    assert raised.translation_placeholders["rejected"] == "3"


async def test_a_hat_gone_silent_after_one_noisy_line_is_said_to_send_nothing(
    hass: HomeAssistant, silent_hat: tuple[Addon, PtyPort]
) -> None:
    """The count of rejected lines since the add-on started made a hat that stopped sending
    read as "lines cannot be read (wrong model, baud rate)" after one line garbled by noise
    weeks before (helper 98)."""
    addon, port = silent_hat
    await port.write(RPICT_LINE)
    await port.write(b"11 50\x800.0 120.0 0.0 21.5\r\n")  # one byte garbled on the line
    await port.write(RPICT_LINE)
    entry = await setup_entry(hass, addon)
    await wait_for(lambda: rejected_lines(addon) == 1, 5, "the noisy line counted")
    await wait_for(lambda: shows_a_reading(hass), 5, "a reading shown")
    # Then the hat stops sending; its port stays open.
    raised = await raised_issue(hass, entry, timeout=10)
    assert raised.translation_key == "no_readings_nothing_sent"
    assert raised.translation_placeholders is not None
    assert raised.translation_placeholders["rejected"] == "0"


async def test_readings_that_stop_raise_it_and_a_reload_clears_nothing_wrongly(
    hass: HomeAssistant, silent_hat: tuple[Addon, PtyPort]
) -> None:
    addon, port = silent_hat
    await port.write(RPICT_LINE)
    entry = await setup_entry(hass, addon)
    await wait_for(lambda: shows_a_reading(hass), 5, "a reading shown")
    assert issue(hass, entry) is None
    port.unplug()  # the hat's port goes: values unavailable at once
    raised = await raised_issue(hass, entry)
    assert raised.translation_key == "no_readings_port_closed"
    # Unloading the entry takes its issue with it.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert issue(hass, entry) is None

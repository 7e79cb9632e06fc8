"""The integration on the device registry of Home Assistant 2026.8 and later.

There devices belong to one config entry: `async_get_device_by_identifier(identifier,
config_entry_id)` replaces `async_get_device(identifiers=…)`, `DeviceEntry.config_entry_id`
replaces `config_entries` and device info links a device with `via_device_id` instead of
`via_device` (home-assistant/core 2026.11: helpers/device_registry.py). The tests run on
2025.4, which has none of it, so `newer_registry` adds those calls to it the way 2026.11
defines them, and makes the deprecated ones fail when this integration calls them (2026.11
logs them, 2027.8 removes them). The same tests pass on 2025.4's own registry (the
integration's other tests).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.const import ATTR_ENTITY_ID, SERVICE_TURN_OFF
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_device_automation_capabilities,
    async_get_device_automations,
)

from custom_components.energy_tracker import device_lookup
from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.events import relay_device_identifier

from .boards import Boards, acking_boards_fixture, boards_fixture  # noqa: F401 (fixture)
from .conftest import Addon, device_with, wait_for
from .test_switch import relay_entity

OURS = "custom_components/energy_tracker/"


def _called_by_us() -> bool:
    return OURS in sys._getframe(2).f_code.co_filename


@pytest.fixture
def newer_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """2026.8's device registry calls on 2025.4's registry; yields the deprecated calls
    the integration made (each also fails where it was made)."""
    deprecated: list[str] = []
    if device_lookup.ONE_ENTRY_DEVICES:  # the real thing (2026.8 on), which reports itself
        yield deprecated
        return

    def report(what: str) -> None:
        deprecated.append(what)
        raise AssertionError(f"deprecated since Home Assistant 2026.8: {what}")

    get_device = dr.DeviceRegistry.async_get_device

    def async_get_device(self: dr.DeviceRegistry, *args: Any, **kwargs: Any) -> Any:
        if _called_by_us():
            report("async_get_device")
        return get_device(self, *args, **kwargs)

    def async_get_device_by_identifier(self: dr.DeviceRegistry, identifier: tuple[str, str],
                                       config_entry_id: str) -> dr.DeviceEntry | None:
        device = get_device(self, identifiers={identifier})
        return device if device is not None and config_entry_id in device.config_entries \
            else None

    get_or_create = dr.DeviceRegistry.async_get_or_create

    def async_get_or_create(self: dr.DeviceRegistry, **kwargs: Any) -> dr.DeviceEntry:
        if "via_device" in kwargs and "via_device_id" in kwargs:
            raise dr.DeviceInfoError(str(kwargs.get("identifiers")), kwargs,
                                     "both via_device and via_device_id")
        # The entity platform passes the entity's device info on: whose it is shows in
        # its identifiers, not on the stack.
        if "via_device" in kwargs and any(
                identifier[0] == DOMAIN for identifier in kwargs.get("identifiers", ())):
            report("DeviceInfo(via_device=...)")
        via_device_id = kwargs.pop("via_device_id", None)
        device = get_or_create(self, **kwargs)
        if via_device_id is not None:
            assert via_device_id in self.devices, "via_device_id must be a device's id"
            device = self.async_update_device(device.id, via_device_id=via_device_id) or device
        return device

    entries_field = dr.DeviceEntry.__dict__["config_entries"]  # the attrs slot

    def config_entries(self: dr.DeviceEntry) -> set[str]:
        if _called_by_us():
            report("DeviceEntry.config_entries")
        return entries_field.__get__(self)  # type: ignore[no-any-return]

    def config_entry_id(self: dr.DeviceEntry) -> str:
        entries = entries_field.__get__(self)
        assert len(entries) == 1, "a device of one config entry"
        return next(iter(entries))  # type: ignore[no-any-return]

    monkeypatch.setattr(dr.DeviceRegistry, "async_get_device", async_get_device)
    monkeypatch.setattr(dr.DeviceRegistry, "async_get_device_by_identifier",
                        async_get_device_by_identifier, raising=False)
    monkeypatch.setattr(dr.DeviceRegistry, "async_get_or_create", async_get_or_create)
    monkeypatch.setattr(dr.DeviceEntry, "config_entries",
                        property(config_entries, entries_field.__set__))
    monkeypatch.setattr(dr.DeviceEntry, "config_entry_id", property(config_entry_id),
                        raising=False)
    monkeypatch.setattr(device_lookup, "ONE_ENTRY_DEVICES", True)
    yield deprecated
    assert deprecated == []


async def test_devices_hang_off_the_meter_by_its_device_id(
    hass: HomeAssistant, newer_registry: list[str], addon: Addon,
    loaded_entry: MockConfigEntry, device_registry: dr.DeviceRegistry,
) -> None:
    meter = device_with(device_registry, (DOMAIN, addon.meter_id))
    assert meter is not None
    devices = dr.async_entries_for_config_entry(device_registry, loaded_entry.entry_id)
    linked = [device for device in devices if device.id != meter.id]
    relays = (await addon.get("relays"))["relays"]
    assert len(linked) >= len((await addon.get("info"))["boards"]) + len(relays)
    assert {device.via_device_id for device in linked} == {meter.id}


async def test_shed_load_by_device_and_relay_events_find_their_devices(
    hass: HomeAssistant, newer_registry: list[str], acking_boards: Boards, addon: Addon,
    loaded_entry: MockConfigEntry, device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    meter = device_with(device_registry, (DOMAIN, addon.meter_id))
    relay = device_with(device_registry, relay_device_identifier(addon.meter_id, 1))
    assert meter is not None
    assert relay is not None
    device_registry.async_update_device(relay.id, name_by_user="Boiler")
    events: list[dict[str, Any]] = []
    hass.bus.async_listen("energy_tracker_event", callback(lambda e: events.append(dict(e.data))))

    await hass.services.async_call("switch", SERVICE_TURN_OFF, {
        ATTR_ENTITY_ID: relay_entity(entity_registry, addon, 1)}, blocking=True)
    await wait_for(lambda: any(e.get("relay_id") == 1 for e in events), 10, "relay event")
    finished = next(e for e in events if e.get("relay_id") == 1)
    assert (finished["relay_device_id"], finished["name"], finished["device_id"]) == (
        relay.id, "Boiler", meter.id)

    report = await hass.services.async_call(
        DOMAIN, "restore_load", {"device_id": meter.id}, blocking=True, return_response=True)
    assert report is not None
    assert report["failed"] == []
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, meter.id)
    assert {"appliance_started", "power_above"} <= {t["type"] for t in triggers
                                                     if t["domain"] == DOMAIN}
    # The appliance choices name detected appliances as their devices are called.
    assert loaded_entry.runtime_data.data.appliances
    started = next(t for t in triggers if t["type"] == "appliance_started")
    capabilities = await async_get_device_automation_capabilities(
        hass, DeviceAutomationType.TRIGGER, started)
    [field] = capabilities["extra_fields"]
    assert any(label.endswith("(detected)") for _, label in field["options"])

"""Device registry calls that work on the Home Assistant the tests run (2025.4) and on the
releases whose devices belong to a single config entry (2026.8 on). There the older calls
log a deprecation and later stop working:

* `async_get_device(identifiers=…)` → `async_get_device_by_identifier(identifier,
  config_entry_id)` (removed in 2027.8);
* `DeviceEntry.config_entries` → `config_entry_id` (reported from 2026.10);
* `DeviceInfo(via_device=…)` → `via_device_id` (removed in 2027.8; an entity platform's
  report of it may find no integration on the stack, which raises instead of logging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo

from .const import DOMAIN

if TYPE_CHECKING:
    from .coordinator import EnergyTrackerCoordinator

# Both arrived together (home-assistant/core, "devices are restricted to a single config
# entry", 2026.8).
ONE_ENTRY_DEVICES: Final = hasattr(dr.DeviceRegistry, "async_get_device_by_identifier")


def device_by_identifier(hass: HomeAssistant, identifier: tuple[str, str],
                         entry_id: str) -> dr.DeviceEntry | None:
    """The entry's device with this identifier."""
    registry = dr.async_get(hass)
    by_identifier: Callable[[tuple[str, str], str], dr.DeviceEntry | None] | None = getattr(
        registry, "async_get_device_by_identifier", None)
    if by_identifier is not None:
        return by_identifier(identifier, entry_id)
    return registry.async_get_device(identifiers={identifier})


def device_names(hass: HomeAssistant, identifier: tuple[str, str], entry_id: str
                 ) -> list[str]:
    """How the entry's device is called in Home Assistant: the user's name for it, then
    its own (translated) name; none without the device."""
    device = device_by_identifier(hass, identifier, entry_id)
    return [] if device is None else [name for name in (device.name_by_user, device.name)
                                      if name]


def device_entry_ids(device: dr.DeviceEntry) -> set[str]:
    """The config entries the device belongs to (one from 2026.8)."""
    entry_id: str | None = getattr(device, "config_entry_id", None)
    return {entry_id} if entry_id is not None else set(device.config_entries)


def linked_to_meter(device_info: DeviceInfo,
                    coordinator: EnergyTrackerCoordinator) -> DeviceInfo:
    """`device_info` of a device reached through the meter (a board, relay, appliance)."""
    if ONE_ENTRY_DEVICES and coordinator.meter_device_id is not None:
        device_info["via_device_id"] = coordinator.meter_device_id  # type: ignore[typeddict-unknown-key]
    else:
        device_info["via_device"] = (DOMAIN, coordinator.info.meter_id)
    return device_info

"""The devices the add-on serves right now; any other device of the entry is stale.

Stale devices are not removed automatically: an appliance disappears while the add-on runs
without a working model bundle, and its device (name, area, Energy dashboard entry) must
survive that. The user deletes what is really gone (an extra meter taken out of the
add-on's options, a relay removed) from the device page.
"""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceEntry

from .appliance_entity import appliance_device_identifier, device_appliance_id
from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator
from .entity import board_device_identifier
from .events import relay_device_identifier


def served_device_identifiers(coordinator: EnergyTrackerCoordinator) -> set[tuple[str, str]]:
    """Identifiers of the meter, its boards, relays, detected appliances and extra meters."""
    info, state = coordinator.info, coordinator.data
    meter_id = info.meter_id
    served = {(DOMAIN, meter_id)}
    served |= {board_device_identifier(meter_id, board.id) for board in info.boards}
    served |= {relay_device_identifier(meter_id, relay_id) for relay_id in state.relays}
    served |= {appliance_device_identifier(meter_id, appliance_id)
               for appliance_id in state.appliances or {}}
    served |= {(DOMAIN, meter.meter_id) for meter in state.extra_meters.values()}
    return served


def is_stale(coordinator: EnergyTrackerCoordinator, device: DeviceEntry) -> bool:
    """True when the add-on no longer serves this device.

    While the add-on's detection is off (no working bundle) nobody knows which appliances
    exist: their devices count as served.
    """
    if coordinator.data.appliances is None \
            and device_appliance_id(coordinator.info.meter_id, device) is not None:
        return False
    return not device.identifiers & served_device_identifiers(coordinator)

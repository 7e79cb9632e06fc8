"""Base entity: unique ids and device registry entries shared by every platform."""

from __future__ import annotations

from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import State
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import EnergyTrackerCoordinator
from .device_lookup import linked_to_meter
from .models import BoardInfo, MeterInfo

# Counters are recorded to the Wh (and the gram): every finer step would be one more
# recorder row (each reading, every 2 s), and the Energy dashboard sums hours.
COUNTER_DECIMALS = 3


def counter(value: float | None) -> float | None:
    """A kWh or kg counter at its recorded resolution (rounding keeps it increasing)."""
    return None if value is None else round(value, COUNTER_DECIMALS)


def state_number(state: State | None) -> float | None:
    """Another entity's state as a number; None when unavailable, unknown, gone or text."""
    if state is None or state.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
        return None
    try:
        return float(state.state)
    except ValueError:
        return None


# Boards the add-on documents get translated device names; others keep their id.
KNOWN_BOARDS = {"rpict": "LeChacal", "voltage": "Energy Tracker"}  # the latter: our firmware
# The add-on's model ids as their makers write them ("rpict3t1" is LeChacal's RPICT3T1).
BOARD_MODELS = {"esp8266-zmpt101b": "ESP8266 + ZMPT101B"}


def board_model(model: str | None) -> str | None:
    if model is None:
        return None
    return BOARD_MODELS.get(model, model.upper() if model.startswith("rpict") else model)


def meter_device_info(info: MeterInfo) -> DeviceInfo:
    """The meter: the main device, one per add-on."""
    return DeviceInfo(
        identifiers={(DOMAIN, info.meter_id)},
        name=info.name,
        manufacturer="Energy Tracker",
        model="Simulated meter" if info.source == "simulated" else "Energy Tracker add-on",
        sw_version=info.version,
    )


def board_device_identifier(meter_id: str, board_id: str) -> tuple[str, str]:
    """Device registry identifier of a serial board's device."""
    return (DOMAIN, f"{meter_id}_{board_id}")


def board_device_info(coordinator: EnergyTrackerCoordinator, board: BoardInfo) -> DeviceInfo:
    """A serial board, reached through the meter."""
    device_info = linked_to_meter(DeviceInfo(
        identifiers={board_device_identifier(coordinator.info.meter_id, board.id)},
        model=board_model(board.model),
        sw_version=board.fw_version,
    ), coordinator)
    if board.id in KNOWN_BOARDS:
        device_info["translation_key"] = f"board_{board.id}"
        device_info["manufacturer"] = KNOWN_BOARDS[board.id]
    else:
        device_info["name"] = board.id
    return device_info


class EnergyTrackerEntity(CoordinatorEntity[EnergyTrackerCoordinator]):
    """An entity of the meter device, or of one of its boards."""

    _attr_has_entity_name = True

    def __init__(
        self, coordinator: EnergyTrackerCoordinator, key: str, board: BoardInfo | None = None
    ) -> None:
        """Derive the unique id from the meter id, so it survives host/port changes."""
        super().__init__(coordinator)
        info = coordinator.info
        if board is None:
            self._attr_unique_id = f"{info.meter_id}_{key}"
            self._attr_device_info = meter_device_info(info)
        else:
            self._attr_unique_id = f"{info.meter_id}_{board.id}_{key}"
            self._attr_device_info = board_device_info(coordinator, board)

"""Appliances the add-on detects by NILM (nilm_models.py): one device each, with its power,
energy and running sensors (description tables below; sensor.py and binary_sensor.py add
them with one line each).

The appliances come from the state; while the add-on's detection is off (`appliances`
null: no or broken models) the devices already known from the registry keep their
entities, unavailable rather than 0. Appliances appearing later (the add-on got a working
bundle) get their entities then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import UnitOfEnergy, UnitOfPower
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity

from .const import DOMAIN
from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .device_lookup import linked_to_meter
from .entity import EnergyTrackerEntity, counter
from .never_backwards import NeverBackwards
from .nilm_models import ApplianceState

APPLIANCE_PREFIX: Final = "appliance_"
# The shipped bundle's appliances (the add-on's ids) have names in the user's language
# (strings.json "device": appliance_<id>); another bundle's keep the add-on's name.
TRANSLATED_APPLIANCES: Final = frozenset({
    "kettle", "fridge", "microwave", "washing_machine", "dishwasher",
    "kitchen", "laundry", "water_heater_ac",
})


def appliance_device_identifier(meter_id: str, appliance_id: str) -> tuple[str, str]:
    """Device registry identifier of a detected appliance."""
    return (DOMAIN, f"{meter_id}_{APPLIANCE_PREFIX}{appliance_id}")


def nilm_appliance(appliance_id: str) -> str:
    """The `appliance` key of a detected appliance in events and device triggers."""
    return f"nilm_{appliance_id}"


@dataclass(frozen=True, kw_only=True)
class ApplianceSensorDescription(SensorEntityDescription):
    value_fn: Callable[[ApplianceState], float | None]


@dataclass(frozen=True, kw_only=True)
class ApplianceBinarySensorDescription(BinarySensorEntityDescription):
    value_fn: Callable[[ApplianceState], bool | None]


APPLIANCE_SENSORS: tuple[ApplianceSensorDescription, ...] = (
    ApplianceSensorDescription(
        key="power",
        translation_key="appliance_power",
        native_unit_of_measurement=UnitOfPower.WATT,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda a: a.power_w,
    ),
    ApplianceSensorDescription(
        # total_increasing kWh: the Energy dashboard offers it as an individual device.
        key="energy",
        translation_key="appliance_energy",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda a: counter(a.energy_kwh),
    ),
)
APPLIANCE_BINARY_SENSORS: tuple[ApplianceBinarySensorDescription, ...] = (
    ApplianceBinarySensorDescription(
        key="running",
        translation_key="appliance_running",
        device_class=BinarySensorDeviceClass.RUNNING,
        value_fn=lambda a: a.running,
    ),
)


def device_appliance_id(meter_id: str, device: dr.DeviceEntry) -> str | None:
    """The appliance id of a detected appliance's device of this meter, else None."""
    prefix = f"{meter_id}_{APPLIANCE_PREFIX}"
    for domain, identifier in device.identifiers:
        if domain == DOMAIN and identifier.startswith(prefix):
            return identifier.removeprefix(prefix)
    return None


def known_appliances(hass: HomeAssistant, entry: EnergyTrackerConfigEntry) -> dict[str, str]:
    """Appliance ids → names: from the state, or (detection off) from the device registry."""
    coordinator = entry.runtime_data
    if (appliances := coordinator.data.appliances) is not None:
        return {a.id: a.name for a in appliances.values()}
    meter_id = coordinator.info.meter_id
    known = {}
    for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id):
        if (key := device_appliance_id(meter_id, device)) is not None:
            known[key] = device.name or appliance_device_identifier(meter_id, key)[1]
    return known


@callback
def async_add_appliance_entities[E: Entity](
    hass: HomeAssistant,
    entry: EnergyTrackerConfigEntry,
    add: Callable[[Iterable[E]], None],
    create: Callable[[str, str], Iterable[E]],
) -> None:
    """Add `create(id, name)`'s entities for each appliance now and for new ones later."""
    added: set[str] = set()

    @callback
    def _add_new(appliances: dict[str, str]) -> None:
        new = {key: name for key, name in appliances.items() if key not in added}
        added.update(new)
        if new:
            add([entity for key, name in new.items() for entity in create(key, name)])

    _add_new(known_appliances(hass, entry))
    coordinator = entry.runtime_data

    @callback
    def _on_state() -> None:
        if coordinator.last_update_success and coordinator.data.appliances is not None:
            _add_new({a.id: a.name for a in coordinator.data.appliances.values()})

    entry.async_on_unload(coordinator.async_add_listener(_on_state))


def appliance_sensors(hass: HomeAssistant, entry: EnergyTrackerConfigEntry,
                      add: Callable[[Iterable[SensorEntity]], None]) -> None:
    """sensor.py's hook: power and energy of every detected appliance."""
    coordinator = entry.runtime_data
    async_add_appliance_entities(hass, entry, add, lambda key, name: [
        ApplianceSensor(coordinator, key, name, description) for description in APPLIANCE_SENSORS
    ])


def appliance_binary_sensors(hass: HomeAssistant, entry: EnergyTrackerConfigEntry,
                             add: Callable[[Iterable[BinarySensorEntity]], None]) -> None:
    """binary_sensor.py's hook: whether each detected appliance runs."""
    coordinator = entry.runtime_data
    async_add_appliance_entities(hass, entry, add, lambda key, name: [
        ApplianceBinarySensor(coordinator, key, name, description)
        for description in APPLIANCE_BINARY_SENSORS
    ])


class ApplianceEntity(EnergyTrackerEntity):
    """An entity of one detected appliance's device."""

    def __init__(self, coordinator: EnergyTrackerCoordinator, appliance_id: str, name: str,
                 key: str) -> None:
        """Attach the entity to the appliance's device (named after it, like a relay's)."""
        super().__init__(coordinator, f"{APPLIANCE_PREFIX}{appliance_id}_{key}")
        self._appliance_id = appliance_id
        device = DeviceInfo(
            identifiers={appliance_device_identifier(coordinator.info.meter_id, appliance_id)},
            manufacturer="Energy Tracker",
            model="Detected appliance (NILM estimate)",
        )
        if appliance_id in TRANSLATED_APPLIANCES:
            device["translation_key"] = f"appliance_{appliance_id}"
        else:
            device["name"] = name
        self._attr_device_info = linked_to_meter(device, coordinator)

    @property
    def appliance(self) -> ApplianceState | None:
        appliances = self.coordinator.data.appliances
        return None if appliances is None else appliances.get(self._appliance_id)


class ApplianceSensor(NeverBackwards, ApplianceEntity, SensorEntity):
    """Power or energy of one detected appliance."""

    entity_description: ApplianceSensorDescription

    def __init__(self, coordinator: EnergyTrackerCoordinator, appliance_id: str, name: str,
                 description: ApplianceSensorDescription) -> None:
        """One figure of the appliance."""
        super().__init__(coordinator, appliance_id, name, description.key)
        self.entity_description = description
        self._track_counter(description.key)

    @property
    def available(self) -> bool:
        """Detection off, warming up or stale: unavailable, never 0."""
        return super().available and self.native_value is not None

    @property
    def native_value(self) -> float | None:
        """The add-on's estimate."""
        appliance = self.appliance
        return None if appliance is None else self._shown(
            self.entity_description.value_fn(appliance))


class ApplianceBinarySensor(ApplianceEntity, BinarySensorEntity):
    """On while the add-on detects the appliance running."""

    entity_description: ApplianceBinarySensorDescription

    def __init__(self, coordinator: EnergyTrackerCoordinator, appliance_id: str, name: str,
                 description: ApplianceBinarySensorDescription) -> None:
        """The appliance's running state."""
        super().__init__(coordinator, appliance_id, name, description.key)
        self.entity_description = description

    @property
    def available(self) -> bool:
        """Unknown while detection is off or has no current estimate."""
        return super().available and self.is_on is not None

    @property
    def is_on(self) -> bool | None:
        """Whether the appliance runs."""
        appliance = self.appliance
        return None if appliance is None else self.entity_description.value_fn(appliance)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Since when it runs (none while it is off: "Since: unknown" told nothing)."""
        appliance = self.appliance
        if appliance is None or appliance.since is None:
            return None
        return {"since": appliance.since}

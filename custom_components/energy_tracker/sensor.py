"""Sensors of the meter, its CT channels and its boards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import (
    EntityCategory,
    Platform,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfMass,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfVolume,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .appliance_entity import appliance_sensors
from .const import CONF_CHANNELS, DOMAIN, LOGGER
from .coordinator import EnergyTrackerConfigEntry, EnergyTrackerCoordinator
from .entity import EnergyTrackerEntity, counter
from .forecast_sensor import forecast_sensors
from .meter_sensor import meter_sensors, remove_unused_comparison
from .models import BoardInfo, BoardState, ChannelInfo, ChannelState, MeterInfo, MeterState
from .never_backwards import NeverBackwards
from .recommendations import recommendation_texts
from .status_sensor import status_sensors

# Pushed entities: no polling, so no update concurrency to limit.
PARALLEL_UPDATES = 0

type SensorValue = float | int | str | datetime | None


@dataclass(frozen=True, kw_only=True)
class MeterSensorDescription(SensorEntityDescription):
    """A value of the whole meter."""

    value_fn: Callable[[MeterState], SensorValue]
    # The state and Home Assistant's language.
    # (state, Home Assistant's language, the shown name of an add-on name) -> attributes
    attrs_fn: Callable[[MeterState, str, Callable[[str], str]], dict[str, Any]] | None = None
    # False: nothing of this meter measures it, so it is created disabled (unavailable
    # for ever otherwise); the user may still enable it.
    measured_fn: Callable[[MeterInfo], bool] = lambda _: True


# What the add-on's hats print besides power (its protocol.py _RPICT_LAYOUTS).
HATS_WITHOUT_VOLTAGE: Final = frozenset({"rpict3t1", "rpict8"})
HATS_WITHOUT_TEMPERATURE: Final = frozenset({"rpict3v1", "rpict4v3", "rpict7v1", "rpict8"})


def _has_voltage_board(info: MeterInfo) -> bool:
    return any(board.id == "voltage" for board in info.boards)


def _hat_model(info: MeterInfo) -> str | None:
    return next((board.model for board in info.boards if board.id == "rpict"), None)


@dataclass(frozen=True, kw_only=True)
class ChannelSensorDescription(SensorEntityDescription):
    """A value of one CT channel; the key is appended to `channel_<id>_`."""

    value_fn: Callable[[ChannelState], SensorValue]


@dataclass(frozen=True, kw_only=True)
class BoardSensorDescription(SensorEntityDescription):
    """Link health of one serial board."""

    value_fn: Callable[[BoardState], SensorValue]
    exists_fn: Callable[[BoardState], bool] = lambda _: True


METER_SENSORS: tuple[MeterSensorDescription, ...] = (
    MeterSensorDescription(
        key="total_power",
        translation_key="total_power",
        native_unit_of_measurement=UnitOfPower.WATT,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda s: s.total_power_w,
    ),
    MeterSensorDescription(
        key="total_energy",
        translation_key="total_energy",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda s: counter(s.total_energy_kwh),
    ),
    MeterSensorDescription(
        key="voltage",
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        device_class=SensorDeviceClass.VOLTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda s: s.voltage_v,
        measured_fn=lambda info: _has_voltage_board(info)
        or _hat_model(info) not in HATS_WITHOUT_VOLTAGE,
    ),
    MeterSensorDescription(
        key="frequency",
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        device_class=SensorDeviceClass.FREQUENCY,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda s: s.frequency_hz,
        measured_fn=_has_voltage_board,
    ),
    MeterSensorDescription(
        key="power_factor",
        device_class=SensorDeviceClass.POWER_FACTOR,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda s: s.power_factor,
        # Only hats with a voltage input measure it (a voltage board does not: the
        # RPICT3T1's powers are Irms x an estimated voltage).
        measured_fn=lambda info: _hat_model(info) not in HATS_WITHOUT_VOLTAGE,
    ),
    MeterSensorDescription(
        key="temperature",
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda s: s.temperature_c,
        measured_fn=lambda info: _hat_model(info) not in HATS_WITHOUT_TEMPERATURE,
    ),
    # Analytics (docs/api.md, "Analytics"); None from an add-on without them.
    MeterSensorDescription(
        key="gas",
        translation_key="gas",
        native_unit_of_measurement=UnitOfVolume.CUBIC_METERS,
        device_class=SensorDeviceClass.GAS,
        state_class=SensorStateClass.TOTAL_INCREASING,  # an Energy dashboard gas source
        suggested_display_precision=2,
        value_fn=lambda s: s.analytics.gas_m3,
        measured_fn=_has_voltage_board,  # its pulse input
    ),
    MeterSensorDescription(
        key="rolling_power",
        translation_key="rolling_power",
        native_unit_of_measurement=UnitOfPower.WATT,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda s: s.analytics.rolling_power_w,
    ),
    MeterSensorDescription(
        key="energy_today",
        translation_key="energy_today",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,  # back to 0 at local midnight
        suggested_display_precision=2,
        value_fn=lambda s: counter(s.analytics.energy_today_kwh),
    ),
    MeterSensorDescription(
        key="co2_today",
        translation_key="co2_today",
        native_unit_of_measurement=UnitOfMass.KILOGRAMS,
        device_class=SensorDeviceClass.WEIGHT,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=2,
        value_fn=lambda s: counter(s.analytics.co2_kg_today),
        attrs_fn=lambda s, language, shown_name: {
            "co2_g_per_kwh": s.analytics.co2_g_per_kwh,
            "recommendations": recommendation_texts(s.analytics.recommendations, language,
                                                    shown_name),
        },
    ),
)

CHANNEL_SENSORS: tuple[ChannelSensorDescription, ...] = (
    ChannelSensorDescription(
        key="power",
        translation_key="channel_power",
        native_unit_of_measurement=UnitOfPower.WATT,
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda c: c.power_w,
    ),
    ChannelSensorDescription(
        key="current",
        translation_key="channel_current",
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        device_class=SensorDeviceClass.CURRENT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda c: c.current_a,
    ),
    ChannelSensorDescription(
        key="energy",
        translation_key="channel_energy",
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda c: counter(c.energy_kwh),
    ),
    ChannelSensorDescription(
        key="power_factor",
        translation_key="channel_power_factor",
        device_class=SensorDeviceClass.POWER_FACTOR,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_registry_enabled_default=False,
        value_fn=lambda c: c.power_factor,
    ),
)

# The voltage board's hello `reset` values (docs/protocol.md 2.1); others read "unknown".
BOOT_CAUSES = ("power_on", "external", "software", "hw_watchdog", "soft_watchdog",
               "exception", "deep_sleep", "unknown")

BOARD_SENSORS: tuple[BoardSensorDescription, ...] = (
    BoardSensorDescription(
        key="lines_rejected",
        translation_key="lines_rejected",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda b: b.lines_rejected,
    ),
    BoardSensorDescription(
        key="lines_ok",
        translation_key="lines_ok",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        # Changes with every reading: recorded only when the user wants it.
        entity_registry_enabled_default=False,
        value_fn=lambda b: b.lines_ok,
    ),
    BoardSensorDescription(
        key="frames_lost",
        translation_key="frames_lost",
        state_class=SensorStateClass.TOTAL_INCREASING,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda b: b.frames_lost,
        # Only the voltage board numbers its frames.
        exists_fn=lambda b: b.frames_lost is not None,
    ),
    BoardSensorDescription(
        key="boot_cause",
        translation_key="boot_cause",
        device_class=SensorDeviceClass.ENUM,
        options=list(BOOT_CAUSES),
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda b: None if b.boot_cause is None else (
            b.boot_cause if b.boot_cause in BOOT_CAUSES else "unknown"),
        # The voltage board's hello says it (firmware 1.4.0 on; unavailable before).
        exists_fn=lambda b: b.frames_lost is not None,
    ),
    BoardSensorDescription(
        key="last_frame",
        translation_key="last_frame",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda b: dt_util.parse_datetime(b.last_frame) if b.last_frame else None,
    ),
)


def shown_channels(entry: EnergyTrackerConfigEntry) -> list[ChannelInfo]:
    """The channels the user chose in the options (all of them by default)."""
    channels = entry.runtime_data.info.channels
    chosen = entry.options.get(CONF_CHANNELS)
    if chosen is None:
        return list(channels)
    return [channel for channel in channels if str(channel.id) in chosen]


async def async_setup_entry(
    hass: HomeAssistant,
    entry: EnergyTrackerConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the sensors the add-on's info describes."""
    coordinator = entry.runtime_data
    channels = shown_channels(entry)
    _remove_hidden_channel_entities(
        hass, entry, {channel.id for channel in coordinator.info.channels} - {
            channel.id for channel in channels})
    _enable_measured(hass, coordinator)
    first_state = coordinator.data
    entities: list[SensorEntity] = [
        MeterSensor(coordinator, description) for description in METER_SENSORS
    ]
    entities.extend(
        ChannelSensor(coordinator, description, channel)
        for channel in channels
        for description in CHANNEL_SENSORS
    )
    entities.extend(
        BoardSensor(coordinator, description, board)
        for board in coordinator.info.boards
        for description in BOARD_SENSORS
        if (board_state := first_state.boards.get(board.id)) is None
        or description.exists_fn(board_state)
    )
    entities.extend(forecast_sensors(coordinator))
    entities.extend(status_sensors(coordinator))
    entities.extend(meter_sensors(coordinator))
    remove_unused_comparison(hass, coordinator)
    async_add_entities(entities)
    appliance_sensors(hass, entry, async_add_entities)


@callback
def _enable_measured(hass: HomeAssistant, coordinator: EnergyTrackerCoordinator) -> None:
    """Enable what was created disabled for lack of its board and is measured now (a
    voltage board plugged in later brings voltage, frequency and the gas meter). What the
    user disabled stays so."""
    registry = er.async_get(hass)
    for description in METER_SENSORS:
        if not description.measured_fn(coordinator.info):
            continue
        entity_id = registry.async_get_entity_id(
            Platform.SENSOR, DOMAIN, f"{coordinator.info.meter_id}_{description.key}")
        if (entity_id is not None and (entry := registry.async_get(entity_id)) is not None
                and entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION):
            LOGGER.info("%s is measured now: enabled", entity_id)
            registry.async_update_entity(entity_id, disabled_by=None)


@callback
def _remove_hidden_channel_entities(
    hass: HomeAssistant, entry: EnergyTrackerConfigEntry, hidden: set[int]
) -> None:
    """Drop registry entries of channels the user took out in the options (otherwise they
    would linger as unavailable entities). A channel the add-on stopped serving keeps its
    entries, unavailable: its entity ids, names and areas come back with it, and nobody
    else's channel takes its entity id meanwhile.
    """
    registry = er.async_get(hass)
    prefix = f"{entry.runtime_data.info.meter_id}_channel_"
    for registry_entry in er.async_entries_for_config_entry(registry, entry.entry_id):
        if not registry_entry.unique_id.startswith(prefix):
            continue
        channel_id = registry_entry.unique_id.removeprefix(prefix).split("_", 1)[0]
        if channel_id.isdigit() and int(channel_id) in hidden:
            registry.async_remove(registry_entry.entity_id)


class EnergyTrackerSensor(EnergyTrackerEntity, SensorEntity):
    """Available only while connected and while the add-on knows the value."""

    @property
    def available(self) -> bool:
        """A null from the add-on means unknown right now: unavailable, never 0."""
        return super().available and self.native_value is not None


class MeterSensor(NeverBackwards, EnergyTrackerSensor):
    """A whole-meter value."""

    entity_description: MeterSensorDescription
    # Sentences with live figures: a new attributes row at nearly every reading.
    _unrecorded_attributes = frozenset({"recommendations"})

    def __init__(
        self, coordinator: EnergyTrackerCoordinator, description: MeterSensorDescription
    ) -> None:
        """Attach the sensor to the meter device."""
        super().__init__(coordinator, description.key)
        self.entity_description = description
        self._track_counter(description.key)
        if not description.measured_fn(coordinator.info):
            self._attr_entity_registry_enabled_default = False

    @property
    def native_value(self) -> SensorValue:
        """The current value from the last state."""
        value = self.entity_description.value_fn(self.coordinator.data)
        return self._shown(value)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Context some values carry (the CO2 sensor's recommendations)."""
        attrs_fn = self.entity_description.attrs_fn
        return None if attrs_fn is None else attrs_fn(
            self.coordinator.data, self.hass.config.language, self.coordinator.shown_name)


class ChannelSensor(NeverBackwards, EnergyTrackerSensor):
    """A value of one CT channel, named after the channel in the add-on."""

    entity_description: ChannelSensorDescription

    def __init__(
        self,
        coordinator: EnergyTrackerCoordinator,
        description: ChannelSensorDescription,
        channel: ChannelInfo,
    ) -> None:
        """Attach the sensor to the meter device."""
        super().__init__(coordinator, f"channel_{channel.id}_{description.key}")
        self.entity_description = description
        self._channel_id = channel.id
        self._attr_translation_placeholders = {"channel": coordinator.shown_name(channel.name)}
        self._track_counter(description.key)

    @property
    def native_value(self) -> SensorValue:
        """The value, or None when the channel is not in the last state."""
        channel = self.coordinator.data.channels.get(self._channel_id)
        value = None if channel is None else self.entity_description.value_fn(channel)
        return self._shown(value)


class BoardSensor(EnergyTrackerSensor):
    """A link-health value of one board."""

    entity_description: BoardSensorDescription

    def __init__(
        self,
        coordinator: EnergyTrackerCoordinator,
        description: BoardSensorDescription,
        board: BoardInfo,
    ) -> None:
        """Attach the sensor to the board's device."""
        super().__init__(coordinator, description.key, board)
        self.entity_description = description
        self._board_id = board.id

    @property
    def native_value(self) -> SensorValue:
        """The value, or None when the board is not in the last state."""
        board = self.coordinator.data.boards.get(self._board_id)
        return None if board is None else self.entity_description.value_fn(board)

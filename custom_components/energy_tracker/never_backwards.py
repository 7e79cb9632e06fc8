"""Lifetime counters (energy, gas) that never go below a value Home Assistant showed.

The add-on's counters never go backwards, unless its data folder goes back in time: an
older add-on backup restored on its own, or its counter files lost. Home Assistant's
statistics read a total_increasing sensor that drops by more than 10 % as a new meter
(counting the whole value again) and a smaller drop as negative energy. So each such
sensor keeps, across restarts, the add-on's last value and an offset: a drop adds to the
offset, and the sensor goes on from the value it showed (the energy of the lost interval
is lost, never counted twice or negative).

What is restored must be this sensor's: an entity id is taken again by a new meter after
the entry of a reinstalled add-on was deleted, and that meter starting from 0 under the old
one's memory (or its recorded states) read as a new meter plus the old meter's lifetime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from homeassistant.components.recorder.history import get_last_state_changes
from homeassistant.components.sensor.const import UNIT_CONVERTERS
from homeassistant.core import State
from homeassistant.helpers.recorder import get_instance
from homeassistant.helpers.restore_state import ExtraStoredData, RestoreEntity

from .const import LOGGER
from .entity import COUNTER_DECIMALS

# Description keys of the lifetime counters (not "energy today", which restarts daily).
LIFETIME_COUNTER_KEYS: Final = frozenset({"total_energy", "energy", "gas"})
RECORDED_STATES_READ: Final = 10


@dataclass
class CounterMemory(ExtraStoredData):
    """What a counter sensor keeps across Home Assistant restarts."""

    offset: float = 0.0
    last_raw: float | None = None
    last_shown: float | None = None  # rounding must not step below it either
    unique_id: str | None = None  # whose memory (None: kept by integration < 0.2.20)

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "last_raw": self.last_raw,
                "last_shown": self.last_shown, "unique_id": self.unique_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CounterMemory:
        offset, last_raw = data.get("offset"), data.get("last_raw")
        last_shown, unique_id = data.get("last_shown"), data.get("unique_id")
        return cls(float(offset) if isinstance(offset, int | float) else 0.0,
                   float(last_raw) if isinstance(last_raw, int | float) else None,
                   float(last_shown) if isinstance(last_shown, int | float) else None,
                   unique_id if isinstance(unique_id, str) else None)


class NeverBackwards(RestoreEntity):
    """Mixed into a sensor whose `native_value` passes its counter through `_shown`."""

    _memory: CounterMemory | None = None  # None: not a lifetime counter
    # Home Assistant writes a new entity's state once before async_added_to_hass (its
    # display precision stored in the registry): the add-on's raw counter without the
    # offset, a drop the statistics counted as a new meter.
    _memory_restored = False

    def _track_counter(self, key: str) -> None:
        if key in LIFETIME_COUNTER_KEYS:
            self._memory = CounterMemory()

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        if self._memory is None:
            return
        stored = await self.async_get_last_extra_data()
        restored = CounterMemory.from_dict(stored.as_dict()) if stored else None
        if restored is not None and restored.unique_id not in (None, self.unique_id):
            restored = None  # another meter's sensor had this entity id
        if restored is not None:
            self._memory = restored
        elif (last := self._last_shown_number(self._own(await self.async_get_last_state()))
              ) is not None:
            # Shown by a version that kept no memory (integration < 0.2.10, unrounded):
            # going on from it, the first rounded value dipped (a counter under 5 Wh then
            # read as a new meter in the statistics).
            self._memory = CounterMemory(last_raw=last, last_shown=last)
        recorded = await self._last_recorded_number()
        memory = self._memory
        if recorded is not None and (memory.last_shown is None or recorded > memory.last_shown):
            # HA writes the memory above every 15 minutes and at a clean stop; a power cut
            # of the host leaves the recorder (the statistics' source) ahead of it, and the
            # add-on resumes from its last save: without this the first value dipped.
            memory.last_shown = recorded
            memory.last_raw = max(memory.last_raw or 0.0, recorded - memory.offset)
        memory.unique_id = self.unique_id
        self._memory_restored = True

    async def _last_recorded_number(self) -> float | None:
        """The highest of the recorder's last few states (the newest may be unavailable:
        the add-on went before Home Assistant)."""
        if "recorder" not in self.hass.config.components:
            return None
        states = await get_instance(self.hass).async_add_executor_job(
            get_last_state_changes, self.hass, RECORDED_STATES_READ, self.entity_id)
        numbers = [number for state in states.get(self.entity_id, [])
                   if (number := self._last_shown_number(self._own(state))) is not None]
        return max(numbers, default=None)

    def _own(self, state: State | None) -> State | None:
        """`state` unless it is older than this sensor's registration: then it was
        another entity's that had this entity id (a deleted entry's)."""
        if state is None or self.registry_entry is None:
            return state
        return state if state.last_updated >= self.registry_entry.created_at else None

    def _last_shown_number(self, state: State | None) -> float | None:
        """The restored state's number in the sensor's own unit (the user may show it in
        another: Wh, MWh, ft³), or None."""
        if state is None:
            return None
        try:
            value = float(state.state)
        except ValueError:
            return None
        unit = state.attributes.get("unit_of_measurement")
        native = getattr(self, "native_unit_of_measurement", None)
        if unit != native:
            converter = UNIT_CONVERTERS.get(getattr(self, "device_class", None))
            if converter is None or unit not in converter.VALID_UNITS \
                    or native not in converter.VALID_UNITS:
                return None
            value = converter.converter_factory(unit, native)(value)
        return value if math.isfinite(value) and value >= 0 else None

    @property
    def extra_restore_state_data(self) -> ExtraStoredData | None:
        return self._memory

    def _shown[T](self, value: T | None, decimals: int = COUNTER_DECIMALS) -> T | float | None:
        """The value to show for the add-on's `value`; anything but a tracked number as is."""
        memory = self._memory
        if memory is None or not isinstance(value, int | float) or isinstance(value, bool):
            return value
        if not self._memory_restored:
            return None  # unknown for a moment, never a value below the one shown
        raw = float(value)
        went_back = memory.last_raw is not None and raw < memory.last_raw
        if went_back:
            memory.offset += memory.last_raw - raw  # type: ignore[operator]
        previous, memory.last_raw = memory.last_raw, raw
        shown = round(raw + memory.offset, decimals)
        if memory.last_shown is not None and shown < memory.last_shown:
            shown = memory.last_shown  # rounded below what was shown (see above)
        memory.last_shown = shown
        if went_back:
            LOGGER.warning(
                "%s: the add-on's counter went back from %s to %s (a power cut lost its "
                "last seconds, an older backup of the add-on restored, or its counter files "
                "lost); it goes on from %s, so the Energy dashboard counts that neither "
                "twice nor as negative",
                self.entity_id, previous, raw, shown)
        return shown

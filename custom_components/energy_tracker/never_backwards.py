"""Lifetime counters (energy, gas) that never go below a value Home Assistant showed.

The add-on's counters never go backwards, unless its data folder goes back in time: an
older add-on backup restored on its own, or its counter files lost. Home Assistant's
statistics read a total_increasing sensor that drops by more than 10 % as a new meter
(counting the whole value again) and a smaller drop as negative energy. So each such
sensor keeps, across restarts, the add-on's last value and an offset: a drop adds to the
offset, and the sensor goes on from the value it showed (the energy of the lost interval
is lost, never counted twice or negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from homeassistant.components.recorder.history import get_last_state_changes
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

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "last_raw": self.last_raw,
                "last_shown": self.last_shown}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CounterMemory:
        offset, last_raw = data.get("offset"), data.get("last_raw")
        last_shown = data.get("last_shown")
        return cls(float(offset) if isinstance(offset, int | float) else 0.0,
                   float(last_raw) if isinstance(last_raw, int | float) else None,
                   float(last_shown) if isinstance(last_shown, int | float) else None)


class NeverBackwards(RestoreEntity):
    """Mixed into a sensor whose `native_value` passes its counter through `_shown`."""

    _memory: CounterMemory | None = None  # None: not a lifetime counter

    def _track_counter(self, key: str) -> None:
        if key in LIFETIME_COUNTER_KEYS:
            self._memory = CounterMemory()

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        if self._memory is None:
            return
        if stored := await self.async_get_last_extra_data():
            self._memory = CounterMemory.from_dict(stored.as_dict())
        elif (last := self._last_shown_number(await self.async_get_last_state())) is not None:
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

    async def _last_recorded_number(self) -> float | None:
        """The highest of the recorder's last few states (the newest may be unavailable:
        the add-on went before Home Assistant)."""
        if "recorder" not in self.hass.config.components:
            return None
        states = await get_instance(self.hass).async_add_executor_job(
            get_last_state_changes, self.hass, RECORDED_STATES_READ, self.entity_id)
        numbers = [number for state in states.get(self.entity_id, [])
                   if (number := self._last_shown_number(state)) is not None]
        return max(numbers, default=None)

    def _last_shown_number(self, state: State | None) -> float | None:
        """The restored state's number, if it is in the sensor's own unit."""
        if state is None or state.attributes.get("unit_of_measurement") != getattr(
                self, "native_unit_of_measurement", None):
            return None
        try:
            value = float(state.state)
        except ValueError:
            return None
        return value if math.isfinite(value) and value >= 0 else None

    @property
    def extra_restore_state_data(self) -> ExtraStoredData | None:
        return self._memory

    def _shown[T](self, value: T, decimals: int = COUNTER_DECIMALS) -> T | float:
        """The value to show for the add-on's `value`; anything but a tracked number as is."""
        memory = self._memory
        if memory is None or not isinstance(value, int | float) or isinstance(value, bool):
            return value
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

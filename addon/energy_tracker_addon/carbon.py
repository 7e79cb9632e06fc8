"""The grid's carbon intensity: the `co2_g_per_kwh` option, or a live value pushed by Home
Assistant (PUT /api/v1/co2_intensity, from an entity such as an Electricity Maps sensor).

A pushed value holds for PUSH_TTL_S; after that (Home Assistant stopped pushing) the option
applies again, logged once, so a stale live figure never lingers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

MAX_G_PER_KWH: Final = 2000.0  # the option's limit too: no grid emits more
PUSH_TTL_S: Final = 2 * 3600.0
OPTION: Final = "option"
PUSHED: Final = "home_assistant"


class CarbonIntensity:
    """The intensity (g CO2 per kWh) that applies now, and where it comes from."""

    def __init__(
        self,
        option_g_per_kwh: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._option = option_g_per_kwh
        self._clock = clock
        self._wall_clock = wall_clock
        self._pushed: float | None = None
        self._pushed_at = 0.0
        self._updated: datetime | None = None

    def push(self, g_per_kwh: float) -> None:
        """A live value; ValueError when it is not a number in 0..MAX_G_PER_KWH."""
        value = _intensity(g_per_kwh)
        if self._pushed is None:
            _LOGGER.info("Carbon intensity now comes from Home Assistant (%g g/kWh)", value)
        self._pushed = value
        self._pushed_at = self._clock()
        self._updated = self._wall_clock()

    def clear(self) -> None:
        """Home Assistant no longer sends one (its sensor taken out of the options)."""
        if self._pushed is not None:
            _LOGGER.info("Carbon intensity from Home Assistant withdrawn: using the "
                         "option's %g g/kWh", self._option)
        self._pushed = None
        self._updated = None

    @property
    def g_per_kwh(self) -> float:
        live = self._live()
        return self._option if live is None else live

    @property
    def source(self) -> str:
        return OPTION if self._live() is None else PUSHED

    def as_json(self) -> dict[str, Any]:
        """GET/PUT /api/v1/co2_intensity."""
        live = self._live()
        if live is None or self._updated is None:
            return {"g_per_kwh": self._option, "source": OPTION, "updated": None}
        return {"g_per_kwh": live, "source": PUSHED,
                "updated": self._updated.astimezone(UTC).isoformat(timespec="seconds")
                .replace("+00:00", "Z")}

    def to_dict(self) -> dict[str, Any] | None:
        """The pushed value and when it came, for the analytics state (None: no live one)."""
        live = self._live()
        if live is None or self._updated is None:
            return None
        return {"g_per_kwh": live, "updated": self._updated.isoformat()}

    def restore(self, data: Any) -> None:
        """Take back a `to_dict` after a restart: a value pushed less than PUSH_TTL_S ago
        still holds (Home Assistant pushes on changes and every 30 minutes, not at once)."""
        if data is None:
            return
        try:
            g_per_kwh = _intensity(data["g_per_kwh"])
            updated = datetime.fromisoformat(data["updated"])
            age = (self._wall_clock() - updated).total_seconds()
        except (KeyError, TypeError, ValueError) as error:
            _LOGGER.warning("Saved carbon intensity unusable (%r): using the option", error)
            return
        if not 0 <= age <= PUSH_TTL_S:
            return
        self._pushed, self._updated = g_per_kwh, updated
        self._pushed_at = self._clock() - age

    def _live(self) -> float | None:
        if self._pushed is not None and self._clock() - self._pushed_at > PUSH_TTL_S:
            _LOGGER.warning(
                "No carbon intensity from Home Assistant for %d h: using the option's %g g/kWh",
                PUSH_TTL_S // 3600, self._option,
            )
            self._pushed = None
        return self._pushed


def _intensity(value: Any) -> float:
    """A pushed or saved intensity; ValueError when it is not a number in 0..MAX."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not 0 <= value <= MAX_G_PER_KWH:
        raise ValueError(f"g_per_kwh must be a number from 0 to {MAX_G_PER_KWH:g}")
    return float(value)

"""Gas volume from the voltage board's pulse count: a persisted m³ counter that never goes
backwards.

The ET1 `gas` field counts debounced pulses since the board's boot and wraps at 2**32
(docs/protocol.md 2.1). Between two counts `last` and `now`:

* `now >= last`: `now - last` new pulses;
* `now < last` and `now + 2**32 - last` is plausible (at most `MAX_WRAP_PULSES`): the
  counter wrapped;
* otherwise the board rebooted: its count restarted at 0, so `now` pulses are new (pulses
  between its last report and the reboot are lost; none are counted twice).

The last count is persisted with the volume, so pulses counted while the add-on was down
are added at the first report after a restart. A board that rebooted meanwhile is seen as
one only while its new count is below the persisted one (then its count since boot is
added); one that has already counted past it cannot be told from a board that kept
running (ET1's hello has no boot counter), and the pulses up to the old count are lost:
at most that many, and only when the board restarts soon after a previous restart.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Final

from .statefile import VersionedStateFile

_LOGGER = logging.getLogger(__name__)

PULSE_MODULUS: Final = 2**32
# A wrap is only believed when few pulses separate the counts: 100 000 pulses are
# 1000 m³ at 0.01 m³/pulse, more than a house uses between two reports.
MAX_WRAP_PULSES: Final = 100_000
FORMAT_VERSION: Final = 1


class GasCounter:
    """Cumulative gas volume in m³; `m3` is None until a board has ever reported a count."""

    def __init__(self, m3_per_pulse: float, path: Path) -> None:
        if not (math.isfinite(m3_per_pulse) and m3_per_pulse > 0):
            raise ValueError(f"m3_per_pulse must be a positive number, not {m3_per_pulse!r}")
        self._m3_per_pulse = m3_per_pulse
        self._file = VersionedStateFile(path, FORMAT_VERSION, "gas counter file", _LOGGER)
        self._pulses_total = 0  # counted pulses; m³ = pulses x factor (no float drift)
        self._m3_offset = 0.0  # volume counted at earlier factors (option changed)
        self._last_count: int | None = None
        self._unsaved = False
        self._live_stale = False  # changed since the live copy was written
        self._load()

    @property
    def m3(self) -> float | None:
        if self._last_count is None:
            return None
        return self._m3_offset + self._pulses_total * self._m3_per_pulse

    def update(self, count: int) -> None:
        """One count reported by the board (0 to 2**32 - 1)."""
        if not 0 <= count < PULSE_MODULUS:
            _LOGGER.warning("Gas pulse count %d out of range: ignored", count)
            return
        last, self._last_count = self._last_count, count
        if last is None:
            # The first count ever: the meter's reading starts here.
            self._unsaved = self._live_stale = True
            return
        if count >= last:
            new = count - last
        elif count + PULSE_MODULUS - last <= MAX_WRAP_PULSES:
            new = count + PULSE_MODULUS - last
        else:
            _LOGGER.info("Gas pulse count went from %d to %d: board restarted", last, count)
            new = count
        if new or count != last:
            self._pulses_total += new
            self._unsaved = self._live_stale = True

    def persist(self) -> None:
        """Write the counter if it changed (atomic; an error is logged, retried next time)."""
        if self._unsaved and self._file.write(self._payload()):
            self._unsaved = False

    def save_live(self) -> None:
        """Rewrite the live copy if the volume changed, before it is published."""
        if self._live_stale and self._file.write(self._payload(), live=True):
            self._live_stale = False

    def _payload(self) -> dict[str, Any]:
        return {"m3": self.m3, "m3_per_pulse": self._m3_per_pulse,
                "last_count": self._last_count}

    def _load(self) -> None:
        stored = self._file.read(_parse_counter, "counting from zero")
        if stored is None:
            return
        m3, last = stored
        # Volume so far stays as it was, also when gas_m3_per_pulse changed since.
        self._m3_offset = m3
        self._last_count = last


def _parse_counter(data: dict[str, Any]) -> tuple[float, int]:
    m3 = float(data["m3"])
    last = data["last_count"]
    if not (math.isfinite(m3) and m3 >= 0) or not isinstance(last, int):
        raise ValueError("bad m3 or last_count")
    return m3, last

"""A log line that may come often (a noisy serial line, a flapping port, a failing model)
said at most once per interval, with a count of the ones held back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class LogLimit:
    """At most one log line per `interval_s`; the lines held back are counted."""

    interval_s: float
    last: float | None = None
    held_back: int = 0

    def due(self, now: float) -> int | None:
        """The lines held back since the last one when a line is due now, else None."""
        if self.last is not None and now - self.last < self.interval_s:
            self.held_back += 1
            return None
        held_back, self.last, self.held_back = self.held_back, now, 0
        return held_back

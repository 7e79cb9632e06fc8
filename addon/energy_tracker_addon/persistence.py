"""Atomic, monotonic store of the energy counters.

A save writes a temporary file in the same directory, fsyncs it, moves the previous good
file to `<name>.bak`, renames the new one into place and fsyncs the directory: after a
crash at any point either the main file or the backup holds a complete, good write.
"""

from __future__ import annotations

import glob
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .statefile import temp_prefix, write_atomic

_LOGGER = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class EnergyCounters:
    """Imported energy since `since` (UTC): total and per CT channel id, in kWh."""

    total_kwh: float
    since: datetime
    channels_kwh: Mapping[int, float] = field(default_factory=dict)


class CorruptCounterFile(ValueError):
    """The file exists but does not hold a complete, valid set of counters."""


def _decode(text: str) -> EnergyCounters:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorruptCounterFile(f"not valid JSON ({error})") from None
    try:
        if data["version"] != FORMAT_VERSION:
            raise CorruptCounterFile(f"unknown format version {data['version']!r}")
        total = float(data["total_kwh"])
        channels = {int(key): float(value) for key, value in data["channels_kwh"].items()}
        since = datetime.fromisoformat(data["since"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CorruptCounterFile(f"missing or malformed field ({error!r})") from None
    for value in (total, *channels.values()):
        if not math.isfinite(value) or value < 0:
            raise CorruptCounterFile(f"counter value {value} is not a finite kWh amount")
    if since.tzinfo is None:
        raise CorruptCounterFile("'since' has no time zone")
    return EnergyCounters(total, since.astimezone(UTC), channels)


def _encode(counters: EnergyCounters) -> str:
    since = counters.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "total_kwh": counters.total_kwh,
            "channels_kwh": {str(key): value for key, value in counters.channels_kwh.items()},
            "since": since,
        },
        indent=1,
    )


class CounterStore:
    """Energy counters in one JSON file (`path`), with `<path>.bak` holding the write before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup_path = path.with_name(path.name + ".bak")
        self._temp_prefix = temp_prefix(path)
        # Only a main file known to be good may be rotated into the backup.
        self._main_is_good = False
        self._last_saved: EnergyCounters | None = None

    def load(self) -> EnergyCounters | None:
        """The last good counters, or None when none were ever saved."""
        self._remove_leftover_temp_files()
        try:
            counters = _decode(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            problem = None
        except (CorruptCounterFile, UnicodeDecodeError) as error:
            problem = str(error)
        else:
            self._main_is_good = True
            self._last_saved = counters
            return counters
        try:
            counters = _decode(self.backup_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if problem is not None:
                _LOGGER.error(
                    "Energy counter file %s is corrupt (%s) and there is no backup: "
                    "counting from zero", self.path, problem,
                )
            return None
        except (CorruptCounterFile, UnicodeDecodeError) as error:
            _LOGGER.error(
                "Energy counter file %s and its backup are corrupt (%s; %s): "
                "counting from zero", self.path, problem or "missing", error,
            )
            return None
        _LOGGER.error(
            "Energy counter file %s is %s: using the backup %s (%.4f kWh)",
            self.path, f"corrupt ({problem})" if problem else "missing",
            self.backup_path, counters.total_kwh,
        )
        self._last_saved = counters
        return counters

    def save(self, counters: EnergyCounters) -> None:
        """Write atomically. Counters lower than the last saved ones are refused."""
        previous = self._last_saved
        if previous is not None:
            lower = counters.total_kwh < previous.total_kwh or any(
                counters.channels_kwh.get(key, 0.0) < value
                for key, value in previous.channels_kwh.items()
            )
            if lower:
                raise ValueError("energy counters must never decrease")
        # A main file that does not decode must not overwrite the good backup
        keep = self._main_is_good or self._main_decodes()
        write_atomic(self.path, _encode(counters),
                     keep_previous=self.backup_path if keep else None)
        self._main_is_good = True
        self._last_saved = counters

    def _main_decodes(self) -> bool:
        try:
            _decode(self.path.read_text(encoding="utf-8"))
        except (OSError, CorruptCounterFile, UnicodeDecodeError):
            return False
        return True

    def _remove_leftover_temp_files(self) -> None:
        """A crash between writing and renaming leaves a temp file nobody will finish."""
        for leftover in self.path.parent.glob(glob.escape(self._temp_prefix) + "*.tmp"):
            _LOGGER.warning("Removing %s, left over from an interrupted save", leftover)
            leftover.unlink(missing_ok=True)

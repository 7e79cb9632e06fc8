"""Atomic, monotonic store of the energy counters.

A save writes a temporary file in the same directory, fsyncs it, moves the previous good
file to `<name>.bak`, renames the new one into place and fsyncs the directory: after a
crash at any point either the main file or the backup holds a complete, good write.
Between saves, the counters as published go to the live copy (`<name>.live`, no fsync:
statefile.LiveCopy), so a killed add-on resumes from what it last showed.
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

from .statefile import LiveCopy, temp_prefix, write_atomic

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


def _revision(text: str) -> int | None:
    """The write's revision (None for files written before revisions were kept)."""
    revision = json.loads(text).get("revision")
    return revision if isinstance(revision, int) else None


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


def _encode(counters: EnergyCounters, revision: int) -> str:
    since = counters.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "total_kwh": counters.total_kwh,
            "channels_kwh": {str(key): value for key, value in counters.channels_kwh.items()},
            "since": since,
            "revision": revision,
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
        self.live = LiveCopy(path)
        self._revision = 0

    def load(self) -> EnergyCounters | None:
        """The newest good counters, or None when none were ever saved.

        Newest by revision: the live copy after a crash or kill, else the saved file, else
        its backup (when the saved file is missing or corrupt, which is logged).
        """
        self._remove_leftover_temp_files()
        main, main_problem = self._read(self.path)
        if main is not None:
            self._main_is_good = True
        backup, backup_problem = self._read(self.backup_path) if main is None else (None, None)
        live = self.live.read()
        unnumbered = main is not None and main[0] is None
        if live is not None and unnumbered:
            # Written by an add-on older than live copies (0.3.6), after any copy there is.
            _LOGGER.info("Ignoring %s: %s was written later, by an older add-on",
                         self.live.path, self.path)
            stale_revision, live = live[0], None
        else:
            stale_revision = 0
        found = [(revision or 0, counters) for revision, counters in filter(None, (main, backup))]
        if live is not None:
            try:
                found.append((live[0], _decode(live[1])))
            except CorruptCounterFile as error:
                _LOGGER.error("Energy counter file %s is corrupt (%s)", self.live.path, error)
        if not found:
            if backup_problem:
                _LOGGER.error("Energy counter file %s and its backup are unusable (%s; %s): "
                              "counting from zero", self.path, main_problem or "missing",
                              backup_problem)
            elif main_problem:
                _LOGGER.error("Energy counter file %s is %s and there is no backup: "
                              "counting from zero", self.path, main_problem)
            return None
        self._revision, counters = max(found, key=lambda pair: pair[0])
        self._revision = max(self._revision, stale_revision)  # renumbered above the copy
        if main is None and backup is not None and counters is backup[1]:
            _LOGGER.error("Energy counter file %s is %s: using the backup %s (%.4f kWh)",
                          self.path, main_problem or "missing", self.backup_path,
                          counters.total_kwh)
        elif main_problem:  # nothing lost (the live copy is newer), but the card is suspect
            _LOGGER.warning("Energy counter file %s is %s: using its newer live copy "
                            "(%.4f kWh)", self.path, main_problem, counters.total_kwh)
        self._last_saved = counters
        if unnumbered:
            # Numbered from now on, or a kill before the next save would leave live copies
            # that this rule ignores again.
            try:
                self.save(counters)
            except OSError as error:
                _LOGGER.warning("Could not renumber %s (%s): it is saved again later",
                                self.path, error)
        return counters

    @staticmethod
    def _read(path: Path) -> tuple[tuple[int | None, EnergyCounters] | None, str | None]:
        """((revision, counters), None), or (None, what is wrong; None when absent)."""
        try:
            text = path.read_text(encoding="utf-8")
            counters = _decode(text)
            return (_revision(text), counters), None
        except FileNotFoundError:
            return None, None
        except (CorruptCounterFile, UnicodeDecodeError) as error:
            return None, f"corrupt ({error})"
        except OSError as error:  # a directory in its place, a card read error
            return None, f"unreadable ({error.strerror or error})"

    def save(self, counters: EnergyCounters) -> None:
        """Write atomically. Counters lower than the last saved ones are refused."""
        self._refuse_lower(counters)
        # A main file that does not decode must not overwrite the good backup
        keep = self._main_is_good or self._main_decodes()
        self._revision += 1
        write_atomic(self.path, _encode(counters, self._revision),
                     keep_previous=self.backup_path if keep else None)
        self._main_is_good = True
        self._last_saved = counters

    def save_live(self, counters: EnergyCounters) -> None:
        """Rewrite the live copy (no fsync): call it before publishing the counters."""
        self._refuse_lower(counters)
        self._revision += 1
        self.live.write(self._revision, _encode(counters, self._revision))
        self._last_saved = counters

    def _refuse_lower(self, counters: EnergyCounters) -> None:
        previous = self._last_saved
        if previous is not None:
            lower = counters.total_kwh < previous.total_kwh or any(
                counters.channels_kwh.get(key, 0.0) < value
                for key, value in previous.channels_kwh.items()
            )
            if lower:
                raise ValueError("energy counters must never decrease")

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

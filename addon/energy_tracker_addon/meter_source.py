"""Which meter the learned state belongs to: the simulated one or the real hat.

The history store, the anomaly detection's baselines and the forecast's retrain learn one
household. After a switch from the simulated meter (the add-on's default) to the hat, they
went on judging this home by the replayed one: the UCI house's evenings as the usual of a
small flat, false alarms on its first evening. On a switch, what the old source learned is
put aside under its name (`simulated.history.sqlite3`, ...) and what the new source learned
before, if anything, comes back. The energy counters are not learned state: they go on, as
the Energy dashboard must never see them go back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Final

from .analytics import HISTORY_FILE
from .forecasting import STATE_FILE as FORECAST_FILE
from .statefile import write_atomic

_LOGGER = logging.getLogger(__name__)

SOURCE_FILE: Final = "meter_source.json"
# Everything learned from the readings (SQLite's WAL and index files go with their database).
# A state file's backup goes too: loading falls back on it when the file is absent.
LEARNED_FILES: Final = (HISTORY_FILE, f"{HISTORY_FILE}-wal", f"{HISTORY_FILE}-shm",
                        FORECAST_FILE, f"{FORECAST_FILE}.bak", f"{FORECAST_FILE}.live")


def switch_learned_state(data_dir: Path, source: str) -> str | None:
    """Put the learned files of the last source aside if `source` is another one, and bring
    back `source`'s own; returns the previous source when it changed, else None. Called
    before anything opens those files."""
    path = data_dir / SOURCE_FILE
    previous = _stored_source(path)
    if previous is not None and previous != source:
        for name in LEARNED_FILES:
            _move(data_dir / name, data_dir / f"{previous}.{name}")
            _move(data_dir / f"{source}.{name}", data_dir / name)
        _LOGGER.warning(
            "The meter changed from %s to %s: what was learned from the %s meter (history, "
            "anomaly baselines, forecast retrain) is kept aside as %s.*, and learning starts "
            "again from this meter's readings (the energy counters go on)",
            previous, source, previous, previous)
    if previous != source:
        write_atomic(path, json.dumps({"source": source}) + "\n", mode=0o600)
    return previous if previous not in (None, source) else None


def _stored_source(path: Path) -> str | None:
    try:
        source = json.loads(path.read_text())["source"]
    except FileNotFoundError:
        return None  # a new install, or one from before 0.3.22: nothing to tell apart
    except (OSError, ValueError, KeyError, TypeError) as error:
        _LOGGER.warning("%s is unreadable (%s): taken as this meter's", path, error)
        return None
    return source if isinstance(source, str) else None


def _move(source: Path, target: Path) -> None:
    """`source` to `target`, replacing what was there; nothing if `source` is absent (a
    stale `target` goes too: it belonged to an older switch)."""
    if source.exists():
        source.replace(target)
    else:
        target.unlink(missing_ok=True)

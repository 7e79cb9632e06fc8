"""A history that already holds readings, as an add-on that has run for a while has."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from energy_tracker_addon.analytics import HISTORY_FILE
from energy_tracker_addon.history import HistoryStore, Reading

# Labels in tests are of this morning a few days ago: inside the default 90-day retention
# whatever the day the tests run (fixed dates would age out of it).
LABEL_DAY = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()


def keep_readings_since(data_dir: Path, since: datetime) -> None:
    """One reading at `since` in the data dir's history (created if need be)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = HistoryStore(data_dir / HISTORY_FILE, retention_days=None, max_size_mb=None)
    try:
        store.append([Reading(since, 100.0, 0.0)])
    finally:
        store.close()


def keep_a_week_of_readings(data_dir: Path) -> None:
    keep_readings_since(data_dir, datetime.now(UTC) - timedelta(days=7))

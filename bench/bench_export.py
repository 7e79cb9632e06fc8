"""Time to the first byte and in all of a history export: CSV streamed piece by piece (what
GET /api/v1/export does since add-on 0.3.9) against a file written whole first (CSV before
0.3.9, Parquet still), side by side on one history of 2-second readings (the add-on's
rate), 3 channels.

The integration's client waits 120 s for a byte (aiohttp sock_read): before 0.3.9 a CSV
export got none until the whole file was written.

    .venv/bin/python bench/bench_export.py [--days 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from energy_tracker_addon.history import HistoryStore, Reading

READING_S = 2


def build(store: HistoryStore, start: datetime, days: float) -> int:
    count = int(days * 86400 / READING_S)
    rng = np.random.default_rng(1)
    powers = rng.uniform(100, 3000, size=(count, 3))
    energy = np.cumsum(powers, axis=0) * READING_S / 3.6e6
    batch: list[Reading] = []
    for i in range(count):
        p, e = powers[i], energy[i]
        batch.append(Reading(start + timedelta(seconds=i * READING_S), float(p.sum()),
                             float(e.sum()), 230.0, {1: float(p[0]), 2: float(p[1]),
                                                     3: float(p[2])},
                             {1: float(e[0]), 2: float(e[1]), 3: float(e[2])}))
        if len(batch) == 20_000:
            store.append(batch)
            batch = []
    store.append(batch)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=10.0)
    args = parser.parse_args()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as folder:
        store = HistoryStore(Path(folder) / "history.sqlite3", None, None)
        rows = build(store, start, args.days)
        print(f"history: {rows} readings ({args.days:g} days at {READING_S} s)")
        began = time.perf_counter()
        pieces = store.csv_pieces(start, end)
        next(pieces)  # the header
        first_row = next(pieces)
        streamed_first = time.perf_counter() - began
        size = len(first_row) + sum(len(piece) for piece in pieces)
        streamed_all = time.perf_counter() - began
        results = [("CSV streamed (0.3.9)", streamed_first, streamed_all, size)]
        for fmt, label in (("csv", "CSV file first (before)"),
                           ("parquet", "Parquet file first")):
            path = Path(folder) / f"export.{fmt}"
            began = time.perf_counter()
            store.export(start, end, fmt, path)  # type: ignore[arg-type]
            whole = time.perf_counter() - began
            results.append((label, whole, whole, path.stat().st_size))
        store.close()
    print(f"{'export':<26} {'first rows (s)':>15} {'all (s)':>9} {'MB':>8}")
    for label, first, total, size in results:
        print(f"{label:<26} {first:>15.3f} {total:>9.2f} {size / 1e6:>8.1f}")
    print(f"first rows of a CSV: {results[1][1] / results[0][1]:.0f}x sooner streamed")


if __name__ == "__main__":
    main()

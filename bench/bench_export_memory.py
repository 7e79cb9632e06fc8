"""What a Parquet export leaves in the add-on's memory: the file written in the add-on's own
process with pyarrow (before 0.3.13) against the child process it uses now
(energy_tracker_addon/parquet_export.py), side by side on one history of 2-second readings.

Each way runs in a fresh Python process that opens the history like the add-on (RSS
"before"), exports every reading as Parquet `--exports` times on a worker thread (as the
add-on does), and reports its RSS after the first and the last (what the add-on keeps
until it restarts), its peak, the child's peak and the time of the first. Both read the
history in the add-on's chunks (history.EXPORT_CHUNK_ROWS: 50 000 rows to 0.3.12, 10 000
since 0.3.13).

    .venv/bin/python bench/bench_export_memory.py [--days 10] [--exports 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import build

from energy_tracker_addon.history import HistoryStore

START = datetime(2026, 1, 1, tzinfo=UTC)

# Run in a fresh interpreter: argv = history path, "in_process" | "child", days, exports.
_MEASURE = r"""
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from energy_tracker_addon import history

def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def in_process(destination, columns, chunks):
    # The add-on's writer up to 0.3.12, in its own process.
    import pyarrow as pa
    import pyarrow.parquet as pq
    schema = pa.schema([pa.field("timestamp", pa.timestamp("ms", tz="UTC"))]
                       + [pa.field(name, pa.float64()) for name in columns])
    count = 0
    with pq.ParquetWriter(destination, schema) as writer:
        for rows in chunks:
            transposed = list(zip(*rows, strict=True))
            arrays = [pa.array(transposed[0], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))]
            arrays += [pa.array(values, pa.float64()) for values in transposed[1:]]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            count += len(rows)
    return count

path, how, days, exports = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
if how == "in_process":
    history.write_parquet = in_process
start = datetime(2026, 1, 1, tzinfo=UTC)
store = history.HistoryStore(path, None, None)
store.count()
before = rss_mib()
worker = ThreadPoolExecutor(1)  # the add-on exports on its history thread
def export():
    return store.export(start, start + timedelta(days=days), "parquet", path.with_suffix(".pq"))
began = time.perf_counter()
rows = worker.submit(export).result()
took = time.perf_counter() - began
after_first = rss_mib()
for _ in range(exports - 1):
    worker.submit(export).result()
print(json.dumps({
    "rows": rows, "before": before, "after": after_first, "after_last": rss_mib(),
    "seconds": took,
    "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "child_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    "pyarrow_loaded": "pyarrow" in sys.modules,
}))
"""


def measure(path: Path, how: str, days: float, exports: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), how, str(days),
                           str(exports)],
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--exports", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "history.sqlite3"
        store = HistoryStore(path, None, None)
        rows = build(store, START, args.days)
        store.close()
        print(f"history: {rows} readings ({args.days:g} days at 2 s), Parquet export of all")
        results = {how: measure(path, how, args.days, args.exports)
                   for how in ("in_process", "child")}
    print(f"{'writer':<22} {'RSS before':>11} {'kept (1)':>9} {f'kept ({args.exports})':>9} "
          f"{'peak':>8} {'child peak':>11} {'s':>6}")
    for how, label in (("in_process", "in the add-on (0.3.12)"), ("child", "child process")):
        r = results[how]
        print(f"{label:<22} {r['before']:>7.1f} MiB {r['after'] - r['before']:>+9.1f} "
              f"{r['after_last'] - r['before']:>+9.1f} {r['peak']:>8.1f} "
              f"{r['child_peak']:>11.1f} {r['seconds']:>6.2f}")
    kept = {how: (r["after"] - r["before"], r["after_last"] - r["before"])
            for how, r in results.items()}
    print(f"memory the add-on keeps after {args.exports} exports: "
          f"{kept['in_process'][1]:+.1f} -> {kept['child'][1]:+.1f} MiB")
    print(json.dumps({"kept_in_process_mib": round(kept["in_process"][0], 1),
                      "kept_child_mib": round(kept["child"][0], 1),
                      "kept_in_process_last_mib": round(kept["in_process"][1], 1),
                      "kept_child_last_mib": round(kept["child"][1], 1),
                      "seconds_in_process": round(results["in_process"]["seconds"], 2),
                      "seconds_child": round(results["child"]["seconds"], 2)}))


if __name__ == "__main__":
    main()

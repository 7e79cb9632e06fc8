"""Bytes the add-on writes to its storage per hour with the default options (an SD card's
wear), from the kernel's count of the process's writes (/proc/PID/io `write_bytes`).

Starts `energy-tracker-addon` as a real process on the simulated meter at real-time speed
(a reading every 2 s, as from the hat), lets it settle, then counts for --minutes.

    .venv/bin/python bench/bench_disk_writes.py [--minutes 10] [--settle 60]

addon/DOCS.md (`persist_interval_s`) quotes the figure. `write_bytes` counts what the
process caused to be sent to the storage layer (page cache write-backs included), so a
tmpfs data directory would read 0: the data directory is made under the current folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADDON = str(Path(sys.executable).with_name("energy-tracker-addon"))
TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz"


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds before counting (start-up writes its state files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".bench-disk-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        (data / "options.json").write_text(json.dumps({"api_token": TOKEN,
                                                       "log_level": "warning"}))
        process = subprocess.Popen(
            [ADDON, "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(args.settle)
            if process.poll() is not None:
                sys.exit(f"the add-on exited with {process.returncode}")
            before, started = write_bytes(process.pid), time.monotonic()
            time.sleep(args.minutes * 60)
            after, elapsed = write_bytes(process.pid), time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
        sizes = {p.name: p.stat().st_size for p in data.rglob("*") if p.is_file()}
    per_hour = (after - before) / elapsed * 3600
    figures = {
        "minutes_counted": round(elapsed / 60, 1),
        "written_mb_per_hour": round(per_hour / 1e6, 1),
        "written_gb_per_year": round(per_hour * 24 * 365 / 1e9),
        "largest_files": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:5]),
    }
    for key, value in figures.items():
        print(f"{key:24s} {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

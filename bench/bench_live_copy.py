"""What keeping the counters' live copies costs the add-on (statefile.LiveCopy).

Run: .venv/bin/python bench/bench_live_copy.py [--rounds 2000] [--writeback 240]

Before every publication the add-on rewrites, without fsync, the live copy of each counter
that changed: the meter's energy counters, the gas counter, the appliance energies and the
analytics' counters. Up to 0.3.12 the analytics rewrote their whole state (energy per
hour/day/month and CO2 and the anomaly detectors' live windows, 47 KiB when full) at every
reading; since 0.3.13 only its tail (the counters last recorded), the whole state being
saved every persist interval and at each new hour. This measures, side by side in one
run, one reading's worth of those writes with full analytics buckets (48 hours, 62 days,
24 months of four counters, four detectors' three-hour windows), and prints the CPU share
at the RPICT3T1's reading rate (one per 2 s) and the bytes handed to the kernel per hour.
The kernel writes a rewritten page back at most about every 30 s: `--writeback S` also runs
both ways side by side for S seconds at the reading rate, each in its own process, and
prints the bytes the kernel wrote back to the disk for each (/proc/<pid>/io write_bytes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from energy_tracker_addon.aggregates import EnergyBuckets
from energy_tracker_addon.analytics import encode_tail
from energy_tracker_addon.anomaly import AnomalyDetector
from energy_tracker_addon.persistence import CounterStore, EnergyCounters
from energy_tracker_addon.statefile import LiveCopy, VersionedStateFile

READING_INTERVAL_S = 2.0  # the RPICT3T1's default polling
PERSIST_INTERVAL_S = 30.0  # the persist_interval_s option's default


def full_buckets() -> EnergyBuckets:
    """Buckets as full as they get: a reading every 10 minutes for two years."""
    buckets = EnergyBuckets(ZoneInfo("Europe/Paris"))
    moment = datetime(2024, 11, 1, tzinfo=UTC)
    total = 0.0
    while moment < datetime(2026, 11, 1, tzinfo=UTC):
        total += 0.08
        buckets.record(moment, {"total": total, "1": total * 0.6, "2": total * 0.3,
                                "3": total * 0.1})
        moment += timedelta(minutes=10)
    return buckets


def warm_detector_streams() -> dict[str, dict[str, object]]:
    """The four detectors' live windows, full (three hours of minutes each)."""
    streams = {}
    for key in ("total", "1", "2", "3"):
        detector = AnomalyDetector(ZoneInfo("Europe/Paris"), key)
        moment = datetime(2026, 11, 1, tzinfo=UTC)
        for minute in range(200):
            detector.check(moment + timedelta(minutes=minute), 400.0 + minute % 7)
        streams[key] = detector.live_state()
    return streams


def best_per_call(call: object, rounds: int) -> float:
    """Best of 5 batches, seconds per call (other load on a shared machine kept out)."""
    assert callable(call)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            call()
        best = min(best, (time.perf_counter() - start) / rounds)
    return best


def write_at_reading_rate(how: str, folder: Path, seconds: float) -> None:
    """One way's live copy at one write per reading for `seconds`; prints MB/h written back."""
    buckets, streams = full_buckets(), warm_detector_streams()
    whole = VersionedStateFile(folder / "analytics.json", 1, "analytics state",
                               logging.getLogger("bench"))
    tail = LiveCopy(folder / "analytics_tail")

    def written() -> int:
        fields = dict(line.split(": ") for line in
                      Path("/proc/self/io").read_text().splitlines())
        return int(fields["write_bytes"])

    before, began = written(), time.monotonic()
    while time.monotonic() - began < seconds:
        if how == "whole":
            whole.write({"buckets": buckets.to_dict(), "co2_buckets": buckets.to_dict(),
                         "events": [], "next_id": 1, "last_time": None,
                         "detectors": streams}, live=True)
        else:
            tail.write(1, encode_tail(buckets, buckets))
        time.sleep(READING_INTERVAL_S)
    time.sleep(40)  # the last rewritten pages are written back within ~35 s
    print(json.dumps({"mb_per_hour": (written() - before) / seconds * 3600 / 1e6}))


def writeback(seconds: float) -> None:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        # On the repository's disk, not a tmpfs /tmp: only a real disk counts write-back.
        runs = {how: subprocess.Popen(
            [sys.executable, __file__, "--writer", how, "--writeback", str(seconds),
             "--folder", str(Path(tmp) / how)], stdout=subprocess.PIPE, text=True)
            for how in ("whole", "tail")}
        results = {how: json.loads(run.communicate()[0].splitlines()[-1])["mb_per_hour"]
                   for how, run in runs.items()}
    print(f"written back to the disk at one reading per {READING_INTERVAL_S:g} s over "
          f"{seconds:g} s: whole state {results['whole']:.2f} MB/h, tail "
          f"{results['tail']:.2f} MB/h")
    print(json.dumps({"writeback_whole_mb_h": round(results["whole"], 2),
                      "writeback_tail_mb_h": round(results["tail"], 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--writeback", type=float, default=0.0)
    parser.add_argument("--writer", choices=("whole", "tail"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        args.folder.mkdir()
        write_at_reading_rate(args.writer, args.folder, args.writeback)
        return

    buckets = full_buckets()
    streams = warm_detector_streams()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = CounterStore(folder / "energy_counters.json")
        counters = EnergyCounters(1234.5678, datetime(2024, 11, 1, tzinfo=UTC),
                                  {1: 740.1, 2: 370.0, 3: 124.4})
        analytics = VersionedStateFile(folder / "analytics.json", 1, "analytics state",
                                       logging.getLogger("bench"))
        gas = VersionedStateFile(folder / "gas_counter.json", 1, "gas counter file",
                                 logging.getLogger("bench"))
        nilm = VersionedStateFile(folder / "nilm_energy.json", 1, "appliance energies",
                                  logging.getLogger("bench"))
        energies = {name: 12.3 for name in ("kettle", "fridge", "microwave",
                                            "washing_machine", "dishwasher", "kitchen",
                                            "laundry", "water_heater_ac")}

        def counters_part() -> None:
            store.save_live(counters)
            gas.write({"m3": 1234.56, "m3_per_pulse": 0.01, "last_count": 123456}, live=True)
            nilm.write({"energy_wh": energies}, live=True)

        def whole_state() -> None:  # the analytics' live copy up to 0.3.12
            analytics.write({"buckets": buckets.to_dict(), "co2_buckets": buckets.to_dict(),
                             "events": [], "next_id": 1, "last_time": None,
                             "detectors": streams}, live=True)

        tail = LiveCopy(folder / "analytics_tail")

        def tail_part() -> None:  # since 0.3.13
            tail.write(1, encode_tail(buckets, buckets))

        small = best_per_call(counters_part, args.rounds)
        large = best_per_call(whole_state, args.rounds)
        tail_s = best_per_call(tail_part, args.rounds)
        sizes = {p.name: p.stat().st_size for p in folder.glob("*.live")}

    readings_per_hour = 3600 / READING_INTERVAL_S
    saves_per_hour = 3600 / PERSIST_INTERVAL_S
    whole, tail_b = sizes["analytics.json.live"], sizes["analytics_tail.live"]
    counters_b = sum(sizes.values()) - whole - tail_b
    print(f"meter + gas + appliance counters: {small * 1e3:.3f} ms per reading "
          f"({counters_b} B)")
    print(f"{'analytics live copy':<28} {'ms/reading':>10} {'bytes':>8} {'MB/h rewritten':>15} "
          f"{'CPU at 1/2 s':>13}")
    rows = {"whole state (0.3.12)": (large, whole), "tail (0.3.13)": (tail_s, tail_b)}
    for label, (seconds, size) in rows.items():
        print(f"{label:<28} {seconds * 1e3:>10.3f} {size:>8} "
              f"{size * readings_per_hour / 1e6:>15.2f} "
              f"{(small + seconds) / READING_INTERVAL_S:>13.3%}")
    print(f"analytics per reading: {large / tail_s:.0f}x less CPU, {whole / tail_b:.0f}x fewer "
          f"bytes; the durable save (fsync) is unchanged: {whole} B every "
          f"{PERSIST_INTERVAL_S:g} s = {whole * saves_per_hour / 1e6:.2f} MB/h")
    print(json.dumps({"counters_ms": round(small * 1e3, 4), "whole_ms": round(large * 1e3, 4),
                      "tail_ms": round(tail_s * 1e3, 4), "whole_bytes": whole,
                      "tail_bytes": tail_b,
                      "cpu_share_before": round((small + large) / READING_INTERVAL_S, 6),
                      "cpu_share_now": round((small + tail_s) / READING_INTERVAL_S, 6)}))
    if args.writeback:
        writeback(args.writeback)


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    main()

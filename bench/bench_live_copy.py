"""What keeping the counters' live copies costs the add-on (statefile.LiveCopy).

Run: .venv/bin/python bench/bench_live_copy.py [--rounds 2000]

Before every publication the add-on rewrites, without fsync, the live copy of each counter
that changed: the meter's energy counters, the gas counter, the appliance energies and the
analytics state (energy per hour/day/month and CO2, the largest, and the anomaly
detectors' live windows). This measures, side by side in one run, one reading's worth of
those writes with full analytics buckets (48 hours, 62 days, 24 months of four counters,
four detectors' three-hour windows) against the durable fsynced save they replaced as the
only protection, and prints the CPU share at the RPICT3T1's reading rate (one per 2 s).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from energy_tracker_addon.aggregates import EnergyBuckets
from energy_tracker_addon.anomaly import AnomalyDetector
from energy_tracker_addon.persistence import CounterStore, EnergyCounters
from energy_tracker_addon.statefile import VersionedStateFile

READING_INTERVAL_S = 2.0  # the RPICT3T1's default polling


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()

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

        def analytics_part() -> None:
            analytics.write({"buckets": buckets.to_dict(), "co2_buckets": buckets.to_dict(),
                             "events": [], "next_id": 1, "last_time": None,
                             "detectors": streams}, live=True)

        small = best_per_call(counters_part, args.rounds)
        large = best_per_call(analytics_part, args.rounds)
        sizes = {p.name: p.stat().st_size for p in folder.glob("*.live")}

    live = small + large
    share = live / READING_INTERVAL_S
    print(f"meter + gas + appliance counters: {small * 1e3:.3f} ms per reading")
    print(f"analytics (full buckets, {sizes['analytics.json.live'] / 1024:.1f} KiB): "
          f"{large * 1e3:.3f} ms per reading")
    print(f"all live copies of one reading: {live * 1e3:.3f} ms, no fsync "
          f"({sum(sizes.values()) / 1024:.1f} KiB rewritten in place)")
    print(f"CPU share at one reading per {READING_INTERVAL_S:g} s: {share:.3%} of one core")
    print(json.dumps({"counters_ms": round(small * 1e3, 4), "analytics_ms": round(large * 1e3, 4),
                      "live_kib": round(sum(sizes.values()) / 1024, 1),
                      "cpu_share": round(share, 6)}))


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    main()

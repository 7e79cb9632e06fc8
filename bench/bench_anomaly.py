"""Precision and recall of the anomaly detector on real UCI data with injected faults.

The detector is fit on the 8 weeks before the evaluated span, then every minute of the span
goes through `check` (learning online, as in the service). One fault a day, kinds in turn
(tests/addon/anomaly_faults.py). Default span: the held-out data (2010-01-01 to the end,
2010-11-26), never used to tune; `--span validation` runs 2009, which the defaults were
tuned on.

    .venv/bin/python bench/bench_anomaly.py [--span holdout|validation] [--seed N]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from energy_tracker_addon.anomaly import AnomalyDetector
from tests.addon.anomaly_faults import FAULT_KINDS, inject_faults, replay, score
from tests.addon.uci import HOLDOUT_START, UCI_TZ, read_uci

SPANS = {
    "holdout": (HOLDOUT_START, datetime(2010, 11, 27, tzinfo=UCI_TZ)),
    "validation": (datetime(2009, 1, 1, tzinfo=UCI_TZ), HOLDOUT_START),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span", choices=SPANS, default="holdout")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one log line per alert otherwise
    start, end = SPANS[args.span]
    history = read_uci(start - timedelta(weeks=8), start)
    data = read_uci(start, end)
    detector = AnomalyDetector(UCI_TZ)
    detector.fit(history.index.as_unit("s").asi8, history["mains"].mask(history["filled"]))
    faulty, faults = inject_faults(data["mains"].to_numpy(), seed=args.seed)
    began = time.perf_counter()
    alerts = replay(detector, data.index, faulty)
    elapsed = time.perf_counter() - began
    weeks = len(data) / (7 * 1440)
    print(f"span {args.span}: {data.index[0]:%Y-%m-%d} to {data.index[-1]:%Y-%m-%d}, "
          f"{len(data)} minutes, {len(faults)} faults, seed {args.seed}")
    print(f"{'fault':10s} {'faults':>6s} {'found':>6s} {'recall':>7s} "
          f"{'alerts':>7s} {'true':>5s} {'precision':>9s}")
    for name, result in score(alerts, faults, data.index).items():
        print(f"{name:10s} {result.faults:6d} {result.detected:6d} {result.recall:7.3f} "
              f"{result.alerts:7d} {result.true_alerts:5d} {result.precision:9.3f}")
    false_alarms = score(alerts, faults, data.index)["all"]
    print(f"false alarms: {(false_alarms.alerts - false_alarms.true_alerts) / weeks:.2f} a week")
    print("faults: " + ", ".join(f"{k.name} ({k.minutes} min)" for k in FAULT_KINDS))
    print(f"check(): {elapsed / len(data) * 1e6:.1f} us a minute-reading "
          f"({len(data) / elapsed:,.0f} readings/s)")
    state = len(str(detector.to_dict()))
    print(f"state: {state / 1e6:.2f} MB as JSON")


if __name__ == "__main__":
    main()

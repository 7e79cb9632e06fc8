"""Faults injected into real power data, and precision/recall of the anomaly detector on them.

Shared by tests/addon/test_anomaly.py and bench/bench_anomaly.py. One fault per day at a
random time (seeded), cycling through the kinds; every other minute is real data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from energy_tracker_addon.anomaly import Anomaly, AnomalyDetector, AnomalyKind

type FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FaultKind:
    name: str
    minutes: int
    alert: AnomalyKind  # the alert kind that names this fault correctly
    apply: Callable[[FloatArray], FloatArray]


FAULT_KINDS: Final = (
    # a 2 kW heater or pump left on for 4 hours
    FaultKind("stuck_on", 240, "high", lambda power: power + 2000.0),
    # one minute 8 kW above the real reading (a glitch or a short)
    FaultKind("spike", 1, "spike", lambda power: power + 8000.0),
    # the CT clamp slips off: the reading drops to ~0 W for 30 minutes
    FaultKind("dropout", 30, "low", np.zeros_like),
)
# An alert counts for a fault when it starts during the fault or up to this much later
# (the detector's windows need time to fill).
TOLERANCE_MIN: Final = 60


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    start: int  # row index of the first faulty minute
    end: int  # row index after the last one


def inject_faults(
    power: FloatArray, seed: int, kinds: Iterable[FaultKind] = FAULT_KINDS
) -> tuple[FloatArray, list[Fault]]:
    """A copy of a 1-minute series with one fault per whole day, kinds in turn."""
    rng = np.random.default_rng(seed)
    cycle = list(kinds)
    faulty = power.copy()
    faults = []
    for day in range(len(power) // 1440):
        kind = cycle[day % len(cycle)]
        # Leave the window + tolerance free before the next day's fault.
        latest = 1440 - kind.minutes - TOLERANCE_MIN
        start = day * 1440 + int(rng.integers(0, latest))
        end = start + kind.minutes
        faulty[start:end] = kind.apply(power[start:end])
        faults.append(Fault(kind, start, end))
    return faulty, faults


def replay(detector: AnomalyDetector, index: pd.DatetimeIndex, power: FloatArray) -> list[Anomaly]:
    """Every reading through `check`, as the service will; the anomalies that started."""
    alerts = []
    for moment, value in zip(index.to_pydatetime(), power.tolist(), strict=True):
        started = detector.check(moment, value)
        if started is not None:
            alerts.append(started)
    return alerts


@dataclass(frozen=True, slots=True)
class Score:
    faults: int
    detected: int
    alerts: int  # alerts of this fault's alert kind
    true_alerts: int  # ...that started during a fault (of any kind)

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else float("nan")

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else float("nan")


def score(
    alerts: list[Anomaly], faults: list[Fault], index: pd.DatetimeIndex
) -> dict[str, Score]:
    """Per fault kind, and "all": recall over faults, precision over alerts.

    An alert is true when it starts inside a fault or within TOLERANCE_MIN after it; an
    alert outside every fault is a false alarm on real data.
    """
    first = index[0].timestamp()
    alert_rows = np.array([(alert.started.timestamp() - first) // 60 for alert in alerts],
                          np.int64)
    matched = np.zeros(len(alerts), bool)
    detected: dict[str, int] = {}
    for fault in faults:
        inside = (alert_rows >= fault.start) & (alert_rows < fault.end + TOLERANCE_MIN)
        matched |= inside
        detected[fault.kind.name] = detected.get(fault.kind.name, 0) + bool(inside.any())
    kinds = np.array([alert.kind for alert in alerts])
    result = {}
    for kind in FAULT_KINDS:
        of_kind = kinds == kind.alert
        result[kind.name] = Score(
            faults=sum(fault.kind is kind for fault in faults),
            detected=detected.get(kind.name, 0),
            alerts=int(of_kind.sum()),
            true_alerts=int((matched & of_kind).sum()),
        )
    result["all"] = Score(len(faults), sum(detected.values()), len(alerts), int(matched.sum()))
    return result

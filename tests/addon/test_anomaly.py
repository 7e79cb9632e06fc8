"""Anomaly detector on real UCI data: fit before 2010, judged on 2010 with injected faults."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from energy_tracker_addon.analytics import CIRCUIT_DETECTOR
from energy_tracker_addon.anomaly import AnomalyDetector, DetectorSettings

from .anomaly_faults import FAULT_KINDS, inject_faults, replay, score
from .uci import HOLDOUT_START, UCI_TZ, read_uci

FIT_WEEKS = 8


def _epoch_s(index: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    return index.as_unit("s").asi8


@cache
def _history() -> pd.DataFrame:
    """The 8 weeks before the hold-out, filled-gap rows marked missing."""
    data = read_uci(HOLDOUT_START - timedelta(weeks=FIT_WEEKS), HOLDOUT_START)
    return data.assign(mains=data["mains"].mask(data["filled"]))


@cache
def _holdout(days: int) -> pd.DataFrame:
    return read_uci(HOLDOUT_START, HOLDOUT_START + timedelta(days=days))


def _fitted(settings: DetectorSettings | None = None) -> AnomalyDetector:
    history = _history()
    detector = AnomalyDetector(UCI_TZ, settings=settings)
    detector.fit(_epoch_s(history.index), history["mains"].to_numpy())
    return detector


def test_precision_and_recall_on_held_out_2010_with_injected_faults() -> None:
    holdout = _holdout(days=30)
    faulty, faults = inject_faults(holdout["mains"].to_numpy(), seed=2010)
    alerts = replay(_fitted(), holdout.index, faulty)
    scores = score(alerts, faults, holdout.index)
    for name, result in scores.items():
        print(f"{name:9s} faults {result.faults:3d} recall {result.recall:.2f} "
              f"alerts {result.alerts:3d} precision {result.precision:.2f}")
    assert {kind.name for kind in FAULT_KINDS} <= {fault.kind.name for fault in faults}
    assert scores["all"].recall > 0.8
    assert scores["all"].precision > 0.8


def test_a_circuit_switched_off_is_no_anomaly() -> None:
    """The water heater's thermostat leaves its circuit at 0 W for hours in slots where it
    was usually on: with the total's rules that is "far below the usual" several times a
    day; a circuit detector does not judge "low" at all."""
    history = read_uci(HOLDOUT_START - timedelta(weeks=FIT_WEEKS), HOLDOUT_START)
    history = history[~history["filled"]]
    holdout = _holdout(days=30)
    holdout = holdout[~holdout["filled"]]
    lows = {}
    for name, settings in (("total rules", DetectorSettings()), ("circuit", CIRCUIT_DETECTOR)):
        detector = AnomalyDetector(UCI_TZ, "Water heater & AC", settings)
        detector.fit(_epoch_s(history.index), history["water_heater_ac"].to_numpy())
        alerts = replay(detector, holdout.index, holdout["water_heater_ac"].to_numpy())
        lows[name] = sum(a.kind == "low" for a in alerts)
    assert lows["total rules"] >= 10  # what users got: false alarms
    assert lows["circuit"] == 0


def test_a_stuck_load_is_reported_with_the_slot_and_the_excess() -> None:
    holdout = _holdout(days=7)
    power = holdout["mains"].to_numpy().copy()
    # 2010-01-05 is a Tuesday: a 2 kW heater left on from 01:00 to 06:00.
    start = holdout.index.get_loc(pd.Timestamp("2010-01-05 01:00", tz=UCI_TZ))
    power[start:start + 300] += 2000.0
    detector = _fitted()
    alerts = replay(detector, holdout.index, power)
    during = [a for a in alerts if holdout.index[start] <= a.started
              < holdout.index[start] + timedelta(minutes=360)]
    assert [a.kind for a in during] == ["high"]
    anomaly = during[0]
    match = re.fullmatch(r"base load (\d+\.\d) kW above the usual for Tuesday (\d\d):00",
                         anomaly.reason)
    assert match is not None, anomaly.reason
    assert float(match[1]) == pytest.approx(2.0, abs=0.3)
    assert int(match[2]) == anomaly.started.astimezone(UCI_TZ).hour
    assert anomaly.as_dict()["reason"] == anomaly.reason


def test_a_dropout_during_a_stuck_load_is_announced_as_its_own_anomaly() -> None:
    """A 2 kW load stuck on, then the clamp reading 0 W: the episode stayed "high", saying
    "2.0 kW above the usual" over a total of 0 W, and the dropout was never announced."""
    holdout = _holdout(days=3)
    power = holdout["mains"].to_numpy().copy()
    at = holdout.index.get_loc
    power[at(pd.Timestamp("2010-01-02 00:30", tz=UCI_TZ)):
          at(pd.Timestamp("2010-01-02 04:00", tz=UCI_TZ))] += 2000.0
    drop = at(pd.Timestamp("2010-01-02 04:00", tz=UCI_TZ))
    power[drop:drop + 60] = 0.0
    detector = AnomalyDetector(UCI_TZ)
    detector.fit(_epoch_s(_history().index), _history()["mains"].to_numpy())
    alerts = replay(detector, holdout.index[:drop + 55], power[:drop + 55])
    night = [a.kind for a in alerts if a.started.astimezone(UCI_TZ).date().day == 2
             and a.started.astimezone(UCI_TZ).hour < 5]
    assert night == ["high", "low"]
    assert detector.active is not None
    assert detector.active.kind == "low"
    assert "below the usual" in detector.active.reason


def test_a_clock_set_back_does_not_silence_the_detector() -> None:
    """NTP setting back a clock that ran 2 h ahead: every reading was ignored until the old
    time came back, and a clamp reading 0 W meanwhile was never reported."""
    holdout = _holdout(days=3)
    power = holdout["mains"].to_numpy().copy()
    fix = holdout.index.get_loc(pd.Timestamp("2010-01-02 12:00", tz=UCI_TZ))
    power[fix + 30:fix + 90] = 0.0  # 12:30-13:30
    detector = _fitted()
    alerts = []
    for i, (moment, value) in enumerate(zip(holdout.index, power, strict=True)):
        stamp = moment.to_pydatetime() + (timedelta(hours=2) if i < fix else timedelta(0))
        if (anomaly := detector.check(stamp, float(value))) is not None:
            alerts.append(anomaly)
    dropout = [a for a in alerts if a.kind == "low"
               and holdout.index[fix] <= a.started < holdout.index[fix + 90]]
    assert len(dropout) == 1


def test_quarter_hour_slots_name_the_quarter() -> None:
    holdout = _holdout(days=7)
    power = holdout["mains"].to_numpy().copy()
    start = holdout.index.get_loc(pd.Timestamp("2010-01-06 03:00", tz=UCI_TZ))  # Wednesday
    power[start:start + 30] = 0.0
    detector = _fitted(DetectorSettings(slot_minutes=15))
    alerts = [a for a in replay(detector, holdout.index, power) if a.kind == "low"]
    assert len(alerts) == 1
    assert re.fullmatch(r"\d\.\d kW below the usual for Wednesday 03:(00|15|30|45) \(now 0\.0 kW\)",
                        alerts[0].reason), alerts[0].reason


def test_missing_readings_are_not_taken_for_a_dropout() -> None:
    holdout = _holdout(days=7)
    keep = np.ones(len(holdout), bool)
    rng = np.random.default_rng(7)
    for start in rng.integers(0, len(holdout) - 200, size=40):  # 40 gaps of 1-5 minutes
        keep[start:start + rng.integers(1, 6)] = False
    keep[3000:3180] = False  # and a 3-hour outage of the meter
    kept = holdout[keep]
    full_alerts = replay(_fitted(), holdout.index, holdout["mains"].to_numpy())
    gappy_alerts = replay(_fitted(), kept.index, kept["mains"].to_numpy())
    assert [a.kind for a in gappy_alerts if a.kind == "low"] == []
    assert len(gappy_alerts) <= len(full_alerts) + 1


def test_learning_from_gappy_history_gives_the_same_verdicts() -> None:
    """Short gaps in the history are interpolated before learning, not learned as holes."""
    history = _history()
    rng = np.random.default_rng(3)
    gappy = history["mains"].to_numpy().copy()
    gappy[rng.random(len(gappy)) < 0.05] = np.nan  # 5 % of minutes lost, singly
    holed = AnomalyDetector(UCI_TZ)
    holed.fit(_epoch_s(history.index), gappy)
    holdout = _holdout(days=14)
    faulty, faults = inject_faults(holdout["mains"].to_numpy(), seed=11)
    clean_score = score(replay(_fitted(), holdout.index, faulty), faults, holdout.index)
    holed_score = score(replay(holed, holdout.index, faulty), faults, holdout.index)
    assert holed_score["all"].detected == clean_score["all"].detected
    assert abs(holed_score["all"].alerts - clean_score["all"].alerts) <= 1


def test_faults_in_the_history_do_not_become_usual() -> None:
    """Outlier rejection: a heater left on every night of the last 3 training weeks is
    still an anomaly afterwards."""
    history = _history()
    power = history["mains"].to_numpy().copy()
    local = history.index.tz_convert(UCI_TZ)
    recent = local >= HOLDOUT_START - timedelta(weeks=3)
    power[recent & (local.hour >= 1) & (local.hour < 5)] += 2000.0
    detector = AnomalyDetector(UCI_TZ)
    detector.fit(_epoch_s(history.index), power)
    holdout = _holdout(days=2)
    faulty = holdout["mains"].to_numpy().copy()
    night = (holdout.index.hour >= 1) & (holdout.index.hour < 5)
    faulty[night] += 2000.0
    kinds = [a.kind for a in replay(detector, holdout.index, faulty)]
    assert kinds.count("high") >= 2  # both nights


def test_restored_detector_judges_like_the_original() -> None:
    holdout = _holdout(days=7)
    faulty, _ = inject_faults(holdout["mains"].to_numpy(), seed=5)
    original = _fitted()
    half = len(holdout) // 2
    replay(original, holdout.index[:half], faulty[:half])
    state = json.loads(json.dumps(original.to_dict()))
    restored = AnomalyDetector.from_dict(state, UCI_TZ)
    # Both resume after a restart-sized pause, which resets the live windows anyway.
    later = holdout.index[half + 300:]
    expected = replay(original, later, faulty[half + 300:])
    assert replay(restored, later, faulty[half + 300:]) == expected
    assert len(expected) > 0


def test_a_quick_restart_carries_on_an_episode_without_announcing_it_again() -> None:
    """An add-on update in the middle of a stuck load: the episode goes on (still active,
    same start) and ends when the load does; a restart used to announce it again."""
    holdout = _holdout(days=7)
    power = holdout["mains"].to_numpy().copy()
    start = holdout.index.get_loc(pd.Timestamp("2010-01-05 01:00", tz=UCI_TZ))
    power[start:start + 300] += 2000.0
    original = _fitted()
    stop = start + 240  # mid-episode (announced about two hours in)
    before = replay(original, holdout.index[:stop], power[:stop])
    episode = original.active
    assert episode is not None
    assert episode in before
    restored = AnomalyDetector.from_dict(json.loads(json.dumps(original.to_dict())), UCI_TZ)
    restored.resume(json.loads(json.dumps(original.live_state())))
    assert restored.active == episode
    later = slice(stop + 2, start + 600)  # two minutes down, then on to well after the load
    alerts = replay(restored, holdout.index[later], power[later])
    assert alerts == replay(original, holdout.index[later], power[later])
    assert [a for a in alerts if a.started < holdout.index[start + 300]] == []
    assert restored.active is None
    with pytest.raises(ValueError, match="malformed anomaly stream state"):
        restored.resume({"minute": 1})
    assert restored.active is None  # a bad state changes nothing


@pytest.mark.parametrize("down_min", [6, 30])
def test_a_longer_stop_does_not_end_an_episode_and_announce_it_again(down_min: int) -> None:
    """Down for more than 5 minutes (an update, a stale board) with a load stuck on: the
    windows restarted, the 90 minutes before they were full counted as calm, and the
    episode ended, to be announced again as new (helper 84). Minutes that cannot be judged
    are not calm; the episode still ends with the load."""
    holdout = _holdout(days=7)
    power = holdout["mains"].to_numpy().copy()
    start = holdout.index.get_loc(pd.Timestamp("2010-01-05 01:00", tz=UCI_TZ))
    power[start:start + 420] += 2000.0
    original = _fitted()
    stop = start + 240
    replay(original, holdout.index[:stop], power[:stop])
    episode = original.active
    assert episode is not None
    restored = AnomalyDetector.from_dict(json.loads(json.dumps(original.to_dict())), UCI_TZ)
    restored.resume(json.loads(json.dumps(original.live_state())))
    during = slice(stop + down_min, start + 420)
    assert replay(restored, holdout.index[during], power[during]) == []
    assert restored.active == episode
    after = slice(start + 420, start + 720)
    replay(restored, holdout.index[after], power[after])
    assert restored.active is None


def test_bad_input_is_refused_or_ignored_with_a_defined_state() -> None:
    detector = _fitted()
    moment = datetime(2010, 1, 4, 12, 0, tzinfo=UCI_TZ)
    with pytest.raises(ValueError, match="aware"):
        detector.check(moment.replace(tzinfo=None), 500.0)
    for step, value in enumerate([500.0, float("nan"), float("inf"), 510.0]):
        assert detector.check(moment + timedelta(minutes=step), value) is None
    assert detector.active is None
    with pytest.raises(ValueError, match="malformed anomaly detector state"):
        AnomalyDetector.from_dict({"version": 1, "series": "total", "settings": {},
                                   "next": [], "samples": "!!"}, UCI_TZ)
    with pytest.raises(ValueError, match="slot_minutes must divide a day"):
        DetectorSettings(slot_minutes=7)
    with pytest.raises(ValueError, match="no finite readings"):
        detector.fit([0.0, 60.0], [float("nan"), float("nan")])

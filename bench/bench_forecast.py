"""Held-out accuracy and speed of the add-on's energy forecast (the shipped model file).

Scores the shipped `forecast_model/model.json` on every hour of the UCI household's 2010
(held out: never trained, tuned or selected on), forecast from every hour as origin (24-hour
curves), against seasonal-naive (same hour a week before), daily-naive (same hour the day
before) and gradient boosting (scikit-learn on the same features, fitted here on the hours
before 2010; skipped without scikit-learn). Prints MAE, the improvement over seasonal-naive
against the 20 % goal, per-week results, and the time of one forecast and of one retrain.

    nice -n 19 .venv/bin/python bench/bench_forecast.py [--no-gbm]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from energy_tracker_addon.forecast import HORIZONS, Calendar, Forecaster, HourlyHistory
from energy_tracker_models.forecast_train import (
    GOAL_IMPROVEMENT,
    HOLDOUT_START,
    UCI_TZ,
    evaluate,
    gbm_fit,
    index_of,
    summary,
    uci_hourly,
)

LABELS = {
    "seasonal_naive_168h": "seasonal-naive (same hour last week)",
    "daily_naive_24h": "daily-naive (same hour yesterday)",
    "gradient_boosting": "gradient boosting (sklearn, same features)",
    "model": "shipped model (per-horizon LAD ridge)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-gbm", action="store_true", help="skip the boosting baseline")
    args = parser.parse_args()
    model = Forecaster.load()
    history = uci_hourly()
    calendar = Calendar.of_hours(history.start, len(history.kwh) + HORIZONS, UCI_TZ)
    holdout = index_of(history, HOLDOUT_START)
    gbm = None
    if args.no_gbm:
        print("gradient boosting: skipped (--no-gbm)")
    else:
        try:
            started = time.monotonic()
            gbm = gbm_fit(history, calendar, holdout)
            print(f"gradient boosting fitted on hours before 2010 in "
                  f"{time.monotonic() - started:.0f} s")
        except ImportError:
            print("gradient boosting: scikit-learn is not installed (pip install scikit-learn)")
    scores = evaluate(model, history, calendar, holdout, len(history.kwh), gbm)
    result = summary(scores)
    print(f"\nHeld-out UCI 2010, {result['pairs']} (origin, hour) pairs, kWh per hour")
    print(f"{'method':45} {'MAE 24h curve':>14} {'MAE next hour':>14} {'MAE 24h total':>14}"
          f" {'vs seasonal-naive':>18}")
    for name in scores.errors:
        print(f"{LABELS[name]:45} {result['mae_kwh'][name]:14.4f} "
              f"{result['next_hour_mae_kwh'][name]:14.4f} "
              f"{result['next_24h_total_mae_kwh'][name]:14.3f} "
              f"{result['improvement_vs_seasonal_naive'][name]:17.1%}")
    improvement = result["improvement_vs_seasonal_naive"]["model"]
    verdict = "MET" if improvement >= GOAL_IMPROVEMENT else "MISSED"
    print(f"\ngoal: MAE >= {GOAL_IMPROVEMENT:.0%} below seasonal-naive -> {improvement:.1%}: "
          f"{verdict}")
    print(f"weeks meeting the goal: {result['weeks_meeting_goal']} of {result['weeks']} "
          f"(worst week {result['worst_week_improvement']:.1%})")
    if gbm is not None:
        gap = 1 - result["mae_kwh"]["model"] / result["mae_kwh"]["gradient_boosting"]
        print(f"shipped model vs gradient boosting: {gap:+.1%} MAE "
              "(negative: boosting is more accurate)")

    # Speed, as the add-on runs it: one forecast from 8 weeks of hours; one weekly retrain.
    end = holdout + 10 * 7 * 24
    recent = HourlyHistory(history.start + timedelta(hours=end - 8 * 7 * 24),
                           history.kwh[end - 8 * 7 * 24 : end])
    now = recent.end
    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        model.predict(now, recent, UCI_TZ)
    predict_ms = (time.perf_counter() - started) / runs * 1000
    started = time.perf_counter()
    report = model.retrain(recent, UCI_TZ)
    retrain_s = time.perf_counter() - started
    print(f"\nforecast (24 hours from 8 weeks of history): {predict_ms:.1f} ms")
    print(f"retrain on 8 weeks of history: {retrain_s:.1f} s "
          f"({'accepted' if report.accepted else 'refused: ' + report.reason})")


if __name__ == "__main__":
    main()

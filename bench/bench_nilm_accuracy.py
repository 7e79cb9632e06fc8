"""NILM accuracy on held-out data, baselines side by side (the model card's numbers, measured now).

    .venv/bin/python bench/bench_nilm_accuracy.py [--bundle DIR] [--cache DIR]

Per target: MAE (W) of always-off, the training mean, the float Keras model (needs
TensorFlow and the `train` checkpoints; "n/a" otherwise) and the shipped int8 TFLite model
through the add-on's inference code, on the held-out set — UCI 2010 for the circuits,
synthetic 2010 houses with unseen AMBAL models for the appliances — and the issue's goal:
circuits ≤ 40 % of always-off, appliances ≤ the published Seq2Point MAE on UK-DALE house 2.
For the circuits it then prints where the int8 error lies by true power (W of the MAE
under- and over-estimated per band), which shows what a miss is made of.
Missing prepared sets are made first (`energy-tracker-models prepare`, ~10 s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from energy_tracker_addon.nilm import DEFAULT_BUNDLE, load_bundle
from energy_tracker_models.cli import DEFAULT_CACHE
from energy_tracker_models.drift import error_by_band
from energy_tracker_models.prepare import prepare
from energy_tracker_models.report import PUBLISHED_MAE, held_out
from energy_tracker_models.targets import ALL_TARGETS

CIRCUIT_GOAL_RATIO = 0.4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    if not all((args.cache / f"{s}_test.npz").is_file() for s in ("uci", "synth")):
        prepare(args.cache)
    bundle = load_bundle(args.bundle)
    print(f"{'target':16} {'always_off':>10} {'mean':>8} {'keras':>8} {'int8':>8}  goal")
    figures: dict[str, dict[str, float | str | bool]] = {}
    bands: dict[str, list[dict[str, float | str]]] = {}
    for name, runner in bundle.models.items():
        target = ALL_TARGETS[name]
        result = held_out(name, args.cache, runner)
        rows = result.rows
        if target.kind == "circuit":
            bands[name] = error_by_band(result.pred, result.truth)
        mae = {label: row["mae_w"] for label, row in rows.items()}
        if target.kind == "circuit":
            goal_w = CIRCUIT_GOAL_RATIO * mae["always_off"]
            goal = f"≤ {goal_w:.1f} W (40 % of always-off); int8 at " \
                   f"{mae['tflite_int8'] / mae['always_off']:.0%}"
        else:
            goal_w = PUBLISHED_MAE[name]
            # Published on real UK-DALE house 2, not these houses: a reference, not a
            # like-for-like comparison.
            goal = f"≤ {goal_w} W (published Seq2Point, other data)"
        met = mae["tflite_int8"] <= goal_w
        verdict = "met" if met else "MISSED"
        if met and mae["always_off"] <= goal_w:
            # A rarely used appliance: predicting 0 W meets that goal too.
            verdict += ", as always-off would" + (
                "; int8 no better than always-off"
                if mae["tflite_int8"] >= mae["always_off"] else "")
        keras = f"{mae['keras_float']:8.1f}" if "keras_float" in mae else f"{'n/a':>8}"
        print(f"{name:16} {mae['always_off']:10.1f} {mae['mean']:8.1f} {keras} "
              f"{mae['tflite_int8']:8.1f}  {goal}: {verdict}")
        figures[name] = {**{f"{k}_mae_w": round(v, 2) for k, v in mae.items()},
                         "goal_mae_w": round(goal_w, 2), "goal_met": met,
                         "beats_always_off": mae["tflite_int8"] < mae["always_off"]}
    for name, parts in bands.items():
        print(f"\n{name}, held-out int8 error by true power (W of MAE):")
        print(f"  {'true power':14} {'minutes':>8} {'under':>7} {'over':>7}")
        for part in parts:
            print(f"  {part['band']:14} {part['share']:8.1%} {part['under_w']:7.1f} "
                  f"{part['over_w']:7.1f}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""`report`: held-out evaluation with baselines side by side, plots, and the model card.

For each target: always-off, training-mean, float Keras and int8 TFLite (through the
add-on's nilm.py) on the held-out set — UCI 2010 for circuits, synthetic 2010 houses with
unseen AMBAL models for appliances — plus the real UK-DALE slice for the appliances.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from energy_tracker_addon.nilm import ModelRunner, disaggregate_series, load_bundle, postprocess

from .card import write_card
from .data import read_power_csv, resample
from .drift import energy_by_band_per_year, error_by_band, long_runs_per_quarter
from .evaluate import score
from .export import attach_metrics
from .prepare import join_uci, load_set
from .targets import ALL_TARGETS
from .train import target_set
from .windows import gather, valid_centres

UKDALE_SLICE = Path(__file__).resolve().parents[1] / "data" / "ukdale_h1_2014-09-11_6s.csv.gz"
# Published Seq2Point MAE (W) on UK-DALE house 2 at 6 s (Zhang et al., AAAI 2018)
PUBLISHED_MAE = {"kettle": 9.6, "fridge": 29.2, "washing_machine": 11.9, "microwave": 6.4,
                 "dishwasher": 25.4}
CARD_DIR = Path(__file__).resolve().parents[1]
# Circuits with a fridge (UCI: sub-meter 2 holds the refrigerator): the card counts its long
# runs per quarter, the reason laundry validates on summer and autumn 2009
FRIDGE_CIRCUITS = ("laundry",)
HELD_OUT = {"circuit": "UCI 2010-01-01..2010-11-26 (held out)",
            "appliance": "30 synthetic days on UCI 2010 backgrounds, unseen AMBAL models"}


def keras_series(name: str, cache: Path, runner: ModelRunner, mains: NDArray[np.float32]
                 ) -> NDArray[np.float32] | None:
    """Float Keras predictions aligned like `disaggregate_series` (None without TensorFlow
    or without the `train` checkpoint, which is not shipped: "n/a" in the bench)."""
    path = cache / "keras" / f"{name}.keras"
    if not path.is_file():
        return None
    try:
        import keras
    except ImportError:
        return None
    spec = runner.spec
    model = keras.models.load_model(path)
    out = np.full(len(mains), np.nan, dtype=np.float32)
    centres = valid_centres(np.isfinite(mains), spec.window)
    for start in range(0, len(centres), 50_000):
        c = centres[start : start + 50_000]
        x = (gather(mains, c, spec.window) - spec.input_mean) / spec.input_std
        y = model.predict(x[..., None], batch_size=4096, verbose=0).reshape(-1)
        out[c] = postprocess(y * spec.output_scale, mains[c])
    return out


def compare(name: str, cache: Path, runner: ModelRunner, mains: NDArray[np.float32],
            truth: NDArray[np.float32], train_mean: float) -> tuple[dict[str, Any], Any]:
    spec = runner.spec
    int8 = disaggregate_series(runner, mains)
    ok = np.isfinite(int8.power_w)
    rows: dict[str, Any] = {}
    zeros = np.where(ok, 0.0, np.nan)
    mean = np.where(ok, np.minimum(train_mean, np.nan_to_num(mains)), np.nan)
    for label, pred in (("always_off", zeros), ("mean", mean)):
        rows[label] = score(spec, pred, truth)
    float_pred = keras_series(name, cache, runner, mains)
    if float_pred is not None:
        float_pred[~ok] = np.nan
        rows["keras_float"] = score(spec, float_pred, truth)
    rows["tflite_int8"] = score(spec, int8.power_w, truth)
    return rows, int8.power_w


class HeldOut(NamedTuple):
    rows: dict[str, Any]  # baseline or model → metrics
    pred: NDArray[np.float32]  # int8 power
    mains: NDArray[np.float32]
    truth: NDArray[np.float32]
    train_mean: float


def held_out(name: str, cache: Path, runner: ModelRunner) -> HeldOut:
    """Baselines and models on the target's held-out set."""
    target = ALL_TARGETS[name]
    test = target_set(target, cache, "test")
    train_mean = float(target_set(target, cache, "train").truth[name].mean())
    mains = np.where(test.valid, test.mains, np.nan).astype(np.float32)
    truth = test.truth[name]
    rows, pred = compare(name, cache, runner, mains, truth, train_mean)
    return HeldOut(rows, pred, mains, truth, train_mean)


def whole_circuit(name: str, cache: Path) -> tuple[int, NDArray[np.float32], NDArray[np.bool_]]:
    """(start, truth, valid) of a UCI circuit over training, validation and held-out sets."""
    whole = join_uci([load_set(cache / f"uci_{split}.npz") for split in ("train", "val", "test")],
                     cache)
    return int(whole.start), whole.truth[name], whole.valid


def _busiest_day(truth: NDArray[np.float32], per_day: int) -> int:
    days = len(truth) // per_day
    energy = truth[: days * per_day].reshape(days, per_day)
    return int(np.argmax((energy > 0).mean(axis=1) * energy.mean(axis=1) ** 0.5))


def report(cache: Path, models: Path, ukdale: Path | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bundle = load_bundle(models)
    results: dict[str, Any] = {}
    plots = CARD_DIR / "card"
    plots.mkdir(exist_ok=True)
    real = read_power_csv(ukdale or UKDALE_SLICE)
    real_plots: list[tuple[str, Any, NDArray[np.float32]]] = []
    for name, runner in bundle.models.items():
        target = ALL_TARGETS[name]
        rows, pred, mains, truth, train_mean = held_out(name, cache, runner)
        entry: dict[str, Any] = {"held_out": rows}
        if target.kind == "circuit":
            entry["goal"] = {"mae_ratio_to_always_off": round(
                rows["tflite_int8"]["mae_w"] / rows["always_off"]["mae_w"], 3), "max": 0.4}
            # The months that steered training, beside the held-out year: the gap between
            # them is how much the house changed, not something tuning could close
            val = target_set(target, cache, "val")
            entry["validation"], val_pred = compare(
                name, cache, runner, np.where(val.valid, val.mains, np.nan).astype(np.float32),
                val.truth[name], train_mean)
            entry["error_by_band"] = {"validation": error_by_band(val_pred, val.truth[name]),
                                      "held_out": error_by_band(pred, truth)}
            start, truth_all, valid_all = whole_circuit(name, cache)
            entry["energy_by_band"] = energy_by_band_per_year(start, 60, truth_all, valid_all)
            if name in FRIDGE_CIRCUITS:
                entry["long_fridge_runs"] = long_runs_per_quarter(start, 60, truth_all,
                                                                  valid_all)
        else:
            entry["goal"] = {"published_seq2point_mae_w": PUBLISHED_MAE[name]}
        if name in real.columns:
            series = resample(real[["mains", name]], runner.spec.period_s)
            entry["ukdale_h1"], real_pred = compare(name, cache, runner,
                                                    series["mains"].to_numpy(np.float32),
                                                    series[name].to_numpy(np.float32),
                                                    train_mean)
            if series[name].max() >= target.on_w:
                real_plots.append((name, series, real_pred))
        results[name] = entry
        per_day = 86_400 // runner.spec.period_s
        d = _busiest_day(truth, per_day)
        sl = slice(d * per_day, (d + 1) * per_day)
        hours = np.arange(per_day) * runner.spec.period_s / 3600
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(hours, mains[sl], color="0.8", lw=0.6, label="mains")
        ax.plot(hours, truth[sl], color="tab:blue", lw=0.9, label="true")
        ax.plot(hours, pred[sl], color="tab:red", lw=0.9, label="predicted (int8)")
        ax.set(xlabel="hour of test day", ylabel="W", title=f"{name} — held-out test day",
               ylim=(0, max(float(np.nanmax(truth[sl])) * 1.3, target.on_w * 2)))
        ax.legend(loc="upper right", fontsize=7)
        fig.tight_layout()
        fig.savefig(plots / f"{name}.png", dpi=72)
        plt.close(fig)
    if real_plots:
        fig, axes = plt.subplots(len(real_plots), 1, figsize=(9, 2.2 * len(real_plots)),
                                 sharex=True)
        for ax, (name, series, pred) in zip(np.atleast_1d(axes), real_plots, strict=True):
            hours = (series.index - series.index[0]).total_seconds() / 3600
            ax.plot(hours, series[name], color="tab:blue", lw=0.8, label=f"{name} true")
            ax.plot(hours, pred, color="tab:red", lw=0.8, label="predicted (int8)")
            ax.set_ylabel("W")
            ax.legend(loc="upper right", fontsize=7)
        np.atleast_1d(axes)[-1].set_xlabel("hour, UK-DALE house 1, 2014-09-11")
        fig.tight_layout()
        fig.savefig(plots / "ukdale_h1.png", dpi=72)
        plt.close(fig)
    (cache / "report.json").write_text(json.dumps(results, indent=2))
    attach_metrics(models, {name: {
        "test_set": HELD_OUT[ALL_TARGETS[name].kind],
        **{label: row for label, row in entry["held_out"].items()},
        **({"ukdale_h1_tflite_int8": entry["ukdale_h1"]["tflite_int8"]}
           if "ukdale_h1" in entry else {}),
    } for name, entry in results.items()})
    return write_card(bundle, results, CARD_DIR / "MODEL_CARD.md")

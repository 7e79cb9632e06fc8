"""`finetune`: adapt the trained models to one home from the user's labels (README, Feedback).

Labels come from Home Assistant's `energy_tracker.label_appliance` action, kept by the add-on
(`<data>/nilm_labels.jsonl`, or `GET /api/v1/labels`); the mains history from the add-on's
export (`GET /api/v1/export`, column `total_power_w`). A label turns into training windows
at the model's period, one per bin inside [start, end) with a full window of history:

* `was_running: true` — the target is what the house drew above its level around the run
  (the lower of the medians of the `BASELINE_BINS` bins before the start and after the
  end: a start typed a little late, "07:02" for 07:01:40, put the bins before it inside
  the run, and the kettle was learnt as off);
* `was_running: false` — a wrong detection: the target is 0 W over the whole interval.

Turning labels into windows needs numpy and pandas only (tested without TensorFlow); the
fit itself starts from the Keras checkpoint of `train` with a small learning rate and
writes it back, so `export` builds the home's bundle from it. It fits the label windows
only: in a user's test (9 kettle labels on 8 hours, 3 repeats each) adding 0 W windows on
the quiet bins around each run, or twice as many windows from the rest of the history with
`train`'s own prediction as target, left the hours not labelled no better (MAE 62-65 W
against 61 W; 51 W before fine-tuning): the false readings there came from a washing
machine's heating that the labelled hours never held (models/README.md, Feedback).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .data import DataError, read_power_csv, resample, sampling_s, too_coarse

BASELINE_BINS = 5
# Warned about (a start typed late, the bins before it inside the run): a level this much
# higher before the run than after it.
LATE_START_W = 200.0
LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class Label:
    appliance: str
    start: pd.Timestamp
    end: pd.Timestamp
    was_running: bool


def read_labels(path: Path) -> list[Label]:
    """JSONL as the add-on stores it, or the `{"labels": [...]}` of GET /api/v1/labels
    (pretty-printed too).

    Times must carry their UTC offset, as the add-on writes them: a naive time could be
    local or UTC, hours apart. `was_running` must be a JSON boolean ("false" is not).
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        whole = json.loads(data)
    except ValueError:
        whole = None
    try:
        if isinstance(whole, dict) and "labels" in whole:
            rows = whole["labels"]
            if not isinstance(rows, list):
                raise ValueError("'labels' must be a list")
        elif isinstance(whole, list):
            rows = whole
        else:
            # The add-on's JSONL: a line torn by a crash or a damaged byte costs that label
            # only, as in the add-on itself (nilm_service.LabelStore).
            rows = []
            for line in data.splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    if line.strip():
                        logging.getLogger(__name__).warning(
                            "%s: skipped a line that is not JSON: %r", path, line[:60])
            if not rows:
                raise ValueError("no label in it")
    except ValueError as err:
        raise DataError(f"{path}: not a label file ({err})") from err
    return [_label(path, number, row) for number, row in enumerate(rows, 1)]


LABEL_FORMAT = ('one JSON object per label: {"appliance": "kettle", "start": '
                '"2026-11-02T07:00:00+00:00", "end": "...", "was_running": true}')


def _label(path: Path, number: int, row: object) -> Label:
    if not isinstance(row, dict):
        raise DataError(f"{path}: label {number} is not a JSON object ({str(row)[:40]}); "
                        f"expected {LABEL_FORMAT}")
    missing = [key for key in ("appliance", "start", "end") if key not in row]
    if missing:
        raise DataError(f"{path}: label {number} lacks {', '.join(map(repr, missing))}; "
                        f"expected {LABEL_FORMAT}")
    name = f"label {number} ({row['appliance']})"
    times = []
    for key in ("start", "end"):
        try:
            time = pd.Timestamp(row[key])
        except (ValueError, TypeError) as err:
            raise DataError(f"{path}: {name}: {key} {row[key]!r} is not an ISO 8601 time "
                            f"({err})") from None
        if pd.isna(time):
            raise DataError(f"{path}: {name}: {key} {row[key]!r} is not an ISO 8601 time")
        if time.tzinfo is None:
            raise DataError(f"{path}: {name}: {key} {row[key]!r} has no UTC offset; give "
                            "it as the add-on does, e.g. 2026-11-02T07:00:00+00:00")
        times.append(time)
    if times[1] <= times[0]:
        raise DataError(f"{path}: {name}: end {row['end']!r} is not after start "
                        f"{row['start']!r}")
    running = row.get("was_running", True)
    if not isinstance(running, bool):
        raise DataError(f"{path}: {name}: was_running must be true or false (JSON), "
                        f"not {running!r}")
    return Label(str(row["appliance"]), times[0], times[1], running)


def read_history(path: Path) -> pd.Series:
    """The add-on's export (CSV or Parquet): `timestamp` and `total_power_w` (W), indexed by
    UTC time; a CSV as `evaluate` reads it (`timestamp,mains` too, unix seconds, gzip)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix != ".parquet":
        return read_power_csv(path)["mains"]
    try:
        df = pd.read_parquet(path)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: not a Parquet file of the add-on's export "
                        f"({type(err).__name__}: {err})") from None
    if "timestamp" not in df.columns or "total_power_w" not in df.columns:
        raise DataError(f"{path}: needs columns 'timestamp' and 'total_power_w' "
                        "(an add-on export)")
    try:
        index = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: timestamps must be ISO 8601 ({err})") from None
    power = pd.to_numeric(df["total_power_w"], errors="coerce")
    return pd.Series(power.to_numpy(), index=pd.DatetimeIndex(index), name="mains").sort_index()


def label_windows(labels: list[Label], mains: pd.Series, appliance: str, period_s: int,
                  window: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Mains windows (N, window) in W and target powers (N,) in W for one appliance."""
    x, y, _ = windows_and_misses(labels, mains, appliance, period_s, window)
    return x, y


def windows_and_misses(labels: list[Label], mains: pd.Series, appliance: str, period_s: int,
                       window: int) -> tuple[NDArray[np.float32], NDArray[np.float32], int]:
    """`label_windows`, and how many of the appliance's labels overlap the history yet
    give no window (too near its start or end, or in a gap, for a whole window)."""
    first, last = mains.index.min(), mains.index.max()
    misses = 0
    series = resample(mains.to_frame(), period_s)["mains"]
    values = series.to_numpy(np.float32)
    half = window // 2
    xs: list[NDArray[np.float32]] = []
    ys: list[float] = []
    for label in labels:
        if label.appliance != appliance:
            continue
        overlaps = not (label.end <= first or label.start > last)  # see outside_history
        made = len(xs)
        inside = np.flatnonzero((series.index >= label.start) & (series.index < label.end))
        if not len(inside):
            misses += overlaps
            continue
        baseline = _baseline(values, inside, label)
        for i in inside:
            if i < half or i + half >= len(values):
                continue
            x = values[i - half:i + half + 1]
            if not np.isfinite(x).all():
                continue
            xs.append(x)
            ys.append(max(float(values[i]) - baseline, 0.0) if label.was_running else 0.0)
        misses += overlaps and len(xs) == made
    if not xs:
        return np.empty((0, window), np.float32), np.empty(0, np.float32), misses
    return np.stack(xs), np.asarray(ys, np.float32), misses


def _baseline(values: NDArray[np.float32], inside: NDArray[np.intp], label: Label) -> float:
    """The house's level around a labelled run: the lower of the medians just before and
    just after it; a warning when they differ as if the label started late."""
    before = values[max(inside[0] - BASELINE_BINS, 0):inside[0]]
    after = values[inside[-1] + 1:inside[-1] + 1 + BASELINE_BINS]
    levels = [float(np.median(side[np.isfinite(side)])) for side in (before, after)
              if np.isfinite(side).any()]
    if not levels:
        return float(np.nanmin(values[inside]))
    if label.was_running and len(levels) == 2 and levels[0] - levels[1] > LATE_START_W:
        logging.getLogger(__name__).warning(
            "label of %s from %s: the house drew %.0f W more just before it than just after "
            "its end; did the run start earlier? Its level is taken from after the end",
            label.appliance, label.start, levels[0] - levels[1])
    return min(levels)


def history_needed(period_s: int, window: int) -> str:
    """What a label needs around it to give a window, said in the output."""
    return f"needs {window // 2 * period_s / 60:g} min of history on each side"


def warn_contradictions(labels: list[Label]) -> None:
    """Overlapping labels of one appliance that say it ran and did not: both are trained
    on, pulling the model two ways over the overlap."""
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if (a.appliance == b.appliance and a.was_running != b.was_running
                    and a.start < b.end and b.start < a.end):
                logging.getLogger(__name__).warning(
                    "contradictory labels of %s: %s to %s says was_running %s, %s to %s "
                    "says %s", a.appliance, a.start, a.end, str(a.was_running).lower(),
                    b.start, b.end, str(b.was_running).lower())


def finetune(labels_path: Path, history_path: Path, cache: Path, epochs: int,
             targets: list[str] | None = None) -> dict[str, Any]:
    """Fit each labelled target's trained checkpoint on all its label windows.

    Every run starts again from what `train` made (kept as `<name>.before-finetune.keras`
    the first time), so running it again with all the labels so far (GET /api/v1/labels
    returns them all) re-fits rather than trains twice on the old ones. Every input and
    checkpoint is checked before the first fit, so a bad one changes nothing.
    """
    from .targets import ALL_TARGETS

    # Bad input is reported before TensorFlow (an optional extra) is even needed.
    labels, mains = read_labels(labels_path), read_history(history_path)
    wanted = set(targets or ALL_TARGETS)
    names = sorted({label.appliance for label in labels} & wanted)
    # Labels the add-on kept for an appliance no model here knows ("kettel", a home's own
    # "toaster"): said, not dropped silently.
    unknown = sorted({label.appliance for label in labels} - set(ALL_TARGETS))
    if unknown:
        logging.getLogger(__name__).warning(
            "labels of %s ignored: no model of that name (models: %s)",
            ", ".join(unknown), ", ".join(sorted(ALL_TARGETS)))
    if not names:
        raise DataError(f"{labels_path}: no label for {sorted(wanted)}"
                        + (f" (the labels name {', '.join(unknown)})" if unknown else ""))
    # Minute data for a 6 s model: said as such, not as labels outside the history.
    spacing = sampling_s(pd.DatetimeIndex(mains.index[mains.notna()]))
    coarse = {name: why for name in names
              if (why := too_coarse(spacing, ALL_TARGETS[name].period_s)) is not None}
    if coarse and len(coarse) == len(names):
        raise DataError(f"{history_path}: " + "; ".join(
            f"{name}: {why} (the add-on's export, /api/v1/export, has every reading)"
            for name, why in coarse.items()))
    names = [name for name in names if name not in coarse]
    warn_contradictions([label for label in labels if label.appliance in names])
    found = {name: windows_and_misses(labels, mains, name, ALL_TARGETS[name].period_s,
                                      ALL_TARGETS[name].window) for name in names}
    windows = {name: (x, y) for name, (x, y, _) in found.items()}
    if not any(len(x) for x, _ in windows.values()):
        needs = "; ".join(f"{name} {history_needed(ALL_TARGETS[name].period_s,
                                                   ALL_TARGETS[name].window)}"
                          for name in names)
        raise DataError(f"{history_path}: no label of {', '.join(names)} falls inside the "
                        f"history ({mains.index.min()} to {mains.index.max()}) with a full "
                        f"window around it ({needs}): export the days the labels cover")
    missing = [str(checkpoint(cache, name)) for name, (x, _) in windows.items()
               if len(x) and not trained(cache, name)]
    if missing:
        raise DataError(f"no trained checkpoint (run `train` first): {', '.join(missing)}")
    import keras
    models = {}
    for name, (x, _) in windows.items():
        if not len(x):
            continue
        source = before_finetune(cache, name)
        source = source if source.is_file() else checkpoint(cache, name)
        try:
            models[name] = (keras.models.load_model(source),
                            json.loads(checkpoint(cache, name).with_suffix(".json").read_text()))
        except (ValueError, OSError, KeyError) as err:
            raise DataError(f"{source}: not a usable checkpoint ({err}); run `train "
                            f"--targets {name}` again") from None
    done: dict[str, Any] = {name: {"windows": 0, "skipped": why} for name, why in coarse.items()}
    for name, (x, y) in windows.items():
        target = ALL_TARGETS[name]
        counts = {"labels_outside_history": outside_history(labels, mains, name),
                  "labels_without_window": found[name][2]}
        if counts["labels_without_window"]:
            counts["without_window_reason"] = history_needed(target.period_s, target.window)
        if not len(x):
            done[name] = {"windows": 0, "skipped": (
                f"no full window: {counts['without_window_reason']}"
                if counts["labels_without_window"] else "no label inside the history"),
                **counts}
            continue
        path, original = checkpoint(cache, name), before_finetune(cache, name)
        meta_path = path.with_suffix(".json")
        model, meta = models[name]
        norm = meta["normalisation"]
        if not original.is_file():
            shutil.copy2(path, original)
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="mae")  # as in train
        xn = ((x - norm["input_mean"]) / norm["input_std"])[..., None]
        history = model.fit(xn, y / norm["output_scale"], epochs=epochs,
                            batch_size=min(256, len(x)), verbose=0)
        model.save(path)
        meta["finetuned_windows"] = len(x)
        meta_path.write_text(json.dumps(meta, indent=2))
        done[name] = {"windows": len(x), "loss": float(history.history["loss"][-1]),
                      **counts}
    # A target fine-tuned in an earlier round that has no window now (its only label
    # removed as wrong) kept that round's checkpoint, and `export` shipped it.
    for name in sorted(wanted - {name for name, d in done.items() if d["windows"]}):
        if _back_to_trained(cache, name):
            done[name] = {**done.get(name, {"windows": 0}),
                          "reset": "no label window this round: train's checkpoint again"}
    return done


def _back_to_trained(cache: Path, name: str) -> bool:
    """Put `train`'s checkpoint back in place of a fine-tuned one; False if it was not
    fine-tuned."""
    original, path = before_finetune(cache, name), checkpoint(cache, name)
    if not original.is_file():
        return False
    shutil.copy2(original, path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta.pop("finetuned_windows", None)
    meta_path.write_text(json.dumps(meta, indent=2))
    return True


def outside_history(labels: list[Label], mains: pd.Series, appliance: str) -> int:
    """How many of the appliance's labels lie wholly outside the history given (said in
    the output: a history export that misses them fits on fewer labels than expected)."""
    first, last = mains.index.min(), mains.index.max()
    return sum(1 for label in labels if label.appliance == appliance
               and (label.end <= first or label.start > last))


def checkpoint(cache: Path, name: str) -> Path:
    """The checkpoint `export` reads: `train`'s, or the fine-tuned one."""
    return cache / "keras" / f"{name}.keras"


def before_finetune(cache: Path, name: str) -> Path:
    """`train`'s checkpoint, kept once fine-tuning has replaced it (`train` removes it)."""
    return cache / "keras" / f"{name}.before-finetune.keras"


def trained(cache: Path, name: str) -> bool:
    path = checkpoint(cache, name)
    return path.is_file() and path.with_suffix(".json").is_file()

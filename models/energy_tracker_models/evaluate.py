"""`evaluate`: run a bundle's TFLite models (the add-on's nilm.py) over a CSV and score them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from energy_tracker_addon.nilm import (
    ModelRunner,
    ModelSpec,
    NilmBundle,
    OnOffTracker,
    SeriesResult,
    load_bundle,
    postprocess,
)

from .data import DataError, read_power_csv, resample, sampling_s, too_coarse
from .metrics import summary

# Windows run through the model at a time: 20 k of the 299-sample models are ~24 MB of
# float32 (each copied a few times on the way in), whatever the file's length.
CHUNK_WINDOWS = 20_000
# No home stays under this many watts 99 % of the time: mains that do are in kW.
KW_LIKE = 50.0


def _track(spec: ModelSpec, power: NDArray[np.floating],
           known: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """On/off states of a power series through the same hysteresis as the add-on, over the
    `known` samples; off elsewhere. A run is forgotten across an unknown stretch, as the
    add-on forgets it across a gap in the mains."""
    on = np.zeros(len(power), dtype=bool)
    tracker, previous = OnOffTracker(spec), -1
    for i in np.flatnonzero(known):
        if previous >= 0 and i != previous + 1:
            tracker = OnOffTracker(spec)
        # Undecided (None) reads as off, as before the tracker's first decision.
        on[i] = bool(tracker.update(float(power[i]), spec.period_s))
        previous = i
    return on


def score(spec: ModelSpec, pred: NDArray[np.floating], true: NDArray[np.floating]
          ) -> dict[str, float]:
    """Metrics where both prediction and truth exist; both on/off series are tracked over
    those samples alone, so a dropout of the truth (a smart plug's) is not a run's end."""
    ok = np.isfinite(pred) & np.isfinite(true)
    if not ok.any():
        return {"mae_w": float("nan"), "sae": float("nan"), "f1": float("nan"), "samples": 0}
    pred_on, true_on = _track(spec, pred, ok), _track(spec, true, ok)
    return summary(pred[ok], true[ok], pred_on[ok], true_on[ok])


def disaggregate_chunked(runner: ModelRunner, mains: NDArray[np.floating],
                         chunk_windows: int = CHUNK_WINDOWS) -> SeriesResult:
    """nilm.disaggregate_series, `chunk_windows` windows at a time: the same model calls,
    clipping and on/off tracking, without every window of a long file in memory at once."""
    spec = runner.spec
    x = np.asarray(mains, np.float32)
    half = spec.window // 2
    power = np.full(len(x), np.nan, dtype=np.float32)
    for start in range(0, len(x) - spec.window + 1, chunk_windows):
        stop = min(start + chunk_windows, len(x) - spec.window + 1)
        windows = np.lib.stride_tricks.sliding_window_view(
            x[start:stop + spec.window - 1], spec.window)
        ok = np.flatnonzero(np.isfinite(windows).all(axis=1))
        if len(ok):
            mid = start + ok + half
            power[mid] = postprocess(runner.predict(np.ascontiguousarray(windows[ok])), x[mid])
    tracker = OnOffTracker(spec)
    on = np.array([bool(tracker.update(float(p), spec.period_s) if np.isfinite(p)
                        else tracker.on) for p in power], dtype=bool)
    return SeriesResult(power, on)


def evaluate_frame(bundle: NilmBundle, df: pd.DataFrame, chunk_windows: int = CHUNK_WINDOWS,
                   ) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Per-appliance metrics for every bundle model that has a ground-truth column in `df`,
    and why each appliance the data cannot score was left out (no column, shorter than
    its window, sampled more coarsely than its period, or no full window where both mains
    and truth are known); none scored is a DataError.
    """
    names = [n for n in bundle.models if n in df.columns]
    if not names:
        raise DataError(f"no column matches the bundle's appliances {sorted(bundle.models)}; "
                        f"the data has {[c for c in df.columns if c != 'mains']}")
    results = {}
    reasons = {name: f"no column '{name}' in the data" for name in bundle.models
               if name not in names}
    spacing = sampling_s(pd.DatetimeIndex(df.index[df["mains"].notna()]))
    for name in names:
        runner = bundle.models[name]
        if (coarse := too_coarse(spacing, runner.spec.period_s)) is not None:
            reasons[name] = coarse
            continue
        series = resample(df[["mains", name]], runner.spec.period_s)
        if len(series) < runner.spec.window:
            reasons[name] = (f"{len(series)} samples at {runner.spec.period_s} s, fewer than "
                             f"the window of {runner.spec.window}")
            continue
        out = disaggregate_chunked(runner, series["mains"].to_numpy(np.float32),
                                   chunk_windows)
        scored = score(runner.spec, out.power_w, series[name].to_numpy())
        if scored["samples"] == 0:
            reasons[name] = (f"no full {runner.spec.window}-sample window at "
                             f"{runner.spec.period_s} s where mains and {name} are known")
            continue
        results[name] = scored
    if not results:
        raise DataError("nothing could be scored: " + "; ".join(
            f"{name}: {why}" for name, why in reasons.items() if name in names))
    return results, reasons


def evaluate_csv(data: Path, models: Path | None) -> dict[str, Any]:
    """The CLI's JSON object; metrics that are undefined (the SAE of an appliance that never
    ran) are null, so the line is strict JSON."""
    bundle = load_bundle(models)
    frame = read_power_csv(data)
    warn_about_mains(frame["mains"], data)
    try:
        appliances, skipped = evaluate_frame(bundle, frame)
    except DataError as err:
        raise DataError(f"{data}: {err}") from None
    return {"data": str(data), "models": str(bundle.path), "version": bundle.version,
            "appliances": {name: {key: _json_number(value) for key, value in m.items()}
                           for name, m in appliances.items()},
            "skipped": skipped}


def warn_about_mains(mains: pd.Series, data: Path) -> None:
    """Mains the models read as nothing: in kW, or negative (a clamp the wrong way round).
    Scored all the same, but the figures are then those of models seeing no load."""
    known = mains.dropna()
    log = logging.getLogger(__name__)
    if (known < 0).mean() > 0.5:
        log.warning("%s: the mains are mostly negative (a CT clamp the wrong way round, or "
                    "export counted negative?): the models see no load there", data)
    elif known.abs().quantile(0.99) < KW_LIKE:
        log.warning("%s: the mains never reach %g: in kW? give watts (x 1000)", data, KW_LIKE)


def _json_number(value: float) -> float | None:
    return value if np.isfinite(value) else None

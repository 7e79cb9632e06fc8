"""`evaluate`: run a bundle's TFLite models (the add-on's nilm.py) over a CSV and score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from energy_tracker_addon.nilm import (
    ModelSpec,
    NilmBundle,
    OnOffTracker,
    disaggregate_series,
    load_bundle,
)

from .data import DataError, read_power_csv, resample
from .metrics import summary


def track(spec: ModelSpec, power: NDArray[np.floating]) -> NDArray[np.bool_]:
    """On/off states of a power series through the same hysteresis as the add-on."""
    tracker = OnOffTracker(spec)
    return np.array([tracker.update(float(p), spec.period_s) for p in power], dtype=bool)


def score(spec: ModelSpec, pred: NDArray[np.floating], pred_on: NDArray[np.bool_],
          true: NDArray[np.floating]) -> dict[str, float]:
    """Metrics where both prediction and truth exist."""
    ok = np.isfinite(pred) & np.isfinite(true)
    true_on = track(spec, np.nan_to_num(true))
    return summary(pred[ok], true[ok], pred_on[ok], true_on[ok])


def evaluate_frame(bundle: NilmBundle, df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-appliance metrics for every bundle model that has a ground-truth column in `df`."""
    names = [n for n in bundle.models if n in df.columns]
    if not names:
        raise DataError(f"no column matches the bundle's appliances {sorted(bundle.models)}")
    results = {}
    for name in names:
        runner = bundle.models[name]
        series = resample(df[["mains", name]], runner.spec.period_s)
        if len(series) < runner.spec.window:
            raise DataError(f"{name}: {len(series)} samples at {runner.spec.period_s} s, "
                            f"fewer than the window of {runner.spec.window}")
        out = disaggregate_series(runner, series["mains"].to_numpy(np.float32))
        results[name] = score(runner.spec, out.power_w, out.on, series[name].to_numpy())
    return results


def evaluate_csv(data: Path, models: Path | None) -> dict[str, Any]:
    bundle = load_bundle(models)
    return {"data": str(data), "models": str(bundle.path), "version": bundle.version,
            "appliances": evaluate_frame(bundle, read_power_csv(data))}

"""Disaggregation metrics: MAE (W), signal aggregate error, on/off F1."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def mae(pred: NDArray[np.floating], true: NDArray[np.floating]) -> float:
    return float(np.mean(np.abs(pred - true)))


def sae(pred: NDArray[np.floating], true: NDArray[np.floating]) -> float:
    """|estimated energy - true energy| / true energy (NaN when the appliance never ran)."""
    total = float(np.sum(true))
    return abs(float(np.sum(pred)) - total) / total if total > 0 else float("nan")


def f1(pred_on: NDArray[np.bool_], true_on: NDArray[np.bool_]) -> float:
    """On/off F1; 1.0 when both agree the appliance never ran."""
    tp = int(np.sum(pred_on & true_on))
    fp = int(np.sum(pred_on & ~true_on))
    fn = int(np.sum(~pred_on & true_on))
    if tp + fp + fn == 0:
        return 1.0
    return 2 * tp / (2 * tp + fp + fn)


def summary(pred: NDArray[np.floating], true: NDArray[np.floating], pred_on: NDArray[np.bool_],
            true_on: NDArray[np.bool_]) -> dict[str, float]:
    return {"mae_w": round(mae(pred, true), 3), "sae": round(sae(pred, true), 4),
            "f1": round(f1(pred_on, true_on), 4), "samples": len(true)}

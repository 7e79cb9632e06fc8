"""Where a circuit model's error comes from, and how a circuit's load changed over the years.

Both tables read ground truth only through power bands, so they explain a miss (e.g. a new
appliance drawing at levels the training years never saw) without choosing anything.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from numpy.typing import NDArray

# True-power bands (W) of a circuit: off, fridge-like, small, heater-like and large loads
BANDS_W = (0.0, 50.0, 150.0, 600.0, 1600.0, 2000.0, 2600.0, float("inf"))


def _labels(edges: tuple[float, ...]) -> list[str]:
    return [f"{lo:g}-{hi:g} W" if np.isfinite(hi) else f"≥ {lo:g} W"
            for lo, hi in itertools.pairwise(edges)]


def error_by_band(pred: NDArray[np.floating], truth: NDArray[np.floating],
                  edges: tuple[float, ...] = BANDS_W) -> list[dict[str, float | str]]:
    """Per true-power band: share of samples and its part of the MAE, under vs over (W).

    Samples where either series is NaN are left out, as in the MAE; the `under_w` and
    `over_w` parts of all bands add up to the MAE.
    """
    ok = np.isfinite(pred) & np.isfinite(truth)
    p, t = pred[ok].astype(np.float64), truth[ok].astype(np.float64)
    band = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    n = max(len(t), 1)
    rows: list[dict[str, float | str]] = []
    for i, label in enumerate(_labels(edges)):
        sel = band == i
        rows.append({"band": label, "share": round(float(sel.sum()) / n, 4),
                     "under_w": round(float(np.maximum(t[sel] - p[sel], 0).sum()) / n, 2),
                     "over_w": round(float(np.maximum(p[sel] - t[sel], 0).sum()) / n, 2)})
    return rows


def energy_by_band_per_year(start_s: int, period_s: int, truth: NDArray[np.floating],
                            valid: NDArray[np.bool_], edges: tuple[float, ...] = BANDS_W
                            ) -> dict[int, dict[str, float]]:
    """Wh per valid day that a circuit used in each power band, per calendar year (UTC)."""
    when = pd.to_datetime(start_s + period_s * np.arange(len(truth)), unit="s")
    frame = pd.DataFrame({"year": when.year, "w": truth})[valid]
    frame["band"] = pd.cut(frame["w"], list(edges), right=False, labels=_labels(edges))
    days = frame.groupby("year").size() * period_s / 86_400
    wh = frame.groupby(["year", "band"], observed=False)["w"].sum() * period_s / 3600
    table = wh.unstack().div(days, axis=0)
    return {int(year): {str(b): round(float(v), 1) for b, v in row.items()}
            for year, row in table.iterrows()}

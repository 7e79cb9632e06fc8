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


def long_runs_per_quarter(start_s: int, period_s: int, truth: NDArray[np.floating],
                          valid: NDArray[np.bool_], low_w: float = 50.0, high_w: float = 150.0,
                          min_s: float = 45 * 60) -> dict[str, dict[str, float]]:
    """Per calendar quarter: the share of valid samples in runs at [low_w, high_w) lasting at
    least `min_s` (a fridge that keeps running), and those runs' median length in minutes.

    A run belongs to the quarter it starts in; a run with an invalid sample is not counted.
    """
    inside = ((truth >= low_w) & (truth < high_w)).astype(np.int8)
    edges = np.flatnonzero(np.diff(inside)) + 1
    bounds = np.r_[0, edges, len(inside)]
    in_long = np.zeros(len(inside), dtype=bool)
    lengths: list[tuple[int, float]] = []
    for first, end in itertools.pairwise(bounds):
        if inside[first] and (end - first) * period_s >= min_s and valid[first:end].all():
            in_long[first:end] = True
            lengths.append((int(first), (end - first) * period_s / 60))
    when = pd.to_datetime(start_s + period_s * np.arange(len(truth)), unit="s")
    quarter = when.to_period("Q").astype(str).to_numpy()
    share = pd.Series(in_long[valid]).groupby(quarter[valid]).mean()
    runs = pd.Series([m for _, m in lengths], index=[quarter[i] for i, _ in lengths],
                     dtype=float)
    median = runs.groupby(level=0).median()
    return {str(q): {"share": round(float(s), 4),
                     "median_min": round(float(median.get(q, 0.0)), 1)}
            for q, s in share.items()}

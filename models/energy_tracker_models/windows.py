"""Sliding windows over a series: valid window centres, gathering, normalisation stats."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def valid_centres(valid: NDArray[np.bool_], window: int) -> NDArray[np.int64]:
    """Indices whose whole centred window lies inside the series and holds no invalid sample."""
    bad = np.concatenate([[0], np.cumsum(~valid)])
    half = window // 2
    centres = np.arange(half, len(valid) - half)
    n_bad = bad[centres + half + 1] - bad[centres - half]
    out: NDArray[np.int64] = centres[n_bad == 0]
    return out


def gather(series: NDArray[np.float32], centres: NDArray[np.int64], window: int
           ) -> NDArray[np.float32]:
    half = window // 2
    return series[centres[:, None] + np.arange(-half, half + 1)[None, :]]


def sample_centres(centres: NDArray[np.int64], truth: NDArray[np.float32], on_w: float, n: int,
                   rng: np.random.Generator, on_share: float = 0.5) -> NDArray[np.int64]:
    """`n` training centres, about `on_share` of them with the target on (rare events matter)."""
    on = centres[truth[centres] >= on_w]
    n_on = int(n * on_share) if len(on) else 0  # drawn with replacement: events are rare
    picked = [rng.choice(centres, n - n_on)]
    if n_on:
        picked.append(rng.choice(on, n_on))
    return np.sort(np.concatenate(picked))

"""`prepare`: UCI at 1 min and the synthetic appliance sets at 6 s, cached as .npz files."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .data import CIRCUIT_COLUMNS, HOLDOUT_START, load_uci
from .synth import SynthSet, synthesize
from .targets import VAL_START as VAL_START_DAY

# Training uses UCI before VAL_START, validation (early stopping, thresholds) the rest of
# 2009; 2010 on is the held-out test period for circuits and appliance backgrounds alike.
VAL_START = pd.Timestamp(VAL_START_DAY)
N_DAYS = {"train": 160, "val": 30, "test": 30}


def _days(start: pd.Timestamp, end: pd.Timestamp, n: int, rng: np.random.Generator
          ) -> list[pd.Timestamp]:
    days = pd.date_range(start.ceil("D"), end - pd.Timedelta(days=1), freq="D")
    picked = rng.choice(len(days), size=min(n, len(days)), replace=False)
    return [days[i] for i in sorted(picked)]


def uci_split(uci: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "train": uci.loc[: VAL_START - pd.Timedelta(minutes=1)],
        "val": uci.loc[VAL_START : HOLDOUT_START - pd.Timedelta(minutes=1)],
        "test": uci.loc[HOLDOUT_START:],
    }


def save_uci(part: pd.DataFrame, path: Path) -> None:
    np.savez_compressed(
        path, start=int(part.index[0].timestamp()), period_s=60,
        mains=part["mains"].to_numpy(np.float32), valid=part["valid"].to_numpy(),
        **{f"truth_{c}": part[c].to_numpy(np.float32) for c in CIRCUIT_COLUMNS},
    )


def load_set(path: Path) -> SynthSet:
    """A cached set (UCI or synthetic) in the common SynthSet layout."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run `energy-tracker-models prepare` first")
    return SynthSet.load(str(path))


def join_uci(parts: Sequence[SynthSet], cache: Path) -> SynthSet:
    """Prepared UCI sets as one series; they must follow each other without a gap."""
    for before, after in itertools.pairwise(parts):
        if int(before.start) + before.period_s * len(before.mains) != int(after.start):
            raise ValueError(f"{cache}: UCI sets are not contiguous; run `prepare` again")
    return SynthSet(parts[0].period_s, np.concatenate([p.mains for p in parts]),
                    {k: np.concatenate([p.truth[k] for p in parts]) for k in parts[0].truth},
                    np.concatenate([p.valid for p in parts]), np.asarray(int(parts[0].start)))


def prepare(cache: Path, seed: int = 2024) -> dict[str, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    uci = load_uci()
    written = {}
    for name, part in uci_split(uci).items():
        path = cache / f"uci_{name}.npz"
        save_uci(part, path)
        written[f"uci_{name}"] = path
    rng = np.random.default_rng(seed)
    first = uci.index[0].ceil("D")
    ranges = {"train": (first, VAL_START), "val": (VAL_START, HOLDOUT_START),
              "test": (HOLDOUT_START, uci.index[-1].floor("D"))}
    for i, (name, (start, end)) in enumerate(ranges.items()):
        days = _days(start, end, N_DAYS[name], rng)
        # test houses use the held-out AMBAL models; training houses are augmented
        synth = synthesize(uci, days, unseen=name == "test", augment=name == "train",
                           seed=seed + i)
        path = cache / f"synth_{name}.npz"
        synth.save(str(path))
        written[f"synth_{name}"] = path
    return written

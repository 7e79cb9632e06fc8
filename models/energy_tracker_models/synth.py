"""Appliance-level training data: AMBAL activations added to a real UCI background.

The background is the UCI house without its kitchen and laundry circuits, which hold
unlabelled dishwasher, washing machine, fridge and microwave runs: its unmetered load,
interpolated from 1 min to the appliance period with measurement-like noise, plus its
water-heater/AC circuit held flat over each minute (resistive loads switch in steps). That
circuit's long 1-3 kW plateaus are what a real house adds and no target may claim; without
it every long 2 kW plateau in training was a dishwasher or washing machine run, and the
models claimed a real washer-dryer's heating for the dishwasher (UK-DALE house 1). Target
appliances and distractor appliances (other AMBAL types) are switched on at random daytime
moments; the fridge cycles all day. Washing machines tumble (see `tumble`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .ambal import ApplianceModel, load_models
from .targets import APPLIANCES, DISTRACTORS, DURATION_RANGE, POWER_RANGE, USES_PER_DAY

DAY_S = 86_400
ACTIVE_HOURS = (6 * 3600, 23 * 3600)
MIN_VALID_FRACTION = 0.99  # background days with more filled gaps are skipped


@dataclass
class SynthSet:
    """Concatenated days at one period: mains, per-appliance ground truth, validity."""

    period_s: int
    mains: NDArray[np.float32]
    truth: dict[str, NDArray[np.float32]]
    valid: NDArray[np.bool_]
    start: NDArray[np.int64]  # unix seconds of each day's first sample

    def save(self, path: str) -> None:
        arrays: dict[str, NDArray[np.generic]] = {
            "mains": self.mains, "valid": self.valid, "start": self.start,
            "period_s": np.asarray(self.period_s),
            **{f"truth_{k}": v for k, v in self.truth.items()}}
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str) -> SynthSet:
        with np.load(path) as z:
            truth = {k[6:]: z[k] for k in z.files if k.startswith("truth_")}
            return cls(int(z["period_s"]), z["mains"], truth, z["valid"], z["start"])


def split_models(unseen: bool) -> dict[str, list[ApplianceModel]]:
    """Training models (unseen=False) or the held-out test models (unseen=True) per target."""
    out = {}
    for t in APPLIANCES:
        models = load_models(t.ambal_type)
        if t.test_models:
            models = [m for m in models if (m.model_id in t.test_models) == unseen]
        out[t.name] = models
    return out


def _place(day: NDArray[np.float64], profile: NDArray[np.float64], start: int) -> None:
    end = min(len(day), start + len(profile))
    if end > start:
        day[start:end] += profile[: end - start]


Range = tuple[float, float]


def _variation(rng: np.random.Generator, augment: bool, power_range: Range = POWER_RANGE,
               duration_range: Range = DURATION_RANGE) -> tuple[float, float]:
    """(stretch, scale): wide for training augmentation, narrow for test runs."""
    if augment:
        return rng.uniform(*duration_range), rng.uniform(*power_range)
    return rng.uniform(0.9, 1.1), rng.uniform(0.95, 1.05)


# A washing machine's drum turns one way for 10-15 s, rests a few seconds, turns back: its
# motor draws 100-250 W in bursts. AMBAL's washing-machine phases are smooth averages (the
# wash phases ~50-70 W, the heating a flat 2.2 kW), so without this the models learn a
# washer that real 6 s data never shows (UK-DALE house 1's washer-dryer swings by 100-200 W
# between 6 s samples all through its wash).
TUMBLE_PERIOD_S = (12.0, 18.0)
TUMBLE_DUTY = (0.6, 0.8)
TUMBLE_MOTOR_W = (100.0, 250.0)
HEATING_W = 1000.0  # above this a phase is the heater (the motor adds on top)
SPIN_W = 300.0  # above this (and below heating) the drum spins steadily


def tumble(profile: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """The profile with its drum turning in bursts: wash phases (below `SPIN_W`) are drawn
    in bursts of the same mean power; heating phases get the motor's bursts on top."""
    period, duty = rng.uniform(*TUMBLE_PERIOD_S), rng.uniform(*TUMBLE_DUTY)
    turning = (np.arange(len(profile)) + rng.uniform(0, period)) % period < duty * period
    motor = rng.uniform(*TUMBLE_MOTOR_W)
    wash, heat = profile < SPIN_W, profile >= HEATING_W
    out = profile.copy()
    out[wash] = np.where(turning[wash], profile[wash] / duty, 0.0)
    out[heat] += np.where(turning[heat], motor, 0.0)
    return out


def _activations(rng: np.random.Generator, models: Sequence[ApplianceModel], per_day: float,
                 augment: bool, power_range: Range = POWER_RANGE,
                 duration_range: Range = DURATION_RANGE) -> NDArray[np.float64]:
    day = np.zeros(DAY_S)
    for _ in range(rng.poisson(per_day)):
        stretch, scale = _variation(rng, augment, power_range, duration_range)
        model = models[rng.integers(len(models))]
        profile = model.synthesize(stretch, scale)
        if model.appliance_type == "WASHINGMACHINE":
            profile = tumble(profile, rng)
        _place(day, profile, int(rng.integers(*ACTIVE_HOURS)))
    return day


def _fridge(rng: np.random.Generator, models: Sequence[ApplianceModel], augment: bool,
            power_range: tuple[float, float]) -> NDArray[np.float64]:
    day = np.zeros(DAY_S)
    model = models[rng.integers(len(models))]  # one fridge per house-day
    _, rating = _variation(rng, augment, power_range)  # its rating, for the whole day
    t = int(rng.integers(0, 1800))
    while t < DAY_S:
        stretch, scale = _variation(rng, augment)
        profile = model.synthesize(stretch, scale * rating)
        _place(day, profile, t)
        t += len(profile) + int(rng.uniform(15, 45) * 60)
    return day


def synthesize(background: pd.DataFrame, days: Sequence[pd.Timestamp], unseen: bool,
               augment: bool, seed: int, period_s: int = 6) -> SynthSet:
    """One synthetic house-day per background day (UCI `other`, `water_heater_ac` and
    `valid` at 1 min)."""
    rng = np.random.default_rng(seed)
    targets = split_models(unseen)
    distractors = {k: load_models(k) for k in DISTRACTORS}
    per = DAY_S // period_s
    mains, valid, starts = [], [], []
    truth: dict[str, list[NDArray[np.float64]]] = {t.name: [] for t in APPLIANCES}
    t_fine = np.arange(per) * period_s + period_s / 2
    for day in days:
        bg = background.loc[day: day + pd.Timedelta(seconds=DAY_S - 1)]
        if len(bg) != DAY_S // 60 or bg["valid"].mean() < MIN_VALID_FRACTION:
            continue
        other = np.interp(t_fine, np.arange(len(bg)) * 60.0 + 30.0, bg["other"].to_numpy())
        other = np.clip(other * (1 + rng.normal(0, 0.01, per)) + rng.normal(0, 3, per), 0, None)
        total = other + np.repeat(bg["water_heater_ac"].to_numpy(), 60 // period_s)
        for target in APPLIANCES:
            models = targets[target.name]
            if target.name == "fridge":
                fine = _fridge(rng, models, augment, target.power_range)
            else:
                fine = _activations(rng, models, USES_PER_DAY[target.name], augment,
                                    target.power_range, target.duration_range)
            coarse = fine.reshape(per, period_s).mean(axis=1)
            truth[target.name].append(coarse)
            total += coarse
        for kind, models in distractors.items():
            total += _activations(rng, models, DISTRACTORS[kind], augment).reshape(
                per, period_s).mean(axis=1)
        mains.append(total)
        valid.append(np.repeat(bg["valid"].to_numpy(), 60 // period_s))
        starts.append(int(day.timestamp()))
    if not mains:
        raise ValueError("no usable background day")
    return SynthSet(
        period_s=period_s,
        mains=np.concatenate(mains).astype(np.float32),
        truth={k: np.concatenate(v).astype(np.float32) for k, v in truth.items()},
        valid=np.concatenate(valid),
        start=np.asarray(starts, dtype=np.int64),
    )

"""The held-out comparison the bench and the model card print."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from energy_tracker_addon.nilm import load_bundle
from energy_tracker_models.report import compare


def test_without_the_train_checkpoint_the_float_model_is_left_out(tmp_path: Path) -> None:
    """The checkpoints are not shipped: the bench prints "n/a" for the float model instead
    of stopping (it did, whenever TensorFlow was installed)."""
    runner = load_bundle().models["kettle"]
    rng = np.random.default_rng(1)
    mains = rng.uniform(100, 400, 600).astype(np.float32)
    truth = np.zeros(600, dtype=np.float32)
    mains[300:330] += 2000  # a boil
    truth[300:330] = 2000

    rows, pred = compare("kettle", tmp_path, runner, mains, truth, train_mean=20.0)

    assert set(rows) == {"always_off", "mean", "tflite_int8"}
    assert rows["always_off"]["mae_w"] > rows["tflite_int8"]["mae_w"]
    assert pred.shape == mains.shape

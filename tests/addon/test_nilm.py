"""NILM inference in the add-on: the shipped bundle, streaming disaggregation, bad bundles.

Everything here runs without TensorFlow (CI does not install it).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energy_tracker_addon.nilm import (
    DEFAULT_BUNDLE,
    MAX_FILL_PERIODS,
    Disaggregator,
    ModelSpec,
    NilmBundleError,
    OnOffTracker,
    disaggregate_series,
    load_bundle,
)

UKDALE = Path(__file__).parents[2] / "models" / "data" / "ukdale_h1_2014-09-11_6s.csv.gz"


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_shipped_bundle_loads_and_runs_without_tensorflow() -> None:
    # A child process where importing TensorFlow fails, as in the add-on container
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import numpy as np, json\n"
        "from energy_tracker_addon.nilm import load_bundle\n"
        "b = load_bundle()\n"
        "out = {n: float(r.predict(np.full((2, r.spec.window), 500, np.float32))[0])"
        " for n, r in b.models.items()}\n"
        "print(json.dumps(out)); assert 'tensorflow' not in [m.split('.')[0] for m in sys.modules"
        " if sys.modules[m] is not None]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    manifest = json.loads((DEFAULT_BUNDLE / "bundle.json").read_text())
    assert sorted(out) == sorted(m["name"] for m in manifest["models"])
    assert {"kettle", "fridge", "microwave", "washing_machine", "dishwasher"} <= set(out)
    assert all(math.isfinite(v) for v in out.values())


def test_shipped_bundle_is_small_and_documented(bundle) -> None:
    size = sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir())
    assert size < 3 * 1024 * 1024
    for entry in bundle.metadata["models"]:
        assert entry["training_data"]
        assert entry["metrics"], f"{entry['name']} has no held-out metrics"


def _kettle_house(boil_w: float) -> tuple[np.ndarray, np.ndarray]:
    """One sample per second: 250 W background with noise, one 3-minute boil at 1 hour."""
    rng = np.random.default_rng(1)
    t = 1_700_000_000 + np.arange(2 * 3600, dtype=np.float64)
    mains = 250 + rng.normal(0, 5, len(t))
    mains[3600:3780] += boil_w
    return t, mains


def test_kettle_boil_is_detected_with_its_energy(bundle) -> None:
    dis = Disaggregator(bundle)
    t, mains = _kettle_house(2000.0)
    kettle = [e for ts, w in zip(t, mains, strict=True) for e in dis.feed(ts, w)
              if e.appliance == "kettle"]
    during = [e for e in kettle if t[3600] + 20 <= e.timestamp <= t[3780] - 20]
    away = [e for e in kettle if abs(e.timestamp - t[3690]) > 900]
    assert during
    assert all(e.on for e in during)
    assert not any(e.on for e in away)
    # the model under-estimates a boil's power (~1.1 kW for 2 kW, see the model card); the
    # energy must still show most of a boil and no phantom ones
    true_wh = 2000.0 * 180 / 3600
    assert 0.4 * true_wh < dis.snapshot()["kettle"].energy_wh < 1.5 * true_wh


def test_streaming_matches_batch_on_real_data(bundle) -> None:
    raw = pd.read_csv(UKDALE, nrows=1500)
    ts = (pd.to_datetime(raw["timestamp"]) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    ts = ts.to_numpy()
    dis = Disaggregator(bundle)
    streamed = {}
    for t, w in zip(ts, raw["mains"], strict=True):
        for e in dis.feed(float(t), float(w)):
            if e.appliance == "fridge":
                streamed[e.timestamp] = e.power_w
    runner = bundle.models["fridge"]
    batch = disaggregate_series(runner, raw["mains"].to_numpy(np.float32))
    # samples are already on the 6 s grid: sample i is the bin starting at ts[i]
    expected = {float(ts[i]) + 3.0: float(p) for i, p in enumerate(batch.power_w)
                if np.isfinite(p)}
    assert streamed, "no fridge estimate from 1500 samples"
    common = sorted(set(streamed) & set(expected))
    # the last bin is still open in the stream, so one batch estimate has no twin
    assert len(common) >= len(expected) - 1
    np.testing.assert_allclose([streamed[k] for k in common], [expected[k] for k in common],
                               atol=1e-3)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(0, 8000), min_size=120, max_size=400))
def test_estimates_never_negative_nor_above_mains(bundle, watts: list[float]) -> None:
    runner = bundle.models["kettle"]
    x = np.asarray(watts, np.float32)
    out = disaggregate_series(runner, x)
    ok = np.isfinite(out.power_w)
    assert ok.sum() == len(x) - runner.spec.window + 1
    assert np.all(out.power_w[ok] >= 0)
    assert np.all(out.power_w[ok] <= x[ok] + 1e-3)


def test_short_gap_is_bridged_long_gap_restarts_window(bundle) -> None:
    dis = Disaggregator(bundle)
    spec = bundle.models["kettle"].spec
    t = 1_700_000_000.0
    for _ in range(spec.window + 5):
        dis.feed(t, 300.0)
        t += spec.period_s
    t += MAX_FILL_PERIODS * spec.period_s  # a short outage: estimates continue
    assert any(e.appliance == "kettle" for e in dis.feed(t, 300.0))
    t += (MAX_FILL_PERIODS + 5) * spec.period_s  # a long outage: wait for a full window
    made = [e for k in range(spec.window) for e in dis.feed(t + k * spec.period_s, 300.0)
            if e.appliance == "kettle"]
    assert not made


def test_each_bridged_bin_is_estimated_from_its_own_window(bundle) -> None:
    """Readings two of the kettle's periods apart (each bridges a bin, as a sped-up replay
    does many): every bin closed by one reading was estimated from the last window, one
    bin ahead of its own, and the first from a window that was not full (helper 81)."""
    spec = bundle.models["kettle"].spec
    rng = np.random.default_rng(5)
    readings = rng.uniform(100.0, 3000.0, spec.window)  # one every 2 periods
    dis = Disaggregator(bundle)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % spec.period_s
    streamed = {}
    for k, watts in enumerate(readings):
        for e in dis.feed(t0 + 2 * k * spec.period_s, float(watts)):
            if e.appliance == "kettle":
                streamed[round((e.timestamp - t0) / spec.period_s - 0.5)] = e.power_w
    # The same bins in one series (a bridged bin holds the reading before it).
    series = np.repeat(readings.astype(np.float32), 2)
    batch = disaggregate_series(bundle.models["kettle"], series).power_w
    assert streamed
    for index, power in streamed.items():
        assert power == pytest.approx(float(batch[index]), abs=1e-3), index


def test_a_sped_up_replay_judges_gaps_in_the_meter_time(bundle) -> None:
    """At 60x a reading every 2 s of the meter is 120 s of data: on time, held until the
    next; an outage is still MAX_FILL_PERIODS periods of the meter's time."""
    dis = Disaggregator(bundle, time_scale=60.0)
    spec = bundle.models["kettle"].spec
    step = 2.0 * 60.0
    t = 1_700_000_000.0
    per_reading = []
    for _ in range(spec.window * spec.period_s // int(step) + 5):
        per_reading.append([e for e in dis.feed(t, 300.0) if e.appliance == "kettle"])
        t += step
    # Once the first window is full, every reading completes bins and so estimates.
    assert all(per_reading[-4:]), "readings 120 s of data apart restart a 6 s window"
    t += MAX_FILL_PERIODS * spec.period_s * 60.0 + step  # 2 s over the bridged outage
    assert not [e for e in dis.feed(t, 300.0) if e.appliance == "kettle"]


def _spec(**thresholds: float) -> ModelSpec:
    entry = {"name": "x", "kind": "appliance", "file": "x.tflite", "period_s": 6,
             "window": 9, "sha256": "",
             "normalisation": {"input_mean": 0, "input_std": 1, "output_scale": 1},
             "thresholds": {"on_w": 100, "off_w": 50, "min_on_s": 12, "min_off_s": 18}
             | thresholds}
    return ModelSpec.from_json(entry)


@pytest.mark.parametrize(
    ("powers", "states"),
    [
        # a lone spike above on_w followed by a long dip never switches on; undecided (None)
        # until 18 s below off_w say off
        ([120, 30, 30, 30, 30], [None, None, None, False, False]),
        # 12 s from the first sample above on_w, a 6 s dip included, switch on; 70 W (between
        # the thresholds) keeps it on; a 12 s dip is ignored, 18 s below off_w switches off
        ([120, 30, 120, 120, 70, 70, 40, 40, 120, 40, 40, 40],
         [None, None, True, True, True, True, True, True, True, True, True, False]),
        # power between the thresholds never switches on: off once min_off_s says so
        ([80] * 6, [None, None, False, False, False, False]),
        # decided off, a lone spike stays off
        ([30, 30, 30, 120, 30, 30, 30], [None, None, False, False, False, False, False]),
    ],
)
def test_on_off_hysteresis_and_minimum_durations(powers: list[float],
                                                 states: list[bool | None]) -> None:
    tracker = OnOffTracker(_spec())
    assert [tracker.update(p, 6) for p in powers] == states


def test_a_blip_shorter_than_min_on_is_no_run() -> None:
    """A start is confirmed after min_on_s, not min_off_s: with the shipped fridge's 60 s
    and 12 s, a 12 s blip would be a run (helper 109; _spec's 12 s and 18 s hid it)."""
    tracker = OnOffTracker(_spec(min_on_s=30, min_off_s=6))
    assert [tracker.update(p, 6) for p in [120, 120, 120, 30, 30]] == [
        None, None, None, False, False]


def test_zero_minimum_off_switches_off_at_once() -> None:
    tracker = OnOffTracker(_spec(min_on_s=0, min_off_s=0))
    assert [tracker.update(p, 6) for p in [200, 200, 10, 200]] == [True, True, False, True]


def test_a_run_begins_at_its_first_bin_not_when_it_is_confirmed() -> None:
    """The washing machine's *since* was 5 minutes late (min_on_s), and so were the run
    lengths its finished events gave (helper 81)."""
    tracker = OnOffTracker(_spec())
    seen = [(tracker.update(p, 6, t), tracker.since)
            for t, p in zip(range(0, 60, 6), [30, 120, 30, 120, 120, 40, 40, 40, 30, 30],
                            strict=True)]
    assert seen[3] == (True, 6)  # confirmed at 18 s, begun at 6 s
    assert seen[-1] == (False, None)


def test_a_gap_forgets_the_runs_as_well_as_the_windows(bundle) -> None:
    """Across a meter gap a run went on: a wash before a 3-hour outage and one after it
    were one run, finished never said, started never said, "running" at 0 W (helper 81)."""
    dis = Disaggregator(bundle)
    t = 1_700_000_000.0

    def fridge_states(count: int) -> list[bool | None]:
        nonlocal t
        states = []
        for _ in range(count):
            states += [e.on for e in dis.feed(t, 0.0) if e.appliance == "fridge"]
            t += 6.0
        return states

    window = bundle.models["fridge"].spec.window
    before = fridge_states(window + 5)
    assert before[0] is None
    assert before[-1] is False  # decided after min_off_s (12 s)
    dis.restart_windows()
    t += 3 * 3600.0
    after = fridge_states(window + 5)
    assert after[0] is None  # undecided again, not the run (or the state) before the gap


def _copy_bundle(tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, dest)
    return dest


def _edit_manifest(folder: Path, change) -> None:
    path = folder / "bundle.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _first_model(folder: Path) -> Path:
    return folder / json.loads((folder / "bundle.json").read_text())["models"][0]["file"]


def test_missing_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NilmBundleError, match=r"bundle\.json not found") as err:
        load_bundle(tmp_path / "nowhere")
    assert err.value.path == tmp_path / "nowhere" / "bundle.json"


def test_missing_model_file_names_the_file(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    model = _first_model(folder)
    model.unlink()
    with pytest.raises(NilmBundleError, match="cannot read model file") as err:
        load_bundle(folder)
    assert err.value.path == model


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    model = _first_model(folder)
    model.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(NilmBundleError, match="does not match its sha256"):
        load_bundle(folder)


def test_truncated_model_with_matching_hash_is_not_usable(tmp_path: Path) -> None:
    import hashlib

    folder = _copy_bundle(tmp_path)
    model = _first_model(folder)
    data = model.read_bytes()[:200]
    model.write_bytes(data)

    def rehash(m: dict) -> None:
        m["models"][0]["sha256"] = hashlib.sha256(data).hexdigest()

    _edit_manifest(folder, rehash)
    with pytest.raises(NilmBundleError, match="not a usable TFLite model") as err:
        load_bundle(folder)
    assert err.value.path == model


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(format=99), "unsupported bundle format"),
        (lambda m: m["models"][0].pop("window"), "invalid model entry"),
        (lambda m: m["models"][0].update(window=98), "invalid model entry"),
        # Python's json reads NaN and 1e400 (inf): garbage estimates, or an OverflowError
        # that stopped the add-on instead of running it without NILM (helper 89).
        (lambda m: m["models"][0]["normalisation"].update(input_std=math.nan),
         "must be finite"),
        (lambda m: m["models"][0].update(period_s=math.inf), "invalid model entry"),
        (lambda m: m["models"][0].update(window=99.5), "whole numbers"),
        (lambda m: m["models"][0].update(file="../x.tflite"), "outside the bundle"),
        (lambda m: m.update(models=[]), "lists no models"),
        (lambda m: m["models"].append(dict(m["models"][0])), "lists kitchen more than once"),
    ],
)
def test_invalid_manifest_is_a_clear_error(tmp_path: Path, change, reason: str) -> None:
    folder = _copy_bundle(tmp_path)
    _edit_manifest(folder, change)
    with pytest.raises(NilmBundleError, match=reason):
        load_bundle(folder)


def test_window_mismatch_is_reported(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    _edit_manifest(folder, lambda m: m["models"][0].update(window=m["models"][0]["window"] + 2))
    with pytest.raises(NilmBundleError, match="does not match window"):
        load_bundle(folder)


def test_manifest_that_is_not_json_is_reported(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    (folder / "bundle.json").write_text("{not json")
    with pytest.raises(NilmBundleError, match="not valid JSON"):
        load_bundle(folder)

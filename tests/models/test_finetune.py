"""Fine-tuning from user labels: labels → training windows (no TensorFlow), and the fit
(TensorFlow, skipped without it)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy_tracker_models.cli import main
from energy_tracker_models.data import resample
from energy_tracker_models.finetune import (
    Label,
    label_windows,
    outside_history,
    read_history,
    read_labels,
)
from energy_tracker_models.targets import ALL_TARGETS

SLICE = Path(__file__).resolve().parents[2] / "models/data/ukdale_h1_2014-09-11_6s.csv.gz"
WASH = ALL_TARGETS["washing_machine"]
# From the slice's own sub-meter: the washing machine runs from about 08:00.
RUN = ("2014-09-11T08:05:00Z", "2014-09-11T08:35:00Z")
IDLE = ("2014-09-11T13:00:00Z", "2014-09-11T13:20:00Z")


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    with gzip.open(SLICE, "rt") as handle:
        df = pd.read_csv(handle, parse_dates=["timestamp"], index_col="timestamp")
    history = tmp_path / "export.csv"  # the add-on export's columns
    pd.DataFrame({"timestamp": df.index.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                  "total_power_w": df["mains"].to_numpy(), "total_energy_kwh": 0.0}
                 ).to_csv(history, index=False)
    labels = tmp_path / "nilm_labels.jsonl"
    rows = [{"appliance": "washing_machine", "start": RUN[0], "end": RUN[1],
             "was_running": True},
            {"appliance": "washing_machine", "start": IDLE[0], "end": IDLE[1],
             "was_running": False},
            {"appliance": "kettle", "start": RUN[0], "end": RUN[1], "was_running": True}]
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return labels, history, df


def test_labels_become_windows_of_the_models_period(
    files: tuple[Path, Path, pd.DataFrame],
) -> None:
    labels_path, history_path, df = files
    labels, mains = read_labels(labels_path), read_history(history_path)
    x, y = label_windows(labels, mains, "washing_machine", WASH.period_s, WASH.window)

    bins = resample(df[["mains", "washing_machine"]], WASH.period_s)
    run = bins[(bins.index >= RUN[0]) & (bins.index < RUN[1])]
    idle = bins[(bins.index >= IDLE[0]) & (bins.index < IDLE[1])]
    assert x.shape == (len(run) + len(idle), WASH.window)  # the kettle label is not used
    half = WASH.window // 2
    np.testing.assert_allclose(x[:, half], np.r_[run["mains"], idle["mains"]], rtol=1e-6)
    # A wrong detection teaches 0 W; a real run the power above the level before it,
    # which on this slice is close to what the washing machine's own meter measured.
    assert not y[len(run):].any()
    assert (y[: len(run)] >= 0).all()
    measured = float(run["washing_machine"].sum())
    assert abs(float(y[: len(run)].sum()) - measured) < 0.25 * measured


def test_the_api_files_read_as_they_come(files: tuple[Path, Path, pd.DataFrame],
                                         tmp_path: Path) -> None:
    """GET /api/v1/labels saved pretty-printed (`jq .`) and the Parquet export."""
    labels_path, history_path, _ = files
    rows = [json.loads(line) for line in labels_path.read_text().splitlines()]
    pretty = tmp_path / "labels.json"
    pretty.write_text(json.dumps({"labels": rows}, indent=2))
    assert read_labels(pretty) == read_labels(labels_path)
    parquet = tmp_path / "export.parquet"
    pd.read_csv(history_path).to_parquet(parquet)
    pd.testing.assert_series_equal(read_history(parquet), read_history(history_path))


@pytest.mark.parametrize(
    ("history", "message"),
    [(b"PAR1\x00\x01garbage", "not a Parquet file"),
     (b"timestamp,total_power_w\nyesterday,5\n", "line 2: timestamp 'yesterday' is neither "
      "ISO 8601")],
)
def test_an_unreadable_history_is_a_message(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path, history: bytes, message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels_path, _, _ = files
    path = tmp_path / ("export.parquet" if history.startswith(b"PAR1") else "export.csv")
    path.write_bytes(history)
    assert main(["finetune", "--labels", str(labels_path), "--history", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_damaged_line_costs_only_its_label(
    files: tuple[Path, Path, pd.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    # As the add-on leaves the file after a bad byte on the card and a crash mid-append.
    labels_path, _, _ = files
    good = read_labels(labels_path)
    with labels_path.open("ab") as handle:
        handle.write(b'{"appliance": "\xff"}\n{"appliance": "kett')
    assert read_labels(labels_path) == good
    assert caplog.text.count("skipped a line that is not JSON") == 2


def test_labels_outside_the_history_are_counted(
    files: tuple[Path, Path, pd.DataFrame],
) -> None:
    labels_path, history_path, _ = files
    labels = read_labels(labels_path)
    labels.append(Label("washing_machine", pd.Timestamp("2014-08-01T07:00:00Z"),
                        pd.Timestamp("2014-08-01T08:00:00Z"), True))
    assert outside_history(labels, read_history(history_path), "washing_machine") == 1


def test_labels_outside_the_history_are_an_error_not_a_silent_no_op(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, history_path, _ = files
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"appliance": "kettle", "start": "2020-01-01T07:00:00Z",
                                  "end": "2020-01-01T07:05:00Z"}) + "\n")
    assert main(["finetune", "--labels", str(labels), "--history", str(history_path)]) == 2
    assert "no label of kettle falls inside the history" in capsys.readouterr().err


def test_minute_history_for_six_second_models_is_said_as_such(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not "no label falls inside the history": they do, the data is too coarse (helper 89)."""
    labels_path, history_path, _ = files
    minutes = tmp_path / "export_1min.csv"
    pd.read_csv(history_path).iloc[::10].to_csv(minutes, index=False)
    assert main(["finetune", "--labels", str(labels_path), "--history", str(minutes)]) == 2
    err = capsys.readouterr().err
    assert "kettle: data sampled every 60 s, coarser than the model's 6 s" in err
    assert "washing_machine: data sampled every 60 s, coarser than the model's 6 s" in err
    assert "falls inside" not in err


def test_finetune_cli_reports_bad_input(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "labels.jsonl"
    bad.write_text("not json\n")
    history = tmp_path / "export.csv"
    history.write_text("timestamp,total_power_w\n")
    assert main(["finetune", "--labels", str(bad), "--history", str(history)]) == 2
    assert "not a label file" in capsys.readouterr().err


def test_finetune_moves_the_model_towards_the_labels(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
) -> None:
    pytest.importorskip("tensorflow")
    from energy_tracker_models.finetune import finetune
    from energy_tracker_models.train import build_model

    labels_path, history_path, _ = files
    norm = {"input_mean": 700.0, "input_std": 800.0, "output_scale": 3000.0}
    keras_dir = tmp_path / "cache" / "keras"
    keras_dir.mkdir(parents=True)
    model = build_model(WASH.window)
    model.save(keras_dir / "washing_machine.keras")
    (keras_dir / "washing_machine.json").write_text(json.dumps({"normalisation": norm}))
    x, y = label_windows(read_labels(labels_path), read_history(history_path),
                         "washing_machine", WASH.period_s, WASH.window)

    def error(m: object) -> float:
        pred = m.predict(((x - 700.0) / 800.0)[..., None], verbose=0).reshape(-1)  # type: ignore[attr-defined]
        return float(np.mean(np.abs(pred * 3000.0 - y)))

    before = error(model)
    with labels_path.open("a") as handle:  # too near the history's start for a window
        handle.write(json.dumps({"appliance": "washing_machine", "was_running": True,
                                 "start": "2014-09-11T00:02:00Z",
                                 "end": "2014-09-11T00:06:00Z"}) + "\n")
    done = finetune(labels_path, history_path, tmp_path / "cache", epochs=20,
                    targets=["washing_machine"])
    assert done["washing_machine"]["labels_without_window"] == 1
    assert done["washing_machine"]["without_window_reason"] == \
        "needs 14.9 min of history on each side"
    import keras

    after = error(keras.models.load_model(keras_dir / "washing_machine.keras"))
    assert done["washing_machine"]["windows"] == len(x)
    assert done["washing_machine"]["labels_outside_history"] == 0
    assert after < before
    # The next round (GET /api/v1/labels returns every label again) starts from the
    # trained checkpoint again: it is kept, and the old labels are not trained on twice.
    finetune(labels_path, history_path, tmp_path / "cache", epochs=20,
             targets=["washing_machine"])
    original = keras.models.load_model(keras_dir / "washing_machine.before-finetune.keras")
    for kept, trained in zip(original.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, trained)
    meta = json.loads((keras_dir / "washing_machine.json").read_text())
    assert meta["finetuned_windows"] == len(x)
    assert abs(error(keras.models.load_model(keras_dir / "washing_machine.keras"))
               - after) < 0.5 * (before - after)


def test_a_target_without_labels_in_a_later_round_goes_back_to_its_trained_model(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
) -> None:
    """A wrong label removed (its appliance's only one): the next round left that target's
    fine-tuned checkpoint in place, and `export` shipped it (helper 100)."""
    pytest.importorskip("tensorflow")
    from energy_tracker_models.finetune import finetune
    from energy_tracker_models.train import build_model

    _, history_path, _ = files
    keras_dir = tmp_path / "cache" / "keras"
    keras_dir.mkdir(parents=True)
    norm = {"normalisation": {"input_mean": 700.0, "input_std": 800.0, "output_scale": 3000.0}}
    for name in ("washing_machine", "dishwasher"):
        build_model(ALL_TARGETS[name].window).save(keras_dir / f"{name}.keras")
        (keras_dir / f"{name}.json").write_text(json.dumps(norm))
    trained = (keras_dir / "washing_machine.keras").read_bytes()
    both = [{"appliance": name, "start": RUN[0], "end": RUN[1], "was_running": True}
            for name in ("washing_machine", "dishwasher")]
    targets = ["washing_machine", "dishwasher"]
    finetune(_write_labels(tmp_path / "round1.jsonl", both), history_path, tmp_path / "cache",
             epochs=1, targets=targets)
    assert (keras_dir / "washing_machine.keras").read_bytes() != trained
    done = finetune(_write_labels(tmp_path / "round2.jsonl", both[1:]), history_path,
                    tmp_path / "cache", epochs=1, targets=targets)
    assert done["washing_machine"]["windows"] == 0
    assert "train's checkpoint" in done["washing_machine"]["reset"]
    assert (keras_dir / "washing_machine.keras").read_bytes() == trained
    meta = json.loads((keras_dir / "washing_machine.json").read_text())
    assert "finetuned_windows" not in meta
    assert done["dishwasher"]["windows"] > 0


def test_a_missing_checkpoint_stops_finetune_before_any_fit(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Labels for a trained and an untrained target: nothing is changed, the message
    names the missing checkpoint."""
    pytest.importorskip("tensorflow")
    from energy_tracker_models.train import build_model

    labels_path, history_path, _ = files
    keras_dir = tmp_path / "cache" / "keras"
    keras_dir.mkdir(parents=True)
    build_model(WASH.window).save(keras_dir / "washing_machine.keras")
    (keras_dir / "washing_machine.json").write_text(json.dumps({"normalisation": {
        "input_mean": 700.0, "input_std": 800.0, "output_scale": 3000.0}}))
    saved = (keras_dir / "washing_machine.keras").read_bytes()
    assert main(["--cache", str(tmp_path / "cache"), "finetune", "--labels",
                 str(labels_path), "--history", str(history_path)]) == 2
    assert "kettle.keras" in capsys.readouterr().err
    assert (keras_dir / "washing_machine.keras").read_bytes() == saved
    assert not (keras_dir / "washing_machine.before-finetune.keras").exists()
    # A checkpoint that exists but does not load: refused before any fit, too.
    (keras_dir / "kettle.keras").write_bytes(b"not a keras file")
    (keras_dir / "kettle.json").write_text(json.dumps({"normalisation": {
        "input_mean": 0.0, "input_std": 1.0, "output_scale": 3000.0}}))
    assert main(["--cache", str(tmp_path / "cache"), "finetune", "--labels",
                 str(labels_path), "--history", str(history_path)]) == 2
    assert "not a usable checkpoint" in capsys.readouterr().err
    assert (keras_dir / "washing_machine.keras").read_bytes() == saved
    assert not list(keras_dir.glob("*.before-finetune.keras"))


def _write_labels(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("rows", "message"),
    [([{"appliance": "washing_machine", "start": "2014-09-11T08:05:00",
        "end": "2014-09-11T08:35:00Z"}],
      "label 1 (washing_machine): start '2014-09-11T08:05:00' has no UTC offset"),
     ([{"appliance": "washing_machine", "start": RUN[0], "end": RUN[1],
        "was_running": "false"}],
      "label 1 (washing_machine): was_running must be true or false (JSON), not 'false'"),
     ([{}], "label 1 lacks 'appliance', 'start', 'end'; expected one JSON object per label"),
     ([[1, 2]], "label 1 is not a JSON object (1); expected one JSON object per label"),
     ([{"appliance": "washing_machine", "start": RUN[1], "end": RUN[0]}],
      "label 1 (washing_machine): end '2014-09-11T08:05:00Z' is not after start "
      "'2014-09-11T08:35:00Z'"),
     ([{"appliance": "Kettle", "start": RUN[0], "end": RUN[1]}],
      "no label for ['dishwasher', 'fridge', 'kettle', 'kitchen', 'laundry', 'microwave', "
      "'washing_machine', 'water_heater_ac'] (the labels name Kettle)")],
    ids=["naive-time", "string-bool", "empty-object", "array", "end-first", "unknown-name"],
)
def test_a_malformed_label_is_named_with_what_is_expected(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path, rows: list[object],
    message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    _, history_path, _ = files
    labels = _write_labels(tmp_path / "bad.jsonl", rows)
    assert main(["--cache", str(tmp_path / "cache"), "finetune", "--labels", str(labels),
                 "--history", str(history_path)]) == 2
    assert message in capsys.readouterr().err


def test_labels_too_near_the_history_edge_are_counted_with_the_reason(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from energy_tracker_models.finetune import windows_and_misses

    # The history starts at 00:00; the washing machine reads 14.9 min either side.
    labels_path, history_path, _ = files
    early = Label("washing_machine", pd.Timestamp("2014-09-11T00:02:00Z"),
                  pd.Timestamp("2014-09-11T00:06:00Z"), True)
    labels = [*read_labels(labels_path), early]
    mains = read_history(history_path)
    x, _, misses = windows_and_misses(labels, mains, "washing_machine", WASH.period_s,
                                      WASH.window)
    assert misses == 1
    assert len(x) == len(label_windows(labels[:-1], mains, "washing_machine",
                                       WASH.period_s, WASH.window)[0])
    only_early = _write_labels(tmp_path / "early.jsonl", [
        {"appliance": "washing_machine", "start": "2014-09-11T00:02:00Z",
         "end": "2014-09-11T00:06:00Z", "was_running": True}])
    assert main(["--cache", str(tmp_path / "cache"), "finetune", "--labels",
                 str(only_early), "--history", str(history_path)]) == 2
    assert ("washing_machine needs 14.9 min of history on each side"
            in capsys.readouterr().err)


def test_contradictory_labels_are_warned_about(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, history_path, _ = files
    labels = _write_labels(tmp_path / "labels.jsonl", [
        {"appliance": "washing_machine", "start": RUN[0], "end": RUN[1],
         "was_running": True},
        {"appliance": "washing_machine", "start": "2014-09-11T08:30:00Z",
         "end": "2014-09-11T08:50:00Z", "was_running": False},
        {"appliance": "washing_machine", "start": IDLE[0], "end": IDLE[1],
         "was_running": False}])
    main(["--cache", str(tmp_path / "cache"), "finetune", "--labels", str(labels),
          "--history", str(history_path)])
    warnings = [r.getMessage() for r in caplog.records if "contradictory" in r.getMessage()]
    assert warnings == ["contradictory labels of washing_machine: 2014-09-11 08:05:00+00:00 "
                        "to 2014-09-11 08:35:00+00:00 says was_running true, "
                        "2014-09-11 08:30:00+00:00 to 2014-09-11 08:50:00+00:00 says false"]


def _microwave_run(df: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The slice's longest microwave run (its own sub-meter: 11:12:12 to 11:14:06 above
    500 W, a 12 s pause in it)."""
    start, end = pd.Timestamp("2014-09-11T11:12:12Z"), pd.Timestamp("2014-09-11T11:14:12Z")
    assert (df.loc[start:end - pd.Timedelta(seconds=1), "microwave"] > 500).mean() > 0.9
    return start, end


def test_a_run_typed_a_little_late_is_still_learnt_as_a_run(
    files: tuple[Path, Path, pd.DataFrame], caplog: pytest.LogCaptureFixture,
) -> None:
    """"It ran from 07:02" for a run that began at 07:01:40: the bins before the label were
    inside the run, taken as the house's level, and the microwave was learnt as off."""
    _, history_path, df = files
    start, end = _microwave_run(df)
    late = pd.Timedelta(seconds=30)
    spec = ALL_TARGETS["microwave"]
    label = Label("microwave", start + late, end + late, True)
    _, y = label_windows([label], read_history(history_path), "microwave",
                         spec.period_s, spec.window)
    truth = resample(df[["microwave"]], spec.period_s)["microwave"]
    labelled = truth[(truth.index >= label.start) & (truth.index < label.end)]
    assert len(y) == len(labelled)
    assert float(y.sum()) > 0.8 * float(labelled.sum()) > 0
    assert any("did the run start earlier?" in r.getMessage() for r in caplog.records)


def test_the_history_may_be_any_csv_evaluate_reads(
    files: tuple[Path, Path, pd.DataFrame], tmp_path: Path,
) -> None:
    """`timestamp,mains` in unix seconds, as evaluate takes it, was refused as no export."""
    labels_path, history_path, df = files
    plain = tmp_path / "mains.csv"
    pd.DataFrame({"timestamp": (df.index - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "s"),
                  "mains": df["mains"].to_numpy()}).to_csv(plain, index=False)
    labels = read_labels(labels_path)
    expected = label_windows(labels, read_history(history_path), "washing_machine",
                             WASH.period_s, WASH.window)
    got = label_windows(labels, read_history(plain), "washing_machine", WASH.period_s,
                        WASH.window)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-3)


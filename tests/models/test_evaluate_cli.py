"""`energy-tracker-models evaluate` on a real slice: JSON metrics from the shipped bundle."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

UKDALE = Path(__file__).parents[2] / "models" / "data" / "ukdale_h1_2014-09-11_6s.csv.gz"
APPLIANCES = {"dishwasher", "fridge", "microwave", "washing_machine"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "energy_tracker_models.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def iso_result() -> dict:
    proc = run_cli("evaluate", "--data", str(UKDALE))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_prints_metrics_per_appliance_as_json(iso_result: dict) -> None:
    apps = iso_result["appliances"]
    assert set(apps) == APPLIANCES  # the bundle's appliances present in the CSV, no others
    truth = pd.read_csv(UKDALE)
    for name, m in apps.items():
        assert m["mae_w"] >= 0
        assert 0 <= m["f1"] <= 1
        assert m["samples"] > 0.9 * len(truth)
        if truth[name].sum() > 0:
            assert math.isfinite(m["sae"])
    # the fridge cycles all day: a useful model is closer than predicting nothing
    assert apps["fridge"]["mae_w"] < truth["fridge"].abs().mean()


def test_unix_seconds_and_extra_columns_give_the_same_result(tmp_path: Path,
                                                              iso_result: dict) -> None:
    df = pd.read_csv(UKDALE)
    seconds = (pd.to_datetime(df["timestamp"]) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    df["timestamp"] = seconds.astype("int64")
    df["not_an_appliance"] = 1.0
    data = tmp_path / "unix.csv"
    df.to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["appliances"] == \
        iso_result["appliances"]


def test_resamples_faster_data_to_the_model_period(tmp_path: Path, iso_result: dict) -> None:
    # the same hour at 2 s (each 6 s value repeated) evaluates like the 6 s original
    df = pd.read_csv(UKDALE, nrows=1200)
    t = pd.to_datetime(df["timestamp"])
    fast = df.loc[df.index.repeat(3)].copy()
    fast["timestamp"] = (t.repeat(3) + pd.to_timedelta(np.tile([0, 2, 4], len(df)), "s")
                         ).dt.strftime("%Y-%m-%dT%H:%M:%S%z").to_numpy()
    slow_path, fast_path = tmp_path / "slow.csv", tmp_path / "fast.csv"
    df.to_csv(slow_path, index=False)
    fast.to_csv(fast_path, index=False)
    results = []
    for path in (slow_path, fast_path):
        proc = run_cli("evaluate", "--data", str(path))
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1])["appliances"])
    assert results[0]["fridge"] == pytest.approx(results[1]["fridge"], rel=1e-4)


def test_other_bundle_directory(tmp_path: Path, iso_result: dict) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(Path(iso_result["models"]), bundle)
    proc = run_cli("evaluate", "--data", str(UKDALE), "--models", str(bundle))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["models"] == str(bundle)


def test_bad_bundle_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("evaluate", "--data", str(UKDALE), "--models", str(tmp_path))
    assert proc.returncode == 2
    assert "bundle.json not found" in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_csv_without_mains_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "x.csv.gz"
    with gzip.open(UKDALE, "rt") as src, gzip.open(data, "wt") as dst:
        dst.write(src.read().replace("mains", "aggregate", 1))
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 2
    assert "'mains'" in proc.stderr


def test_uci_2010_week_scores_the_circuits(tmp_path: Path) -> None:
    from energy_tracker_models.data import DataError, load_uci

    try:
        uci = load_uci()
    except DataError as err:
        pytest.skip(str(err))
    week = uci.loc["2010-03-01":"2010-03-07", ["mains", "kitchen", "laundry",
                                               "water_heater_ac"]]
    data = tmp_path / "uci_week.csv"
    week.rename_axis("timestamp").reset_index().to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    apps = json.loads(proc.stdout.strip().splitlines()[-1])["appliances"]
    assert set(apps) == {"kitchen", "laundry", "water_heater_ac"}
    # held-out data: the water heater estimate beats predicting nothing by far
    assert apps["water_heater_ac"]["mae_w"] < 0.5 * week["water_heater_ac"].mean()


def test_export_needs_a_version() -> None:
    # No default: a fine-tuned bundle must not come out as an old release's version.
    result = run_cli("export", "--out", "/nonexistent")
    assert result.returncode == 2
    assert "--version" in result.stderr


def _last_line_strict_json(proc: subprocess.CompletedProcess[str]) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=refuse)


def test_an_appliance_that_never_ran_gives_strict_json(tmp_path: Path) -> None:
    # The first hour of the day: the washing machine draws nothing, so its SAE is
    # undefined. It is null, not NaN, which JSON does not have.
    data = tmp_path / "hour.csv"
    pd.read_csv(UKDALE, nrows=600).to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    apps = _last_line_strict_json(proc)["appliances"]
    assert apps["washing_machine"]["sae"] is None
    assert apps["fridge"]["samples"] > 0


def test_appliances_the_slice_cannot_score_are_skipped_with_the_reason(tmp_path: Path) -> None:
    # 250 samples at 6 s: enough for the 99- and 199-sample windows, not for 299.
    data = tmp_path / "short.csv"
    pd.read_csv(UKDALE, nrows=250).to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    result = _last_line_strict_json(proc)
    assert {"fridge", "microwave"} <= set(result["appliances"])
    assert "fewer than the window of 299" in result["skipped"]["washing_machine"]
    # The slice has no kettle nor circuit columns: said, not silently left out.
    assert result["skipped"]["kettle"] == "no column 'kettle' in the data"
    assert set(result["skipped"]) >= {"kitchen", "laundry", "water_heater_ac"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a UTF-8 CSV file"),
        (b"timestamp,mains,fridge\n2014-09-11T00:00:00Z,100,50\nyesterday,100,50\n",
         "line 3: timestamp 'yesterday' is neither ISO 8601 (2014-09-11T07:02:00Z) nor unix "
         "seconds"),
        (b"timestamp,mains,fridge\n11/09/2014 00:00:00,100,50\n",
         "line 2: timestamp '11/09/2014 00:00:00' is neither ISO 8601"),
        (b"timestamp,mains,fridge\n2014-09-11T00:00:00Z,100,50\n,120,50\n",
         "line 3: empty timestamp"),
        # Blank lines count: the error names the line an editor shows (helper 89).
        (b"\ntimestamp,mains,fridge\n2014-09-11T00:00:00Z,100,50\n\n\n"
         b"2014-09-11T00:00:06Z,100,50\n2014-09-11 00:00:18 UTC,100,50\n",
         "line 7: timestamp '2014-09-11 00:00:18 UTC' is neither"),
        (b"timestamp;mains;fridge\n2014-09-11T00:00:00Z;100,5;50\n",
         "columns separated by ';'"),
        (b"timestamp,mains,fridge\n2014-09-11T00:00:00Z,lots,50\n", "holds no numbers"),
        # Minute data for 6 s models: said as such, not "no full window".
        (b"timestamp,mains,fridge\n" + b"".join(
            f"{1410393600 + 60 * i},{200 + i % 7},{80 * (i % 3 == 0)}\n".encode()
            for i in range(400)), "fridge: data sampled every 60 s, coarser than the "
         "model's 6 s"),
        (b"timestamp,mains,fridge\n" + b"".join(
            f"{1410393600000 + 6000 * i},{200 + i % 7},{80 * (i % 3 == 0)}\n".encode()
            for i in range(400)), "timestamps look like milliseconds"),
    ],
    ids=["empty", "png", "bad-time", "day-first-date", "empty-time", "blank-lines", "semicolons",
         "no-numbers", "minute-data", "milliseconds"],
)
def test_bad_data_is_a_message_and_exit_2(tmp_path: Path, content: bytes, message: str) -> None:
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_plain_file_named_gz_is_a_message(tmp_path: Path) -> None:
    data = tmp_path / "broken.csv.gz"
    data.write_bytes(gzip.compress(b"timestamp,mains,fridge\n1410393600,100,50\n")[:20])
    proc = run_cli("evaluate", "--data", str(data))
    assert (proc.returncode, "Traceback" in proc.stderr) == (2, False)
    assert "(gzip)" in proc.stderr


def test_a_spreadsheets_file_reads_like_the_plain_one(tmp_path: Path,
                                                       iso_result: dict) -> None:
    """What a spreadsheet or a hand edit makes of the slice: capitalised, padded column
    names, trailing empty rows, a plain file named .gz and a gzipped one named .csv."""
    with gzip.open(UKDALE, "rt") as handle:
        text = handle.read()
    header, rest = text.split("\n", 1)
    edited = ",".join(f" {name.title()} " for name in header.split(",")) + "\n" + rest
    edited += ",,,,,\n,,,,,\n"
    (tmp_path / "plain.csv.gz").write_text(edited)
    (tmp_path / "zipped.csv").write_bytes(gzip.compress(edited.encode()))
    for name in ("plain.csv.gz", "zipped.csv"):
        proc = run_cli("evaluate", "--data", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["appliances"] == (
            iso_result["appliances"])


def test_chunked_inference_scores_like_the_whole_file() -> None:
    """Long files go through the models a chunk of windows at a time; the result is the
    add-on's own batch path, bit for bit, across chunk edges and gaps."""
    from energy_tracker_addon.nilm import disaggregate_series, load_bundle
    from energy_tracker_models.data import read_power_csv
    from energy_tracker_models.evaluate import disaggregate_chunked, evaluate_frame

    bundle = load_bundle()
    df = read_power_csv(UKDALE).iloc[:1500].copy()
    df.iloc[700:720, df.columns.get_loc("mains")] = np.nan  # a gap no window may cross
    whole = evaluate_frame(bundle, df)
    # as JSON: an SAE that is NaN (never ran) equals itself there
    assert json.dumps(evaluate_frame(bundle, df, chunk_windows=97)) == json.dumps(whole)
    assert set(whole[0]) >= {"fridge", "microwave"}
    mains = df["mains"].to_numpy(np.float32)
    for name in ("fridge", "washing_machine"):
        expected = disaggregate_series(bundle.models[name], mains)
        got = disaggregate_chunked(bundle.models[name], mains, chunk_windows=97)
        np.testing.assert_array_equal(got.power_w, expected.power_w)
        np.testing.assert_array_equal(got.on, expected.on)


def test_chunked_inference_memory_does_not_grow_with_the_file() -> None:
    import tracemalloc

    from energy_tracker_addon.nilm import load_bundle
    from energy_tracker_models.evaluate import disaggregate_chunked

    runner = load_bundle(only=["washing_machine"]).models["washing_machine"]
    mains = np.random.default_rng(0).uniform(100, 3000, 12_000).astype(np.float32)
    all_windows = len(mains) * runner.spec.window * 4  # bytes, as float32
    tracemalloc.start()
    try:
        disaggregate_chunked(runner, mains, chunk_windows=500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < all_windows / 4


@pytest.mark.parametrize(("unix", "stray", "span", "gap"), [
    # One row at unix time 0 in front of a day's data: 44 years of 6 s bins.
    (True, 0, "timestamps span 1970-01-01", "from 1970-01-01 00:00:00+00:00 to 2014-09-11"),
    # Placeholder dates of spreadsheets and exports, which pandas parses in seconds, not
    # nanoseconds (an overflow and a traceback, helper 89).
    (False, "0001-01-01T00:00:00Z", "timestamps span 0001-01-01",
     "from 0001-01-01 00:00:00+00:00 to 2014-09-11"),
    (False, "9999-12-31T23:59:59Z", "to 9999-12-31 23:59:59+00:00",
     "to 9999-12-31 23:59:59+00:00"),
    (True, 99_999_999_999, "to 5138-11-16", "to 5138-11-16"),
])
def test_a_stray_row_decades_away_is_a_message_not_a_memory_error(
    tmp_path: Path, unix: bool, stray: object, span: str, gap: str,
) -> None:
    df = pd.read_csv(UKDALE, nrows=600)
    if unix:
        seconds = (pd.to_datetime(df["timestamp"]) - pd.Timestamp(0, tz="UTC")
                   ).dt.total_seconds()
        df["timestamp"] = seconds.astype("int64")
    data = tmp_path / "stray.csv"
    pd.concat([df.iloc[:1].assign(timestamp=stray), df]).to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert (proc.returncode, "Traceback" in proc.stderr) == (2, False), proc.stderr
    assert f"error: {data}: " in proc.stderr
    assert span in proc.stderr
    assert "the largest gap is " in proc.stderr
    assert gap in proc.stderr
    assert "stray row" in proc.stderr


def test_the_addon_export_with_a_measured_column_scores_like_mains(tmp_path: Path) -> None:
    """Scoring a fine-tuned target for real: the add-on's export (`total_power_w`) plus the
    appliance's own measurement, e.g. from a smart plug."""
    df = pd.read_csv(UKDALE, nrows=600)
    plain, export = tmp_path / "mains.csv", tmp_path / "export.csv"
    df[["timestamp", "mains", "fridge"]].to_csv(plain, index=False)
    df[["timestamp", "mains", "fridge"]].rename(columns={"mains": "total_power_w"}).assign(
        total_energy_kwh=0.0).to_csv(export, index=False)
    results = []
    for path in (plain, export):
        proc = run_cli("evaluate", "--data", str(path))
        assert proc.returncode == 0, proc.stderr
        results.append(_last_line_strict_json(proc)["appliances"])
    assert results[1] == results[0]
    assert set(results[1]) == {"fridge"}


@pytest.mark.parametrize(("scale", "warning"), [
    (0.001, "the mains never reach 50: in kW? give watts"),
    (-1.0, "the mains are mostly negative (a CT clamp the wrong way round"),
])
def test_mains_the_models_cannot_read_are_warned_about(tmp_path: Path, scale: float,
                                                       warning: str) -> None:
    """Mains in kW or reversed were scored silently, as models seeing no load."""
    with gzip.open(UKDALE, "rt") as handle:
        df = pd.read_csv(handle)
    df["mains"] *= scale
    data = tmp_path / "odd.csv"
    df.to_csv(data, index=False)
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    assert warning in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["appliances"]


def test_no_matching_column_lists_the_datas_columns(tmp_path: Path) -> None:
    data = tmp_path / "toaster.csv"
    data.write_text("timestamp,mains,toaster\n1410393600,100,50\n1410393606,100,50\n")
    proc = run_cli("evaluate", "--data", str(data))
    assert proc.returncode == 2
    assert "the data has ['toaster']" in proc.stderr

"""Arguments the CLI refuses before touching anything (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from energy_tracker_models.cli import main


def _cache_with_checkpoint(tmp_path: Path) -> Path:
    """A cache in which `export` finds kettle's checkpoint, so only --out can stop it."""
    keras_dir = tmp_path / "cache" / "keras"
    keras_dir.mkdir(parents=True)
    (keras_dir / "kettle.keras").write_bytes(b"checkpoint")
    (keras_dir / "kettle.json").write_text(json.dumps({"normalisation": {}}))
    return tmp_path / "cache"


def _export(cache: Path, out: str) -> int:
    return main(["--cache", str(cache), "export", "--targets", "kettle", "--out", out,
                 "--version", "1.0.0+home"])


def test_export_refuses_a_folder_that_is_not_a_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cache = _cache_with_checkpoint(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    assert _export(cache, str(photos)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert "no bundle.json" in err
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "photos"]


def test_export_refuses_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = _cache_with_checkpoint(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    assert _export(cache, str(notes)) == 2
    assert "not a folder" in capsys.readouterr().err
    assert notes.read_text() == "keep me"


def test_export_to_the_current_folder_is_refused_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    cache = _cache_with_checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)  # holds the cache: not a bundle
    assert _export(cache, ".") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: a folder that is not empty" in err
    assert (cache / "keras" / "kettle.keras").read_bytes() == b"checkpoint"


@pytest.mark.parametrize("command", ["train", "finetune"])
@pytest.mark.parametrize("epochs", ["0", "-3", "two"])
def test_epochs_below_one_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, epochs: str,
) -> None:
    cache = _cache_with_checkpoint(tmp_path)
    extra = (["--labels", "l.jsonl", "--history", "h.csv"] if command == "finetune"
             else ["--targets", "kettle"])
    with pytest.raises(SystemExit) as exit_:
        main(["--cache", str(cache), command, *extra, "--epochs", epochs])
    assert exit_.value.code == 2
    assert "--epochs" in capsys.readouterr().err
    assert (cache / "keras" / "kettle.keras").read_bytes() == b"checkpoint"


@pytest.mark.parametrize("version", ["", "  "])
def test_export_refuses_a_blank_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str,
) -> None:
    cache = _cache_with_checkpoint(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--cache", str(cache), "export", "--targets", "kettle", "--out",
              str(tmp_path / "b"), "--version", version])
    assert exit_.value.code == 2
    assert "--version: must not be empty" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    description = capsys.readouterr().out.split("\n\n")[1]  # after the usage lines
    for command in ("prepare", "train", "export", "report", "evaluate", "finetune",
                    "forecast"):
        assert command in description


def test_forecast_with_a_report_it_cannot_write_leaves_the_model_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model was saved (over the add-on's shipped one, by default) before the report
    failed, and the command ended in "error" as if nothing had changed (helper 97)."""
    model = tmp_path / "model.json"
    code = main(["forecast", "--no-gbm", "--out", str(model),
                 "--report", str(tmp_path / "missing" / "report.json")])
    assert code == 2
    assert f"no folder {tmp_path / 'missing'} for report.json" in capsys.readouterr().err
    assert not model.exists()

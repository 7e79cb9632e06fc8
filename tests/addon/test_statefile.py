"""The add-on's one crash-safe write, and JSON state that falls back to its last good copy."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from energy_tracker_addon import statefile
from energy_tracker_addon.statefile import JsonStateFile, VersionedStateFile, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_scratch(tmp_path: Path) -> None:
    path = tmp_path / "relays.json"
    write_atomic(path, '{"1": {"priority": 2}}')
    # A lone surrogate cannot be encoded: the write fails halfway, like a full disk
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, '{"1": "\ud800"}')
    assert path.read_text(encoding="utf-8") == '{"1": {"priority": 2}}'
    assert [p.name for p in tmp_path.iterdir()] == ["relays.json"]


def test_the_data_is_on_disk_before_it_replaces_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed before its data reached the disk, a power cut (common on a Pi) can leave an
    empty counter file in place of the good one. A power cut cannot be made here, so the
    order of the OS calls is what is checked (helper 109)."""
    calls: list[str] = []
    fsync, replace = os.fsync, os.replace

    def fsync_spy(fd: int) -> None:
        calls.append("fsync")
        fsync(fd)

    def replace_spy(src: str | Path, dst: str | Path) -> None:
        calls.append("replace")
        replace(src, dst)

    monkeypatch.setattr(statefile.os, "fsync", fsync_spy)
    monkeypatch.setattr(statefile.os, "replace", replace_spy)
    write_atomic(tmp_path / "energy.json", "{}")
    # The file's data, the rename, then the folder (the rename itself made durable).
    assert calls == ["fsync", "replace", "fsync"]
    assert (tmp_path / "energy.json").read_text() == "{}"


def test_a_secret_is_private_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    write_atomic(path, "secret\n", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, "public\n", mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text(encoding="utf-8") == "public\n"


def test_state_falls_back_to_the_previous_write_when_the_file_is_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = JsonStateFile(tmp_path / "nilm_energy.json")
    assert state.load() is None
    state.save({"kettle": 0.5})
    state.save({"kettle": 0.7})
    assert json.loads(state.backup_path.read_text(encoding="utf-8"))["kettle"] == 0.5
    state.path.write_text('{"kettle": 0.', encoding="utf-8")  # torn by a power cut
    with caplog.at_level(logging.ERROR):
        assert state.load() == {"kettle": 0.5}
    assert "is corrupt" in caplog.text


def test_state_resumes_from_its_live_copy_unless_that_is_older_or_torn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "analytics.json"
    state = JsonStateFile(path)
    state.save({"today": 1.0})
    state.save_live({"today": 1.2})
    assert JsonStateFile(path).load() == {"today": 1.2}  # a kill after publishing 1.2

    state.save({"today": 1.3})
    assert JsonStateFile(path).load() == {"today": 1.3}  # the live copy is older

    state.save_live({"today": 1.4})
    state.live.path.write_bytes(state.live.path.read_bytes().replace(b"1.4", b"9.4"))
    with caplog.at_level(logging.WARNING):
        assert JsonStateFile(path).load() == {"today": 1.3}
    assert "torn" in caplog.text


def test_a_durable_write_that_fails_is_said_once_while_the_live_copy_still_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A new file cannot be put in place (here: a folder where the backup goes) while the
    # live copy, rewritten in place, still can: one error line, not one per reading.
    state = VersionedStateFile(tmp_path / "analytics.json", 1, "analytics state",
                               logging.getLogger("test"))
    assert state.write({"n": 0})
    (tmp_path / "analytics.json.bak").mkdir()
    (tmp_path / "analytics.json.bak" / "in-the-way").touch()
    for n in range(1, 4):
        assert state.write({"n": n}, live=True)
        assert not state.write({"n": n})
    assert caplog.text.count("Could not write the analytics state") == 1
    assert state.load() == {"version": 1, "n": 3}  # the live copy is the newest


def test_an_older_addons_write_outranks_a_live_copy_left_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gas counter after an add-on older than live copies (before 0.3.6) ran on the
    folder: its file has no revision, and a live copy from before it went back to 0.13."""
    path = tmp_path / "gas.json"
    state = JsonStateFile(path)
    state.save({"version": 1, "m3": 0.10})
    state.save_live({"version": 1, "m3": 0.13})  # then killed: the copy stays
    path.write_text(json.dumps({"version": 1, "m3": 0.21}))  # the older add-on's save
    with caplog.at_level(logging.INFO):
        assert JsonStateFile(path).load() == {"version": 1, "m3": 0.21}
    assert "written later, by an older add-on" in caplog.text
    # Renumbered as it was loaded: live copies written after it count after a kill.
    resumed = JsonStateFile(path)
    assert resumed.load() == {"version": 1, "m3": 0.21}
    resumed.save_live({"version": 1, "m3": 0.25})
    assert JsonStateFile(path).load() == {"version": 1, "m3": 0.25}

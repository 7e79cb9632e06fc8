"""The energy counter store survives crashes and never goes backwards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from energy_tracker_addon.persistence import CounterStore, EnergyCounters

SINCE = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def counters(total: float, **channels: float) -> EnergyCounters:
    return EnergyCounters(total, SINCE, {int(k[1:]): v for k, v in channels.items()})


def test_nothing_saved_loads_as_none(tmp_path: Path) -> None:
    assert CounterStore(tmp_path / "energy.json").load() is None


def test_saved_counters_load_in_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    CounterStore(path).save(counters(12.3456, c1=12.3456, c2=1.5))

    loaded = CounterStore(path).load()

    assert loaded == counters(12.3456, c1=12.3456, c2=1.5)
    assert loaded is not None
    assert loaded.since == SINCE


def test_leftover_temp_file_from_a_crash_is_ignored_and_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    CounterStore(path).save(counters(5.0, c1=5.0))
    # A crash after writing the temp file, before os.replace: half a JSON document.
    leftover = tmp_path / ".energy.json.abc123.tmp"
    leftover.write_text('{"version": 1, "total_kwh": 99')

    loaded = CounterStore(path).load()

    assert loaded == counters(5.0, c1=5.0)
    assert not leftover.exists()
    assert "left over from an interrupted save" in caplog.text


def test_truncated_file_falls_back_to_the_previous_good_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0, c1=5.0))
    store.save(counters(6.0, c1=6.0))
    path.write_bytes(path.read_bytes()[:20])

    loaded = CounterStore(path).load()

    assert loaded == counters(5.0, c1=5.0)
    assert "corrupt" in caplog.text
    assert "using the backup" in caplog.text


def test_crash_between_rotation_and_rename_keeps_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0))
    store.save(counters(6.0))
    # The main file was moved to .bak and the new one never arrived.
    path.replace(tmp_path / "energy.json.bak")

    assert CounterStore(path).load() == counters(6.0)


def test_corrupt_file_without_a_backup_is_an_error_not_a_silent_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    path.write_text("not json")

    assert CounterStore(path).load() is None
    assert "corrupt" in caplog.text
    assert "no backup" in caplog.text


def test_saving_after_a_corrupt_load_keeps_the_good_backup(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0))
    store.save(counters(6.0))
    path.write_text("garbage")
    recovering = CounterStore(path)
    assert recovering.load() == counters(5.0)

    recovering.save(counters(5.5))

    assert CounterStore(path).load() == counters(5.5)
    # The corrupt main file was not rotated over the good backup.
    path.write_text("garbage again")
    assert CounterStore(path).load() == counters(5.0)


@pytest.mark.parametrize(
    "content",
    [
        '{"version": 1, "total_kwh": -1.0, "channels_kwh": {}, "since": "2026-11-20T08:00:00Z"}',
        '{"version": 1, "total_kwh": NaN, "channels_kwh": {}, "since": "2026-11-20T08:00:00Z"}',
        '{"version": 1, "total_kwh": 1.0, "channels_kwh": {}, "since": "yesterday"}',
        '{"version": 2, "total_kwh": 1.0, "channels_kwh": {}, "since": "2026-11-20T08:00:00Z"}',
        "[]",
    ],
)
def test_invalid_contents_count_as_corrupt(tmp_path: Path, content: str) -> None:
    path = tmp_path / "energy.json"
    CounterStore(path).save(counters(1.0))
    CounterStore(path).save(counters(2.0))
    path.write_text(content)

    assert CounterStore(path).load() == counters(1.0)


def test_counters_never_decrease(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(10.0, c1=4.0))

    with pytest.raises(ValueError, match="never decrease"):
        store.save(counters(9.0, c1=4.0))
    with pytest.raises(ValueError, match="never decrease"):
        store.save(counters(11.0, c1=3.0))

    assert CounterStore(path).load() == counters(10.0, c1=4.0)


def test_a_restart_after_a_kill_resumes_from_the_live_copy(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0, c1=5.0))
    store.save_live(counters(5.2, c1=5.2))  # published after the last save
    store.save_live(counters(5.3, c1=5.3))

    assert CounterStore(path).load() == counters(5.3, c1=5.3)


def test_a_corrupt_file_beside_a_good_live_copy_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0, c1=5.0))
    store.save_live(counters(5.2, c1=5.2))
    path.write_bytes(b"\x00" * 64)  # the card damaged the saved file

    assert CounterStore(path).load() == counters(5.2, c1=5.2)
    assert "energy.json is corrupt" in caplog.text
    assert "using its newer live copy (5.2000 kWh)" in caplog.text


def test_a_torn_or_stale_live_copy_gives_way_to_the_saved_counters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save_live(counters(5.0, c1=5.0))
    store.save(counters(5.5, c1=5.5))
    # A power cut: the kernel had not written back the live copy's newer pages, so the
    # live copy on the card is older than the fsynced save.
    assert CounterStore(path).load() == counters(5.5, c1=5.5)

    store.save_live(counters(5.8, c1=5.8))
    live = path.with_name("energy.json.live")
    live.write_bytes(live.read_bytes()[:-4])  # torn mid-write
    assert CounterStore(path).load() == counters(5.5, c1=5.5)
    assert "torn" in caplog.text


def test_an_older_addon_run_between_two_starts_is_not_rolled_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An add-on older than live copies (0.1.0-0.3.5) ran on this folder: it read and
    wrote only energy.json, without revisions. The next start took the live copy the
    current add-on had left (a higher revision) and lost all the older add-on counted."""
    path = tmp_path / "energy.json"
    store = CounterStore(path)
    store.save(counters(5.0, c1=5.0))
    store.save_live(counters(5.2, c1=5.2))  # then killed: the copy stays
    older = '{"version": 1, "total_kwh": 7.5, "channels_kwh": {"1": 7.5}, "since": "%s"}'
    path.write_text(older % SINCE.isoformat())  # the older add-on's last save

    assert CounterStore(path).load() == counters(7.5, c1=7.5)
    assert "written later, by an older add-on" in caplog.text


def test_after_an_older_addon_the_next_kill_still_resumes_from_the_live_copy(
    tmp_path: Path
) -> None:
    """The file the older add-on left has no revision: renumbered when loaded, or the live
    copies written after it were ignored again after a kill (0.003377 -> 0.001693 kWh)."""
    path = tmp_path / "energy.json"
    first = CounterStore(path)
    first.save(counters(5.0, c1=5.0))
    for total in (5.1, 5.2, 5.3):
        first.save_live(counters(total, c1=total))  # a stale copy, revision 4
    older = '{"version": 1, "total_kwh": 7.5, "channels_kwh": {"1": 7.5}, "since": "%s"}'
    path.write_text(older % SINCE.isoformat())
    store = CounterStore(path)
    assert store.load() == counters(7.5, c1=7.5)
    assert CounterStore(path).load() == counters(7.5, c1=7.5)  # killed at once
    store.save_live(counters(7.9, c1=7.9))  # or killed before the next save
    assert CounterStore(path).load() == counters(7.9, c1=7.9)


def test_revisions_continue_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    first = CounterStore(path)
    first.save(counters(1.0))
    for total in (1.1, 1.2, 1.3):
        first.save_live(counters(total))
    second = CounterStore(path)
    assert second.load() == counters(1.3)
    # The restarted store's next durable save outranks the live copy it resumed from.
    second.save(counters(1.4))
    assert CounterStore(path).load() == counters(1.4)


def test_an_unreadable_counter_file_is_an_error_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "energy.json"
    path.mkdir()  # something else in its place
    assert CounterStore(path).load() is None
    assert "unreadable" in caplog.text
    assert "counting from zero" in caplog.text

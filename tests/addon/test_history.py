"""History store on real UCI slices: export round trips, retention, the async writer."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from energy_tracker_addon import history
from energy_tracker_addon.history import (
    HELD_FOR_BACKUP_FILE,
    ExportCancelled,
    HistoryStore,
    HistoryWriter,
    Reading,
)

from .polling import wait_until
from .uci import UCI_TZ, read_uci

# Channel ids as the add-on numbers its CT inputs; total = mains.
CHANNELS = {1: "mains", 2: "kitchen", 3: "laundry", 4: "water_heater_ac"}
START = datetime(2009, 2, 2, tzinfo=UCI_TZ)


@cache
def _frame(days: int) -> pd.DataFrame:
    """What the store should hold: one row per minute, in the export's column layout."""
    data = read_uci(START, START + timedelta(days=days))
    frame = pd.DataFrame(index=data.index.tz_convert(UTC).as_unit("ms").rename("timestamp"))
    frame["total_power_w"] = data["mains"].to_numpy()
    frame["total_energy_kwh"] = (data["mains"].cumsum() / 60_000).to_numpy()
    frame["voltage_v"] = data["voltage"].to_numpy()
    # The UCI house had no probe: a slow indoor drift stands in for the RPICT temperature.
    frame["temperature_c"] = 19.5 + 0.001 * np.arange(len(frame))
    for cid, name in CHANNELS.items():
        frame[f"channel_{cid}_power_w"] = data[name].to_numpy()
        frame[f"channel_{cid}_energy_kwh"] = (data[name].cumsum() / 60_000).to_numpy()
    # A stale stretch: powers and voltage unknown, energies still known.
    stale = slice(100, 130)
    unknown = ["total_power_w", "voltage_v", "temperature_c",
               *(f"channel_{c}_power_w" for c in CHANNELS)]
    frame.iloc[stale, [frame.columns.get_loc(c) for c in unknown]] = np.nan
    return frame


def _readings(frame: pd.DataFrame) -> list[Reading]:
    def known(value: float) -> float | None:
        return None if np.isnan(value) else value

    return [
        Reading(
            timestamp=moment.to_pydatetime(),
            total_power_w=known(row["total_power_w"]),
            total_energy_kwh=row["total_energy_kwh"],
            voltage_v=known(row["voltage_v"]),
            temperature_c=known(row["temperature_c"]),
            channel_power_w={c: known(row[f"channel_{c}_power_w"]) for c in CHANNELS},
            channel_energy_kwh={c: row[f"channel_{c}_energy_kwh"] for c in CHANNELS},
        )
        for moment, row in zip(frame.index, frame.to_dict("records"), strict=True)
    ]


def _reload(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        loaded = pd.read_csv(path)
        loaded["timestamp"] = pd.to_datetime(loaded["timestamp"], utc=True, format="ISO8601")
    else:
        loaded = pd.read_parquet(path)
    loaded = loaded.set_index("timestamp")
    loaded.index = loaded.index.as_unit("ms")  # the stored resolution
    return loaded


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    opened = HistoryStore(tmp_path / "history.sqlite3", retention_days=None, max_size_mb=None)
    yield opened
    opened.close()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reloads_to_the_same_values(
    store: HistoryStore, tmp_path: Path, fmt: str
) -> None:
    frame = _frame(days=3)
    store.append(_readings(frame))
    start, end = START + timedelta(hours=1), START + timedelta(days=2, hours=18)
    path = tmp_path / f"export.{fmt}"
    rows = store.export(start, end, fmt, path)  # type: ignore[arg-type]
    expected = frame[(frame.index >= start) & (frame.index < end)]
    assert rows == len(expected)
    loaded = _reload(path, fmt)
    pd.testing.assert_frame_equal(loaded, expected, check_exact=True, check_freq=False)


def test_export_of_chosen_channels_and_of_an_empty_range(
    store: HistoryStore, tmp_path: Path
) -> None:
    store.append(_readings(_frame(days=1)))
    path = tmp_path / "kitchen.csv"
    store.export(START, START + timedelta(hours=2), "csv", path, channel_ids=[2])
    assert list(pd.read_csv(path).columns) == [
        "timestamp", "total_power_w", "total_energy_kwh", "voltage_v", "temperature_c",
        "channel_2_power_w", "channel_2_energy_kwh",
    ]
    empty = tmp_path / "empty.parquet"
    assert store.export(START - timedelta(days=9), START, "parquet", empty) == 0
    assert len(pd.read_parquet(empty)) == 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_onto_a_full_disk_raises_the_os_error(store: HistoryStore, fmt: str) -> None:
    """The API answers 507 for ENOSPC (api_errors.py): pyarrow must not hide the errno."""
    store.append(_readings(_frame(days=1)))
    with pytest.raises(OSError, match="No space left on device") as raised:
        store.export(START, START + timedelta(days=1), fmt, Path("/dev/full"))  # type: ignore[arg-type]
    assert raised.value.errno == errno.ENOSPC


def test_a_parquet_export_leaves_the_addon_without_pyarrow(tmp_path: Path) -> None:
    """pyarrow and its pool stayed in the add-on after one Parquet export (+120-140 MiB
    for good): the file is written by a child process, and this one never loads it."""
    script = f"""
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from energy_tracker_addon.history import HistoryStore, Reading
start = datetime(2026, 1, 1, tzinfo=UTC)
store = HistoryStore(Path({str(tmp_path / "h.sqlite3")!r}))
store.append([Reading(start + timedelta(seconds=2 * i), 100.0 + i % 7, i / 1000)
              for i in range(20_000)])
rows = store.export(start, start + timedelta(days=1), "parquet", Path({str(tmp_path / "o.pq")!r}))
print(json.dumps({{"rows": rows, "pyarrow": "pyarrow" in sys.modules}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    said = json.loads(done.stdout.splitlines()[-1])
    assert said == {"rows": 20_000, "pyarrow": False}
    written = pd.read_parquet(tmp_path / "o.pq")
    assert len(written) == 20_000
    assert written["total_power_w"].iloc[-1] == 100.0 + 19_999 % 7


def test_a_parquet_export_that_cannot_be_written_says_why(
    store: HistoryStore, tmp_path: Path
) -> None:
    store.append(_readings(_frame(days=1)))
    missing = tmp_path / "gone" / "out.parquet"
    with pytest.raises(OSError, match="No such file or directory") as raised:
        store.export(START, START + timedelta(days=1), "parquet", missing)
    assert raised.value.errno == errno.ENOENT
    assert not _children()  # the writer process is gone


def _children() -> list[int]:
    """This process's live child processes (every thread's), zombies excluded."""
    found: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except FileNotFoundError:  # that thread ended after the listing
            continue
        for pid in pids:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z":
                    found.append(int(pid))
    return found


def test_age_retention_keeps_only_the_recent_readings(store: HistoryStore) -> None:
    frame = _frame(days=6)
    store.append(_readings(frame))
    store.retention = timedelta(days=2)
    now = frame.index[-1].to_pydatetime()
    deleted = store.prune(now)
    kept = frame.index[frame.index >= now - timedelta(days=2)]
    assert store.count() == len(kept)
    assert deleted == len(frame) - len(kept)
    assert store.time_range() == (kept[0].to_pydatetime(), kept[-1].to_pydatetime())


def test_size_retention_bounds_disk_use_and_drops_the_oldest(tmp_path: Path) -> None:
    limit_mb = 1.0
    store = HistoryStore(tmp_path / "history.sqlite3", retention_days=None, max_size_mb=limit_mb)
    try:
        frame = _frame(days=14)
        for day in range(14):  # two weeks of minutes: several MB before pruning
            store.append(_readings(frame.iloc[day * 1440:(day + 1) * 1440]))
        before = store.disk_bytes()
        store.prune()
        after = store.disk_bytes()
        assert before > 2 * limit_mb * 2**20
        assert after <= limit_mb * 2**20
        first, last = store.time_range() or (None, None)
        assert last == frame.index[-1].to_pydatetime()
        assert store.count() == len(frame[frame.index >= first])  # a newest, unbroken run
        print(f"\nhistory: {before / 2**20:.2f} MB -> {after / 2**20:.2f} MB, "
              f"{store.count()} of {len(frame)} readings kept")
    finally:
        store.close()


def test_readings_survive_a_restart(tmp_path: Path) -> None:
    frame = _frame(days=1)
    store = HistoryStore(tmp_path / "history.sqlite3")
    store.append(_readings(frame))
    store.close()
    reopened = HistoryStore(tmp_path / "history.sqlite3")
    assert reopened.count() == len(frame)
    reopened.close()


def test_bad_export_requests_are_refused(store: HistoryStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        store.export(datetime(2009, 1, 1), datetime(2009, 1, 2), "csv", tmp_path / "x.csv")
    with pytest.raises(ValueError, match="unknown export format 'xlsx'"):
        store.export(START, START, "xlsx", tmp_path / "x.xlsx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no channel 9"):
        store.export(START, START, "csv", tmp_path / "x.csv", channel_ids=[9])


def test_reading_from_the_api_state_object() -> None:
    state = {
        "timestamp": "2026-11-24T10:15:02.113Z", "total_power_w": None,
        "total_energy_kwh": 12.3456, "voltage_v": 231.4, "temperature_c": 21.5,
        "channels": [{"id": 1, "power_w": None, "energy_kwh": 12.3456},
                     {"id": 3, "power_w": 250.5, "energy_kwh": 1.5}],
    }
    reading = Reading.from_state(state)
    assert reading.timestamp == datetime(2026, 11, 24, 10, 15, 2, 113000, tzinfo=UTC)
    assert reading.channel_power_w == {1: None, 3: 250.5}
    assert reading.channel_energy_kwh == {1: 12.3456, 3: 1.5}
    assert reading.temperature_c == 21.5


async def test_writer_batches_off_the_loop_and_exports(tmp_path: Path) -> None:
    frame = _frame(days=2)
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=0.05)
    await writer.start()
    writers_thread = [t for t in threading.enumerate() if t.name.startswith("history")]
    for reading in _readings(frame):
        writer.add(reading)  # synchronous, never touches the disk
    path = tmp_path / "out.parquet"
    rows = await writer.export(START, START + timedelta(days=2), "parquet", path)
    await writer.stop()
    assert rows == len(frame)
    pd.testing.assert_frame_equal(_reload(path, "parquet"), frame, check_exact=True,
                                  check_freq=False)
    assert len(writers_thread) == 1
    assert not writers_thread[0].is_alive()  # stopped with the writer


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
async def test_stopping_cuts_a_running_export_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A stop does not wait for a long export (a 60-day one takes minutes): the
    Supervisor kills the add-on 10 s after asking, and the readings still queued would go."""
    monkeypatch.setattr(history, "EXPORT_CHUNK_ROWS", 10)  # many chunks: a long export
    frame = _frame(days=2)
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=60)
    await writer.start()
    for reading in _readings(frame):
        writer.add(reading)
    await writer.flush()
    end = START + timedelta(days=2)
    if fmt == "parquet":
        export = asyncio.create_task(writer.export(START, end, "parquet", tmp_path / "o.pq"))
    else:
        async def read_all() -> int:
            return len([piece async for piece in writer.csv_pieces(START, end)])
        export = asyncio.create_task(read_all())
    await asyncio.sleep(0)  # the export is under way
    last = Reading(timestamp=end, total_power_w=1.0, total_energy_kwh=99.0)
    writer.add(last)

    await writer.stop()

    with pytest.raises(ExportCancelled):
        await export
    assert not _children()  # a Parquet writer process is stopped with its export
    store = HistoryStore(tmp_path / "history.sqlite3")
    try:  # what was queued when the stop came is written
        assert store.export(end, end + timedelta(seconds=1), "csv", tmp_path / "l.csv") == 1
    finally:
        store.close()


def test_a_store_from_before_the_temperature_column_gains_it(tmp_path: Path) -> None:
    """Schema 1 stores (no temperature_c) keep their rows and accept temperatures."""
    path = tmp_path / "history.sqlite3"
    old_columns = ("total_power_w", "total_energy_kwh", "voltage_v",
                   *(f"channel_{c}_{q}" for c in range(1, 9) for q in ("power_w", "energy_kwh")))
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE readings (ts_ms INTEGER PRIMARY KEY, "
                   + ", ".join(f"{c} REAL" for c in old_columns) + ") WITHOUT ROWID")
        db.execute("INSERT INTO readings (ts_ms, total_power_w, total_energy_kwh) "
                   "VALUES (?, 1500.0, 2.5)", (int(START.timestamp() * 1000),))
    store = HistoryStore(path)
    try:
        store.append([Reading(timestamp=START + timedelta(minutes=1), total_power_w=900.0,
                              total_energy_kwh=2.6, temperature_c=20.25)])
        out = tmp_path / "all.csv"
        assert store.export(START, START + timedelta(minutes=2), "csv", out) == 2
        frame = pd.read_csv(out)
        assert list(frame["total_power_w"]) == [1500.0, 900.0]
        assert np.isnan(frame["temperature_c"][0])
        assert frame["temperature_c"][1] == 20.25
    finally:
        store.close()


def test_an_unreadable_store_is_set_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A damaged SD card: the add-on must still start (and keep the file for the user).
    path = tmp_path / "history.sqlite3"
    garbage = bytes(range(256)) * 80
    path.write_bytes(garbage)
    store = HistoryStore(path)
    try:
        store.append(_readings(_frame(days=1))[:10])
        assert store.count() == 10
    finally:
        store.close()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite3.corrupt-")]
    assert [p.read_bytes() for p in kept] == [garbage]
    assert "is damaged (file is not a database): moved to history.sqlite3.corrupt-" in caplog.text


def test_an_emptied_store_is_said_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated file (a restored copy, a crash of the card) is a valid empty database
    to SQLite: the history was gone without a word."""
    path = tmp_path / "history.sqlite3"
    path.touch()
    HistoryStore(path).close()
    assert "is empty (a truncated or restored copy?)" in caplog.text
    caplog.clear()
    HistoryStore(path).close()  # a new history now: nothing more to say
    assert "is empty" not in caplog.text


def _worn_card_store(tmp_path: Path) -> Path:
    """A day of readings in a file that opens, but whose first query meets zeroed pages."""
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    store.append(_readings(_frame(days=1)))
    store.close()
    with path.open("r+b") as handle:  # pages 6 and 7 of the readings' B-tree
        handle.seek(5 * 4096)
        handle.write(bytes(2 * 4096))
    return path


async def test_damage_found_in_use_is_set_aside_like_damage_found_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worn card: the file opens, but a few zeroed pages fail the first query. The
    writer still starts (pruning at start is that first query) and keeps recording."""
    path = _worn_card_store(tmp_path)
    writer = HistoryWriter(path)
    await writer.start()
    try:
        writer.add(_readings(_frame(days=1))[0])
        await writer.flush()
        assert await writer.run_in_worker(lambda: writer._require_store().count()) == 1
    finally:
        await writer.stop()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite3.corrupt-")]
    assert [p.read_bytes()[:16] for p in kept] == [b"SQLite format 3\x00"]  # kept for the user
    assert "damaged (database disk image is malformed)" in caplog.text


async def test_a_store_that_cannot_be_opened_is_left_alone_and_history_kept_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another program holds the file (a user's sqlite3 shell; the same happens with a
    # full or read-only disk): the file is fine and must not be set aside as damaged.
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    store.append(_readings(_frame(days=1))[:40])
    store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        writer = HistoryWriter(path)
        await writer.start()
        holder.execute("ROLLBACK")
    try:
        writer.add(_readings(_frame(days=1))[50])
        out = tmp_path / "out.csv"
        assert await writer.export(START, START + timedelta(days=1), "csv", out) == 1
    finally:
        await writer.stop()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert "cannot be used (database is locked): this run keeps its history in memory" \
        in caplog.text
    reopened = HistoryStore(path)
    try:
        assert reopened.count() == 40  # untouched, for the next start
    finally:
        reopened.close()


async def test_the_readings_kept_in_memory_move_to_the_file_once_it_can_be_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started while the file could not be used (locked here; a full disk alike): once
    it can, what this run kept in memory goes into it, and new readings follow. They used
    to stay in memory until the next restart, which lost them."""
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    readings = _readings(_frame(days=1))
    store.append(readings[:40])
    store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        writer = HistoryWriter(path, flush_interval_s=0.05, reopen_interval_s=0.2)
        await writer.start()
        for reading in readings[50:60]:
            writer.add(reading)
        await writer.flush()
        await asyncio.sleep(0.5)  # reopening fails while the file is held
        holder.execute("ROLLBACK")
    try:
        async def moved() -> bool:
            return "usable again: the 10 readings kept in memory are in it" in caplog.text

        await wait_until(moved, timeout=5, what="the memory history moved to the file")
        writer.add(readings[60])
    finally:
        await writer.stop()
    reopened = HistoryStore(path)
    try:
        assert reopened.count() == 40 + 10 + 1  # the old file, the memory, the newest
    finally:
        reopened.close()


async def test_readings_wait_while_the_disk_is_full_and_the_error_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=3600)
    await writer.start()
    readings = _readings(_frame(days=1))[:600]

    def limit_pages(extra: int | None) -> None:
        db = writer._require_store()._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        # SQLite's own "database or disk is full", as on a full card.
        db.execute(f"PRAGMA max_page_count = {pages + extra if extra is not None else 2**30}")

    try:
        await writer.run_in_worker(limit_pages, 0)
        for batch in (readings[:300], readings[300:]):
            for reading in batch:
                writer.add(reading)
            await writer.flush()
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1, errors
        assert "History: cannot write (database or disk is full)" in errors[0]
        await writer.run_in_worker(limit_pages, None)  # space freed
        await writer.flush()
        assert await writer.run_in_worker(lambda: writer._require_store().count()) == 600
        assert "History: writing again (0 readings dropped meanwhile)" in caplog.text
    finally:
        await writer.stop()


async def test_readings_held_for_a_backup_are_written_at_a_stop(tmp_path: Path) -> None:
    """Stopped during a backup's hold, the add-on lost the readings it was holding."""
    path = tmp_path / "history.sqlite3"
    writer = HistoryWriter(path, flush_interval_s=0.05)
    await writer.start()
    readings = _readings(_frame(days=1))
    writer.add(readings[0])
    await writer.hold_for_backup()
    assert (tmp_path / HELD_FOR_BACKUP_FILE).exists()
    for reading in readings[1:20]:
        writer.add(reading)
    await asyncio.sleep(0.2)  # several flush intervals: held
    await writer.stop()
    store = HistoryStore(path)
    try:
        assert store.count() == 20
    finally:
        store.close()
    assert not (tmp_path / HELD_FOR_BACKUP_FILE).exists()


async def test_a_backup_that_cannot_pause_the_history_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed merge before a backup was an unretrieved task error, not a log line:
    backup_pre's "see the add-on's log" found nothing there."""
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=60)
    await writer.start()
    try:
        for reading in _readings(_frame(days=1))[:50]:
            writer.add(reading)
        await writer.flush()
        # A read left open on the connection: the WAL cannot be truncated meanwhile.
        reading_rows = await writer.run_in_worker(
            lambda: writer._require_store()._db.execute("SELECT * FROM readings"))
        await writer.run_in_worker(reading_rows.fetchone)
        await writer.hold_for_backup()
        assert not (tmp_path / HELD_FOR_BACKUP_FILE).exists()  # backup_pre refuses
        assert "History: cannot pause for a backup (database table is locked)" in caplog.text
        await writer.run_in_worker(reading_rows.close)
        writer.add(_readings(_frame(days=1))[60])
        await writer.flush()  # not held
        assert await writer.run_in_worker(lambda: writer._require_store().count()) == 51
    finally:
        await writer.stop()


async def test_the_end_of_a_backup_during_its_start_ends_the_hold(tmp_path: Path) -> None:
    """backup_post arriving while backup_pre's merge ran left the history held for ten
    minutes."""
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=0.05)
    await writer.start()
    try:
        holding = asyncio.create_task(writer.hold_for_backup())
        await asyncio.sleep(0)  # the hold has begun: flushing, merging
        writer.resume_after_backup()
        await holding
        assert not (tmp_path / HELD_FOR_BACKUP_FILE).exists()
        writer.add(_readings(_frame(days=1))[0])
        await writer.flush()
        assert (tmp_path / "history.sqlite3-wal").stat().st_size > 0  # written, not held
    finally:
        await writer.stop()


async def test_a_slow_csv_download_neither_blocks_a_backup_nor_loses_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A download left a query open between its pieces: the backup's checkpoint and the
    hourly compaction failed with "database table is locked" until it ended (helper 88)."""
    monkeypatch.setattr(history, "EXPORT_CHUNK_ROWS", 100)
    frame = _frame(days=1)
    writer = HistoryWriter(tmp_path / "history.sqlite3", flush_interval_s=60)
    await writer.start()
    try:
        for reading in _readings(frame):
            writer.add(reading)
        await writer.flush()
        pieces = writer.csv_pieces(START, START + timedelta(days=1))
        received = [await anext(pieces), await anext(pieces)]  # the client reads slowly
        await writer.hold_for_backup()
        assert (tmp_path / HELD_FOR_BACKUP_FILE).exists()
        writer.resume_after_backup()
        await writer.prune(START + timedelta(days=1))  # retention, compaction beside it
        received += [piece async for piece in pieces]
    finally:
        await writer.stop()
    text = b"".join(received).decode()
    assert len(text.splitlines()) == len(frame) + 1  # the header and every row, once
    assert len(set(text.splitlines())) == len(frame) + 1


async def test_readings_flushed_while_the_memory_history_moves_to_the_file_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flush queued while the memory history was being copied wrote into memory after
    the copy was taken, and was lost; a read that had taken the memory store failed on
    its closed database (helper 88)."""
    copying = threading.Event()
    copy_into = HistoryStore.copy_into

    def copy_marked(store: HistoryStore, other: HistoryStore) -> int:
        copying.set()  # marks the copy under way; the copy itself is the real one
        return copy_into(store, other)

    monkeypatch.setattr(HistoryStore, "copy_into", copy_marked)
    path = tmp_path / "data" / "history.sqlite3"  # no folder yet: history in memory
    writer = HistoryWriter(path, flush_interval_s=0.05, reopen_interval_s=0.05)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await writer.start()
    try:
        for i in range(20_000):
            writer.add(Reading(start + timedelta(seconds=2 * i), float(i), i / 1000))
        await writer.flush()
        path.parent.mkdir()  # the disk can be used again
        await wait_until(copying.is_set, timeout=5, what="the copy to the file")
        for i in range(20_000, 20_010):
            writer.add(Reading(start + timedelta(seconds=2 * i), float(i), i / 1000))
        minutes, _means = await writer.minute_means(["total_power_w"], start)  # flushes
        assert len(minutes) == 667  # 20 010 readings 2 s apart
    finally:
        await writer.stop()
    reopened = HistoryStore(path)
    try:
        assert reopened.count() == 20_010
    finally:
        reopened.close()


def test_an_export_of_a_damaged_history_fails_rather_than_being_empty(tmp_path: Path) -> None:
    """The damaged file was set aside and the export run again on the new, empty store:
    a valid file of 0 rows, reported as a success (helper 88)."""
    path = _worn_card_store(tmp_path)
    store = HistoryStore(path, None, None)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            store.export(START, START + timedelta(days=1), "csv", tmp_path / "out.csv")
        assert store.count() == 0  # a new store from here on, as for any damage found
    finally:
        store.close()
    assert [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite3.corrupt-")]

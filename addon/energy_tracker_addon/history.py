"""Local history of the readings: SQLite in the data directory, bounded by a retention
option, exported as CSV or Parquet for a time range.

`HistoryStore` is the blocking store (one SQLite connection, WAL mode). `HistoryWriter` is
what the service uses: `add()` only appends to a list; a single worker thread of its own
writes the batches, prunes and exports, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import math
import sqlite3
import threading
from collections.abc import (
    AsyncGenerator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, Final, Literal

from .parquet_export import write_parquet

_LOGGER = logging.getLogger(__name__)

type ExportFormat = Literal["csv", "parquet"]
type Row = tuple[Any, ...]
MAX_CHANNELS: Final = 8
CHANNEL_IDS: Final = range(1, MAX_CHANNELS + 1)
# A backup that never says it ended (backup_post not run) holds the history this long.
BACKUP_HOLD_MAX_S: Final = 600.0
HELD_FOR_BACKUP_FILE: Final = ".history_held"  # rootfs/usr/bin/energy-tracker-backup
EXPORT_CHUNK_ROWS: Final = 10_000  # rows read at a time: the memory an export leaves grows with it
SCHEMA_VERSION: Final = 2  # 2: temperature_c
# temperature_c: the RPICT probe, a forecast feature (forecast.py).
_BASE_COLUMNS: Final = ("total_power_w", "total_energy_kwh", "voltage_v", "temperature_c")
_CHANNEL_COLUMNS: Final = tuple(
    f"channel_{cid}_{quantity}" for cid in CHANNEL_IDS for quantity in ("power_w", "energy_kwh")
)
_VALUE_COLUMNS: Final = _BASE_COLUMNS + _CHANNEL_COLUMNS


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as stored; None where the value is unknown (stale, no voltage board)."""

    timestamp: datetime  # aware
    total_power_w: float | None
    total_energy_kwh: float
    voltage_v: float | None = None
    channel_power_w: Mapping[int, float | None] = field(default_factory=dict)
    channel_energy_kwh: Mapping[int, float] = field(default_factory=dict)
    temperature_c: float | None = None

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reading:
        """From the `/api/v1/state` object of docs/api.md (what meter listeners receive)."""
        channels = state["channels"]
        return cls(
            timestamp=datetime.fromisoformat(state["timestamp"]),
            total_power_w=state["total_power_w"],
            total_energy_kwh=state["total_energy_kwh"],
            voltage_v=state["voltage_v"],
            temperature_c=state.get("temperature_c"),
            channel_power_w={c["id"]: c["power_w"] for c in channels},
            channel_energy_kwh={c["id"]: c["energy_kwh"] for c in channels},
        )

    def row(self) -> Row:
        if self.timestamp.tzinfo is None:
            raise ValueError("a history reading needs an aware timestamp")
        values: list[float | None] = [
            self.total_power_w, self.total_energy_kwh, self.voltage_v, self.temperature_c
        ]
        for cid in CHANNEL_IDS:
            values += [self.channel_power_w.get(cid), self.channel_energy_kwh.get(cid)]
        # NaN would come back as NULL from SQLite anyway: store it as unknown explicitly.
        clean = [None if v is None or not math.isfinite(v) else float(v) for v in values]
        return (_to_ms(self.timestamp), *clean)


def _to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _iso_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A history the disk cannot hold (full, read-only) is kept in memory, this much of it.
MEMORY_RETENTION_DAYS: Final = 2.0
MEMORY_MAX_MB: Final = 64.0

# SQLite's primary result codes for a damaged file (the extended codes share the low byte)
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26


def _damaged(error: sqlite3.Error) -> bool:
    """The file itself is bad, not the disk or a lock (full, read-only, busy: no reason
    to set a good file aside)."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def _heals[**P, T](
    method: Callable[Concatenate[HistoryStore, P], T],
) -> Callable[Concatenate[HistoryStore, P], T]:
    """Damage found in use, not at open (a few bad pages of a worn card), sets the file
    aside and runs the call again on a new store, as damage found at open does."""
    def healing(store: HistoryStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(store, *args, **kwargs)
        except sqlite3.DatabaseError as error:
            if not _damaged(error):
                raise
            store.replace_damaged(error)
            return method(store, *args, **kwargs)
    return healing


def _sets_aside[**P, T](
    method: Callable[Concatenate[HistoryStore, P], T],
) -> Callable[Concatenate[HistoryStore, P], T]:
    """Like `_heals`, but fails instead of running again: an export of the new, empty
    store would be a whole-looking file of 0 rows."""
    def setting_aside(store: HistoryStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(store, *args, **kwargs)
        except sqlite3.DatabaseError as error:
            if _damaged(error):
                store.replace_damaged(error)
            raise
    return setting_aside


class ExportCancelled(Exception):
    """An export cut short because the add-on stops."""


class HistoryStore:
    """Readings in `<data dir>/history.sqlite3` (in memory when `path` is None). Not
    thread-safe: use it from one thread.

    Opening raises sqlite3.Error or OSError when the file cannot be used but is not
    damaged (disk full or read-only, locked by another program): the file is left alone.
    """

    def __init__(
        self,
        path: Path | None,
        retention_days: float | None = 90.0,
        max_size_mb: float | None = 500.0,
    ) -> None:
        self.path = path
        self.retention = None if retention_days is None else timedelta(days=retention_days)
        # Set from the event loop when the add-on stops: a long export ends at its next
        # chunk instead of holding the stop past the Supervisor's 10 s (then a SIGKILL).
        self.exports_cancelled = threading.Event()
        self.max_bytes = None if max_size_mb is None else int(max_size_mb * 1024 * 1024)
        if path is not None and path.exists() and path.stat().st_size == 0:
            # SQLite takes an empty file as a new database: say that the history is gone.
            _LOGGER.warning("History store %s is empty (a truncated or restored copy?): "
                            "the readings it held are gone, a new history starts", path)
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as error:
            if not _damaged(error):
                raise
            self._db = self._start_afresh(error)
        # Column names in SQL text below are this module's constants, never user input.
        self._insert = (
            f"INSERT OR REPLACE INTO readings (ts_ms, {', '.join(_VALUE_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * (len(_VALUE_COLUMNS) + 1))})"
        )

    def replace_damaged(self, error: sqlite3.DatabaseError) -> None:
        """Close the damaged file, set it aside and continue on a new one."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._db = self._start_afresh(error)

    def _start_afresh(self, error: sqlite3.DatabaseError) -> sqlite3.Connection:
        """A damaged card must not keep the meter down: the old file is kept for the user."""
        path = self.path
        if path is None:
            _LOGGER.error("History in memory damaged (%s): starting again", error)
            return self._open(None)
        kept = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        path.replace(kept)
        _LOGGER.error("History store %s is damaged (%s): moved to %s, starting a new one",
                      path, error, kept.name)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return self._open(path)

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:" if path is None else path, check_same_thread=False)
        try:
            HistoryStore._prepare(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        # auto_vacuum must be chosen before the first table: it lets pruning give disk back.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash loses at most a batch
        db.execute("PRAGMA journal_size_limit = 4194304")
        columns = ", ".join(f"{name} REAL" for name in _VALUE_COLUMNS)
        with db:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS readings (ts_ms INTEGER PRIMARY KEY, {columns})"
                " WITHOUT ROWID"
            )
            # A store from an older version lacks newer columns: add them (empty).
            present = {row[1] for row in db.execute("PRAGMA table_info(readings)")}
            for name in _VALUE_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE readings ADD COLUMN {name} REAL")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def copy_into(self, other: HistoryStore) -> int:
        """Every reading of this store into `other` (same schema); returns the count."""
        cursor = self._db.execute(
            f"SELECT ts_ms, {', '.join(_VALUE_COLUMNS)} FROM readings ORDER BY ts_ms"  # noqa: S608
        )
        count = 0
        with other._db:
            while rows := cursor.fetchmany(EXPORT_CHUNK_ROWS):
                other._db.executemany(other._insert, rows)
                count += len(rows)
        return count

    @_heals
    def append(self, readings: Sequence[Reading]) -> None:
        """Write a batch in one transaction; a reading at an existing time replaces it."""
        with self._db:
            self._db.executemany(self._insert, [reading.row() for reading in readings])

    @_heals
    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM readings").fetchone()[0])

    @_heals
    def time_range(self) -> tuple[datetime, datetime] | None:
        first, last = self._db.execute("SELECT min(ts_ms), max(ts_ms) FROM readings").fetchone()
        if first is None:
            return None
        return (datetime.fromtimestamp(first / 1000, UTC), datetime.fromtimestamp(last / 1000, UTC))

    def disk_bytes(self) -> int:
        """The database file plus its WAL and shared-memory files (in memory: its pages)."""
        if self.path is None:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            return int(pages * self._db.execute("PRAGMA page_size").fetchone()[0])
        return sum(
            part.stat().st_size
            for part in (self.path, self.path.with_name(self.path.name + "-wal"),
                         self.path.with_name(self.path.name + "-shm"))
            if part.exists()
        )

    @_heals
    def prune(self, now: datetime | None = None) -> int:
        """Apply retention: drop readings older than `retention_days` before `now`, then the
        oldest ones until the files fit in `max_size_mb`. Returns the rows deleted."""
        deleted = 0
        if self.retention is not None:
            cutoff = _to_ms((now or datetime.now(UTC)) - self.retention)
            with self._db:
                deleted += self._db.execute(
                    "DELETE FROM readings WHERE ts_ms < ?", (cutoff,)
                ).rowcount
        self._compact()
        if self.max_bytes is not None:
            for _ in range(20):  # each round removes about what the excess is worth
                used = self.disk_bytes()
                rows = self.count()
                if used <= self.max_bytes or rows == 0:
                    break
                share = (used - self.max_bytes) / used
                doomed = max(1, math.ceil(rows * share * 1.1))
                with self._db:
                    deleted += self._db.execute(
                        "DELETE FROM readings WHERE ts_ms IN "
                        "(SELECT ts_ms FROM readings ORDER BY ts_ms LIMIT ?)", (doomed,)
                    ).rowcount
                self._compact()
            else:
                _LOGGER.error("History still uses %d bytes after pruning", self.disk_bytes())
        if deleted:
            _LOGGER.info("History retention removed %d readings", deleted)
        return deleted

    @_heals
    def checkpoint(self) -> None:
        """The WAL merged into the database file and emptied."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _compact(self) -> None:
        # Each step of this pragma frees one page: fetch all of its rows to free them all.
        self._db.execute("PRAGMA incremental_vacuum").fetchall()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @_sets_aside
    def export(
        self, start: datetime, end: datetime, fmt: ExportFormat, destination: Path,
        channel_ids: Sequence[int] = (),
    ) -> int:
        """Write readings with start <= time < end to `destination`; returns the row count.

        Columns: `timestamp` (ISO 8601 UTC, ms), the totals, voltage, and power and energy
        of each channel in `channel_ids` (all channels that have data when empty). Empty
        CSV cells / Parquet nulls are unknown values.
        """
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"unknown export format {fmt!r}: use 'csv' or 'parquet'")
        columns, chunks = self._export_rows(start, end, channel_ids)
        if fmt == "csv":
            return _write_csv(destination, columns, chunks)
        return write_parquet(destination, columns, chunks)

    def csv_pieces(
        self, start: datetime, end: datetime, channel_ids: Sequence[int] = ()
    ) -> Generator[bytes]:
        """The CSV export of `export`, as UTF-8 pieces (the header, then one per chunk of
        rows) to send while the rest is read: a long export starts at once."""
        columns, chunks = self._export_rows(start, end, channel_ids)
        yield _csv_bytes([["timestamp", *columns]])
        for rows in chunks:
            yield _csv_bytes(_csv_rows(rows))

    def _export_rows(
        self, start: datetime, end: datetime, channel_ids: Sequence[int]
    ) -> tuple[list[str], Iterator[list[Row]]]:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("export needs aware start and end times")
        columns = list(_BASE_COLUMNS)
        for cid in channel_ids or self._channels_with_data():
            if cid not in CHANNEL_IDS:
                raise ValueError(f"no channel {cid}: channels are 1 to {MAX_CHANNELS}")
            columns += [f"channel_{cid}_power_w", f"channel_{cid}_energy_kwh"]
        return columns, self._chunks(columns, _to_ms(start), _to_ms(end))

    @_heals
    def minute_means(
        self, columns: Sequence[str], since: datetime
    ) -> tuple[list[int], list[tuple[float | None, ...]]]:
        """Mean of each column per UTC minute from `since` on: (epoch minutes, rows), for
        learning (the anomaly detectors); SQLite averages, so only minutes cross threads."""
        unknown = set(columns) - set(_VALUE_COLUMNS)
        if unknown:
            raise ValueError(f"no history columns {sorted(unknown)}")
        means = ", ".join(f"avg({name})" for name in columns)
        found = self._db.execute(
            f"SELECT ts_ms / 60000 AS minute, {means} FROM readings "  # noqa: S608
            "WHERE ts_ms >= ? GROUP BY minute ORDER BY minute",
            (_to_ms(since),),
        ).fetchall()
        return [int(row[0]) for row in found], [tuple(row[1:]) for row in found]

    def _channels_with_data(self) -> list[int]:
        probes = ", ".join(f"max(channel_{cid}_energy_kwh IS NOT NULL)" for cid in CHANNEL_IDS)
        found = self._db.execute(f"SELECT {probes} FROM readings").fetchone()  # noqa: S608
        return [cid for cid, present in zip(CHANNEL_IDS, found, strict=True) if present]

    def _chunks(self, columns: list[str], start_ms: int, end_ms: int) -> Iterator[list[Row]]:
        # Each chunk its own finished query, from after the last row sent: a statement
        # left open between chunks (a CSV download that waits for its client) locked the
        # checkpoint of every backup and the hourly compaction until the client was done.
        query = (f"SELECT ts_ms, {', '.join(columns)} FROM readings "  # noqa: S608
                 "WHERE ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms LIMIT ?")
        while rows := self._db.execute(query, (start_ms, end_ms, EXPORT_CHUNK_ROWS)).fetchall():
            if self.exports_cancelled.is_set():
                raise ExportCancelled("the add-on is stopping")
            yield rows
            start_ms = rows[-1][0] + 1


def _write_csv(destination: Path, columns: list[str], chunks: Iterator[list[Row]]) -> int:
    count = 0
    with destination.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *columns])
        for rows in chunks:
            writer.writerows(_csv_rows(rows))
            count += len(rows)
    return count


def _csv_rows(rows: list[Row]) -> Iterator[tuple[str, ...]]:
    # repr() of a float reads back to the same float; None is an empty cell.
    return ((_iso_ms(row[0]), *("" if v is None else repr(v) for v in row[1:]))
            for row in rows)


def _csv_bytes(rows: Iterable[Sequence[str]]) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


class HistoryWriter:
    """Asynchronous front of a HistoryStore: batched writes, pruning and exports on one
    worker thread of its own (so the store's connection only ever sees that thread)."""

    def __init__(
        self,
        path: Path,
        retention_days: float | None = 90.0,
        max_size_mb: float | None = 500.0,
        flush_interval_s: float = 10.0,
        prune_interval_s: float = 3600.0,
        max_pending: int = 100_000,
        reopen_interval_s: float = 60.0,
    ) -> None:
        self._settings = (path, retention_days, max_size_mb)
        self._flush_interval_s = flush_interval_s
        self._prune_interval_s = prune_interval_s
        self._reopen_interval_s = reopen_interval_s
        self._pending: list[Reading] = []
        self._held_until: float | None = None  # loop time: a backup is being taken
        self._backup_asked = False  # between backup_pre and backup_post
        # Next to the database: a restored backup's is removed at start.
        self._held_marker = path.with_name(HELD_FOR_BACKUP_FILE)
        self._max_pending = max_pending
        self._dropped = 0
        self._failing = False  # the last write failed; logged once until one succeeds
        self._executor: ThreadPoolExecutor | None = None
        self._store: HistoryStore | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._held_marker.unlink(missing_ok=True)  # a backup's, restored with it
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        path, retention_days, max_size_mb = self._settings
        try:
            store = await self._run(HistoryStore, *self._settings)
        except (sqlite3.Error, OSError) as error:
            # The meter, its counters and the API matter more than the history: go on with
            # a short history in memory, and say what to fix.
            _LOGGER.error(
                "History store %s cannot be used (%s): this run keeps its history in memory "
                "for now (the last %g days), and moves it to the file once that can be "
                "used: free space on the disk or fix the data folder", path, error,
                MEMORY_RETENTION_DAYS)
            store = await self._run(
                HistoryStore, None,
                min(retention_days or MEMORY_RETENTION_DAYS, MEMORY_RETENTION_DAYS),
                min(max_size_mb or MEMORY_MAX_MB, MEMORY_MAX_MB))
        self._store = store
        await self._run(store.prune)
        self._task = asyncio.create_task(self._loop(), name="history writer")

    async def stop(self) -> None:
        """Write what is pending, close the database, end the worker thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._store is not None:
            self.cancel_exports()  # an export ahead in the queue ends first
            self.resume_after_backup()  # held readings are written, not lost, at a stop
            await self.flush()
            await self._run(self._store.close)
            self._store = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # idle by now: returns at once
            self._executor = None

    def add(self, reading: Reading) -> None:
        """Queue one reading (never blocks). Beyond `max_pending` (a disk that stopped
        answering) the oldest queued readings are dropped and counted."""
        self._pending.append(reading)
        if len(self._pending) > self._max_pending:
            del self._pending[0]
            self._dropped += 1

    async def hold_for_backup(self) -> None:
        """Before a backup (the Supervisor's backup_pre): everything written and the WAL
        merged into the database file, then no write until `resume_after_backup` (or
        BACKUP_HOLD_MAX_S): a hot backup copies the file while the add-on runs, and a
        checkpoint in the middle of that copy left a damaged database."""
        if self._store is None:
            return  # not started (or stopping): nothing is written to hold
        self._held_until = None
        self._backup_asked = True
        await self.flush()
        try:
            await self._run(self._require_store().checkpoint)
            if not self._backup_asked:
                return  # the backup's end came while this was merging the WAL
            self._held_until = asyncio.get_running_loop().time() + BACKUP_HOLD_MAX_S
            await self._run(self._held_marker.touch)  # what backup_pre waits for
        except (sqlite3.Error, OSError) as error:
            # No marker: backup_pre refuses the backup, and its message points here.
            self._held_until = None
            self._backup_asked = False
            _LOGGER.error("History: cannot pause for a backup (%s): the backup is refused",
                          error)
            return
        _LOGGER.info("History: held for a backup (readings wait in memory)")

    def resume_after_backup(self) -> None:
        self._backup_asked = False
        if self._held_until is not None:
            self._held_until = None
            _LOGGER.info("History: writing again after the backup")
        self._held_marker.unlink(missing_ok=True)

    def _held(self) -> bool:
        if self._held_until is None:
            return False
        if asyncio.get_running_loop().time() < self._held_until:
            return True
        _LOGGER.warning("History: no end of the backup after %g s: writing again",
                        BACKUP_HOLD_MAX_S)
        self._held_until = None
        self._held_marker.unlink(missing_ok=True)
        return False

    async def flush(self) -> None:
        if self._held():
            return
        batch, self._pending = self._pending, []
        if batch and self._store is not None:
            try:
                await self._run(self._store.append, batch)
            except (sqlite3.Error, OSError) as error:
                # A full or read-only disk: keep the readings (up to max_pending) for the
                # next try, and say so once, not every flush.
                self._pending = batch + self._pending
                excess = len(self._pending) - self._max_pending
                if excess > 0:
                    del self._pending[:excess]
                    self._dropped += excess
                if not self._failing:
                    _LOGGER.error("History: cannot write (%s): keeping the newest %d readings "
                                  "and trying again every %g s", error, self._max_pending,
                                  self._flush_interval_s)
                    self._failing = True
                return
            except ValueError as error:  # a reading that can never be written
                _LOGGER.error("History: could not write %d readings (%s)", len(batch), error)
            if self._failing:
                _LOGGER.info("History: writing again (%d readings dropped meanwhile)",
                             self._dropped)
                self._failing, self._dropped = False, 0
        if self._dropped and not self._failing:
            _LOGGER.warning("History: %d readings dropped while the disk was slow", self._dropped)
            self._dropped = 0

    async def export(
        self, start: datetime, end: datetime, fmt: ExportFormat, destination: Path,
        channel_ids: Sequence[int] = (),
    ) -> int:
        """Flush, then export off the event loop (see HistoryStore.export)."""
        store = self._require_store()
        await self.flush()
        return await self._run(store.export, start, end, fmt, destination, channel_ids)

    async def csv_pieces(
        self, start: datetime, end: datetime, channel_ids: Sequence[int] = ()
    ) -> AsyncGenerator[bytes]:
        """Flush, then HistoryStore.csv_pieces, each piece read on the worker thread (other
        work, such as flushes, goes on between pieces)."""
        store = self._require_store()
        await self.flush()
        pieces = store.csv_pieces(start, end, channel_ids)
        try:
            while (piece := await self._run(next, pieces, None)) is not None:
                yield piece
        finally:
            await self._run(pieces.close)  # its cursor lives on that thread

    async def minute_means(
        self, columns: Sequence[str], since: datetime
    ) -> tuple[list[int], list[tuple[float | None, ...]]]:
        """Flush, then HistoryStore.minute_means off the event loop."""
        store = self._require_store()
        await self.flush()
        return await self._run(store.minute_means, columns, since)

    async def prune(self, now: datetime | None = None) -> int:
        return await self._run(self._require_store().prune, now)

    async def disk_bytes(self) -> int:
        return await self._run(self._require_store().disk_bytes)

    async def time_range(self) -> tuple[datetime, datetime] | None:
        """The oldest and newest reading kept (written ones only), or None if none is."""
        return await self._run(self._require_store().time_range)

    def _require_store(self) -> HistoryStore:
        if self._store is None:
            raise RuntimeError("the history writer is not started")
        return self._store

    async def _reopen_file(self) -> None:
        """Running on the in-memory history: once the file can be used again (space freed),
        move what this run kept in memory into it and go on there, so nothing is lost."""
        memory = self._require_store()
        try:
            store = await self._run(HistoryStore, *self._settings)
        except (sqlite3.Error, OSError) as error:
            _LOGGER.debug("History store still unusable: %s", error)
            return
        try:
            moved = await self._run(memory.copy_into, store)
        except (sqlite3.Error, OSError) as error:
            _LOGGER.debug("History store still unusable: %s", error)
            await self._run(store.close)
            return
        self._store = store
        # Again, now that no new write goes to memory: a flush queued during the copy wrote
        # there after it was taken (the worker runs jobs in order, so this one comes after
        # it). Not closed: a read that took the memory store before the switch may still
        # be queued; it is freed with its last user.
        moved = await self._run(memory.copy_into, store)
        _LOGGER.info("History store %s usable again: the %d readings kept in memory are "
                     "in it", self._settings[0], moved)

    def cancel_exports(self) -> None:
        """Exports under way end at their next chunk (ExportCancelled): the add-on stops."""
        if self._store is not None:
            self._store.exports_cancelled.set()

    async def run_in_worker[T](self, function: Callable[..., T], *args: Any) -> T:
        """Run CPU work on the writer's own thread (no extra thread to clean up)."""
        return await self._run(function, *args)

    async def _run[T](self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self._prune_interval_s
        next_reopen = loop.time() + self._reopen_interval_s
        while True:
            await asyncio.sleep(self._flush_interval_s)
            await self.flush()
            if self._require_store().path is None and loop.time() >= next_reopen:
                next_reopen = loop.time() + self._reopen_interval_s
                await self._reopen_file()
            if loop.time() >= next_prune and not self._held():
                next_prune = loop.time() + self._prune_interval_s
                try:
                    await self._run(self._require_store().prune)
                except sqlite3.Error as error:
                    _LOGGER.error("History: pruning failed (%s)", error)

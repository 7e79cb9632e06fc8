"""Appliance detection in the running service: nilm.py's `Disaggregator` on the total power.

Every reading's total power goes to one worker thread that runs the models (a window per
model period; a slow board must never stall the meter or the API), and the estimates come
back to the event loop, so the `appliances` state field lags the reading by one message.
Energies are integrated in the meter's time (a simulated meter replays faster than real
time: its data is binned on the replay's clock, `time_scale`), added to the totals kept in
`<data dir>/nilm_energy.json` (atomic, statefile.py), so they never go backwards.

A missing or corrupt bundle is logged once as an error and NILM stays off (`appliances`
null, `GET /api/v1/appliances` says why); the rest of the add-on runs as usual. User
feedback on detections (labels) is kept in `<data dir>/nilm_labels.jsonl` for fine-tuning
(models/README.md, "Feedback").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from .config import APPLIANCE_ID_PATTERN, Options
from .history import HistoryWriter
from .log_limit import LogLimit
from .meter import Meter, iso_utc
from .nilm import DEFAULT_BUNDLE, Disaggregator, Estimate, NilmBundle, NilmBundleError, load_bundle
from .statefile import VersionedStateFile, write_atomic
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)
FAILURE_LOG_INTERVAL_S: Final = 3600.0

ENERGY_FILE: Final = "nilm_energy.json"
LABELS_FILE: Final = "nilm_labels.jsonl"
FORMAT_VERSION: Final = 1
DISABLED: Final = "disabled (option nilm_enabled)"
# `status` of GET /api/v1/appliances: clients tell "off by choice" from "broken" by it
RUNNING, OFF, BROKEN = "running", "disabled", "error"
# The bundle names models by id; what people call them.
DISPLAY_NAMES: Final = {
    "kitchen": "Kitchen circuit",
    "laundry": "Laundry circuit",
    "water_heater_ac": "Water heater & AC circuit",
    "kettle": "Kettle",
    "fridge": "Fridge",
    "microwave": "Microwave",
    "washing_machine": "Washing machine",
    "dishwasher": "Dishwasher",
}
# An estimate older than its lag (half a window) plus this many periods is not current:
# the readings stopped or a gap restarted the window.
FRESH_PERIODS: Final = 3
APPLIANCE_ID: Final = re.compile(APPLIANCE_ID_PATTERN)


def display_name(appliance: str) -> str:
    return DISPLAY_NAMES.get(appliance, appliance.replace("_", " ").capitalize())


@dataclass(slots=True)
class _Appliance:
    """What the state shows of one appliance (updated on the event loop only)."""

    power_w: float | None = None
    running: bool | None = None
    since: datetime | None = None
    estimate_time: float | None = None  # data-time midpoint of the latest estimate
    model_wh: float = 0.0  # the Disaggregator's own integral at the latest estimate


# Labels are runs the user saw: none ends later than now (give or take a clock), and a
# day bounds any appliance run (or a false detection being corrected).
LABEL_CLOCK_SKEW: Final = timedelta(minutes=5)
LABEL_MAX_SPAN: Final = timedelta(hours=24)
LABEL_FIELDS: Final = frozenset({"appliance", "start", "end", "was_running"})
LABEL_HISTORY_WAIT_S: Final = 2.0  # well within the integration's 10 s


class LabelError(ValueError):
    """A label the user sent is not valid (the message says why)."""


class LabelStore:
    """Feedback labels, one JSON object per line; appended and fsynced, rewritten only to
    remove one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        if not self.path.is_file():
            # A device or a directory in its place: reading it might never end (/dev/zero).
            _LOGGER.warning("%s is not a regular file: no labels read", self.path)
            return []
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        labels = []
        # Line by line, bytes and all: one damaged line (torn by a crash mid-append, a bad
        # byte on the card) costs that label, not the others.
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                label = json.loads(line)  # ValueError covers undecodable bytes too
            except ValueError:
                label = None
            if isinstance(label, dict):
                labels.append(label)
            elif line.strip():
                _LOGGER.warning("%s line %d is not a JSON object: skipped", self.path, number)
        return labels

    def add_once(self, label: dict[str, Any]) -> dict[str, Any]:
        """Append `label` unless the same one (appliance, times, verdict) is stored: an
        action repeated (a script run twice) must not weigh twice in fine-tuning. Returns
        the label as stored."""
        same = ("appliance", "start", "end", "was_running")
        for stored in self.load():
            if all(stored.get(key) == label[key] for key in same):
                return stored
        self.append(label)
        return label

    def remove(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """Drop the label with `key`'s appliance, times and verdict (a wrong label would
        teach fine-tuning the wrong thing); returns it, or None if none is stored. The file
        is rewritten atomically, every other line (damaged ones too) kept byte for byte."""
        if not self.path.is_file():
            return None
        lines = self.path.read_bytes().splitlines(keepends=True)
        for index, line in enumerate(lines):
            try:
                label = json.loads(line)
            except ValueError:
                continue
            if isinstance(label, dict) and all(label.get(k) == v for k, v in key.items()):
                kept = b"".join(lines[:index] + lines[index + 1:])
                write_atomic(self.path, kept, mode=0o600)
                return label
        return None

    def append(self, label: dict[str, Any]) -> None:
        line = json.dumps(label, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # after a line torn by a crash: not glued to it
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def parse_label(body: Any, known: set[str] | None, now: datetime,
                kept_since: datetime | None = None) -> dict[str, Any]:
    """A label from a POST body: `appliance`, `start`, `end` (ISO with zone), `was_running`.
    `kept_since`: the oldest reading the history keeps; a label that ends before it could
    never be learnt from (`finetune` reads the mains around it from the history)."""
    label, start, end = _label_identity(body, known)
    if end > now + LABEL_CLOCK_SKEW:
        raise LabelError("end is in the future: label what has happened")
    if end - start > LABEL_MAX_SPAN:
        raise LabelError(f"a label spans at most {LABEL_MAX_SPAN.total_seconds() / 3600:g} h")
    if kept_since is not None and end <= kept_since:
        raise LabelError(
            f"end is before the oldest reading the add-on keeps ({iso_utc(kept_since)}; "
            "option history_retention_days): there is nothing to learn this label from")
    return {**label, "created": iso_utc(now)}


def parse_label_key(body: Any) -> dict[str, Any]:
    """Which stored label a DELETE body names: the fields of its POST (any appliance id:
    one whose model is gone may still have labels)."""
    return _label_identity(body, None)[0]


def _label_identity(body: Any, known: set[str] | None
                    ) -> tuple[dict[str, Any], datetime, datetime]:
    if not isinstance(body, dict):
        raise LabelError("body must be a JSON object")
    if unknown := sorted(set(body) - LABEL_FIELDS):
        # As the relay routes do: a misspelt field ("was_runing") must not pass unnoticed.
        raise LabelError(f"unknown field {unknown[0][:40]!r} (fields: "
                         f"{', '.join(sorted(LABEL_FIELDS))})")
    appliance = body.get("appliance")
    if not isinstance(appliance, str) or not APPLIANCE_ID.match(appliance):
        raise LabelError("appliance must be an appliance id such as 'kettle'")
    if known is not None and appliance not in known:
        raise LabelError(f"unknown appliance {appliance!r} (known: {', '.join(sorted(known))})")
    times = []
    for key in ("start", "end"):
        try:
            moment = datetime.fromisoformat(body[key])
        except (KeyError, TypeError, ValueError):
            raise LabelError(f"{key} must be an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise LabelError(f"{key} needs a time zone")
        try:
            moment.astimezone(UTC)  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        except OverflowError:
            raise LabelError(f"{key} is out of range in UTC") from None
        times.append(moment)
    start, end = times
    if iso_utc(end) <= iso_utc(start):  # as stored: to the millisecond
        raise LabelError("end must be after start")
    was_running = body.get("was_running", True)
    if not isinstance(was_running, bool):
        raise LabelError("was_running must be true or false")
    return ({"appliance": appliance, "start": iso_utc(start), "end": iso_utc(end),
             "was_running": was_running}, start, end)


class NilmService:
    """Owns the bundle, the disaggregator, the persisted energies and the labels."""

    def __init__(self, options: Options, data_dir: Path, meter: Meter,
                 time_scale: float = 1.0, history: HistoryWriter | None = None) -> None:
        self._options = options
        self._history = history  # where labels' readings are kept (None: not checked)
        self._meter = meter
        self._scale = time_scale
        self._energy_file = VersionedStateFile(data_dir / ENERGY_FILE, FORMAT_VERSION,
                                               "appliance energies", _LOGGER)
        self.labels = LabelStore(data_dir / LABELS_FILE)
        self._bundle: NilmBundle | None = None
        self._disaggregator: Disaggregator | None = None
        self.reason: str | None = DISABLED
        self._energy_wh: dict[str, float] = {}
        self._appliances: dict[str, _Appliance] = {}
        self._t0: float | None = None  # first reading (the replay clock starts there)
        self._newest: float | None = None  # data time of the newest reading fed
        self.as_of: datetime | None = None  # the newest reading included in the estimates
        # (data time, total W, reading time, whether a gap the meter did not bridge precedes)
        self._pending: list[tuple[float, float, datetime, bool]] = []
        self._last_wall: float | None = None  # the newest reading's wall time
        self._gap = False  # the meter went stale since the last reading
        # A reading after a gap is queued, and the windows have not restarted for it yet:
        # the estimates from before the gap are not the appliances' state now.
        self._restart_queued = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._remove_observer: Callable[[], None] | None = None
        self._last_persist = 0.0
        self._failure_log = LogLimit(FAILURE_LOG_INTERVAL_S)  # on the loop's time

    @property
    def available(self) -> bool:
        return self._disaggregator is not None

    @property
    def status(self) -> str:
        if self.available:
            return RUNNING
        return OFF if self.reason == DISABLED else BROKEN

    @property
    def bundle_version(self) -> str | None:
        return None if self._bundle is None else self._bundle.version

    @property
    def appliance_ids(self) -> set[str] | None:
        return None if self._bundle is None else set(self._bundle.models)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nilm")
        self._meter.add_state_part("appliances", self.state)
        if not self._options.nilm_enabled:
            return
        folder = Path(self._options.nilm_bundle_dir) if self._options.nilm_bundle_dir \
            else DEFAULT_BUNDLE
        chosen = self._options.nilm_appliances
        try:
            # Eight interpreters and their sha256 checks: not on the event loop.
            bundle = await self._in_worker(load_bundle, folder, 1, chosen)
        except NilmBundleError as error:
            _LOGGER.error("Appliance detection (NILM) off, the add-on runs without it: "
                          "bundle %s", error)
            self.reason = f"no NILM models: {error}"
            return
        if unknown := [name for name in chosen if name not in bundle.models]:
            _LOGGER.warning("Option nilm_appliances: bundle %s has no model %s; running %s",
                            bundle.version, ", ".join(unknown), ", ".join(bundle.models))
        self._bundle, self._disaggregator = bundle, Disaggregator(bundle, self._scale)
        self.reason = None
        self._energy_wh = self._restore()
        for name in bundle.models:
            self._energy_wh.setdefault(name, 0.0)
            self._appliances[name] = _Appliance()
        self._last_persist = asyncio.get_running_loop().time()
        self._remove_observer = self._meter.add_observer(self._observe)
        self._task = asyncio.create_task(self._run(), name="nilm")
        _LOGGER.info("Appliance detection on: bundle %s (%s) from %s", bundle.version,
                     ", ".join(bundle.models), folder)

    async def stop(self) -> None:
        if self._remove_observer is not None:
            self._remove_observer()
            self._remove_observer = None
        task, self._task = self._task, None
        await cancel_and_wait(task)
        executor, self._executor = self._executor, None
        if executor is not None:
            if self._disaggregator is not None:
                await asyncio.get_running_loop().run_in_executor(executor, self._persist,
                                                                 dict(self._energy_wh))
            executor.shutdown(wait=True)

    async def _in_worker[T](self, function: Callable[..., T], *args: Any) -> T:
        result: T = await asyncio.get_running_loop().run_in_executor(
            self._executor, function, *args)
        return result

    # ------------------------------------------------------------------ readings

    def _observe(self, state: dict[str, Any]) -> None:
        total = state["total_power_w"]
        if not state["available"] or total is None:
            self._gap = True
            return
        moment = datetime.fromisoformat(state["timestamp"])
        wall = moment.timestamp()
        if self._t0 is None:
            self._t0 = wall
        # The meter integrates nothing between readings further apart than joined_within_s
        # (it went stale, or the add-on was frozen): the windows restart there instead of
        # holding the last power through it, which would count energy never measured.
        # A clock set back is one too: its readings would land in bins already closed.
        gap = self._gap or (self._last_wall is not None
                            and not 0 <= wall - self._last_wall
                            <= self._options.joined_within_s)
        self._gap, self._last_wall = False, wall
        self._restart_queued = self._restart_queued or gap
        self._pending.append((self._t0 + (wall - self._t0) * self._scale, float(total), moment,
                              gap))
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            try:
                estimates = await self._in_worker(self._feed,
                                                  [(t, w, gap) for t, w, _, gap in batch])
            except Exception:
                # The task ended here before, silently: estimates frozen for good and the
                # readings piling up in _pending. These readings are lost to detection.
                if (held_back := self._failure_log.due(loop.time())) is not None:
                    _LOGGER.exception("Appliance detection failed on %d readings (%d times "
                                      "since the last message); its windows start again",
                                      len(batch), held_back + 1)
                # The estimates before it are not the appliances' state now (as after a gap).
                self._restart_queued = True
                if self._pending:
                    t, w, m, _gap = self._pending[0]
                    self._pending[0] = (t, w, m, True)
                else:
                    self._gap = True
                continue
            self._newest, self.as_of = batch[-1][0], batch[-1][2]
            # The batch's gaps are applied; one may have come in meanwhile.
            self._restart_queued = any(gap for *_, gap in self._pending)
            for estimate in estimates:
                self._apply(estimate)
            # Before the next publication carries them (statefile.LiveCopy).
            self._energy_file.write({"energy_wh": self._energy_wh}, live=True)
            if loop.time() - self._last_persist >= self._options.persist_interval_s:
                self._last_persist = loop.time()
                await self._in_worker(self._persist, dict(self._energy_wh))

    def _feed(self, samples: list[tuple[float, float, bool]]) -> list[Estimate]:
        """On the worker thread: the only place the disaggregator is used."""
        assert self._disaggregator is not None
        made: list[Estimate] = []
        for timestamp, watts, after_gap in samples:
            if after_gap:
                self._disaggregator.restart_windows()
            made.extend(self._disaggregator.feed(timestamp, watts))
        return made

    def _apply(self, estimate: Estimate) -> None:
        appliance = self._appliances[estimate.appliance]
        # Energy in the meter's time, so it adds up with the meter's own kWh counters.
        added = max(estimate.energy_wh - appliance.model_wh, 0.0) / self._scale
        appliance.model_wh = estimate.energy_wh
        self._energy_wh[estimate.appliance] += added
        # From the run's first bin, not from when min_on_s confirmed it.
        appliance.since = (self._wall_time(estimate.since)
                           if estimate.on and estimate.since is not None else None)
        appliance.power_w, appliance.running = estimate.power_w, estimate.on
        appliance.estimate_time = estimate.timestamp

    def _wall_time(self, data_time: float) -> datetime:
        t0 = self._t0 if self._t0 is not None else data_time
        return datetime.fromtimestamp(t0 + (data_time - t0) / self._scale, UTC)

    # ------------------------------------------------------------------ output

    def state(self) -> list[dict[str, Any]] | None:
        """The `appliances` state field (docs/api.md, "Appliances"); None without NILM."""
        if self._bundle is None:
            return None
        out = []
        for name, runner in self._bundle.models.items():
            appliance = self._appliances[name]
            current = self._current(appliance, runner.spec.period_s, runner.spec.window)
            out.append({
                "id": name,
                "name": display_name(name),
                "kind": runner.spec.kind,
                "power_w": round(appliance.power_w, 1) if current and
                appliance.power_w is not None else None,
                "energy_kwh": round(self._energy_wh[name] / 1000.0, 6),
                "running": appliance.running if current else None,
                "since": iso_utc(appliance.since) if current and appliance.since else None,
            })
        return out

    def _current(self, appliance: _Appliance, period_s: int, window: int) -> bool:
        if appliance.estimate_time is None or self._newest is None:
            return False
        if self._gap or self._restart_queued:
            return False  # a frozen add-on's last estimate must not read as news
        lag = (window // 2 + FRESH_PERIODS) * period_s
        return 0 <= self._newest - appliance.estimate_time <= lag

    def summary(self) -> dict[str, Any]:
        """The `GET /api/v1/appliances` object."""
        return {
            "available": self.available,
            "status": self.status,
            "reason": self.reason,
            "bundle_version": self.bundle_version,
            "as_of": None if self.as_of is None else iso_utc(self.as_of),
            "appliances": self.state(),
        }

    async def add_label(self, body: Any) -> dict[str, Any]:
        """Validate and store one label; raises LabelError."""
        now = datetime.now(UTC)
        kept_since: datetime | None = None  # None: not checked
        if self._history is not None:
            try:
                # The history's one worker may be busy for long (a Parquet export of months):
                # Home Assistant gave up after 10 s, and the label was stored all the same.
                async with asyncio.timeout(LABEL_HISTORY_WAIT_S):
                    kept = await self._history.time_range()
                # No reading kept yet: nothing before now can be learnt from either.
                kept_since = kept[0] if kept else now
            except TimeoutError:
                _LOGGER.info("Label: the history is busy, not checked against its span")
        label = parse_label(body, self.appliance_ids, now, kept_since)
        label["bundle_version"] = self.bundle_version
        return await self._in_worker(self.labels.add_once, label)

    async def remove_label(self, body: Any) -> dict[str, Any] | None:
        """Remove the label the body names (raises LabelError); None if none matches."""
        return await self._in_worker(self.labels.remove, parse_label_key(body))

    async def all_labels(self) -> list[dict[str, Any]]:
        return await self._in_worker(self.labels.load)

    # ------------------------------------------------------------------ persistence

    def _persist(self, energy_wh: dict[str, float]) -> None:
        self._energy_file.write({"energy_wh": energy_wh})

    def _restore(self) -> dict[str, float]:
        return self._energy_file.read(_parse_energies, "counting from zero") or {}


def _parse_energies(data: dict[str, Any]) -> dict[str, float]:
    """Stored appliance energies (Wh); entries that are not finite and >= 0 are dropped."""
    stored = data["energy_wh"]
    if not isinstance(stored, dict):
        raise TypeError("energy_wh is not an object")
    return {
        str(name): float(wh) for name, wh in stored.items()
        if isinstance(wh, int | float) and math.isfinite(wh) and wh >= 0
    }

"""Several meters / locations: the extra RPICT boards of the `extra_meters` option.

Each extra meter is a full `Meter` (its own serial link or simulator, counters in
`<data>/meters/<id>/`, stable meter id, staleness). Energy per local hour, day and month
of every meter comes from its own counters through `EnergyBuckets`, so `compare()` agrees
with the counters: the main meter's are the analytics' (its "Energy today"), kept since its
first reading; an extra meter's are kept in `<data>/meters/periods.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .aggregates import EnergyBuckets, Period
from .config import (
    MAIN_METER,
    ExtraMeterConfig,
    Options,
    channels_on_hat,
    kept_meter_id,
    meter_id,
)
from .meter import Meter
from .metrics import Metrics
from .persistence import CounterStore
from .serial_link import SerialLink
from .simulator import HAT_MODEL, SimulatedMeter
from .statefile import JsonStateFile

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .mqtt import MqttPublisher

_LOGGER = logging.getLogger(__name__)

METERS_DIR: Final = "meters"
COUNTER_FILE: Final = "energy_counters.json"
PERIODS_FILE: Final = "periods.json"
# A simulated extra meter replays the same 4 weeks of data one week later than the main one.
SIMULATED_SHIFT: Final = timedelta(days=7)
TOTAL: Final = "total"


@dataclass(slots=True)
class _Entry:
    """One meter as the comparison sees it."""

    id: str
    name: str
    meter_id: str
    meter: Meter
    buckets: EnergyBuckets | None  # None: the main meter's, which the analytics keep
    source: str = "serial"
    link: SerialLink | None = None
    metrics: Metrics | None = None  # an extra meter's own registry (serial line counters)


def extra_meter_options(options: Options, config: ExtraMeterConfig, port: str) -> Options:
    """The options of one extra meter: its board, the main meter's channels it has, no
    voltage board (a simulated extra meter is an RPICT3T1, the simulator's model)."""
    model = config.rpict_model if config.rpict_port else HAT_MODEL
    channels = channels_on_hat(options.channels, model)
    return dataclasses.replace(
        options, rpict_port=port, rpict_model=model, rpict_vest=config.rpict_vest,
        voltage_port="", channels=channels, extra_meters=(),
    )


def retired_meter_ids(data_dir: Path, options: Options) -> list[str]:
    """The ids of extra meters taken out of the options: their folders (counters, id) are
    kept, should they come back; what they announced elsewhere (MQTT) is not."""
    configured = {config.id for config in options.extra_meters}
    folder = data_dir / METERS_DIR
    if not folder.is_dir():
        return []
    return [kept for meter in sorted(folder.iterdir())
            if meter.is_dir() and meter.name not in configured
            and (kept := kept_meter_id(meter)) is not None]


class ExtraMeters:
    """The extra meters, and energy per period of every meter for `compare()`."""

    def __init__(
        self,
        options: Options,
        data_dir: Path,
        main: Meter,
        main_id: str,
        main_name: str,
        main_source: str,
        main_metrics: Metrics,
        main_buckets: Callable[[], EnergyBuckets],
        tz: tzinfo,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._options = options
        self._dir = data_dir / METERS_DIR
        self._tz = tz
        self._clock = clock
        self._wall_clock = wall_clock
        self._file = JsonStateFile(self._dir / PERIODS_FILE)
        self._main_metrics = main_metrics
        self._main = _Entry(MAIN_METER, main_name, main_id, main, None, main_source)
        self._main_buckets = main_buckets
        self._extras: dict[str, _Entry] = {}
        self._running = contextlib.AsyncExitStack()
        self._publishers: list[MqttPublisher] = []
        self._failing = False  # a full disk is said once, not at every reading
        self._last_durable = clock()

    @property
    def configured(self) -> bool:
        return bool(self._options.extra_meters)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Last at a stop, all at once: each waits up to 2 s for its broker to take its
        # goodbye, and one after another a stalled broker held the stop past the
        # Supervisor's 10 s kill.
        self._running.push_async_callback(self._stop_publishers)
        saved = self._file.load() if self.configured else None
        for config in self._options.extra_meters:
            await self._start_meter(config)
        self._restore(saved if isinstance(saved, dict) else {})
        if self.configured:
            self._running.callback(self._persist)
            self._main.meter.add_state_part("meters", self.extra_summary)
            self._main.meter.add_state_part("meter_comparison", lambda: self.compare("day"))
            self._running.callback(self._main_metrics.watch_extra_meters(
                self.extra_summary, self._registries))

    async def _start_meter(self, config: ExtraMeterConfig) -> None:
        folder = self._dir / config.id
        folder.mkdir(parents=True, exist_ok=True)
        port, source = config.rpict_port, "serial"
        if not port:
            source = "simulated"
            simulator = SimulatedMeter(speed=self._options.simulation_speed,
                                       vest=config.rpict_vest, shift=SIMULATED_SHIFT)
            port, _unused_voltage_board = await simulator.start()
            self._running.push_async_callback(simulator.stop)
        options = extra_meter_options(self._options, config, port)
        own_id = meter_id(folder)
        # Its own registry: the main /metrics exports its summary and serial counters
        # with the meter's labels (watch_extra_meters).
        metrics = Metrics(boards=("rpict",))  # no voltage board
        meter = Meter(options, CounterStore(folder / COUNTER_FILE), metrics, own_id,
                      self._clock, self._wall_clock, label=f"Extra meter {config.id}")
        entry = _Entry(config.id, config.name, own_id, meter,
                       EnergyBuckets(self._tz), source, metrics=metrics)
        self._extras[config.id] = entry
        await meter.start()
        self._running.push_async_callback(meter.stop)
        self._running.callback(meter.add_listener(self._record(entry)))
        self._running.callback(meter.add_listener(self._carry_without_main))
        if options.mqtt_enabled:
            # Each meter is its own MQTT device, like a meter of another site in the fleet.
            from .mqtt import MqttPublisher

            publisher = MqttPublisher(options, meter, own_id, voltage_board=False,
                                      name=config.name)
            await publisher.start()
            self._publishers.append(publisher)
        entry.link = SerialLink(f"rpict {config.id}", port, options.rpict_baudrate,
                                meter.feed_rpict_line,
                                lambda connected: meter.set_board_connected("rpict", connected))
        await entry.link.start()
        self._running.push_async_callback(entry.link.stop)
        _LOGGER.info("Extra meter %s (%s) on %s", config.id, source, port)

    async def _stop_publishers(self) -> None:
        publishers, self._publishers = self._publishers, []
        await asyncio.gather(*(publisher.stop() for publisher in publishers))

    async def stop(self) -> None:
        """Stop the links and meters (which persist their counters), keep the buckets."""
        await self._running.aclose()
        self._running = contextlib.AsyncExitStack()
        self._extras = {}

    def _record(self, entry: _Entry) -> Callable[[dict[str, Any]], None]:
        def record(state: dict[str, Any]) -> None:
            assert entry.buckets is not None
            entry.buckets.record(datetime.fromisoformat(state["timestamp"]),
                                 {TOTAL: state["total_energy_kwh"]})
            if self.configured:
                # Before this state is published; fsynced once a persist interval.
                durable = self._clock() - self._last_durable >= self._options.persist_interval_s
                self._persist(live=not durable)
                if durable:
                    self._last_durable = self._clock()

        return record

    def _carry_without_main(self, _state: dict[str, Any]) -> None:
        # The stream sends the main meter's state, which carries the extra meters' values:
        # while the main board is silent, an extra meter's reading sends it (same seq).
        if not self._main.meter.available:
            self._main.meter.republish()

    def _persist(self, *, live: bool = False) -> None:
        data = {e.id: e.buckets.to_dict() for e in self._extras.values()
                if e.buckets is not None}
        try:
            (self._file.save_live if live else self._file.save)(data)
        except OSError as error:
            if not self._failing:
                _LOGGER.error("Could not write %s: %s", self._file.path, error)
            self._failing = True
        else:
            self._failing = False

    def _restore(self, saved: dict[str, Any]) -> None:
        for entry in self._extras.values():
            if (data := saved.get(entry.id)) is None:
                continue
            try:
                entry.buckets = EnergyBuckets.from_dict(data, self._tz)
            except ValueError as error:
                _LOGGER.error("Meter %s: energy per period not restored (%s)", entry.id, error)

    def _buckets(self, entry: _Entry) -> EnergyBuckets:
        return self._main_buckets() if entry.buckets is None else entry.buckets

    def _entries(self) -> list[_Entry]:
        return [self._main, *self._extras.values()]

    # ------------------------------------------------------------------ output

    def get(self, meter: str) -> Meter | None:
        """The meter with this id (`main` or an extra meter's), if any."""
        entry = self._main if meter == MAIN_METER else self._extras.get(meter)
        return None if entry is None else entry.meter

    def summary(self) -> list[dict[str, Any]]:
        """GET /api/v1/meters: the main meter first, then the extra ones."""
        return [self._summary(self._main, self._main.meter.snapshot()), *self.extra_summary()]

    def _registries(self) -> list[tuple[str, str, CollectorRegistry]]:
        return [(e.id, e.name, e.metrics.registry) for e in self._extras.values()
                if e.metrics is not None]

    def extra_summary(self) -> list[dict[str, Any]]:
        """The `meters` state field (the main meter's own values are the state itself)."""
        return [self._summary(e, e.meter.snapshot()) for e in self._extras.values()]

    @staticmethod
    def _summary(entry: _Entry, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": entry.id,
            "meter_id": entry.meter_id,
            "name": entry.name,
            "source": entry.source,
            "available": state["available"],
            "total_power_w": state["total_power_w"],
            "total_energy_kwh": state["total_energy_kwh"],
        }

    def compare(self, period: Period) -> dict[str, Any]:
        """Energy of every meter in the current local `period`, and its share of the sum.

        A meter without any reading in the period has null energy and share, not 0.
        """
        start, key = self._current(period)
        energies = [
            (entry, self._buckets(entry).energy(period).get(key, {}).get(TOTAL))
            for entry in self._entries()
        ]
        known = [kwh for _entry, kwh in energies if kwh is not None]
        total = math.fsum(known) if known else None
        return {
            "period": period,
            "start": start.isoformat(timespec="seconds"),
            "total_kwh": None if total is None else round(total, 6),
            "meters": [
                {
                    "id": entry.id,
                    "name": entry.name,
                    "energy_kwh": None if kwh is None else round(kwh, 6),
                    "share_pct": None if kwh is None or not total
                    else round(100.0 * kwh / total, 2),
                }
                for entry, kwh in energies
            ],
        }

    def _current(self, period: Period) -> tuple[datetime, str]:
        """Start and `EnergyBuckets` key of the local period holding now."""
        hour = self._wall_clock().astimezone(self._tz).replace(minute=0, second=0,
                                                               microsecond=0)
        if period == "hour":
            return hour, hour.isoformat(timespec="seconds")
        day = datetime(hour.year, hour.month, 1 if period == "month" else hour.day,
                       tzinfo=self._tz)
        return day, day.date().isoformat() if period == "day" else day.strftime("%Y-%m")

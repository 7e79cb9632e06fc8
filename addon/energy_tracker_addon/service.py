"""Wire the add-on together: boards (serial or simulated) → meter → API, and stop it again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from . import __version__
from .aggregates import local_zone
from .analytics import Analytics
from .api import create_app
from .carbon import CarbonIntensity
from .config import Options, channels_on_hat, meter_id, resolve_token
from .demand_response import DemandResponse
from .extra_meters import ExtraMeters, retired_meter_ids
from .forecasting import Forecasting
from .gas import GasCounter
from .http_noise import malformed_requests_summed_up
from .meter import Board, Meter
from .meter_source import switch_learned_state
from .metrics import Metrics
from .nilm_service import NilmService
from .persistence import CounterStore
from .protocol import BoardFrame, MeasurementFrame
from .relay_service import RelayService
from .relays import RelayManager
from .relays import saved_states as saved_relay_states
from .serial_link import SerialLink, SerialLinkError
from .simulator import HAT_MODEL, SimulatedMeter
from .voltage_calibration import VoltageCalibration

if TYPE_CHECKING:
    from .mqtt import MqttPublisher  # imported at start only when publishing is on

_LOGGER = logging.getLogger(__name__)
COUNTER_FILE: Final = "energy_counters.json"
GAS_FILE: Final = "gas_counter.json"
# The simulated voltage board's calibration and fail-safe pattern (a real board's flash).
SIMULATED_BOARD_FILE: Final = "simulated_board.json"
METER_NAME: Final = "Energy Tracker"
VOLTAGE_BOARD_MODEL: Final = "esp8266-zmpt101b"
API_SHUTDOWN_GRACE_S: Final = 2.0
# A connection that has not sent a whole request by then (or sits idle between requests)
# is closed: aiohttp's default (an hour) let anyone on the network hold sockets until the
# add-on ran out of file descriptors. Clients (the integration, curl) open a new one.
API_IDLE_TIMEOUT_S: Final = 15.0
# A voltage board whose hello was lost is asked again at most this often (an old or odd
# firmware that never answers is not asked every second).
HELLO_ASK_INTERVAL_S: Final = 60.0


def simulated_hat_options(options: Options) -> Options:
    """Without an rpict_port the simulated meter stands in for the hat, and its lines are
    an RPICT3T1's: channels it has no input for are left out, and relays lose them."""
    kept = channels_on_hat(options.channels, HAT_MODEL)
    dropped = [c.name for c in options.channels if c not in kept]
    _LOGGER.warning("No rpict_port: the simulated meter is an %s, not an %s%s",
                    HAT_MODEL, options.rpict_model,
                    f"; channels {', '.join(dropped)} are left out" if dropped else "")
    ids = {c.id for c in kept}
    relays = tuple(r if r.channel is None or r.channel in ids
                   else dataclasses.replace(r, channel=None) for r in options.relays)
    return dataclasses.replace(options, rpict_model=HAT_MODEL, channels=kept, relays=relays)


class ServiceNotStarted(RuntimeError):
    """A property that only exists while the service runs was read before `start()`."""


class AddonService:
    """The whole add-on service; `start()` brings it up, `stop()` takes it down in reverse."""

    def __init__(
        self,
        options: Options,
        data_dir: Path,
        # In the add-on container Home Assistant reaches us over the Supervisor network.
        host: str = "0.0.0.0",  # noqa: S104
        port: int = 8099,
        # Tests replay recorded minutes through ptys faster than real time.
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clocks = (clock, wall_clock)
        self._analytics: Analytics | None = None
        self._forecasting: Forecasting | None = None
        self._nilm: NilmService | None = None
        self._extra_meters: ExtraMeters | None = None
        self._mqtt: MqttPublisher | None = None
        self.options = options
        self.data_dir = data_dir
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._token: str | None = None
        self._meter_id: str | None = None
        self._meter: Meter | None = None
        self._metrics: Metrics | None = None
        self._links: dict[Board, SerialLink] = {}
        self._simulated = False
        self._hello_requests: set[asyncio.Task[None]] = set()
        self._last_hello_ask = -math.inf  # monotonic (see _ask_hello_if_lost)
        self._relays: RelayService | None = None
        # Everything started so far, to be undone in reverse, also after a failed start.
        self._running = contextlib.AsyncExitStack()

    @property
    def token(self) -> str:
        return _started(self._token)

    @property
    def meter_id(self) -> str:
        return _started(self._meter_id)

    @property
    def meter(self) -> Meter:
        return _started(self._meter)

    @property
    def analytics(self) -> Analytics:
        return _started(self._analytics)

    @property
    def forecasting(self) -> Forecasting:
        return _started(self._forecasting)

    @property
    def nilm(self) -> NilmService:
        return _started(self._nilm)

    @property
    def extra_meters(self) -> ExtraMeters:
        return _started(self._extra_meters)

    @property
    def relay_service(self) -> RelayService:
        return _started(self._relays)

    @property
    def relays(self) -> RelayManager:
        return self.relay_service.manager

    @property
    def demand_response(self) -> DemandResponse:
        return self.relay_service.demand_response

    @property
    def voltage_calibration(self) -> VoltageCalibration:
        return self.relay_service.calibration

    @property
    def metrics(self) -> Metrics:
        return _started(self._metrics)

    @property
    def port(self) -> int:
        """The TCP port the API listens on (the bound one when asked for port 0)."""
        return _started(self._port)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def source(self) -> str:
        return "simulated" if self._simulated else "serial"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the API, the boards and the meter (which persists the counters)."""
        if self._analytics is not None:
            # First: a long export would hold the API's stop for its grace time.
            self._analytics.history.cancel_exports()
        await self._running.aclose()
        self._running = contextlib.AsyncExitStack()
        self._links = {}
        self._mqtt = None

    async def _start(self) -> None:
        if not self.options.rpict_port and self.options.rpict_model != HAT_MODEL:
            self.options = simulated_hat_options(self.options)
        options, data_dir = self.options, self.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        # write_atomic's scratch files left by a kill mid-write: nothing is writing yet.
        for leftover in data_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        self._token = resolve_token(options, data_dir)
        self._meter_id = meter_id(data_dir)
        self._metrics = Metrics()
        store = CounterStore(data_dir / COUNTER_FILE)
        gas = GasCounter(options.gas_m3_per_pulse, data_dir / GAS_FILE)
        self._meter = Meter(options, store, self._metrics, self._meter_id, *self._clocks, gas=gas)

        rpict_port, voltage_port = options.rpict_port, options.voltage_port
        self._simulated = not rpict_port
        if self._simulated:
            # Only the board's relays are the simulated board's: a GPIO relay 1 left off
            # opened its relay 1 and took the water heater out of the replay.
            board_relays = {r.id for r in options.relays if r.source == "board"}
            simulator = SimulatedMeter(
                speed=options.simulation_speed, vest=options.rpict_vest,
                relay_states=None if voltage_port else {
                    relay_id: state for relay_id, state in saved_relay_states(data_dir).items()
                    if relay_id in board_relays},
                flash=None if voltage_port else data_dir / SIMULATED_BOARD_FILE,
            )
            rpict_port, simulated_voltage = await simulator.start()
            self._running.push_async_callback(simulator.stop)
            if voltage_port:
                # Powers of another household, scaled by this home's voltage and switching
                # its relays: easily taken for real readings.
                _LOGGER.warning(
                    "rpict_port is empty: the powers are the simulated household's (replayed "
                    "data, not this home), with the real voltage board on %s (its voltage and "
                    "relays; the simulator's own voltage board is not used). Set rpict_port to "
                    "the hat's port to read this home", voltage_port)
            voltage_port = voltage_port or simulated_voltage

        meter = self._meter
        await meter.start()
        self._running.push_async_callback(meter.stop)
        # Before the boards start, so it sees the first reading; stops after they do.
        tz = local_zone()
        switched = switch_learned_state(data_dir, self.source) is not None
        self._analytics = Analytics(options, data_dir, meter, tz,
                                    carbon=CarbonIntensity(options.co2_g_per_kwh, *self._clocks),
                                    wall_clock=self._clocks[1], learn_afresh=switched)
        await self._analytics.start()
        self._running.push_async_callback(self._analytics.stop)
        # On the analytics' history store; stops before it.
        self._forecasting = Forecasting(meter, self._analytics.history, data_dir, tz,
                                        self._clocks[1])
        await self._forecasting.start()
        self._running.push_async_callback(self._forecasting.stop)
        # Fed the total power of every reading; a replay runs on its own, faster clock.
        self._nilm = NilmService(options, data_dir, meter,
                                 options.simulation_speed if self._simulated else 1.0,
                                 self._analytics.history)
        await self._nilm.start()
        self._running.push_async_callback(self._nilm.stop)
        if options.mqtt_enabled:
            # Subscribed before the boards start, so the first reading is published too.
            # aiomqtt/paho cost ~14 MB: imported only when publishing is on.
            from .mqtt import MqttPublisher

            publisher = MqttPublisher(options, meter, self._meter_id,
                                      voltage_board=bool(voltage_port),
                                      retired_meter_ids=retired_meter_ids(data_dir, options))
            await publisher.start()
            self._running.push_async_callback(publisher.stop)
            self._mqtt = publisher

        # Before the boards start, so it sees the voltage board's first frames.
        self._relays = RelayService(
            options, data_dir, meter, lambda: self._links.get("voltage"),
            simulated_board=self._simulated and not options.voltage_port,
        )
        await self._relays.start()
        self._running.push_async_callback(self._relays.stop)
        self._running.callback(meter.add_frame_listener(self._ask_hello_if_lost))
        # The other meters (option extra_meters) and the energy comparison of all of them.
        analytics = self._analytics
        self._extra_meters = ExtraMeters(options, data_dir, meter, self._meter_id, METER_NAME,
                                         self.source, self._metrics,
                                         lambda: analytics.energy_buckets, tz, *self._clocks)
        await self._extra_meters.start()
        self._running.push_async_callback(self._extra_meters.stop)

        boards: list[tuple[Board, str, int, Callable[[bytes], None]]] = [
            ("rpict", rpict_port, options.rpict_baudrate, meter.feed_rpict_line)
        ]
        if voltage_port:
            boards.append(
                ("voltage", voltage_port, options.voltage_baudrate, meter.feed_voltage_line)
            )
        for board, port, baudrate, feed in boards:
            link = SerialLink(board, port, baudrate, feed, self._connection_callback(board))
            await link.start()
            self._running.push_async_callback(link.stop)
            self._links[board] = link
        self._running.push_async_callback(self._cancel_hello_requests)

        # Requests still running at a stop (a long export) get this long, then are cut: the
        # Supervisor kills the add-on 10 s after asking it to stop.
        self._running.enter_context(malformed_requests_summed_up())
        runner = web.AppRunner(create_app(self), access_log=None,
                               shutdown_timeout=API_SHUTDOWN_GRACE_S,
                               keepalive_timeout=API_IDLE_TIMEOUT_S)
        await runner.setup()
        self._running.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._port = int(runner.addresses[0][1])

        source = f"simulated meter at {options.simulation_speed:g}x" if self._simulated \
            else "serial boards"
        _LOGGER.info("Energy Tracker %s: API on http://%s:%d/api/v1, source: %s",
                     __version__, self.host, self._port, source)
        for board, link in self._links.items():
            _LOGGER.info("Board %s on %s at %d baud", board, link.port, link.baudrate)

    def _connection_callback(self, board: Board) -> Callable[[bool], None]:
        def on_connection(connected: bool) -> None:
            if board == "voltage" and not connected:
                self.relay_service.voltage_port_closed()
            self.meter.set_board_connected(board, connected)
            if board == "voltage" and connected:
                # The board's hello went out at its boot, most likely before we opened the
                # port (which discards pending input): ask again for its firmware version.
                self._ask_hello()

        return on_connection

    def _ask_hello_if_lost(self, frame: BoardFrame) -> None:
        """A board talking whose hello never came (the one asked for on connecting was
        lost in line noise, or sent at the wrong baud rate): its firmware version and boot
        cause stayed unknown until its next reboot. Asked again, at most once a minute."""
        now = self._clocks[0]()
        if (isinstance(frame, MeasurementFrame) and self.meter.fw_version is None
                and now - self._last_hello_ask >= HELLO_ASK_INTERVAL_S):
            self._ask_hello()

    def _ask_hello(self) -> None:
        self._last_hello_ask = self._clocks[0]()
        task = asyncio.create_task(self._request_hello(), name="voltage board hello")
        self._hello_requests.add(task)
        task.add_done_callback(self._hello_requests.discard)

    async def _request_hello(self) -> None:
        try:
            # Through the commander: it owns the command ids on this link.
            self.meter.expect_hello()
            await self.relay_service.commander.send("HELLO")
        except SerialLinkError as error:
            _LOGGER.debug("Could not ask the voltage board for its hello: %s", error)

    async def _cancel_hello_requests(self) -> None:
        for task in self._hello_requests:
            task.cancel()
        await asyncio.gather(*self._hello_requests, return_exceptions=True)

    def info(self) -> dict[str, Any]:
        """The /api/v1/info object."""
        boards: list[dict[str, Any]] = []
        for board, link in self._links.items():
            model = self.options.rpict_model if board == "rpict" else VOLTAGE_BOARD_MODEL
            entry: dict[str, Any] = {"id": board, "model": model, "port": link.port,
                                     "connected": link.connected}
            if board == "voltage" and self.meter.fw_version is not None:
                entry["fw_version"] = self.meter.fw_version
            boards.append(entry)
        return {
            "meter_id": self.meter_id,
            "name": METER_NAME,
            "version": __version__,
            "source": self.source,
            "rpict_model": self.options.rpict_model,
            "boards": boards,
            "channels": self.meter.info_channels(),
            "mqtt": None if self._mqtt is None else self._mqtt.status(),
        }


def _started[T](value: T | None) -> T:
    if value is None:
        raise ServiceNotStarted("the service is not running")
    return value

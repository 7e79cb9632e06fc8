"""Wire the add-on together: boards (serial or simulated) → meter → API, and stop it again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from . import __version__
from .api import create_app
from .config import Options, meter_id, resolve_token
from .meter import Board, Meter
from .metrics import Metrics
from .persistence import CounterStore
from .protocol import SEQ_MAX, encode_command
from .serial_link import SerialLink, SerialLinkError
from .simulator import SimulatedMeter

_LOGGER = logging.getLogger(__name__)

COUNTER_FILE: Final = "energy_counters.json"
METER_NAME: Final = "Energy Tracker"
VOLTAGE_BOARD_MODEL: Final = "esp8266-zmpt101b"


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
    ) -> None:
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
        self._next_cmd_id = 0
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
        await self._running.aclose()
        self._running = contextlib.AsyncExitStack()
        self._links = {}

    async def _start(self) -> None:
        options, data_dir = self.options, self.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._token = resolve_token(options, data_dir)
        self._meter_id = meter_id(data_dir)
        self._metrics = Metrics()
        store = CounterStore(data_dir / COUNTER_FILE)
        self._meter = Meter(options, store, self._metrics, self._meter_id)

        rpict_port, voltage_port = options.rpict_port, options.voltage_port
        self._simulated = not rpict_port
        if self._simulated:
            simulator = SimulatedMeter(speed=options.simulation_speed, vest=options.rpict_vest)
            rpict_port, simulated_voltage = await simulator.start()
            self._running.push_async_callback(simulator.stop)
            voltage_port = voltage_port or simulated_voltage

        meter = self._meter
        await meter.start()
        self._running.push_async_callback(meter.stop)

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

        runner = web.AppRunner(create_app(self), access_log=None)
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
            self.meter.set_board_connected(board, connected)
            if board == "voltage" and connected:
                # The board's hello went out at its boot, most likely before we opened the
                # port (which discards pending input): ask again for its firmware version.
                task = asyncio.create_task(self._request_hello(), name="voltage board hello")
                self._hello_requests.add(task)
                task.add_done_callback(self._hello_requests.discard)

        return on_connection

    async def _request_hello(self) -> None:
        link = self._links.get("voltage")
        if link is None:
            return
        self._next_cmd_id = self._next_cmd_id % SEQ_MAX + 1
        try:
            await link.write_line(encode_command(self._next_cmd_id, "HELLO"))
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
        }


def _started[T](value: T | None) -> T:
    if value is None:
        raise ServiceNotStarted("the service is not running")
    return value

"""Wire one add-on service's board commands: relays (backends, meter frames and state),
demand response and the voltage board's calibration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from .board_relays import BoardCommander, BoardRelays
from .config import Options
from .demand_response import DemandResponse
from .gpio_relays import GpioRelays, RequestOpener, request_lines
from .meter import Meter
from .relays import RelayManager
from .serial_link import SerialLink
from .voltage_calibration import VoltageCalibration

_LOGGER = logging.getLogger(__name__)


class RelayService:
    """Relays from the options; `commander` is the voltage board's command channel."""

    def __init__(
        self,
        options: Options,
        data_dir: Path,
        meter: Meter,
        voltage_link: Callable[[], SerialLink | None],
        *,
        simulated_board: bool,
        open_gpio: RequestOpener = request_lines,
    ) -> None:
        self.commander = BoardCommander(voltage_link)
        meter.add_frame_listener(self.commander.on_frame)
        self.calibration = VoltageCalibration(self.commander)
        meter.add_frame_listener(self.calibration.on_frame)
        self.manager = RelayManager(options.relays, data_dir, simulated_board=simulated_board)
        # A relay change is streamed at once, not with the next reading (up to 2 s later):
        # a short pulse between two readings was never seen by Home Assistant.
        self._meter = meter
        self._republish: asyncio.Handle | None = None
        self.manager.on_change = self._republish_soon
        board_ids = [r.id for r in options.relays if r.source == "board"]
        if board_ids and not simulated_board and not options.voltage_port:
            # The default options list three board relays: without the ESP8266 board they
            # would be three switches that are unavailable for no reason anyone is told.
            _LOGGER.warning("Relays %s are on the voltage board (source: board), but "
                            "voltage_port is not set: they stay unavailable. Set "
                            "voltage_port, or remove them from relays", board_ids)
        # With or without board relays: after each hello it sets the board's watchdog and
        # fail-safe pattern, so a board an earlier run armed (relays since taken out of the
        # options) does not trip and open its relays, nor close the old fail-safe ones.
        self._board = BoardRelays(
            board_ids, self.commander, self.manager.report,
            options.relay_watchdog_s if board_ids else 0, options.stale_after_s,
            fail_safe_on=[r.id for r in options.relays
                          if r.source == "board" and r.fail_safe_on],
        )
        meter.add_frame_listener(self._board.on_frame)
        self._board_unattached = not board_ids  # started and stopped here, not by the manager
        self.manager.attach(board_ids, self._board)
        for relay in options.relays:
            if relay.source == "gpio" and relay.fail_safe_on:
                _LOGGER.warning("Relay %d (%s) is a gpio relay: fail_safe_on applies to board "
                                "relays only, and is ignored. A GPIO pin keeps its level "
                                "while the add-on is stopped, and is off after the Pi boots",
                                relay.id, relay.name)
        gpio_pins = {r.id: r.gpio for r in options.relays if r.source == "gpio"}
        if gpio_pins:
            pins = {relay_id: pin for relay_id, pin in gpio_pins.items() if pin is not None}
            self.manager.attach(list(pins), GpioRelays(pins, self.manager.report, open_gpio))
        # A reading comes every 2 s; after stale_after_s without one there is nothing to act on.
        self.demand_response = DemandResponse(self.manager, meter, options.stale_after_s)
        meter.add_state_part("relays", self.manager.all_json)

    def _republish_soon(self) -> None:
        # Once for the relays one frame changed together.
        if self._republish is None:
            self._republish = asyncio.get_running_loop().call_soon(self._republish_now)

    def _republish_now(self) -> None:
        self._republish = None
        self._meter.republish()

    def voltage_port_closed(self) -> None:
        self._board.port_closed()

    async def start(self) -> None:
        await self.manager.start()
        if self._board_unattached:
            await self._board.start()

    async def stop(self) -> None:
        if self._republish is not None:
            self._republish.cancel()
        await self.demand_response.stop()
        await self.manager.stop()
        if self._board_unattached:
            await self._board.stop()


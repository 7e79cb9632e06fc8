"""The real add-on service on pty boards with a test-driven clock, for the analytics tests.

Recorded minutes (real UCI data) are replayed one RPICT line per minute of data: the clock
the meter and the analytics see is set to each row's time before its line is written, so
hours of data go through the real serial, meter and analytics path in seconds.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from energy_tracker_addon.config import parse_options
from energy_tracker_addon.protocol import frame
from energy_tracker_addon.service import AddonService

from .ptys import PtyPort

TOKEN = "analytics-test-token-0123456789abcdefghijkl"
CHANNEL_COLUMNS = ("mains", "kitchen", "water_heater_ac")


class Clocks:
    """Monotonic and wall clock moved together by the test."""

    def __init__(self, wall: datetime) -> None:
        self.wall = wall
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def set(self, wall: datetime) -> None:
        self.mono += max((wall - self.wall).total_seconds(), 0.0)
        self.wall = wall


class Rig:
    """One service run: `start()`, feed lines, `stop()`; restartable on the same data dir."""

    def __init__(self, data_dir: Path, clocks: Clocks, rpict: PtyPort,
                 voltage: PtyPort | None = None, **options: Any) -> None:
        self.data_dir = data_dir
        self.clocks = clocks
        self.rpict = rpict
        self.voltage = voltage
        # Minute rows: readings 60 s apart must still be integrated (stale after 120 s).
        self.options = {"api_token": TOKEN, "rpict_port": str(rpict.path),
                        "voltage_port": str(voltage.path) if voltage else "",
                        "stale_after_s": 120} | options
        self.service: AddonService | None = None
        self._seq = 0

    async def start(self) -> AddonService:
        for port in (self.rpict, self.voltage):
            if port is not None and not port.plugged:
                port.plug()
        self.service = AddonService(
            parse_options(self.options), self.data_dir, host="127.0.0.1", port=0,
            clock=self.clocks.monotonic, wall_clock=self.clocks.now,
        )
        await self.service.start()
        # A line written before the port is open would be discarded by the open.
        boards = ["rpict"] + (["voltage"] if self.voltage else [])
        await self._until(lambda: all(self.state["boards"][b]["connected"] for b in boards),
                          "ports open")
        return self.service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    @property
    def state(self) -> dict[str, Any]:
        assert self.service is not None
        return self.service.meter.snapshot()

    async def _until(self, condition: Any, what: str, timeout: float = 30) -> None:
        # Polled every 2 ms, not 50 (polling.py): hundreds of lines go through one test.
        # The bound only ends a test that would fail anyway: some waits are on forecast
        # work, which took 3x its usual time on a loaded machine (helper 105).
        try:
            async with asyncio.timeout(timeout):
                while not condition():  # noqa: ASYNC110 - state of a service, no event
                    await asyncio.sleep(0.002)
        except TimeoutError:
            raise TimeoutError(f"not within {timeout:g} s: {what}") from None

    async def rpict_line(self, when: datetime, powers: tuple[str, str, str]) -> None:
        """One RPICT line printed at `when`; returns once the meter has taken it."""
        before = self.state["boards"]["rpict"]["lines_ok"]
        self.clocks.set(when)
        await self.rpict.write(f"11 {' '.join(powers)} 21.5\r\n".encode())
        await self._until(lambda: self.state["boards"]["rpict"]["lines_ok"] > before, "line")

    async def etm(self, gas_pulses: int, vrms: float = 230.0) -> None:
        """One voltage-board measurement frame; returns once the meter has taken it."""
        assert self.voltage is not None
        before = self.state["boards"]["voltage"]["lines_ok"]
        self._seq += 1
        await self.voltage.write(
            frame("ETM", str(self._seq), f"{vrms:.1f}", "50.00", "", str(gas_pulses))
        )
        await self._until(lambda: self.state["boards"]["voltage"]["lines_ok"] > before, "etm")

    async def replay(self, data: pd.DataFrame, shift: timedelta = timedelta(0),
                     extra_w: dict[int, float] | None = None) -> list[tuple[str, str, str]]:
        """Every row as one line at its (shifted) time; the printed powers, row by row."""
        printed = []
        for row, (moment, values) in enumerate(data[list(CHANNEL_COLUMNS)].iterrows()):
            extra = (extra_w or {}).get(row, 0.0)
            p1, p2, p3 = (float(v) for v in values)
            line = (f"{p1 + extra:.1f}", f"{p2:.1f}", f"{p3:.1f}")
            await self.rpict_line(moment.to_pydatetime() + shift, line)
            printed.append(line)
        return printed

    async def get(self, session: Any, path: str) -> tuple[int, Any]:
        assert self.service is not None
        async with session.get(f"{self.service.url}/api/v1/{path}",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            body = await response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body

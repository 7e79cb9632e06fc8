"""Boards the test controls: an RPICT hat and a voltage board on ptys (tests/addon/ptys.py).

The add-on under test opens them like real serial devices; the test sets the powers the hat
prints. The voltage board announces three relays and then never acknowledges a command —
the silent peer behind a relay timeout; `AckingBoards` switches and acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from energy_tracker_addon.protocol import frame, parse_command_line
from tests.addon.ptys import PtyPort

from .conftest import Addon

LINE_INTERVAL_S = 0.5


class Boards:
    """Both boards; a background task prints a reading of each every LINE_INTERVAL_S."""

    def __init__(self, tmp_path: Path) -> None:
        self.rpict = PtyPort(tmp_path / "ttyRPICT")
        self.voltage = PtyPort(tmp_path / "ttyVOLT")
        self.powers = [0.0, 0.0, 0.0]  # what the hat prints for channels 1-3 (W at 230 V)
        self.relays = "111"
        self.paused = False  # True: no readings printed until set back
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.rpict.plug()
        self.voltage.plug()
        self._task = asyncio.create_task(self._print())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.rpict.unplug()
        self.voltage.unplug()

    async def _print(self) -> None:
        await self.voltage.write(frame("ETH", "0", "1.0.0", "3", "0.45"))
        while True:
            if not self.paused:
                self._seq += 1
                # 230.0 V, the hat's voltage estimate: the printed powers are the true ones.
                await self.voltage.write(
                    frame("ETM", str(self._seq), "230.0", "50.00", self.relays, "0"))
                p1, p2, p3 = self.powers
                await self.rpict.write(f"11 {p1} {p2} {p3} 21.5\r\n".encode())
            await asyncio.sleep(LINE_INTERVAL_S)


class AckingBoards(Boards):
    """Boards whose voltage board switches its relays and acknowledges every command."""

    def start(self) -> None:
        super().start()
        self._answering = asyncio.create_task(self._answer())

    async def stop(self) -> None:
        self._answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._answering
        await super().stop()

    async def _answer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                command = parse_command_line(await self.voltage.read_frame_line(timeout=60))
                if command.command == "RELAY":
                    index, state = int(command.args[0]), command.args[1]
                    self.relays = self.relays[:index - 1] + state + self.relays[index:]
                self._seq += 1
                await self.voltage.write(
                    frame("ETA", str(self._seq), str(command.cmd_id), "OK", self.relays))


@pytest.fixture(name="boards")
async def boards_fixture(tmp_path: Path, addon: Addon) -> AsyncIterator[Boards]:
    """The `addon` fixture's service restarted on these boards instead of the simulator."""
    async for boards in _serving(Boards(tmp_path), addon):
        yield boards


@pytest.fixture(name="acking_boards")
async def acking_boards_fixture(tmp_path: Path, addon: Addon) -> AsyncIterator[AckingBoards]:
    """Like `boards`, with a voltage board that switches and acknowledges; readings stay
    fresh for a minute, so a test can pause them without the meter going stale."""
    async for boards in _serving(AckingBoards(tmp_path), addon, stale_after_s=60):
        yield boards


async def _serving[B: Boards](boards: B, addon: Addon, **options: Any) -> AsyncIterator[B]:
    await addon.stop()
    boards.start()
    await addon.start(rpict_port=str(boards.rpict.path), voltage_port=str(boards.voltage.path),
                      **options)
    yield boards
    await addon.stop()
    await boards.stop()

"""Boards the test controls: an RPICT hat and a voltage board on ptys (tests/addon/ptys.py).

The add-on under test opens them like real serial devices; the test sets the powers the hat
prints. The voltage board announces three relays and then never acknowledges a command —
the silent peer behind a relay timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from energy_tracker_addon.protocol import frame
from tests.addon.ptys import PtyPort

from .conftest import Addon

LINE_INTERVAL_S = 0.5


class Boards:
    """Both boards; a background task prints a reading of each every LINE_INTERVAL_S."""

    def __init__(self, tmp_path: Path) -> None:
        self.rpict = PtyPort(tmp_path / "ttyRPICT")
        self.voltage = PtyPort(tmp_path / "ttyVOLT")
        self.powers = [0.0, 0.0, 0.0]  # what the hat prints for channels 1-3 (W at 230 V)
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
            self._seq += 1
            # 230.0 V, the hat's voltage estimate: the printed powers are the true ones.
            await self.voltage.write(frame("ETM", str(self._seq), "230.0", "50.00", "111", "0"))
            p1, p2, p3 = self.powers
            await self.rpict.write(f"11 {p1} {p2} {p3} 21.5\r\n".encode())
            await asyncio.sleep(LINE_INTERVAL_S)


@pytest.fixture(name="boards")
async def boards_fixture(tmp_path: Path, addon: Addon) -> AsyncIterator[Boards]:
    """The `addon` fixture's service restarted on these boards instead of the simulator."""
    await addon.stop()
    boards = Boards(tmp_path)
    boards.start()
    await addon.start(rpict_port=str(boards.rpict.path), voltage_port=str(boards.voltage.path))
    yield boards
    await addon.stop()
    await boards.stop()

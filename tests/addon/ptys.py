"""Pseudo-terminals that stand in for serial devices in tests.

A pty cannot be re-created at the same /dev/pts path, so each `PtyPort` is reached through
a symlink (like /dev/serial/by-id/...) that `unplug` removes and `plug` points at a fresh
pty: that is how tests unplug and replug a device.
"""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path


class PtyPort:
    """A fake serial device: the test holds the master end, the code under test opens `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._master: int | None = None
        self._slave: int | None = None
        self._pending = bytearray()  # bytes read from the master after the last line

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> None:
        """Create a new pty (raw mode, no echo) and point `path` at it."""
        if self.plugged:
            raise RuntimeError(f"{self.path} is already plugged")
        master, slave = os.openpty()
        # Raw from the start so nothing written before the port is opened is echoed back.
        tty.setraw(slave)
        os.set_blocking(master, False)
        # The test keeps the slave open too, so the pty lives while the code reopens it.
        self._master, self._slave = master, slave
        self._pending.clear()
        os.symlink(os.ttyname(slave), self.path)

    def unplug(self) -> None:
        """Close the pty (the reader sees a hang-up) and remove `path`."""
        master, slave = self._master, self._slave
        self._master = self._slave = None
        if master is not None:
            os.close(master)
        if slave is not None:
            os.close(slave)
        self.path.unlink(missing_ok=True)

    async def write(self, data: bytes) -> None:
        """Send bytes to whoever has `path` open, waiting while the pty buffer is full."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._require_master(), view) :]
            except BlockingIOError:
                await self._wait(writable=True)

    async def read_line(self, timeout: float = 2.0) -> bytes:
        """The next line (with its line end) written to `path` by the code under test."""
        async with asyncio.timeout(timeout):
            while (end := self._pending.find(b"\n")) < 0:
                try:
                    chunk = os.read(self._require_master(), 4096)
                except BlockingIOError:
                    await self._wait(writable=False)
                    continue
                self._pending += chunk
        line = bytes(self._pending[: end + 1])
        del self._pending[: end + 1]
        return line

    async def read_frame_line(self, timeout: float = 2.0) -> bytes:
        """The next non-blank line: the add-on starts each command with a line end, which
        the board skips as line noise (docs/protocol.md 2.2)."""
        async with asyncio.timeout(timeout):
            while not (line := await self.read_line(timeout)).strip():
                pass
        return line

    def _require_master(self) -> int:
        if self._master is None:
            raise RuntimeError(f"{self.path} is unplugged")
        return self._master

    async def _wait(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._require_master()
        add, remove = (
            (loop.add_writer, loop.remove_writer)
            if writable
            else (loop.add_reader, loop.remove_reader)
        )

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        add(fd, wake)
        try:
            await ready
        finally:
            remove(fd)

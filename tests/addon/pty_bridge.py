"""Two pseudo-terminals joined master to master, like a null-modem cable.

A program that opens a serial device itself (the firmware's `et1_pty_board`) gets
`board_path`; the add-on opens `host_path` (a symlink, as under /dev/serial/by-id). Both
ends are real ttys, so both sides run their real serial code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class PtyBridge:
    def __init__(self, host_path: Path) -> None:
        self.host_path = host_path
        self._fds: list[int] = []
        self._host_master, host_slave = self._open()
        self._board_master, board_slave = self._open()
        self.board_path = os.ttyname(board_slave)
        os.symlink(os.ttyname(host_slave), host_path)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> tuple[int, int]:
        master, slave = os.openpty()
        tty.setraw(slave)  # nothing is echoed back before the real user opens it
        # Both slaves stay open here too, so the ptys live while either side reopens.
        self._fds += [master, slave]
        return master, slave

    def start(self) -> None:
        """Start copying bytes both ways (on the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._host_master, self._copy, self._host_master,
                              self._board_master)
        self._loop.add_reader(self._board_master, self._copy, self._board_master,
                              self._host_master)

    @staticmethod
    def _copy(source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while the far side is closed: nothing to pass on
        # A few hundred bytes at most: the 4 KiB pty buffer takes them at once.
        os.write(target, data)

    def close(self) -> None:
        if self._loop is not None:
            for fd in (self._host_master, self._board_master):
                self._loop.remove_reader(fd)
            self._loop = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self.host_path.unlink(missing_ok=True)

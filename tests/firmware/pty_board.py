"""The host build of the firmware (et1_pty_board) running on a real pseudo-terminal.

The test holds the master end, as the add-on holds a UART; the board program opens the
slave, exactly as it would open /dev/ttyUSB0 on the ESP8266's side of the cable.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
import tty
from pathlib import Path


class PtyBoard:
    def __init__(self, program: Path, *options: str) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # nothing sent before the board opens the port is echoed back
        self._master = master
        self._slave = slave
        self._pending = bytearray()
        self._stopped: str | None = None
        self._process = subprocess.Popen(
            [str(program), "--port", os.ttyname(slave), *options],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            select.select([], [self._master], [], 2.0)
            view = view[os.write(self._master, view) :]

    def read_line(self, timeout: float = 3.0) -> bytes:
        """The next line the board wrote, CRLF included."""
        deadline = time.monotonic() + timeout
        while (end := self._pending.find(b"\n")) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._master], [], [], left)[0]:
                raise TimeoutError(f"no line from the board within {timeout} s")
            self._pending += os.read(self._master, 4096)
        line = bytes(self._pending[: end + 1])
        del self._pending[: end + 1]
        return line

    def stop(self) -> str:
        """Stop the board (SIGTERM) and return what it printed: its error counters."""
        if self._stopped is not None:
            return self._stopped
        if self._process.poll() is None:
            self._process.terminate()
        try:
            _, err = self._process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            _, err = self._process.communicate()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):  # the test may have closed it already
                os.close(fd)
        self._stopped = err
        return err

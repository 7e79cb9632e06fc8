"""Own one serial port: open it, hand over complete lines, write lines, and reconnect.

The port may be missing at start, be unplugged and plugged back (a USB adapter, or in
tests a pseudo-terminal whose master is closed) or fail with read errors. The link keeps
trying with exponential backoff (0.5 s doubling to 5 s), so a port that comes back is in
use again within 5 s. Logging: the first occurrence of a problem at WARNING, repeats of
the same problem at DEBUG, and INFO once connected again. A port that keeps dropping soon
after each opening (a loose cable, a board resetting on a weak supply) is said once every
FLAP_LOG_INTERVAL_S with its count of drops, not in two lines per drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import serial
import serial_asyncio_fast

from .log_limit import LogLimit
from .protocol import is_text
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)

MAX_LINE_BYTES = 512
"""A line longer than this is delivered once as its first MAX_LINE_BYTES + 1 bytes, with no
line end (longer than any parser accepts, so it is rejected with reason "length"); the rest
of it, up to the next newline, is dropped. Memory per link stays bounded either way."""

GARBLED_FIRST_LINE_BYTES = 32
"""Bytes that are not text, this many and no line end yet since the port opened: read at
the wrong baud rate, a board's newlines are lost too, so no line would ever come and the
port would pass for silent. Delivered then (rejected as "encoding": the baud-rate hint)."""

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 5.0
# A connection that ends sooner than this is a flap; one that lasts it ends the flapping.
STABLE_S = 60.0
FLAP_LOG_INTERVAL_S = 300.0
_READ_CHUNK = 1024


class SerialLinkError(Exception):
    """The link cannot do what was asked (e.g. write while the port is not connected)."""


class SerialLink:
    """One serial port, read line by line, reopened whenever it goes away."""

    def __init__(
        self,
        name: str,
        port: str,
        baudrate: int,
        on_line: Callable[[bytes], None],
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.baudrate = baudrate
        self._on_line = on_line
        self._on_connection = on_connection
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_problem: str | None = None
        self._ever_connected = False
        self._brief_drops = 0  # connections in a row that ended within STABLE_S
        self._flap_log = LogLimit(FLAP_LOG_INTERVAL_S)  # on the loop's time

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def start(self) -> None:
        """Start the connect/read loop in a task and return at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"serial link {self.name}")

    async def stop(self) -> None:
        """Stop reading and close the port (on_connection(False) if it was connected)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def write_line(self, data: bytes) -> None:
        """Write one complete line (ending in a newline) to the port."""
        if not data.endswith(b"\n"):
            raise ValueError("a line must end with a newline")
        writer = self._writer
        if writer is None:
            raise SerialLinkError(f"{self.name}: {self.port} is not connected")
        try:
            writer.write(data)
            await writer.drain()
        except (OSError, serial.SerialException) as err:
            raise SerialLinkError(f"{self.name}: write to {self.port} failed: {err}") from err

    async def _run(self) -> None:
        delay = BACKOFF_INITIAL_S
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.port, baudrate=self.baudrate
                )
            except (OSError, serial.SerialException) as err:
                self._problem(f"cannot open {self.port}: {err}", f"open:{type(err).__name__}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            delay = BACKOFF_INITIAL_S
            opened = asyncio.get_running_loop().time()
            problem = await self._serve(reader, writer)
            self._lost(problem, asyncio.get_running_loop().time() - opened)
            await asyncio.sleep(delay)

    def _lost(self, problem: str, lasted: float) -> None:
        message = f"lost {self.port} ({problem}); reconnecting"
        self._brief_drops = self._brief_drops + 1 if lasted < STABLE_S else 0
        if not self._flapping:
            self._problem(message, "lost")
            return
        _LOGGER.debug("%s: %s", self.name, message)
        self._last_problem = "lost"
        if self._flap_log.due(asyncio.get_running_loop().time()) is not None:
            _LOGGER.warning(
                "%s: %s has dropped %d times in a row within a minute of opening: a loose "
                "connection, or a board that keeps resetting (its power supply?)",
                self.name, self.port, self._brief_drops)

    @property
    def _flapping(self) -> bool:
        """Two connections in a row ended soon after opening (one is a replug, maybe)."""
        return self._brief_drops >= 2

    def _steady(self) -> None:
        """Connected for STABLE_S: flapping, if it was, is over."""
        if self._flapping:
            _LOGGER.info("%s: %s has stayed connected for %g s, after %d short connections",
                         self.name, self.port, STABLE_S, self._brief_drops)
            self._last_problem = None
        self._brief_drops = 0
        self._flap_log = LogLimit(FLAP_LOG_INTERVAL_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Read lines until the port fails; return what went wrong."""
        again = " again" if self._ever_connected else ""
        _LOGGER.log(logging.DEBUG if self._flapping else logging.INFO,
                    "%s: connected%s to %s at %d baud", self.name, again, self.port,
                    self.baudrate)
        if not self._flapping:
            self._last_problem = None
        self._ever_connected = True
        self._writer = writer
        self._notify_connection(True)
        steady = asyncio.get_running_loop().call_later(STABLE_S, self._steady)
        try:
            await self._read_lines(reader)
            return "end of file"
        except (OSError, serial.SerialException) as err:
            return str(err) or type(err).__name__
        finally:
            steady.cancel()
            self._writer = None
            writer.close()
            # Waits for the transport to close the port; it re-raises the read error.
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._notify_connection(False)

    async def _read_lines(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        discarding = False  # inside an overlong line, dropping bytes up to its newline
        delivered = False  # a line (or garbage) went to the meter since the port opened
        while chunk := await reader.read(_READ_CHUNK):
            start = 0
            while (newline := chunk.find(b"\n", start)) >= 0:
                if discarding:
                    discarding = False
                else:
                    buffer += chunk[start : newline + 1]
                    # Cut like an unterminated overlong line so both read the same way.
                    self._deliver(bytes(buffer[: MAX_LINE_BYTES + 1]))
                    delivered = True
                buffer.clear()
                start = newline + 1
            if not discarding:
                buffer += chunk[start:]
                if (not delivered and len(buffer) >= GARBLED_FIRST_LINE_BYTES
                        and not is_text(bytes(buffer))):
                    self._deliver(bytes(buffer[:GARBLED_FIRST_LINE_BYTES]))
                    buffer.clear()
                    delivered = discarding = True
                elif len(buffer) > MAX_LINE_BYTES:
                    _LOGGER.debug("%s: line longer than %d bytes", self.name, MAX_LINE_BYTES)
                    self._deliver(bytes(buffer[: MAX_LINE_BYTES + 1]))
                    buffer.clear()
                    discarding = True

    def _deliver(self, line: bytes) -> None:
        try:
            self._on_line(line)
        except Exception:
            # A consumer bug must not stop the port from being read.
            _LOGGER.exception("%s: line handler failed for %r", self.name, line[:80])

    def _notify_connection(self, connected: bool) -> None:
        if self._on_connection is not None:
            try:
                self._on_connection(connected)
            except Exception:
                _LOGGER.exception("%s: connection handler failed", self.name)

    def _problem(self, message: str, kind: str) -> None:
        # After "lost ...; reconnecting" the failed reopen attempts are expected: DEBUG.
        repeat = kind == self._last_problem or self._last_problem == "lost"
        _LOGGER.log(logging.DEBUG if repeat else logging.WARNING, "%s: %s", self.name, message)
        self._last_problem = kind

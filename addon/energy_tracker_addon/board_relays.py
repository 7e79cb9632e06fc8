"""The ESP8266 board's relays: ET1 commands matched to their `$ETA`, states from ETM/ETA.

`BoardCommander` owns the command ids of the voltage board link (everything the host sends
the board goes through it, so two commands never share an id). `BoardRelays` is the relay
backend on top of it, and keeps the board's host-silence watchdog armed: the firmware
resets `WDT` to 0 at every boot, so it is re-sent after every `$ETH`, and the keepalive that
feeds it is `WDT` itself: a reboot whose `$ETH` drowned in boot noise is re-armed by the next.
After every `$ETH` it also makes the board's stored fail-safe pattern (`SAFE`: the relays'
state at boot and when the watchdog trips) the options' `fail_safe_on` relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Final

from .protocol import SEQ_MAX, AckFrame, BoardFrame, HelloFrame, MeasurementFrame, encode_command
from .relays import RelayRejected, RelayTimeout, RelayUnavailable, Report
from .serial_link import SerialLink, SerialLinkError

_LOGGER = logging.getLogger(__name__)

# docs/protocol.md 2.2: the board answers within 200 ms; the host waits 1 s.
COMMAND_TIMEOUT_S: Final = 1.0
# Commands acknowledged OK feed the watchdog: three per period ride out one lost one.
KEEPALIVES_PER_WATCHDOG_PERIOD: Final = 3


class BoardNotConnected(SerialLinkError):
    """The voltage board's port is not open (or no voltage board is configured)."""


class BoardCommander:
    """Send ET1 commands to the voltage board and wait for the matching acknowledgement."""

    def __init__(
        self, link: Callable[[], SerialLink | None], timeout_s: float = COMMAND_TIMEOUT_S
    ) -> None:
        self._link = link  # the link is created (and replaced) by the service
        self.timeout_s = timeout_s
        self._cmd_id = 0
        self._pending: dict[int, asyncio.Future[AckFrame]] = {}

    @property
    def connected(self) -> bool:
        link = self._link()
        return link is not None and link.connected

    def next_cmd_id(self) -> int:
        """A command id not used for the last 65534 commands (1-65535)."""
        self._cmd_id = self._cmd_id % SEQ_MAX + 1
        while self._cmd_id in self._pending:  # a long-timed-out id is still waited for
            self._cmd_id = self._cmd_id % SEQ_MAX + 1
        return self._cmd_id

    async def send(self, command: str, *args: str) -> None:
        """Send without waiting for the acknowledgement."""
        await self._write(encode_command(self.next_cmd_id(), command, *args))

    async def command(self, command: str, *args: str) -> AckFrame:
        """Send and return the board's `$ETA` (TimeoutError after `timeout_s`)."""
        cmd_id = self.next_cmd_id()
        answer: asyncio.Future[AckFrame] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = answer
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._write(encode_command(cmd_id, command, *args))
                return await answer
        finally:
            self._pending.pop(cmd_id, None)

    def on_frame(self, frame: BoardFrame) -> None:
        """Every valid frame from the voltage board (a meter frame listener)."""
        if isinstance(frame, AckFrame):
            answer = self._pending.pop(frame.cmd_id, None)
            if answer is not None and not answer.done():
                answer.set_result(frame)

    async def _write(self, line: bytes) -> None:
        link = self._link()
        if link is None or not link.connected:
            raise BoardNotConnected("the voltage board is not connected")
        # The blank line first ends any partial line on the board's side (a stray byte, the
        # tail of boot noise), which would otherwise spoil this command; the board skips it.
        await link.write_line(b"\n" + line)


class BoardRelays:
    """Relay backend for the relays on the voltage board (a board relay's id = its number)."""

    def __init__(
        self,
        relay_ids: Sequence[int],
        commander: BoardCommander,
        report: Report,
        watchdog_s: int = 0,
        stale_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        fail_safe_on: Collection[int] = (),
    ) -> None:
        self._ids = tuple(relay_ids)
        self._fail_safe_on = frozenset(fail_safe_on)
        self._commander = commander
        self._report = report
        self._watchdog_s = watchdog_s
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._n_relays: int | None = None  # from the hello, else the relays field's length
        self._states_known = False  # an ETM or ETA came since the last hello or port close
        self._heard_at: float | None = None  # the board's last frame
        # A command went unanswered and the board has said nothing since: commands sent now
        # would wait in its way (a hung board, a full buffer) and all run when it wakes up.
        self._unanswered = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._keepalive: asyncio.Task[None] | None = None

    def available(self, relay_id: int) -> bool:
        """Switchable, and its state known: the board's port is open, it answers and it
        spoke within stale_after_s (a silent board's relays may have changed since:
        its watchdog, a power cut on its side)."""
        return (
            self._commander.connected
            and self._states_known
            and not self._unanswered
            and self._heard_at is not None
            and self._clock() - self._heard_at <= self._stale_after_s
            and self._n_relays is not None
            and relay_id <= self._n_relays
        )

    async def switch(self, relay_id: int, on: bool) -> None:
        try:
            ack = await self._commander.command("RELAY", str(relay_id), "1" if on else "0")
        except BoardNotConnected:
            raise RelayUnavailable from None
        except SerialLinkError as error:
            _LOGGER.warning("Relay %d: %s", relay_id, error)
            raise RelayUnavailable(str(error)) from None
        except TimeoutError:
            _LOGGER.warning("Relay %d: the voltage board did not acknowledge in %g s; its "
                            "relays are unavailable until it is heard again",
                            relay_id, self._commander.timeout_s)
            self._unanswered = True
            raise RelayTimeout from None
        if ack.result != "OK":
            _LOGGER.warning("Relay %d: the voltage board answered %s", relay_id, ack.result)
            raise RelayRejected(ack.result)

    def on_frame(self, frame: BoardFrame) -> None:
        """Every valid frame from the voltage board (a meter frame listener)."""
        self._heard_at = self._clock()
        self._unanswered = False
        if isinstance(frame, HelloFrame):
            self._n_relays = frame.n_relays
            # A board that (re)booted: its relays are in their boot state, unknown until
            # its first ETM (docs/protocol.md: SAFE).
            self._states_known = False
            missing = [i for i in self._ids if i > frame.n_relays]
            if missing:
                _LOGGER.error("The voltage board has %d relays: relays %s are unavailable",
                              frame.n_relays, missing)
            self._spawn(self._after_hello(frame))
        elif isinstance(frame, MeasurementFrame | AckFrame):
            count = len(frame.relays)
            if self._n_relays is not None and count != self._n_relays:
                # The board's hello is older than its relays (a reboot whose hello was
                # lost): trust the frame, and say which relays that leaves out.
                missing = [i for i in self._ids if i > count]
                _LOGGER.warning("The voltage board now reports %d relays instead of %d%s",
                                count, self._n_relays,
                                f": relays {missing} are unavailable" if missing else "")
            self._n_relays = count
            self._states_known = True
            for relay_id in self._ids:
                if relay_id <= len(frame.relays):
                    self._report(relay_id, frame.relays[relay_id - 1])

    def port_closed(self) -> None:
        """The voltage board's port closed: what its relays do now is unknown until it
        speaks again (a USB board resets when plugged back in, its relays to boot state)."""
        self._states_known = False

    async def start(self) -> None:
        if self._watchdog_s and self._keepalive is None:
            self._keepalive = asyncio.create_task(self._feed_watchdog(),
                                                  name="voltage board watchdog")

    async def stop(self) -> None:
        tasks = set(self._tasks)
        if self._keepalive is not None:
            tasks.add(self._keepalive)
            self._keepalive = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_hello(self, hello: HelloFrame) -> None:
        # 0 too: a board that outlived an add-on run with the watchdog on is still
        # armed, and would open its relays a few seconds after this run began.
        await self._arm_watchdog()
        await self._store_fail_safe(hello)

    async def _store_fail_safe(self, hello: HelloFrame) -> None:
        wanted = tuple(i in self._fail_safe_on for i in range(1, hello.n_relays + 1))
        # Firmware before 1.5.0 does not say its pattern, and writes its flash at every
        # SAFE: it gets one at each hello while a relay should be on, else none (all off
        # is its blank flash, and the add-on sent no SAFE before 0.3.20).
        if hello.safe == wanted or (hello.safe is None and not any(wanted)):
            return
        pattern = "".join("1" if on else "0" for on in wanted)
        on_ids = [i for i in range(1, hello.n_relays + 1) if wanted[i - 1]]
        said = (f"relays {on_ids} on (closed), the others off" if on_ids
                else "every relay off (open)")
        try:
            ack = await self._commander.command("SAFE", pattern)
        except (SerialLinkError, TimeoutError) as error:
            _LOGGER.warning("Could not set the voltage board's fail-safe state (%s): %s; "
                            "tried again at its next hello", said,
                            str(error) or "no acknowledgement in time")
            return
        if ack.result == "EFLASH":
            _LOGGER.warning("The voltage board uses the fail-safe state %s, but could not "
                            "store it in its flash: after its next restart its relays "
                            "start in the old one until the add-on sets it again", said)
        elif ack.result != "OK":
            _LOGGER.error("The voltage board refused SAFE %s: %s", pattern, ack.result)
        else:
            _LOGGER.info("Voltage board fail-safe state stored: %s, at its boot and when "
                         "its watchdog trips", said)

    async def _arm_watchdog(self) -> None:
        try:
            ack = await self._commander.command("WDT", str(self._watchdog_s))
        except (SerialLinkError, TimeoutError) as error:
            # TimeoutError() says nothing: its text is empty.
            _LOGGER.warning("Could not %s the voltage board's watchdog: %s",
                            "arm" if self._watchdog_s else "disarm",
                            str(error) or "no acknowledgement in time")
            return
        if ack.result != "OK":
            _LOGGER.error("The voltage board refused WDT %d: %s", self._watchdog_s, ack.result)
        elif self._watchdog_s:
            _LOGGER.info("Voltage board watchdog armed: its relays go to their fail-safe "
                         "states after %d s without the add-on", self._watchdog_s)
        else:
            _LOGGER.debug("Voltage board watchdog off")

    async def _feed_watchdog(self) -> None:
        last_turn = self._clock()
        while True:
            await asyncio.sleep(self._watchdog_s / KEEPALIVES_PER_WATCHDOG_PERIOD)
            now = self._clock()
            silent_s, last_turn = now - last_turn, now
            if silent_s > self._watchdog_s and self._commander.connected:
                # Nothing else tells: the board opens its relays quietly, and the add-on
                # that wakes up only sees them off.
                _LOGGER.warning(
                    "The add-on could not feed the voltage board's watchdog for %.0f s "
                    "(frozen, stopped or starved), longer than relay_watchdog_s (%d s): the "
                    "board has put its relays in their fail-safe states. Switch back on "
                    "what should be on", silent_s, self._watchdog_s)
            if self._commander.connected:
                with contextlib.suppress(SerialLinkError):
                    # Not PING: WDT also re-arms a board that rebooted unnoticed.
                    await self._commander.send("WDT", str(self._watchdog_s))

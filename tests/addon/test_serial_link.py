"""SerialLink over real pseudo-terminals: lines in, lines out, unplug and replug."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from energy_tracker_addon import serial_link
from energy_tracker_addon.protocol import (
    ProtocolError,
    RpictParser,
    encode_command,
    parse_command_line,
)
from energy_tracker_addon.serial_link import (
    GARBLED_FIRST_LINE_BYTES,
    MAX_LINE_BYTES,
    SerialLink,
    SerialLinkError,
)

from .ptys import PtyPort

LOGGER = "energy_tracker_addon.serial_link"


class Recorder:
    """Collects what the link reports, so tests can await it."""

    def __init__(self) -> None:
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.states: list[bool] = []
        self._changed = asyncio.Event()

    def on_line(self, line: bytes) -> None:
        self.lines.put_nowait(line)

    def on_connection(self, connected: bool) -> None:
        self.states.append(connected)
        self._changed.set()

    async def next_line(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.lines.get(), timeout)

    async def wait_state(self, connected: bool, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not self.states or self.states[-1] is not connected:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def rig(
    pty_port: Callable[[str], PtyPort],
) -> AsyncIterator[tuple[PtyPort, SerialLink, Recorder]]:
    """An unplugged port and a link (not started) configured for it."""
    port = pty_port("ttyRPICT")
    recorder = Recorder()
    link = SerialLink("rpict", str(port.path), 38400, recorder.on_line, recorder.on_connection)
    yield port, link, recorder
    await link.stop()


async def wait_for_record(
    caplog: pytest.LogCaptureFixture, level: int, text: str, timeout: float = 3.0
) -> None:
    async with asyncio.timeout(timeout):
        # caplog has no way to notify, so look every 20 ms.
        while not any(  # noqa: ASYNC110
            r.levelno == level and text in r.getMessage() for r in caplog.records
        ):
            await asyncio.sleep(0.02)


async def test_lines_arrive_whole_whatever_the_chunking(
    rig: tuple[PtyPort, SerialLink, Recorder],
) -> None:
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)
    assert link.connected

    await port.write(b"11 243.5 -0.0 1520.2 21.4\r\n11 1.0 2")
    assert await recorder.next_line() == b"11 243.5 -0.0 1520.2 21.4\r\n"
    await port.write(b".0 3.0 -127\n")
    assert await recorder.next_line() == b"11 1.0 2.0 3.0 -127\n"


async def test_unplug_then_replug_resumes_within_five_seconds(
    rig: tuple[PtyPort, SerialLink, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)

    port.unplug()
    await recorder.wait_state(False, timeout=2)
    assert not link.connected
    with pytest.raises(SerialLinkError):
        await link.write_line(b"$ETC,1,PING*0000\r\n")

    # Stay unplugged through a few reopen attempts, then replug.
    await asyncio.sleep(1.0)
    port.plug()
    loop = asyncio.get_running_loop()
    replugged_at = loop.time()
    await recorder.wait_state(True, timeout=5)
    assert loop.time() - replugged_at < 5.0
    await port.write(b"11 5.0 6.0 7.0 20.0\r\n")
    assert await recorder.next_line() == b"11 5.0 6.0 7.0 20.0\r\n"

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "lost" in warnings[0].getMessage()
    assert str(port.path) in warnings[0].getMessage()
    assert any(
        r.levelno == logging.INFO and "connected again" in r.getMessage() for r in caplog.records
    )
    assert recorder.states == [True, False, True]


async def test_a_port_that_keeps_dropping_is_said_in_a_few_lines_not_two_per_drop(
    rig: tuple[PtyPort, SerialLink, Recorder], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loose cable or a board resetting in a loop (a weak supply): each drop was a
    warning and an info line, thousands an hour (helper 106). Now one warning says it keeps
    dropping, at most every FLAP_LOG_INTERVAL_S, and one line says when it stays up."""
    monkeypatch.setattr(serial_link, "STABLE_S", 3.0)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)
    for _ in range(8):
        port.unplug()
        await recorder.wait_state(False, timeout=2)
        port.plug()
        await recorder.wait_state(True, timeout=5)
    assert recorder.states == [True, False] * 8 + [True]

    said = [r for r in caplog.records if r.levelno >= logging.INFO]
    warnings = [r.getMessage() for r in said if r.levelno >= logging.WARNING]
    # The first drop (it may be a replug), then the flapping once.
    assert len(warnings) == 2, warnings
    assert "lost" in warnings[0]
    assert "dropped 2 times in a row within a minute" in warnings[1]
    assert sum("connected again" in r.getMessage() for r in said) == 1
    # Staying up ends it, and says so.
    await wait_for_record(caplog, logging.INFO, "has stayed connected for 3 s, after 8 short",
                          timeout=5)
    port.unplug()  # a drop after that is said again
    await recorder.wait_state(False, timeout=2)
    await wait_for_record(caplog, logging.WARNING, "lost")
    assert sum("lost" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING) == 2


async def test_port_missing_at_start_is_used_once_it_appears(
    rig: tuple[PtyPort, SerialLink, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    port, link, recorder = rig
    await link.start()  # returns at once although the port does not exist

    await wait_for_record(caplog, logging.WARNING, "cannot open")
    # The retry 0.5 s later repeats the same problem: DEBUG, not another WARNING.
    await wait_for_record(caplog, logging.DEBUG, "cannot open")
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert not link.connected
    assert recorder.states == []

    port.plug()
    await recorder.wait_state(True, timeout=5)
    await port.write(b"11 1.0 2.0 3.0 4.0\r\n")
    assert await recorder.next_line() == b"11 1.0 2.0 3.0 4.0\r\n"


async def test_write_line_reaches_the_board(rig: tuple[PtyPort, SerialLink, Recorder]) -> None:
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)

    command = encode_command(42, "RELAY", "2", "1")
    await link.write_line(command)
    received = await port.read_line()
    assert received == command
    parsed = parse_command_line(received)
    assert (parsed.cmd_id, parsed.command, parsed.args) == (42, "RELAY", ("2", "1"))


async def test_write_line_while_port_missing_raises(
    rig: tuple[PtyPort, SerialLink, Recorder],
) -> None:
    _, link, _ = rig
    await link.start()
    with pytest.raises(SerialLinkError, match="not connected"):
        await link.write_line(encode_command(1, "PING"))


async def test_overlong_line_is_cut_flagged_and_its_tail_dropped(
    rig: tuple[PtyPort, SerialLink, Recorder],
) -> None:
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)

    # 20 kB of plausible digits with no newline, e.g. a board stuck printing.
    garbage = b"1" * 20_000
    valid = b"11 1.0 2.0 3.0 4.0\r\n"
    await port.write(garbage + b" 1 2 3 4\r\n" + valid)

    cut = await recorder.next_line()
    assert len(cut) == MAX_LINE_BYTES + 1
    assert not cut.endswith(b"\n")
    with pytest.raises(ProtocolError) as rejected:
        RpictParser("rpict3t1").parse(cut)
    assert rejected.value.reason == "length"
    # The rest of the overlong line never shows up as a line of its own.
    assert await recorder.next_line() == valid


async def test_bytes_at_the_wrong_baud_rate_are_delivered_though_no_line_ends(
    rig: tuple[PtyPort, SerialLink, Recorder],
) -> None:
    """An RPICT line sent at 38400 and read at 115200 (framing errors read as NULs): no
    newline survives, no line ever came, and the meter said the port "has sent nothing"
    and asked whether the hat is seated instead of naming the baud rate (helper 82)."""
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)
    hat_line_at_115200 = b"\x00" * 7 + b"\xe0\x00\xe0\x00\x00\xe0\x00\x1c" + b"\x00" * 20
    await port.write(hat_line_at_115200 * 2)
    garbled = await recorder.next_line()
    assert len(garbled) == GARBLED_FIRST_LINE_BYTES
    with pytest.raises(ProtocolError) as rejected:
        RpictParser("rpict3t1").parse(garbled)
    assert rejected.value.reason == "encoding"  # which the meter's log ties to the baud rate


async def test_stop_closes_the_port_and_reports_it(
    rig: tuple[PtyPort, SerialLink, Recorder],
) -> None:
    port, link, recorder = rig
    port.plug()
    await link.start()
    await recorder.wait_state(True, timeout=2)

    await link.stop()
    assert not link.connected
    assert recorder.states == [True, False]
    # Nothing is read any more: a line written now stays in the pty, undelivered.
    await port.write(b"11 1.0 2.0 3.0 4.0\r\n")
    await asyncio.sleep(0.2)
    assert recorder.lines.empty()

"""The simulated meter over its real pseudo-terminals, checked against the replay data."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest

from energy_tracker_addon.protocol import (
    AckFrame,
    BoardErrorFrame,
    HelloFrame,
    MeasurementFrame,
    RpictParser,
    encode_command,
    frame,
    is_blank,
    parse_board_line,
)
from energy_tracker_addon.simulator import FIRMWARE_VERSION, BoardEnd, SimulatedMeter

VEST = 230.0
COLUMNS = ("mains_w", "kitchen_w", "water_heater_ac_w")
PARSE_RPICT = RpictParser("rpict3t1").parse


class Replay:
    """The packaged replay slice, read here with csv alone (independent of the simulator)."""

    def __init__(self) -> None:
        raw = resources.files("energy_tracker_addon").joinpath("data", "uci_replay.csv.gz")
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(raw.read_bytes()).decode())))
        self.times = [datetime.fromisoformat(row["timestamp"]) for row in rows]
        self.voltage = np.array([float(row["voltage_v"]) for row in rows])
        self.powers = np.array([[float(row[c]) for c in COLUMNS] for row in rows])


@pytest.fixture(scope="module")
def replay() -> Replay:
    return Replay()


async def wait_readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class SlaveReader:
    """The add-on's side of a pty: what a serial link opening the path would see."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._pending = bytearray()

    async def line(self, timeout: float = 3.0) -> bytes:
        async with asyncio.timeout(timeout):
            while (end := self._pending.find(b"\n")) < 0:
                try:
                    self._pending += os.read(self.fd, 4096)
                    continue
                except BlockingIOError:
                    pass
                await wait_readable(self.fd)
        line = bytes(self._pending[: end + 1])
        del self._pending[: end + 1]
        return line

    async def board_frame[T](self, kind: type[T]) -> T:
        """The next ET1 frame of one type, skipping the others (measurements every second)
        and empty lines (the boot starts with one, as the firmware's does)."""
        while True:
            line = await self.line()
            if is_blank(line):
                continue
            parsed = parse_board_line(line)
            if isinstance(parsed, kind):
                return parsed

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
async def running() -> AsyncIterator[list[SimulatedMeter]]:
    """Simulators started by a test, stopped after it."""
    started: list[SimulatedMeter] = []
    yield started
    for simulator in started:
        await simulator.stop()


async def start(
    running: list[SimulatedMeter], simulator: SimulatedMeter
) -> tuple[SlaveReader, SlaveReader]:
    running.append(simulator)
    rpict_path, board_path = await simulator.start()
    return SlaveReader(rpict_path), SlaveReader(board_path)


def corrected(line: bytes, voltage: float) -> npt.NDArray[np.float64]:
    return np.array(PARSE_RPICT(line).powers_w, dtype=np.float64) * np.float64(voltage / VEST)


async def test_lines_carry_the_replay_data(
    running: list[SimulatedMeter], replay: Replay
) -> None:
    row = 600
    rpict, board = await start(running, SimulatedMeter(vest=VEST, start=replay.times[row]))
    try:
        assert is_blank(await board.line())  # the boot's empty line, as the firmware's
        hello = parse_board_line(await board.line())
        measurement = parse_board_line(await board.line())
        line = await rpict.line()

        assert isinstance(hello, HelloFrame)
        assert (hello.seq, hello.n_relays) == (0, 3)
        assert isinstance(measurement, MeasurementFrame)
        assert measurement.seq == 1
        assert measurement.vrms_v == replay.voltage[row]
        assert measurement.frequency_hz == 50.0
        assert measurement.relays == (True, True, True)  # every relay starts on
        frame = PARSE_RPICT(line)
        assert frame.temperature_c == 20.0
        # The hat prints P * vest / V; the meter's correction gives the real power back.
        assert replay.voltage[row] != VEST
        assert np.array(frame.powers_w) != pytest.approx(replay.powers[row], abs=0.5)
        assert corrected(line, replay.voltage[row]) == pytest.approx(replay.powers[row], abs=0.1)

        # Measurements every second, RPICT lines every two.
        second = await board.board_frame(MeasurementFrame)
        third = await board.board_frame(MeasurementFrame)
        assert [second.seq, third.seq] == [2, 3]
        assert corrected(await rpict.line(), replay.voltage[row]) == pytest.approx(
            replay.powers[row], abs=0.1
        )
    finally:
        rpict.close()
        board.close()


async def test_fast_replay_loops_to_the_start_of_the_data(
    running: list[SimulatedMeter], replay: Replay
) -> None:
    last = len(replay.times) - 1
    # 1000x: the 2 s between two RPICT lines are 33 minutes of data, past the end.
    rpict, board = await start(
        running, SimulatedMeter(speed=1000, vest=VEST, start=replay.times[last])
    )
    try:
        await rpict.line()
        measurement = await board.board_frame(MeasurementFrame)
        assert measurement.vrms_v == replay.voltage[last]
        line = await rpict.line()
        # The measurement sent with that line carries the same row's voltage.
        for _ in range(2):
            measurement = await board.board_frame(MeasurementFrame)
        voltage = measurement.vrms_v
        assert voltage is not None
        power = corrected(line, voltage)
        matches = [
            i for i in range(len(replay.times))
            if replay.voltage[i] == voltage
            and np.allclose(replay.powers[i], power, atol=0.1)
        ]
        assert matches
        assert min(matches) < 60  # near the start of the slice again
    finally:
        rpict.close()
        board.close()


async def test_fast_replay_counts_gas_over_wall_time_like_electricity(
    running: list[SimulatedMeter], replay: Replay
) -> None:
    # 3600x: each wall second replays an hour. Energy is power over wall time, so gas is
    # too: at most 0.45 m³/h, far below one 0.01 m³ pulse in two seconds (60 would be
    # 0.9 m³, what counting replayed time gives).
    _, board = await start(running, SimulatedMeter(speed=3600, vest=VEST,
                                                   start=replay.times[0]))
    try:
        first = await board.board_frame(MeasurementFrame)
        for _ in range(2):
            last = await board.board_frame(MeasurementFrame)
        assert last.seq == first.seq + 2
        assert last.gas_pulses - first.gas_pulses <= 1
    finally:
        board.close()


async def test_default_start_follows_the_time_of_week(
    running: list[SimulatedMeter], replay: Replay
) -> None:
    now = datetime.now()
    rpict, board = await start(running, SimulatedMeter(vest=VEST))
    try:
        line = await rpict.line()
        measurement = await board.board_frame(MeasurementFrame)
        voltage = measurement.vrms_v
        assert voltage is not None
        monday = now - timedelta(days=now.weekday(), hours=now.hour, minutes=now.minute)
        minute_of_week = int((now - monday).total_seconds() // 60)
        candidates = [minute_of_week + d for d in (-1, 0, 1)]
        assert any(
            replay.voltage[i] == voltage
            and np.allclose(replay.powers[i], corrected(line, voltage), atol=0.1)
            for i in candidates
        )
        assert replay.times[candidates[1]].weekday() == now.weekday()
    finally:
        rpict.close()
        board.close()


async def test_board_answers_commands(running: list[SimulatedMeter]) -> None:
    rpict, board = await start(running, SimulatedMeter(start=datetime(2010, 3, 8)))
    try:
        board.write(encode_command(7, "PING"))
        ping = await board.board_frame(AckFrame)
        board.write(encode_command(8, "RELAY", "1", "0"))
        relay = await board.board_frame(AckFrame)
        board.write(encode_command(12, "RELAY", "4", "1"))
        no_such_relay = await board.board_frame(AckFrame)
        board.write(encode_command(9, "DANCE"))
        unknown = await board.board_frame(AckFrame)
        board.write(encode_command(10, "HELLO"))
        hello_ack = await board.board_frame(AckFrame)
        hello = parse_board_line(await board.line())
        board.write(b"$ETC,11,PING*0000\r\n")
        error = await board.board_frame(BoardErrorFrame)

        acks = (ping, relay, no_such_relay, unknown, hello_ack)
        assert [(a.cmd_id, a.result, a.relays) for a in acks] == [
            (7, "OK", (True, True, True)),
            (8, "OK", (False, True, True)),
            (12, "EBADARG", (False, True, True)),
            (9, "EBADCMD", (False, True, True)),
            (10, "OK", (False, True, True)),
        ]
        assert isinstance(hello, HelloFrame)
        assert hello.seq == 0
        assert error.code == "ECRC"
    finally:
        rpict.close()
        board.close()


async def test_the_simulated_board_behaves_as_the_firmware_at_its_limits(
    running: list[SimulatedMeter],
) -> None:
    """A voltage above the protocol's 500 V was sent as such, and the parser refused the
    whole frame, relays and gas with it (the firmware sends it empty); its own frames
    echoed back were answered with errors the firmware never sends (helper 102)."""
    rpict, board = await start(running, SimulatedMeter(start=datetime(2010, 3, 8)))
    try:
        board.write(encode_command(7, "CAL", "5.5"))  # ~12x the default: over 500 V
        ack = await board.board_frame(AckFrame)
        assert ack.result == "OK"
        board.write(frame("ETM", "3", "230.0", "50.00", "111", "0"))  # an echo
        board.write(encode_command(8, "PING"))
        # The echo got no answer: the next error-or-ack frame is the PING's.
        answer = await board.board_frame((AckFrame, BoardErrorFrame))
        assert isinstance(answer, AckFrame)
        assert answer.cmd_id == 8
        # Measurements are all accepted, without a voltage.
        measurement = await board.board_frame(MeasurementFrame)
        assert measurement.vrms_v is None
        assert measurement.relays == (True, True, True)
    finally:
        rpict.close()
        board.close()


async def test_writing_with_nobody_reading_neither_blocks_nor_tears_lines() -> None:
    end = BoardEnd("test")
    try:
        line = b"11 243.5 0.0 1520.2 20.0\r\n"
        for _ in range(10_000):  # far more than a pty holds
            end.send(line)
        assert end.dropped > 0

        reader = SlaveReader(end.path)
        try:
            received = []
            while True:
                try:
                    received.append(await reader.line(timeout=0.2))
                except TimeoutError:
                    break
        finally:
            reader.close()
        assert received
        assert all(r == line for r in received)
    finally:
        end.close()


def test_the_simulated_board_says_the_firmware_version_whose_protocol_it_speaks() -> None:
    """Its hello carries `reset` (firmware 1.4.0 on) while it called itself 1.1.0: a client
    reading docs/protocol.md took the field for one an old firmware cannot send."""
    board_h = (Path(__file__).resolve().parents[2] / "firmware" / "lib" / "et1core" / "src"
               / "board.h").read_text()
    version = board_h.split('kFirmwareVersion = "', 1)[1].split('"', 1)[0]
    expected = f"{version}-sim"
    assert expected == FIRMWARE_VERSION


async def test_the_simulated_board_keeps_its_calibration_and_fail_safe_across_restarts(
    running: list[SimulatedMeter], tmp_path: Path,
) -> None:
    """A real board keeps CAL and SAFE in flash; the simulated one forgot them at every
    add-on restart, and the calibrated voltage jumped back (helper 90)."""
    flash = tmp_path / "simulated_board.json"
    first = SimulatedMeter(start=datetime(2010, 3, 8), flash=flash)
    rpict, board = await start(running, first)
    try:
        board.write(encode_command(1, "CAL", "2.2999"))
        board.write(encode_command(2, "SAFE", "010"))
        acks = [await board.board_frame(AckFrame), await board.board_frame(AckFrame)]
        assert [a.result for a in acks] == ["OK", "OK"]
    finally:
        rpict.close()
        board.close()
        await first.stop()
    rpict, board = await start(running, SimulatedMeter(start=datetime(2010, 3, 8), flash=flash))
    try:
        hello = await board.board_frame(HelloFrame)
        assert (hello.cal, hello.safe) == (2.2999, (False, True, False))
    finally:
        rpict.close()
        board.close()


async def test_the_default_replay_keeps_to_local_time_across_a_dst_change(
    running: list[SimulatedMeter],
) -> None:
    """Aligned to the time of week once, at start: after the spring change the household's
    day ran an hour late until the add-on restarted (helper 90)."""
    paris = ZoneInfo("Europe/Paris")
    local = [datetime(2026, 3, 28, 12, 0, tzinfo=paris)]  # Saturday noon, CET
    simulator = SimulatedMeter(local_clock=lambda: local[0])
    rpict, board = await start(running, simulator)
    try:
        before = simulator.current_row()
        # A day later it is Sunday 13:00 CEST; the monotonic clock says 24 h (moved by
        # hand here: the row is read at the next tick).
        local[0] = datetime(2026, 3, 29, 13, 0, tzinfo=paris)
        after = simulator.current_row()
        assert after - before in (60, 61)  # the hour the clocks went forward (+ a minute)
    finally:
        rpict.close()
        board.close()

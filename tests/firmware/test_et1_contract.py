"""Cross-language ET1 contract: the compiled firmware core against the add-on's protocol
module, both directions, over a real pseudo-terminal (docs/protocol.md section 2).

The board program runs its clock 10x faster than real time (one ETM every 0.1 s) with a
synthetic ZMPT101B signal and a bouncing gas reed switch closing once a (board) second.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from energy_tracker_addon.protocol import (
    AckFrame,
    BoardErrorFrame,
    BoardFrame,
    HelloFrame,
    MeasurementFrame,
    ProtocolError,
    encode_command,
    frame,
    is_blank,
    parse_board_line,
)
from energy_tracker_addon.simulator import SimulatedMeter
from tests.addon.test_simulator import SlaveReader

from .pty_board import PtyBoard

FAST = ("--speed", "10")
HARMONICS = math.sqrt(1 + 0.05**2 + 0.03**2)  # et1_pty_board's 3rd and 5th harmonics


def next_frame(board: PtyBoard) -> BoardFrame:
    return parse_board_line(board.read_line())


def hello(board: PtyBoard) -> HelloFrame:
    """The boot: an empty line (it ends the ROM's boot noise), then the hello frame."""
    assert is_blank(board.read_line())
    first = next_frame(board)
    assert isinstance(first, HelloFrame)
    return first


def command(board: PtyBoard, cmd_id: int, name: str, *args: str) -> AckFrame:
    """Send one add-on-encoded command; return its ETA, skipping measurement frames."""
    board.send(encode_command(cmd_id, name, *args))
    for _ in range(20):
        got = next_frame(board)
        if isinstance(got, AckFrame):
            assert got.cmd_id == cmd_id
            return got
        assert isinstance(got, MeasurementFrame), got
    raise AssertionError("no acknowledgement")


def measurements(board: PtyBoard, count: int) -> list[MeasurementFrame]:
    got = [next_frame(board) for _ in range(count)]
    assert all(isinstance(f, MeasurementFrame) for f in got), got
    return [f for f in got if isinstance(f, MeasurementFrame)]


@pytest.mark.parametrize(("freq", "vrms"), [(50.0, 230.0), (60.0, 120.0)])
def test_board_frames_parse_unchanged_and_carry_accurate_measurements(
    start_board: Callable[..., PtyBoard], freq: float, vrms: float
) -> None:
    board = start_board(*FAST, "--freq", str(freq), "--vrms", str(vrms), "--gas-period-ms", "1000")
    assert hello(board) == HelloFrame(seq=0, fw_version="1.5.1", n_relays=3, cal=2.4,
                                         reset="power_on", safe=(False, False, False))
    frames = measurements(board, 8)
    assert [f.seq for f in frames] == list(range(1, 9))  # no gaps, hello was 0
    assert frames[0].gas_pulses <= 1
    # One reed closure per board second; frames[0]..[-1] span 7 of them (more only if the
    # board process was descheduled and its next ETM window grew).
    assert 6 <= frames[-1].gas_pulses - frames[0].gas_pulses <= 9
    true_vrms = vrms * HARMONICS
    for f in frames[1:]:  # the first window includes the ADC warm-up
        assert f.vrms_v is not None
        assert f.frequency_hz is not None
        assert abs(f.vrms_v / true_vrms - 1) <= 0.005
        assert abs(f.frequency_hz - freq) <= 0.05
        assert f.relays == (False, False, False)  # fail-safe state at boot


def test_addon_commands_are_accepted_and_acknowledged(
    start_board: Callable[..., PtyBoard],
) -> None:
    board = start_board(*FAST)
    hello(board)
    started = time.monotonic()
    ack = command(board, 42, "RELAY", "2", "1")
    assert time.monotonic() - started < 0.2  # the protocol's answer deadline
    assert (ack.result, ack.relays) == ("OK", (False, True, False))
    assert command(board, 43, "PING").result == "OK"
    assert command(board, 44, "SAFE", "001").result == "OK"
    assert command(board, 45, "WDT", "0").result == "OK"
    assert command(board, 46, "CAL", "0.4512").result == "OK"
    # The new state is what the board reports from then on.
    assert measurements(board, 1)[0].relays == (False, True, False)
    board.send(encode_command(47, "HELLO"))
    replies = [next_frame(board) for _ in range(3)]
    ack_index = next(i for i, f in enumerate(replies) if isinstance(f, AckFrame))
    after = replies[ack_index + 1]
    assert isinstance(after, HelloFrame)
    assert (after.seq, after.cal) == (0, 0.4512)
    # Refusals are acknowledgements too: state unchanged.
    assert command(board, 48, "RELAY", "9", "1").result == "EBADARG"
    assert command(board, 49, "FLY").result == "EBADCMD"
    assert command(board, 50, "PING").relays == (False, True, False)
    assert "bad_cmd=1 bad_arg=1" in board.stop()


def test_board_rejects_corrupted_commands_with_ete_and_counts_them(
    start_board: Callable[..., PtyBoard],
) -> None:
    board = start_board(*FAST)
    hello(board)
    good = encode_command(7, "RELAY", "1", "1")
    corrupted = good.replace(b"RELAY,1", b"RELAY,3")  # CRC no longer matches
    sent = [
        corrupted,
        b"not a frame\r\n",
        b"$ETC," + b"9" * 200 + b"\r\n",
    ]
    expected = ["ECRC", "EFRAME", "ELEN"]
    for line, code in zip(sent, expected, strict=True):
        board.send(line)
        got = next_frame(board)
        while isinstance(got, MeasurementFrame):
            got = next_frame(board)
        assert isinstance(got, BoardErrorFrame)
        assert got.code == code
    # One of its own frames echoed back (a tty left echoing) is not answered: answering
    # would feed the echo forever.
    board.send(frame("ETM", "1", "230.0", "50.00", "000", "0"))
    # Nothing was changed by the rejected lines; the board is still in sync.
    assert command(board, 8, "PING").relays == (False, False, False)
    counters = board.stop()
    assert re.search(r"crc=1 frame=1 length=1 .*echo=1 unanswered=0", counters), counters


def test_addon_rejects_corrupted_board_frames(start_board: Callable[..., PtyBoard]) -> None:
    board = start_board(*FAST)
    assert is_blank(board.read_line())
    line = board.read_line()
    assert isinstance(parse_board_line(line), HelloFrame)
    flipped = line.replace(b",3,", b",4,")  # n_relays changed in transit
    with pytest.raises(ProtocolError) as crc:
        parse_board_line(flipped)
    assert crc.value.reason == "crc"
    with pytest.raises(ProtocolError) as cut:
        parse_board_line(line[:10] + b"\r\n")  # a frame cut short by a lost byte run
    assert cut.value.reason == "frame"


def test_calibration_survives_reboot(start_board: Callable[..., PtyBoard], tmp_path: Path) -> None:
    flash = str(tmp_path / "flash.bin")
    board = start_board(*FAST, "--settings", flash)
    assert hello(board).cal == 2.4
    assert command(board, 1, "CAL", "2.25").result == "OK"
    assert command(board, 2, "SAFE", "010").result == "OK"
    board.stop()
    rebooted = start_board(*FAST, "--settings", flash)
    said = hello(rebooted)
    assert (said.cal, said.safe) == (2.25, (False, True, False))
    # The stored fail-safe pattern is also the relays' state at boot.
    assert measurements(rebooted, 1)[0].relays == (False, True, False)


def test_watchdog_sets_fail_safe_relays_when_host_goes_silent(
    start_board: Callable[..., PtyBoard],
) -> None:
    board = start_board(*FAST)
    hello(board)
    command(board, 1, "SAFE", "001")
    command(board, 2, "RELAY", "1", "1")
    assert command(board, 3, "WDT", "2").relays == (True, False, False)
    # Silence: at 10x speed the 2 s watchdog trips after about 0.2 s. Only the watchdog
    # applies the SAFE pattern, and nothing sets the relays back while the host is silent.
    relays = [f.relays for f in measurements(board, 5)]
    assert relays[-2:] == [(False, False, True)] * 2
    assert set(relays) <= {(True, False, False), (False, False, True)}



# Commands at the edges of docs/protocol.md 2.2, as the fields after the cmd_id.
EDGE_COMMANDS: list[tuple[str, ...]] = [
    ("RELAY", "2", "1"), ("RELAY", "2", "01"), ("RELAY", "2", "00"), ("RELAY", "9", "1"),
    ("RELAY", "2"), ("CAL", "0.4512"), ("CAL", "1e3"), ("CAL", "500"), ("CAL", "0.0005"),
    ("CAL", "-1"), ("WDT", "0"), ("WDT", "70000"), ("SAFE", "010"), ("SAFE", "0101"),
    ("PING", "1"), ("PING", *[""] * 7), ("FLY",), ("FLY", *[""] * 7), (), ("",),
    ("HELLO", "now"),
    # Numbers longer than the firmware reads (10 digits whole, 12 + 12 decimal).
    ("CAL", "1.0000000000000"), ("CAL", "0000000000001.5"), ("CAL", "1.000000000000"),
    ("WDT", "00000000000"), ("WDT", "0000000000"), ("RELAY", "00000000001", "1"),
]


def answer(reply: BoardFrame) -> tuple[str, int | None, str] | None:
    """An ETA as (ETA, cmd_id, result), an ETE as (ETE, None, code); None for the rest."""
    if isinstance(reply, AckFrame):
        return ("ETA", reply.cmd_id, reply.result)
    if isinstance(reply, BoardErrorFrame):
        return ("ETE", None, reply.code)
    return None


async def test_simulated_board_answers_edge_commands_as_the_firmware_does(
    start_board: Callable[..., PtyBoard],
) -> None:
    """The simulated meter stands in for the firmware in the demo and most tests: a command
    one accepts and the other refuses would make those tests prove less than they say."""
    lines = [frame("ETC", str(i), *fields) for i, fields in enumerate(EDGE_COMMANDS, 1)]

    ask_hello = frame("ETC", str(len(lines) + 1), "HELLO")
    board = start_board(*FAST)
    hello(board)
    firmware = []
    for line in lines:
        board.send(line)
        while (got := answer(next_frame(board))) is None:
            pass
        firmware.append(got)
    # Then its hello: what the edge commands left stored (the fail-safe pattern).
    board.send(ask_hello)
    while not isinstance(firmware_hello := next_frame(board), HelloFrame):
        pass

    simulator = SimulatedMeter(start=datetime(2010, 3, 8))
    _, board_path = await simulator.start()
    reader = SlaveReader(board_path)
    simulated = []
    try:
        for line in lines:
            reader.write(line)
            while True:
                reply = await reader.line()
                if not is_blank(reply) and (got := answer(parse_board_line(reply))):
                    break
            simulated.append(got)
        reader.write(ask_hello)
        while is_blank(reply := await reader.line()) or not isinstance(
                simulated_hello := parse_board_line(reply), HelloFrame):
            pass
    finally:
        reader.close()
        await simulator.stop()
    assert simulated == firmware
    assert (simulated_hello.n_relays, simulated_hello.safe) == (
        firmware_hello.n_relays, firmware_hello.safe) == (3, (False, True, False))
    assert [result for _, _, result in firmware].count("OK") == 6

"""The simulated meter: two pseudo-terminals that behave like the real boards.

It replays real household data (`data/uci_replay.csv.gz`, see `data/ATTRIBUTION.md`): an
RPICT3T1 line every 2 s and an ET1 `$ETM` frame every 1 s, so the add-on runs its real
serial, parsing and correction path without hardware.

What the data does not contain is made up, plainly:

* mains frequency: no measurement in the data, every `$ETM` says the nominal 50.00 Hz;
* temperature: no probe in the data, every RPICT line says 20.0 °C;
* gas pulses: no gas meter in the data; the count follows the synthetic boiler profile
  of simulated_gas.py;
* relays: the simulated board has three (on at start, or as the last run left them: a real
  board keeps its relays while the add-on restarts), switching the replay columns
  `relay_columns`; one switched off takes that circuit's power out of the mains reading
  and out of the CT channel replaying the same column.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import logging
import math
import os
import tty
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from .protocol import (
    FIRMWARE_DEFAULT_CAL,
    MAX_RELAYS,
    SEQ_MAX,
    VRMS_MAX_V,
    CommandFrame,
    ProtocolError,
    frame,
    is_blank,
    is_board_uint,
    is_calibration_factor,
    parse_command_line,
)
from .simulated_gas import SimulatedGasMeter
from .statefile import JsonStateFile
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)
# What the board itself sends: a line starting so is an echo of its output (firmware's
# board.cpp counts it as such), never answered with an error.
BOARD_FRAME_PREFIXES: Final = (b"$ETH,", b"$ETM,", b"$ETA,", b"$ETE,")

REPLAY_FILE: Final = "uci_replay.csv.gz"
ROW_SECONDS: Final = 60.0
RPICT_INTERVAL_S: Final = 2.0
BOARD_INTERVAL_S: Final = 1.0
NODE_ID: Final = 11
HAT_MODEL: Final = "rpict3t1"  # the RPICT lines it prints: three powers and a temperature
FIRMWARE_VERSION: Final = "1.5.1-sim"  # speaks firmware 1.5.1's protocol (its hello has `safe`)
NOMINAL_FREQUENCY: Final = "50.00"
TEMPERATURE: Final = "20.0"
# What a board keeps of a command line before giving up on it (the ET1 frame limit, x2).
MAX_COMMAND_BUFFER: Final = 256
# Lines a pty may hold back for a reader that is not reading, before new lines are dropped.
MAX_PENDING_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class ReplayData:
    """The replay slice: one row per minute from `first` (local time of the house)."""

    first: datetime
    columns: dict[str, npt.NDArray[np.float64]]

    @property
    def rows(self) -> int:
        return len(self.columns["voltage_v"])


def load_replay() -> ReplayData:
    """Read the packaged replay slice (csv + numpy, no pandas in the add-on)."""
    raw = resources.files(__package__).joinpath("data", REPLAY_FILE).read_bytes()
    text = gzip.decompress(raw).decode("ascii")
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    first = datetime.fromisoformat(rows[1][0])
    last = datetime.fromisoformat(rows[-1][0])
    if last - first != timedelta(seconds=ROW_SECONDS * (len(rows) - 2)):
        raise ValueError(f"{REPLAY_FILE} is not one row per minute")
    # loadtxt converts in C: five times faster than float() over the csv rows.
    values = np.loadtxt(
        io.StringIO(text), delimiter=",", skiprows=1, usecols=range(1, len(header)),
        dtype=np.float64, ndmin=2,
    )
    return ReplayData(
        first, {name: values[:, i] for i, name in enumerate(header[1:])}
    )


class BoardEnd:
    """The board's (master) end of one pty. Writes never block and never tear a line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.master, self._slave = os.openpty()
        # Raw: no echo of what the board writes, no LF→CRLF translation.
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        # Holding the slave open keeps the pty alive while the reader reconnects.
        self.path = os.ttyname(self._slave)
        self._pending = bytearray()
        self.dropped = 0

    def send(self, line: bytes) -> None:
        if len(self._pending) + len(line) > MAX_PENDING_BYTES:
            # Nobody is reading: drop whole lines rather than block or fill memory.
            self.dropped += 1
            return
        self._pending += line
        try:
            written = os.write(self.master, self._pending)
        except BlockingIOError:
            return
        except OSError as error:
            self.dropped += 1
            self._pending.clear()
            _LOGGER.debug("Simulated %s: write failed (%s)", self.name, error)
            return
        del self._pending[:written]

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


class SimulatedMeter:
    """An RPICT3T1 hat and an ET1 voltage board, replaying `data/uci_replay.csv.gz`.

    The RPICT prints P = P_true * vest / V_true: a 3T1 measures only current and multiplies
    by its configured `vest`, so for a resistive load the printed power is off by the ratio
    of the estimated to the real voltage. The meter's correction with the `$ETM` voltage
    recovers P_true.
    """

    def __init__(
        self,
        speed: float = 1.0,
        vest: float = 230.0,
        channel_columns: Sequence[str] = ("mains_w", "kitchen_w", "water_heater_ac_w"),
        start: datetime | None = None,
        relay_columns: Sequence[str] = ("water_heater_ac_w", "kitchen_w", "laundry_w"),
        # A second simulated meter replays the same data shifted, so the two differ.
        shift: timedelta = timedelta(0),
        # Relay states to start with (relay number → closed), e.g. those saved by the
        # add-on's last run; the others start closed.
        relay_states: Mapping[int, bool] | None = None,
        # Where its calibration and fail-safe pattern outlive a restart, as in the real
        # board's flash (None: in memory only).
        flash: Path | None = None,
        # The house's local time (aware); the default start follows it.
        local_clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (got {speed})")
        self._replay = load_replay()
        missing = [c for c in channel_columns if c not in self._replay.columns]
        if len(channel_columns) != 3 or missing or "voltage_v" in channel_columns:
            raise ValueError(
                f"channel_columns must name 3 power columns of {REPLAY_FILE} "
                f"(got {tuple(channel_columns)})"
            )
        bad_relays = [c for c in relay_columns if c not in self._replay.columns or c in (
            "voltage_v", channel_columns[0])]
        if bad_relays or len(relay_columns) > MAX_RELAYS:
            raise ValueError(
                f"relay_columns must name up to {MAX_RELAYS} circuit columns of {REPLAY_FILE}"
                f" other than the mains column (got {tuple(relay_columns)})"
            )
        self._speed = speed
        self._vest = vest
        self._powers = np.stack([self._replay.columns[c] for c in channel_columns])
        self._channel_columns = tuple(channel_columns)
        self._relay_columns = tuple(relay_columns)
        saved = relay_states or {}
        self.relays = [saved.get(number, True) for number in range(1, len(relay_columns) + 1)]
        # Its Vrms scales with the factor, like the firmware's: a CAL moves what it reads.
        self._cal = FIRMWARE_DEFAULT_CAL
        self._safe = "0" * len(self.relays)  # its fail-safe pattern (SAFE)
        self._flash = None if flash is None else JsonStateFile(flash)
        self._load_flash()
        self._voltages = self._replay.columns["voltage_v"]
        self._duration_s = self._replay.rows * ROW_SECONDS
        self._local_clock = local_clock
        self._start_offset_s = (
            self._offset_of(start) + shift.total_seconds()
        ) % self._duration_s
        # At real speed from the default start, the replay keeps to the local time of day
        # across a DST change (it ran an hour off until a restart).
        self._follows_local_time = start is None and speed == 1.0
        self._utc_offset_at_start = local_clock().utcoffset() or timedelta(0)
        self._started_at = 0.0
        self._seq = 0
        self._rpict: BoardEnd | None = None
        self._board: BoardEnd | None = None
        self._task: asyncio.Task[None] | None = None
        self._commands = bytearray()
        self._gas = SimulatedGasMeter()
        self._last_tick: float | None = None

    def _load_flash(self) -> None:
        saved = None if self._flash is None else self._flash.load()
        if not isinstance(saved, dict):
            return
        cal, safe = str(saved.get("cal")), saved.get("safe")
        if is_calibration_factor(cal):
            self._cal = float(cal)
        if isinstance(safe, str) and len(safe) == len(self.relays) and set(safe) <= {"0", "1"}:
            self._safe = safe

    def _save_flash(self) -> None:
        if self._flash is None:
            return
        try:
            self._flash.save({"cal": f"{self._cal:g}", "safe": self._safe})
        except OSError as error:
            _LOGGER.warning("Simulated voltage board: could not keep its settings in %s (%s)",
                            self._flash.path, error)

    def _offset_of(self, start: datetime | None) -> float:
        """Seconds into the slice to start from."""
        if start is None:
            # Same time of week as now, so the replay looks like today's household.
            now = self._local_clock()
            return (
                now.weekday() * 86400 + now.hour * 3600 + now.minute * 60 + now.second
            ) % self._duration_s
        if start.tzinfo is not None:
            raise ValueError("start is a local time of the replay data: pass a naive datetime")
        offset = (start - self._replay.first).total_seconds()
        if not 0 <= offset < self._duration_s:
            raise ValueError(
                f"start {start} is outside the replay data ({self._replay.first} + "
                f"{self._replay.rows} minutes)"
            )
        return offset

    async def start(self) -> tuple[str, str]:
        """Open both ptys and start the boards; returns (RPICT path, voltage board path)."""
        if self._task is not None:
            raise RuntimeError("the simulated meter is already running")
        loop = asyncio.get_running_loop()
        self._rpict = BoardEnd("RPICT")
        self._board = BoardEnd("voltage board")
        self._started_at = loop.time()
        loop.add_reader(self._board.master, self._read_commands)
        self._task = asyncio.create_task(self._run(), name="energy_tracker simulator")
        _LOGGER.info(
            "Simulated meter on %s (RPICT) and %s (voltage board), speed %g",
            self._rpict.path, self._board.path, self._speed,
        )
        return self._rpict.path, self._board.path

    async def stop(self) -> None:
        """Stop writing and close both ptys."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._board is not None:
            asyncio.get_running_loop().remove_reader(self._board.master)
        for end in (self._rpict, self._board):
            if end is not None:
                end.close()
        self._rpict = self._board = None

    def _row(self, now: float) -> int:
        offset = self._start_offset_s + (now - self._started_at) * self._speed
        if self._follows_local_time:
            utc_offset = self._local_clock().utcoffset() or timedelta(0)
            offset += (utc_offset - self._utc_offset_at_start).total_seconds()
        return int((offset % self._duration_s) // ROW_SECONDS)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._board is not None
        self._board.send(b"\r\n")  # as the firmware boots: an empty line, then the hello
        self._send_hello()
        ticks_per_rpict = round(RPICT_INTERVAL_S / BOARD_INTERVAL_S)
        tick = 0
        next_tick = loop.time()
        while True:
            now = loop.time()
            row = self._row(now)
            if self._last_tick is not None:
                hour = (self._replay.first + timedelta(minutes=row)).hour
                # The flow of the replayed hour over wall time, as the meter integrates
                # replayed power: at 60x an hour of gas is an hour's worth, not 60.
                self._gas.advance(hour, now - self._last_tick)
            self._last_tick = now
            self._send_measurement(row)
            if tick % ticks_per_rpict == 0:
                self._send_rpict(row)
            tick += 1
            # A schedule, not a fixed sleep, so the cadence does not drift; after a stall
            # (suspended process) carry on from now instead of sending a burst.
            next_tick = max(next_tick + BOARD_INTERVAL_S, loop.time())
            await asyncio.sleep(next_tick - loop.time())

    # ------------------------------------------------------------------ RPICT

    def true_powers(self, row: int) -> list[float]:
        """The channels' true powers at `row` with the open relays' circuits taken out."""
        powers = [float(p) for p in self._powers[:, row]]
        for column, closed in zip(self._relay_columns, self.relays, strict=True):
            if closed:
                continue
            circuit = float(self._replay.columns[column][row])
            # The first channel is the mains clamp (constructor check): it loses the circuit.
            powers[0] = max(powers[0] - circuit, 0.0)
            for i, channel_column in enumerate(self._channel_columns[1:], start=1):
                if channel_column == column:
                    powers[i] = 0.0
        return powers

    def current_row(self) -> int:
        return self._row(asyncio.get_running_loop().time())

    def _send_rpict(self, row: int) -> None:
        assert self._rpict is not None
        scale = self._vest / self._voltages[row]
        powers = " ".join(f"{p * scale:.1f}" for p in self.true_powers(row))
        self._rpict.send(f"{NODE_ID} {powers} {TEMPERATURE}\r\n".encode("ascii"))

    # ------------------------------------------------------------------ ET1 board

    def _next_seq(self) -> str:
        seq, self._seq = self._seq, (self._seq + 1) % (SEQ_MAX + 1)
        return str(seq)

    def _send_board(self, type_: str, *fields: str) -> None:
        assert self._board is not None
        self._board.send(frame(type_, self._next_seq(), *fields))

    def _send_hello(self) -> None:
        self._seq = 0  # the hello starts the sequence again (docs/protocol.md 2.1)
        self._send_board("ETH", FIRMWARE_VERSION, str(len(self.relays)), f"{self._cal:g}",
                         "power_on", self._safe)

    def _relay_field(self) -> str:
        return "".join("1" if closed else "0" for closed in self.relays)

    def _send_measurement(self, row: int) -> None:
        # No ADC behind it: the replayed voltage under the default factor, scaled by a CAL.
        vrms = self._voltages[row] * self._cal / FIRMWARE_DEFAULT_CAL
        self._send_board(
            # Above the range, empty as the firmware sends it: a whole frame refused took
            # the relays, gas and frequency with it.
            "ETM", f"{vrms:.2f}" if 0.0 <= vrms <= VRMS_MAX_V else "",
            NOMINAL_FREQUENCY,
            self._relay_field(),
            str(self._gas.pulses),
        )

    def _read_commands(self) -> None:
        assert self._board is not None
        try:
            chunk = os.read(self._board.master, 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no one has the slave open: nothing to read
        self._commands += chunk
        while (end := self._commands.find(b"\n")) >= 0:
            line = bytes(self._commands[: end + 1])
            del self._commands[: end + 1]
            self._answer(line)
        if len(self._commands) > MAX_COMMAND_BUFFER:
            self._commands.clear()
            self._send_board("ETE", "ELEN")

    def _answer(self, line: bytes) -> None:
        if is_blank(line) or line.startswith(BOARD_FRAME_PREFIXES):
            return  # the board's own frames echoed back: no error (docs/protocol.md)
        try:
            command = parse_command_line(line)
        except ProtocolError as error:
            code = {"crc": "ECRC", "length": "ELEN"}.get(error.reason, "EFRAME")
            self._send_board("ETE", code)
            return
        result = _result(command, len(self.relays))
        if result == "OK" and command.command == "RELAY":
            self.relays[int(command.args[0]) - 1] = command.args[1] == "1"
        elif result == "OK" and command.command == "CAL":
            self._cal = float(command.args[0])
            self._save_flash()
        elif result == "OK" and command.command == "SAFE":
            self._safe = command.args[0]
            self._save_flash()
        self._send_board("ETA", str(command.cmd_id), result, self._relay_field())
        if command.command == "HELLO" and not command.args:
            self._send_hello()


def _result(command: CommandFrame, n_relays: int) -> str:
    """The simulated board's answer to one command."""
    name, args = command.command, command.args
    if name in ("PING", "HELLO"):
        return "OK" if not args else "EBADARG"
    if name == "RELAY":
        ok = (
            len(args) == 2 and is_board_uint(args[0]) and 1 <= int(args[0]) <= n_relays
            and args[1] in ("0", "1")
        )
        return "OK" if ok else "EBADARG"
    if name == "CAL":
        return "OK" if len(args) == 1 and is_calibration_factor(args[0]) else "EBADARG"
    if name == "WDT":
        ok = len(args) == 1 and is_board_uint(args[0]) and int(args[0]) <= SEQ_MAX
        return "OK" if ok else "EBADARG"
    if name == "SAFE":
        ok = len(args) == 1 and len(args[0]) == n_relays and set(args[0]) <= {"0", "1"}
        return "OK" if ok else "EBADARG"
    return "EBADCMD"

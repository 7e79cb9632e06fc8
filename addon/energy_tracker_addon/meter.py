"""The meter model: serial lines in, current state and energy counters out.

Applies the voltage correction of docs/protocol.md section 1, integrates energy, tracks
staleness, and builds the `/api/v1/state` object of docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from .config import Options, check_hat_channels
from .gas import GasCounter
from .log_limit import LogLimit
from .metrics import Metrics, or_nan
from .persistence import CounterStore, EnergyCounters
from .protocol import (
    AckFrame,
    BoardErrorFrame,
    BoardFrame,
    HelloFrame,
    MeasurementFrame,
    ProtocolError,
    RpictParser,
    is_blank,
    is_text,
    parse_board_line,
)
from .statefile import WriteTrouble
from .tasks import cancel_and_wait

_LOGGER = logging.getLogger(__name__)


class _Labelled(logging.LoggerAdapter[logging.Logger]):
    """Log lines that name the meter they are about."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{(self.extra or {}).get('label')}: {msg}", kwargs


type Board = Literal["rpict", "voltage"]
type Listener = Callable[[dict[str, Any]], None]
type FrameListener = Callable[[BoardFrame], None]

CHECK_INTERVAL_S: Final = 0.5
# Without readings nothing publishes, yet parts of the state go on changing with time (a
# new day's totals are unknown, a forecast expires): sent again this often meanwhile.
STALE_REPUBLISH_S: Final = 60.0
MIN_MAINS_VRMS: Final = 50.0  # V; rpict_vest's lower bound: below it no mains is measured
SILENT_FRAMES: Final = 5  # voltage-board frames (1/s) without any wave before it is said
REJECT_LOG_INTERVAL_S: Final = 10.0
# A port closing again and again (serial_link's flapping) is said once per this interval.
PORT_LOG_INTERVAL_S: Final = 300.0
HELLO_REPLY_WAIT_S: Final = 5.0  # a requested hello comes within the command timeout
SEQ_MODULUS: Final = 65_536
# A measurement a second, at most 5 errors a second, an acknowledgement per command.
MAX_BOARD_FRAMES_PER_S: Final = 10
JOULES_PER_KWH: Final = 3_600_000.0


def iso_utc(moment: datetime) -> str:
    """`2026-11-24T10:15:02.113Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# The hello `reset` causes that mean the firmware failed (docs/protocol.md 2.1), for the log.
_FAILED_BOOT_CAUSES: Final = {
    "hw_watchdog": "a hardware watchdog reset (the firmware stopped running)",
    "soft_watchdog": "a software watchdog reset (the firmware got stuck for seconds)",
    "exception": "a crash (an exception in the firmware)",
}


@dataclass(slots=True)
class _BoardState:
    connected: bool = False
    last_frame: datetime | None = None
    lines_ok: int = 0
    lines_rejected: int = 0
    # A port that opens but never sends a line (the wrong UART, the Pi's serial console on
    # it, a hat not seated) is said once per opening: nothing else would say it.
    connected_at: float | None = None  # monotonic
    lines_at_connect: int = 0
    silence_said: bool = False
    # Logging of rejected lines, and of the voltage board's ETE frames (a noisy line makes
    # many of both).
    reject_log: LogLimit = field(default_factory=lambda: LogLimit(REJECT_LOG_INTERVAL_S))
    board_error_log: LogLimit = field(
        default_factory=lambda: LogLimit(REJECT_LOG_INTERVAL_S))
    # The port closing and the values coming back: two lines per drop of a flapping port.
    port_log: LogLimit = field(default_factory=lambda: LogLimit(PORT_LOG_INTERVAL_S))
    quiet_return: bool = False  # its closing was held back: so is the values' return


# Measured voltage / rpict_vest outside this: the option is not the hat's Vest (mains
# voltage stays within ~10 % of its nominal value).
VEST_PLAUSIBLE: Final = (0.8, 1.25)
_NAMES: Final[dict[Board, str]] = {"rpict": "RPICT", "voltage": "Voltage board"}
_SILENT_PORT_HINTS: Final[dict[Board, str]] = {
    "rpict": "is it the hat's port (on a Raspberry Pi: /dev/ttyAMA0 or /dev/serial0 with the "
             "serial console off and the UART on), and is the hat seated?",
    "voltage": "is it the ESP8266 board's port (a USB serial adapter: /dev/ttyUSB0), and is "
               "the board powered and flashed?",
}
# A voltage-board frame starts like this; an RPICT line is numbers and spaces.
_BOARD_FRAME_START: Final = b"$ET"
_RPICT_LINE: Final = re.compile(rb"^\s*-?\d+(\.\d+)?(\s+-?\d+(\.\d+)?){3,}\s*$")


def _reject_hint(name: Board, line: bytes, error: ProtocolError,
                 speeds_differ: bool = False) -> str:
    """What a rejected line suggests the user check, when it suggests anything.
    `speeds_differ`: both ports are set, at different baud rates: swapped ports read each
    board at the other's speed, bytes that are not text, never the other's lines."""
    if name == "rpict" and line.lstrip().startswith(_BOARD_FRAME_START):
        return " (the voltage board's protocol: rpict_port and voltage_port swapped?)"
    if name == "voltage" and _RPICT_LINE.match(line):
        return " (an RPICT hat's line: rpict_port and voltage_port swapped?)"
    # An overlong line of non-text bytes is the wrong baud rate too (its newlines are lost).
    if error.reason == "encoding" or (
            error.reason == "length" and not is_text(line)):
        option = "rpict_baudrate" if name == "rpict" else "voltage_baudrate"
        swapped = ", or rpict_port and voltage_port swapped" if speeds_differ else ""
        return f" (bytes like these come from the wrong baud rate: check {option}{swapped})"
    return ""


class Meter:
    """State of the whole meter, fed line by line by the serial links (or the simulator)."""

    def __init__(
        self,
        options: Options,
        store: CounterStore,
        metrics: Metrics,
        meter_id: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gas: GasCounter | None = None,
        label: str = "",
    ) -> None:
        check_hat_channels(options)
        # An extra meter's lines name it: "No RPICT reading" must not read as the house's.
        self._log: logging.Logger | _Labelled = (
            _Labelled(_LOGGER, {"label": label}) if label else _LOGGER)
        self._options = options
        self._store = store
        self._metrics = metrics
        self._meter_id = meter_id
        self._clock = clock
        self._wall_clock = wall_clock
        self._parser = RpictParser(options.rpict_model)
        self._speeds_differ = bool(options.rpict_port and options.voltage_port
                                   and options.rpict_baudrate != options.voltage_baudrate)
        self._channels = options.channels
        mains = [i for i, c in enumerate(self._channels) if c.role == "mains"]
        self._total_indices = mains or list(range(len(self._channels)))
        if not mains and len(self._channels) > 1:
            # Right for circuits that make up the house; a mains clamp left as `circuit`
            # beside them would count the house twice.
            self._log.info("No channel has role mains: the total is the sum of every channel "
                           "(%s)", ", ".join(str(c.id) for c in self._channels))
        # The voltage board exists when configured, or simulated along with the RPICT.
        self._has_voltage_board = bool(options.voltage_port) or not options.rpict_port

        self._vest_said = False  # a measured voltage far from rpict_vest, said once a run
        self._boards: dict[Board, _BoardState] = {"rpict": _BoardState()}
        if self._has_voltage_board:
            self._boards["voltage"] = _BoardState()

        # RPICT readings (configured channels, in option order; corrected powers).
        self._powers: list[float] = [0.0] * len(self._channels)
        self._currents: list[float | None] = [None] * len(self._channels)
        self._power_factors: list[float | None] = [None] * len(self._channels)
        self._total_power = 0.0
        self._temperature: float | None = None
        self._hat_voltage: float | None = None
        self._last_rpict: float | None = None
        self._available = False

        # Voltage board readings.
        self._vrms: float | None = None
        # Why the board's voltage is unusable ("low", "clipped", "silent"), as last warned
        # (once per cause), or None.
        self._vrms_problem: str | None = None
        self._silent_frames = 0  # frames in a row with neither voltage nor frequency
        self._frequency: float | None = None
        self._last_measurement: float | None = None
        self._voltage_fresh = False
        # None while unknown: no frame yet, board unplugged, or rebooted (hello, no ETM yet).
        self._relays: tuple[bool, ...] | None = None
        # The relays when the voltage board's port last closed (None: not since its first
        # measurement after): a USB board resets when plugged in again, relays and all.
        self._relays_at_close: tuple[bool, ...] | None = None
        self._gas_pulses: int | None = None
        self._fw_version: str | None = None
        self._boot_cause: str | None = None  # the last hello's `reset` (firmware ≥ 1.4.0)
        self._hello_expected_until: float | None = None  # the add-on asked for a hello
        self._last_seq: int | None = None
        self._last_seq_at = 0.0  # clock() of the frame that carried it
        self._frames_lost = 0

        counters = store.load()
        if counters is None:
            counters = EnergyCounters(0.0, wall_clock())
            self._unsaved = True
        else:
            self._unsaved = False
        self._since = counters.since
        self._energy_total = counters.total_kwh
        self._energy_channels = [counters.channels_kwh.get(c.id, 0.0) for c in self._channels]
        # Counters of channels no longer configured are kept as they were: the counter file
        # never loses a value, and a channel put back resumes where it stopped.
        configured = {c.id for c in self._channels}
        self._retired_channels = {
            key: kwh for key, kwh in counters.channels_kwh.items() if key not in configured}
        self._last_persist = clock()
        self._live_trouble = WriteTrouble(
            _LOGGER, "Could not write the energy counters' live copy: %s")
        self._persist_trouble = WriteTrouble(
            _LOGGER, "Could not write the energy counters: %s", "Energy counters written again")

        self._seq = 0
        self._timestamp = wall_clock()
        self._listeners: list[Listener] = []
        self._last_sent: float | None = None  # the listeners' last state (monotonic)
        self._observers: list[Listener] = []
        self._gas = gas
        self._frame_listeners: list[FrameListener] = []
        self._state_parts: dict[str, Callable[[], Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._update_energy_metrics()

    # ------------------------------------------------------------------ input

    def feed_rpict_line(self, line: bytes) -> None:
        """One line from the RPICT hat."""
        if is_blank(line):
            return
        board = self._boards["rpict"]
        self._metrics.serial_lines.labels("rpict").inc()
        try:
            frame = self._parser.parse(line)
        except ProtocolError as error:
            self._reject("rpict", board, line, error)
            return
        now = self._clock()
        board.lines_ok += 1
        board.last_frame = self._wall_clock()
        vest = self._options.rpict_vest
        hat_voltages = frame.voltages_v
        measured = self._last_measurement
        if (
            hat_voltages is None
            and self._vrms is not None
            and measured is not None
            and now - measured <= self._options.stale_after_s
        ):
            scale = self._vrms / vest
            if not VEST_PLAUSIBLE[0] <= scale <= VEST_PLAUSIBLE[1] and not self._vest_said:
                self._vest_said = True
                self._log.warning(
                    "The voltage board measures %.1f V but rpict_vest is %g V: powers are "
                    "scaled by %.2f. Set rpict_vest to the voltage the hat's firmware assumes "
                    "(its Vest: 230 or 240 V in most of the world, 120 V in North America)",
                    self._vrms, vest, scale)
        else:
            # Without a measured voltage the printed power stands (docs/protocol.md §1).
            scale = 1.0
        powers: list[float] = []
        for i, channel in enumerate(self._channels):
            printed = frame.powers_w[channel.id - 1]
            if hat_voltages is None:
                powers.append(printed * scale)
                self._currents[i] = abs(printed) / vest
                self._power_factors[i] = None
            else:
                # Hats with a voltage input print real power and their own Irms and Vrms;
                # power factors use V1 (the only Vrms of the ...v1 hats).
                current = frame.currents_a[channel.id - 1] if frame.currents_a else None
                self._currents[i] = current
                self._power_factors[i] = _power_factor(printed, hat_voltages[0], current)
                powers.append(printed)
        total = sum(powers[i] for i in self._total_indices)

        previous = self._last_rpict
        # Not across a time shown as unavailable (stale), however short past stale_after_s.
        if (previous is not None and self._available
                and 0.0 < now - previous <= self._options.joined_within_s):
            self._integrate(now - previous, powers, total)
            self._save_live()
        self._powers = powers
        self._total_power = total
        self._temperature = frame.temperature_c
        self._hat_voltage = hat_voltages[0] if hat_voltages else None
        self._last_rpict = now
        if not self._available:
            self._log.log(logging.DEBUG if board.quiet_return else logging.INFO,
                          "RPICT readings available")
            board.quiet_return = False
        self._available = True
        self._update_power_metrics()
        self._publish()

    def feed_voltage_line(self, line: bytes) -> None:
        """One line from the ESP8266 voltage board."""
        if is_blank(line):
            return  # the board starts every boot with one (docs/protocol.md)
        board = self._boards.get("voltage")
        if board is None:
            board = self._boards["voltage"] = _BoardState()
            self._has_voltage_board = True
        self._metrics.serial_lines.labels("voltage").inc()
        try:
            frame = parse_board_line(line)
        except ProtocolError as error:
            self._reject("voltage", board, line, error)
            return
        board.lines_ok += 1
        board.last_frame = self._wall_clock()
        self._count_lost_frames(frame.seq, restart=isinstance(frame, HelloFrame))
        for frame_listener in list(self._frame_listeners):
            try:
                frame_listener(frame)
            except Exception:
                self._log.exception("Voltage board frame listener %r failed", frame_listener)
        if isinstance(frame, MeasurementFrame):
            self._vrms = self._usable_vrms(frame)
            self._frequency = frame.frequency_hz
            self._say_relays_dropped_by_a_replug(frame.relays)
            self._relays = frame.relays
            self._gas_pulses = frame.gas_pulses
            if self._gas is not None:
                self._gas.update(frame.gas_pulses)
                self._gas.save_live()
            self._last_measurement = self._clock()
            self._metrics.voltage_v.set(or_nan(self._voltage()))
            self._metrics.frequency_hz.set(or_nan(frame.frequency_hz))
            if not self._voltage_fresh:
                self._voltage_fresh = True
                self._publish()
        elif isinstance(frame, AckFrame):
            self._relays = frame.relays
        elif isinstance(frame, HelloFrame):
            self._on_hello(frame)
            self._boot_cause = frame.reset
            self._relays = None  # a (re)booted board: in its boot state until its first ETM
            if frame.fw_version != self._fw_version:
                self._log.info(
                    "Voltage board firmware %s, %d relays", frame.fw_version, frame.n_relays
                )
            self._fw_version = frame.fw_version
        elif isinstance(frame, BoardErrorFrame):
            self._log_board_error(board, frame.code)

    def expect_hello(self) -> None:
        """The add-on asked the voltage board for its hello: that one is not a reboot."""
        self._hello_expected_until = self._clock() + HELLO_REPLY_WAIT_S

    def _on_hello(self, frame: HelloFrame) -> None:
        """Warn of a board that rebooted under a running add-on: its relays went to their
        boot state without any command (a brown-out, a crash, its reset button). Warn of a
        boot the firmware's failure caused whenever it is new."""
        expected, self._hello_expected_until = self._hello_expected_until, None
        failure = _FAILED_BOOT_CAUSES.get(frame.reset or "")
        if expected is not None and self._clock() <= expected:
            if failure and frame.reset != self._boot_cause:  # a boot before this add-on run
                self._log.warning("The voltage board last started after %s (firmware %s)",
                                  failure, frame.fw_version)
            return
        if failure:
            self._log.warning("The voltage board restarted after %s (firmware %s): its relays "
                              "are in their boot (fail-safe) state until switched again. If "
                              "it repeats, report it with this log", failure, frame.fw_version)
        # Without a measurement on this connection it is the boot that opening the port
        # caused (USB boards reset on DTR), not news.
        elif self._last_measurement is not None:
            self._log.warning("The voltage board restarted%s: its relays are in their boot "
                              "(fail-safe) state until switched again",
                              "" if frame.reset is None else f" ({frame.reset})")

    def _say_relays_dropped_by_a_replug(self, relays: tuple[bool, ...]) -> None:
        """After the port reopened, relays that were on and are now off: the board reset
        (a USB board does when plugged in) without any command, and the hello the add-on
        asked for on reconnecting is not news by itself."""
        before, self._relays_at_close = self._relays_at_close, None
        if before is None:
            return
        # A board with fewer relays than before: the relays it still has.
        pairs = zip(before, relays, strict=False)
        dropped = [str(n) for n, (was, now) in enumerate(pairs, start=1) if was and not now]
        if dropped:
            self._log.warning(
                "Voltage board relays on before its port closed and off since it opened "
                "again: %s. The board restarted (a USB board does when plugged in): its "
                "relays are in their boot (fail-safe) state until switched again",
                ", ".join(dropped))

    def _log_board_error(self, board: _BoardState, code: str) -> None:
        held_back = board.board_error_log.due(self._clock())
        if held_back is None:
            return
        more = f" ({held_back} more since the last message)" if held_back else ""
        self._log.warning("Voltage board rejected a command line: %s%s", code, more)

    def set_board_connected(self, board: Board, connected: bool) -> None:
        """Told by the serial link when its port opens or closes."""
        state = self._boards.get(board)
        if state is None or state.connected == connected:
            return
        state.connected = connected
        if connected:
            state.connected_at = self._clock()
            state.lines_at_connect = state.lines_ok + state.lines_rejected
            state.silence_said = False
        else:
            self._port_closed(board)
        self._publish()

    def _port_closed(self, board: Board) -> None:
        """A closed port sends nothing more: its values go at once, not after
        stale_after_s, and no energy is integrated across the time it was out."""
        # Info: the link logs an unplug as a warning, and a stop closes the ports too.
        if board == "rpict":
            self._last_rpict = None
            if self._available:
                self._port_closed_line(board, "RPICT port closed: values unavailable")
                self._rpict_gone()
        elif board == "voltage":
            self._relays_at_close = self._relays or self._relays_at_close
            self._relays = None
            self._last_measurement = None
            if self._voltage_fresh:
                self._port_closed_line(
                    board, f"Voltage board port closed: using vest {self._options.rpict_vest:g} V")
                self._voltage_gone()

    def _port_closed_line(self, board: Board, message: str) -> None:
        state = self._boards[board]
        held_back = state.port_log.due(self._clock())
        state.quiet_return = held_back is None
        if held_back is None:
            self._log.debug("%s", message)
        else:
            more = f" (closed {held_back} more times since the last message)" if held_back else ""
            self._log.info("%s%s", message, more)

    def _rpict_gone(self) -> None:
        self._available = False
        self._update_power_metrics()

    def _voltage_gone(self) -> None:
        """Powers are scaled with the vest again; voltage and frequency are unknown."""
        self._voltage_fresh = False
        self._metrics.voltage_v.set(or_nan(self._voltage()))  # the hat's, if it has one
        self._metrics.frequency_hz.set(math.nan)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the staleness and persistence checks."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="energy_tracker meter")

    async def stop(self) -> None:
        """Stop the checks and write the energy counters."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.persist()

    def persist(self) -> None:
        """Write the energy counters if they changed since the last write."""
        self._last_persist = self._clock()
        if self._gas is not None:
            self._gas.persist()
        if not self._unsaved:
            return
        try:
            self._store.save(self._counters())
        except OSError as error:
            self._persist_trouble.failed(error)  # retried at every interval
            return
        self._persist_trouble.succeeded()
        self._unsaved = False

    def _save_live(self) -> None:
        """Called before the counters are published: a restart after a crash or kill then
        resumes from what was shown, so no consumer ever sees a counter step back."""
        try:
            self._store.save_live(self._counters())
        except OSError as error:
            self._live_trouble.failed(error)
        else:
            self._live_trouble.succeeded()

    def _counters(self) -> EnergyCounters:
        channels = dict(self._retired_channels)
        channels.update(zip((c.id for c in self._channels), self._energy_channels, strict=True))
        return EnergyCounters(self._energy_total, self._since, channels)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                self._check_staleness()
                if not self._available and self._last_sent is not None and (
                        self._clock() - self._last_sent >= STALE_REPUBLISH_S):
                    self.republish()
                if self._clock() - self._last_persist >= self._options.persist_interval_s:
                    self.persist()
            except Exception:
                # This loop is what makes values go stale: a bug must not end it silently.
                self._log.exception("Meter check failed")

    def _check_staleness(self) -> None:
        now = self._clock()
        stale_after = self._options.stale_after_s
        changed = False
        if self._available and (
            self._last_rpict is None or now - self._last_rpict > stale_after
        ):
            self._log.warning("No RPICT reading for %d s: values unavailable", stale_after)
            self._rpict_gone()
            changed = True
        if self._voltage_fresh and (
            self._last_measurement is None or now - self._last_measurement > stale_after
        ):
            self._log.warning(
                "No voltage-board measurement for %d s: using vest %g V",
                stale_after, self._options.rpict_vest,
            )
            self._voltage_gone()
            changed = True
        if changed:
            self._publish()
        for name, board in self._boards.items():
            self._say_if_silent(name, board, now, stale_after)

    def _say_if_silent(self, name: Board, board: _BoardState, now: float,
                       wait_s: float) -> None:
        if (not board.connected or board.silence_said or board.connected_at is None
                or now - board.connected_at <= wait_s
                or board.lines_ok + board.lines_rejected > board.lines_at_connect):
            return
        board.silence_said = True
        port = self._options.rpict_port if name == "rpict" else self._options.voltage_port
        self._log.warning("%s port %s has sent nothing in %d s since it opened: %s", _NAMES[name],
                          port, wait_s, _SILENT_PORT_HINTS[name])

    # ------------------------------------------------------------------ output

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """`callback(snapshot)` after every reading and availability change; returns remove."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def add_frame_listener(self, callback: FrameListener) -> Callable[[], None]:
        """`callback(frame)` for every valid voltage-board frame (e.g. command acks)."""
        self._frame_listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._frame_listeners.remove(callback)

        return remove

    def add_observer(self, callback: Listener) -> Callable[[], None]:
        """Like add_listener, but called before every listener: state parts it updates
        are current in the snapshot the listeners (the stream) get."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    def add_state_part(self, key: str, part: Callable[[], Any]) -> None:
        """Put `part()` under `key` in every snapshot (state owned by another module)."""
        self._state_parts[key] = part

    @property
    def available(self) -> bool:
        """True while the RPICT board sends fresh readings."""
        return self._available

    @property
    def fw_version(self) -> str | None:
        """The voltage board's firmware version from its last hello, if any."""
        return self._fw_version

    @property
    def relays(self) -> tuple[bool, ...] | None:
        """The voltage board's reported relay states (relay 1 first); None while unknown."""
        return self._relays

    def board_connected(self, board: Board) -> bool:
        state = self._boards.get(board)
        return state is not None and state.connected

    def info_channels(self) -> list[dict[str, Any]]:
        """The channel list of /api/v1/info."""
        return [{"id": c.id, "name": c.name, "role": c.role} for c in self._channels]

    def energy(self) -> dict[str, Any]:
        """The /api/v1/energy object."""
        return {
            "total_energy_kwh": round(self._energy_total, 6),
            "since": self._since.astimezone(UTC).isoformat(timespec="seconds").replace(
                "+00:00", "Z"
            ),
            "channels": [
                {"id": c.id, "energy_kwh": round(e, 6)}
                for c, e in zip(self._channels, self._energy_channels, strict=True)
            ],
        }

    def _voltage(self) -> float | None:
        """The mains voltage shown: the hat's own while it reads (its ...v hats), else the
        voltage board's while fresh."""
        if self._available and self._hat_voltage is not None:
            return self._hat_voltage
        return self._vrms if self._voltage_fresh else None

    def snapshot(self) -> dict[str, Any]:
        """The /api/v1/state object of docs/api.md (JSON-ready)."""
        available = self._available
        voltage = self._voltage()
        channels = [
            {
                "id": channel.id,
                "name": channel.name,
                "role": channel.role,
                "power_w": round(self._powers[i], 2) if available else None,
                "current_a": _round(self._currents[i], 3) if available else None,
                "power_factor": _round(self._power_factors[i], 3) if available else None,
                "energy_kwh": round(self._energy_channels[i], 6),
            }
            for i, channel in enumerate(self._channels)
        ]
        boards: dict[str, Any] = {
            name: {
                "connected": state.connected,
                "last_frame": iso_utc(state.last_frame) if state.last_frame else None,
                "lines_ok": state.lines_ok,
                "lines_rejected": state.lines_rejected,
            }
            for name, state in self._boards.items()
        }
        if "voltage" in boards:
            boards["voltage"]["frames_lost"] = self._frames_lost
            boards["voltage"]["boot_cause"] = self._boot_cause
            boards["voltage"]["relays"] = None if self._relays is None else list(self._relays)
        return {
            "meter_id": self._meter_id,
            "seq": self._seq,
            "timestamp": iso_utc(self._timestamp),
            "available": available,
            "total_power_w": round(self._total_power, 2) if available else None,
            "total_energy_kwh": round(self._energy_total, 6),
            "voltage_v": _round(voltage, 2),
            "frequency_hz": _round(self._frequency, 3) if self._voltage_fresh else None,
            "temperature_c": _round(self._temperature, 2) if available else None,
            "power_factor": _round(self._total_power_factor(), 3) if available else None,
            "channels": channels,
            "boards": boards,
            "gas_m3": None if self._gas is None else _round(self._gas.m3, 4),
        } | {key: part() for key, part in self._state_parts.items()}

    # ------------------------------------------------------------------ internals

    def _integrate(self, seconds: float, powers: list[float], total: float) -> None:
        """Trapezoid rule on imported power (max(P, 0)) since the previous frame."""
        factor = seconds / 2.0 / JOULES_PER_KWH
        for i, power in enumerate(powers):
            self._energy_channels[i] += (max(self._powers[i], 0.0) + max(power, 0.0)) * factor
        self._energy_total += (max(self._total_power, 0.0) + max(total, 0.0)) * factor
        self._unsaved = True
        self._update_energy_metrics()

    def _total_power_factor(self) -> float | None:
        if self._hat_voltage is None:
            return None
        apparent = 0.0
        for i in self._total_indices:
            current = self._currents[i]
            if current is None:
                return None
            apparent += self._hat_voltage * current
        return _power_factor(self._total_power, 1.0, apparent)

    def _usable_vrms(self, frame: MeasurementFrame) -> float | None:
        """The frame's Vrms if it can be mains; why there is none is said once."""
        vrms = frame.vrms_v
        silent = vrms is None and frame.frequency_hz is None
        self._silent_frames = self._silent_frames + 1 if silent else 0
        cause = text = None
        if vrms is not None and vrms < MIN_MAINS_VRMS:
            # Scaling by it would zero every power (and stop the energy) while loads run.
            cause, text = "low", f"reads {vrms:g} V: the ZMPT101B is unplugged or CAL is wrong"
            vrms = None
        elif vrms is None and frame.frequency_hz is not None:
            cause, text = "clipped", (
                "sees the mains but sends no voltage: the ZMPT101B signal clips the ADC "
                "(turn its trimmer down) or reads above 500 V (check CAL)")
        elif self._silent_frames >= SILENT_FRAMES:
            # The firmware drops signals under 20 ADC counts: no wave at all arrives as
            # empty fields, not as a low voltage (a frame or two can while it starts).
            cause, text = "silent", (
                "sees no mains wave (no voltage, no frequency): the ZMPT101B is unplugged "
                "or unpowered, or the mains it watches is off")
        if cause is not None and cause != self._vrms_problem:
            self._log.warning("The voltage board %s. Powers use rpict_vest meanwhile", text)
            self._vrms_problem = cause
        elif cause is None and self._vrms_problem and vrms is not None:
            self._log.info("The voltage board sends the mains voltage again")
            self._vrms_problem = None
        return vrms

    def _count_lost_frames(self, seq: int, *, restart: bool) -> None:
        now = self._clock()
        last, self._last_seq = self._last_seq, seq
        elapsed, self._last_seq_at = now - self._last_seq_at, now
        if restart or last is None:
            return
        gap = (seq - last - 1) % SEQ_MODULUS
        if gap == SEQ_MODULUS - 1:
            return  # the same seq again: a repeat, nothing lost
        if gap >= SEQ_MODULUS // 2 or gap > MAX_BOARD_FRAMES_PER_S * elapsed + 10:
            # More than the board could have sent meanwhile: it restarted and its hello was
            # lost (after 9 h up, seq 1 after 36000 read as 29535 frames lost).
            self._log.info("Voltage board sequence restarted (%d after %d)", seq, last)
            return
        if gap:
            self._frames_lost += gap
            self._metrics.serial_frames_lost.inc(gap)

    def _reject(self, name: Board, board: _BoardState, line: bytes, error: ProtocolError) -> None:
        board.lines_rejected += 1
        self._metrics.serial_lines_rejected.labels(name, error.reason).inc()
        held_back = board.reject_log.due(self._clock())
        if held_back is None:
            return
        more = f" ({held_back} more rejected since the last message)" if held_back else ""
        self._log.warning("Rejected %s line %r: %s%s%s", name, line[:80], error, more,
                          _reject_hint(name, line, error, self._speeds_differ))

    def _update_power_metrics(self) -> None:
        metrics = self._metrics
        available = self._available
        metrics.total_power_w.set(self._total_power if available else math.nan)
        # As the state shows it: a ...v hat's own voltage was never exported (helper 95).
        metrics.voltage_v.set(or_nan(self._voltage()))
        for channel, power in zip(self._channels, self._powers, strict=True):
            metrics.channel_power_w.labels(str(channel.id), channel.name).set(
                power if available else math.nan
            )

    def _update_energy_metrics(self) -> None:
        self._metrics.total_energy_kwh.set(self._energy_total)
        for channel, energy in zip(self._channels, self._energy_channels, strict=True):
            self._metrics.channel_energy_kwh.labels(str(channel.id), channel.name).set(energy)

    def _publish(self) -> None:
        self._seq += 1
        self._timestamp = self._wall_clock()
        if self._observers:
            reading = self.snapshot()
            for observer in list(self._observers):
                try:
                    observer(reading)
                except Exception:
                    self._log.exception("State observer %r failed", observer)
        self._notify_listeners()

    def republish(self) -> None:
        """Send the current state to the listeners again, without a new reading (same
        `seq`, observers not called): a part another module owns changed while this
        meter has no fresh reading to carry it."""
        self._notify_listeners()

    def _notify_listeners(self) -> None:
        self._last_sent = self._clock()
        if not self._listeners:
            return
        snapshot = self.snapshot()
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                self._log.exception("State listener %r failed", listener)


def _power_factor(power: float, voltage: float, current: float | None) -> float | None:
    if current is None:
        return None
    apparent = voltage * current
    if apparent <= 0.0:
        return None
    return max(-1.0, min(1.0, power / apparent))

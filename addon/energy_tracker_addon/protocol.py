"""Parsers and encoders for the serial lines in docs/protocol.md.

Pure functions and immutable frames, no I/O. Every parser either returns a frame whose
values are finite and inside the documented ranges, or raises `ProtocolError` with one of
the documented rejection reasons; nothing else escapes. Valid lines take a fast path
(one compiled regular expression checks the whole shape); only rejected lines pay for
working out *why*.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

type RejectReason = Literal[
    "encoding", "length", "frame", "crc", "type", "fields", "number", "range"
]

REJECT_REASONS: Final[tuple[RejectReason, ...]] = (
    "encoding", "length", "frame", "crc", "type", "fields", "number", "range",
)

RPICT_MAX_LINE_BYTES: Final = 256
ET1_MAX_FRAME_BYTES: Final = 128

RPICT_POWER_LIMIT_W: Final = 100_000.0
RPICT_IRMS_MAX_MA: Final = 200_000.0
VRMS_MAX_V: Final = 500.0
TEMPERATURE_MIN_C: Final = -55.0
TEMPERATURE_MAX_C: Final = 125.0
NO_PROBE_MARKER_C: Final = -127.0
FREQUENCY_MIN_HZ: Final = 40.0
FREQUENCY_MAX_HZ: Final = 70.0
SEQ_MAX: Final = 65_535
GAS_PULSES_MAX: Final = 4_294_967_295
MAX_RELAYS: Final = 8
CAL_MIN: Final = 0.001  # V per ADC RMS count: the firmware's accepted calibration range
CAL_MAX: Final = 100.0
# The factor a board uses before any CAL (kDefaultCal, firmware/lib/et1core/src/settings.h;
# 1.8 before firmware 1.3.0): set for 230 V and the README's trim.
FIRMWARE_DEFAULT_CAL: Final = 2.4
FIRMWARE_DEFAULT_CALS: Final = (1.8, FIRMWARE_DEFAULT_CAL)

# Bytes a line may contain besides its line end: printable ASCII.
_PRINTABLE: Final = bytes(range(0x20, 0x7F))
_TEXT: Final = _PRINTABLE + b"\t\r\n"
# A decimal number: exactly what float() accepts from the characters 0-9 . - ("5.", ".5").
_NUMBER_RE: Final = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_SPACE_LINE_BYTES: Final = b"0123456789.- "
_COMMA_LINE_BYTES: Final = b"0123456789.-,"
_UINT_RE: Final = re.compile(rb"[0-9]{1,10}")
# The firmware's parse_decimal: at most 12 digits before and 12 after the point.
_BOARD_DECIMAL_RE: Final = re.compile(rb"-?(?:[0-9]{1,12}\.?[0-9]{0,12}|\.[0-9]{1,12})")


class ProtocolError(ValueError):
    """A line was rejected; `reason` is one of `REJECT_REASONS` (a metric label)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason
        self.detail = detail


def _strip_line_end(line: bytes) -> bytes:
    """The line without its CRLF or LF; a missing line end is tolerated."""
    if line[-2:] == b"\r\n":
        return line[:-2]
    if line[-1:] == b"\n":
        return line[:-1]
    return line


def _check_encoding(body: bytes) -> None:
    # translate(None, delete) runs in C: whatever survives is not printable ASCII.
    bad = body.translate(None, _PRINTABLE)
    if bad:
        raise ProtocolError("encoding", f"byte 0x{bad[0]:02x} is not printable ASCII")


# --------------------------------------------------------------------------- RPICT


@dataclass(frozen=True, slots=True)
class RpictFrame:
    """One reading of an RPICT hat. Currents in A (the hat prints mA)."""

    node_id: int
    powers_w: tuple[float, ...]
    currents_a: tuple[float, ...] | None
    voltages_v: tuple[float, ...] | None
    temperature_c: float | None


# A frozen dataclass's __init__ costs ~0.7 µs through object.__setattr__; writing the slots
# through their descriptors costs half that, and the parser makes one frame per line.
_SLOT_SETTERS: Final = tuple(
    vars(RpictFrame)[name].__set__
    for name in ("node_id", "powers_w", "currents_a", "voltages_v", "temperature_c")
)


def _new_rpict_frame(
    node_id: int,
    powers_w: tuple[float, ...],
    currents_a: tuple[float, ...] | None,
    voltages_v: tuple[float, ...] | None,
    temperature_c: float | None,
) -> RpictFrame:
    result = object.__new__(RpictFrame)
    set_node, set_powers, set_currents, set_voltages, set_temperature = _SLOT_SETTERS
    set_node(result, node_id)
    set_powers(result, powers_w)
    set_currents(result, currents_a)
    set_voltages(result, voltages_v)
    set_temperature(result, temperature_c)
    return result


@dataclass(frozen=True, slots=True)
class _RpictLayout:
    powers: int
    currents: int
    voltages: int
    temperature: bool

    @property
    def values(self) -> int:
        return self.powers + self.currents + self.voltages + int(self.temperature)


# Factory-firmware field lists, docs/protocol.md section 1.
_RPICT_LAYOUTS: Final[dict[str, _RpictLayout]] = {
    "rpict3t1": _RpictLayout(powers=3, currents=0, voltages=0, temperature=True),
    "rpict3v1": _RpictLayout(powers=3, currents=3, voltages=1, temperature=False),
    "rpict4v3": _RpictLayout(powers=4, currents=4, voltages=3, temperature=False),
    "rpict7v1": _RpictLayout(powers=7, currents=7, voltages=1, temperature=False),
    "rpict8": _RpictLayout(powers=8, currents=0, voltages=0, temperature=False),
}

RPICT_MODELS: Final[tuple[str, ...]] = tuple(_RPICT_LAYOUTS)
# CT inputs (P/RP fields) of each model: the channel ids it can have.
RPICT_POWER_INPUTS: Final[dict[str, int]] = {m: lay.powers for m, lay in _RPICT_LAYOUTS.items()}
# What else each model prints: a voltage (so power factors), a temperature.
RPICT_PRINTS_VOLTAGE: Final[dict[str, bool]] = {
    m: lay.voltages > 0 for m, lay in _RPICT_LAYOUTS.items()}
RPICT_PRINTS_TEMPERATURE: Final[dict[str, bool]] = {
    m: lay.temperature for m, lay in _RPICT_LAYOUTS.items()}


class RpictParser:
    """Parses the lines of one RPICT model (`rpict_model` option)."""

    __slots__ = ("_layout", "_tokens", "model")

    def __init__(self, model: str) -> None:
        layout = _RPICT_LAYOUTS.get(model)
        if layout is None:
            raise ValueError(f"unknown RPICT model {model!r}; expected one of {RPICT_MODELS}")
        self.model = model
        self._layout = layout
        self._tokens = layout.values + 1

    def parse(self, line: bytes) -> RpictFrame:
        """Parse one line (with CRLF, LF or no line end). Raises `ProtocolError`.

        Fast path: only digits, '.', '-' and one kind of separator, the right token
        count, and `float()` accepting every token (on that alphabet `float()` accepts
        exactly `_NUMBER`). Anything else goes to `_reject`, which says why.
        """
        if len(line) > RPICT_MAX_LINE_BYTES:
            self._reject(line)
        body = _strip_line_end(line)
        if not body.translate(None, _SPACE_LINE_BYTES):
            tokens = body.split(b" ")
        elif not body.translate(None, _COMMA_LINE_BYTES):
            tokens = body.split(b",")
        else:
            self._reject(line)
        if len(tokens) != self._tokens or not tokens[0].isdigit():
            self._reject(line)
        try:
            # "+ 0.0" turns the -0.0 the hat prints for a reversed idle clamp into 0.0.
            values = [float(token) + 0.0 for token in tokens]
        except ValueError:
            self._reject(line)
        node_id = int(tokens[0])
        layout = self._layout
        end = layout.powers + 1
        powers = tuple(values[1:end])
        if (
            node_id > 255
            or min(powers) < -RPICT_POWER_LIMIT_W
            or max(powers) > RPICT_POWER_LIMIT_W
        ):
            self._reject(line)
        currents: tuple[float, ...] | None = None
        if layout.currents:
            milliamps = values[end : end + layout.currents]
            end += layout.currents
            if min(milliamps) < 0.0 or max(milliamps) > RPICT_IRMS_MAX_MA:
                self._reject(line)
            currents = tuple([ma / 1000.0 for ma in milliamps])
        voltages: tuple[float, ...] | None = None
        if layout.voltages:
            voltages = tuple(values[end : end + layout.voltages])
            end += layout.voltages
            if min(voltages) < 0.0 or max(voltages) > VRMS_MAX_V:
                self._reject(line)
        temperature: float | None = None
        if layout.temperature:
            temperature = values[end]
            if temperature == NO_PROBE_MARKER_C:
                temperature = None
            elif not TEMPERATURE_MIN_C <= temperature <= TEMPERATURE_MAX_C:
                self._reject(line)
        return _new_rpict_frame(node_id, powers, currents, voltages, temperature)

    def _reject(self, line: bytes) -> NoReturn:
        """Work out, step by step, why `parse` refused a line, and raise."""
        if len(line) > RPICT_MAX_LINE_BYTES:
            raise ProtocolError(
                "length", f"{len(line)} bytes, more than {RPICT_MAX_LINE_BYTES}"
            )
        body = _strip_line_end(line)
        _check_encoding(body)
        has_space, has_comma = b" " in body, b"," in body
        if has_space and has_comma:
            raise ProtocolError("fields", "spaces and commas mixed as separators")
        tokens = body.split(b"," if has_comma else b" ")
        if len(tokens) != self._tokens:
            raise ProtocolError(
                "fields", f"{len(tokens)} fields, {self.model} lines have {self._tokens}"
            )
        if not tokens[0].isdigit():
            raise ProtocolError("number", f"NodeID {tokens[0]!r} is not an integer")
        for token in tokens[1:]:
            if _NUMBER_RE.fullmatch(token) is None:
                raise ProtocolError("number", f"{token!r} is not a decimal number")
        if int(tokens[0]) > 255:
            raise ProtocolError("range", f"NodeID {int(tokens[0])} is outside 0-255")
        layout = self._layout
        limits = (
            [("power", -RPICT_POWER_LIMIT_W, RPICT_POWER_LIMIT_W, "W")] * layout.powers
            + [("Irms", 0.0, RPICT_IRMS_MAX_MA, "mA")] * layout.currents
            + [("Vrms", 0.0, VRMS_MAX_V, "V")] * layout.voltages
            + [("temperature", TEMPERATURE_MIN_C, TEMPERATURE_MAX_C, "°C")]
            * layout.temperature
        )
        for token, (name, low, high, unit) in zip(tokens[1:], limits, strict=True):
            value = float(token)
            if not low <= value <= high and not (
                name == "temperature" and value == NO_PROBE_MARKER_C
            ):
                raise ProtocolError(
                    "range", f"{name} {token.decode()} is outside {low:g}-{high:g} {unit}"
                )
        # Unreachable while `parse` and these checks agree.
        raise ProtocolError("fields", "line does not match the field list")


# --------------------------------------------------------------------------- ET1

BOARD_FRAME_TYPES: Final = ("ETH", "ETM", "ETA", "ETE")
COMMAND_FRAME_TYPE: Final = "ETC"

_TYPE_RE: Final = re.compile(r"[A-Z]{3}")
_FRAME_RE: Final = re.compile(rb"\$([^$*]*)\*([0-9A-F]{4})")
_RELAYS_RE: Final = re.compile(rb"[01]*")
_CODE_RE: Final = re.compile(rb"OK|E[A-Z]{1,15}")
_ERROR_CODE_RE: Final = re.compile(rb"E[A-Z]{1,15}")
_FIELD_FORBIDDEN: Final = frozenset("$*,")
_RESET_RE: Final = re.compile(rb"[a-z_]{1,16}")


def crc16(body: bytes) -> int:
    """CRC-16/CCITT-FALSE of the bytes between `$` and `*`."""
    return binascii.crc_hqx(body, 0xFFFF)


def frame(type_: str, *fields: str) -> bytes:
    """Encode one ET1 frame: b"$TYPE,f1,...*CRC\\r\\n". Raises ValueError on bad input."""
    if _TYPE_RE.fullmatch(type_) is None:
        raise ValueError(f"frame type {type_!r} is not three upper-case letters")
    for field in fields:
        if not field.isascii() or not field.isprintable() or _FIELD_FORBIDDEN & set(field):
            raise ValueError(f"field {field!r} is not printable ASCII without $ * ,")
    body = ",".join((type_, *fields)).encode("ascii")
    encoded = b"$%b*%04X\r\n" % (body, crc16(body))
    if len(encoded) > ET1_MAX_FRAME_BYTES:
        raise ValueError(f"frame of {len(encoded)} bytes exceeds {ET1_MAX_FRAME_BYTES}")
    return encoded


def encode_command(cmd_id: int, command: str, *args: str) -> bytes:
    """Encode a host→board command frame ($ETC,cmd_id,command,args...)."""
    if not 1 <= cmd_id <= SEQ_MAX:
        raise ValueError(f"cmd_id {cmd_id} is outside 1-65535")
    if not command:
        raise ValueError("empty command")
    return frame(COMMAND_FRAME_TYPE, str(cmd_id), command, *args)


@dataclass(frozen=True, slots=True)
class HelloFrame:
    seq: int
    fw_version: str
    n_relays: int
    cal: float
    reset: str | None = None  # how the boot began (firmware ≥ 1.4.0), e.g. "power_on"
    safe: tuple[bool, ...] | None = None  # the fail-safe pattern in use (firmware ≥ 1.5.0)


@dataclass(frozen=True, slots=True)
class MeasurementFrame:
    seq: int
    vrms_v: float | None
    frequency_hz: float | None
    relays: tuple[bool, ...]
    gas_pulses: int


@dataclass(frozen=True, slots=True)
class AckFrame:
    seq: int
    cmd_id: int
    result: str
    relays: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class BoardErrorFrame:
    seq: int
    code: str


@dataclass(frozen=True, slots=True)
class CommandFrame:
    cmd_id: int
    command: str
    args: tuple[str, ...]


type BoardFrame = HelloFrame | MeasurementFrame | AckFrame | BoardErrorFrame

_BOARD_FIELD_COUNTS: Final = {"ETH": 4, "ETM": 5, "ETA": 4, "ETE": 2}
_ON: Final = 0x31  # b"1"


def _unframe(line: bytes) -> list[bytes]:
    """Check length, encoding, shape and CRC; return [type, field, ...]."""
    if len(line) > ET1_MAX_FRAME_BYTES:
        raise ProtocolError("length", f"{len(line)} bytes, more than {ET1_MAX_FRAME_BYTES}")
    body = _strip_line_end(line)
    match = _FRAME_RE.fullmatch(body)
    if match is None:
        _check_encoding(body)
        raise ProtocolError("frame", "not a $TYPE,...*XXXX frame")
    payload = match[1]
    _check_encoding(payload)
    crc = int(match[2], 16)
    if crc16(payload) != crc:
        raise ProtocolError("crc", f"CRC {crc:04X} does not match {crc16(payload):04X}")
    return payload.split(b",")


def _uint(token: bytes, name: str, low: int, high: int) -> int:
    if _UINT_RE.fullmatch(token) is None:
        raise ProtocolError("number", f"{name} {token!r} is not an unsigned integer")
    value = int(token)
    if not low <= value <= high:
        raise ProtocolError("range", f"{name} {value} is outside {low}-{high}")
    return value


def _decimal(token: bytes, name: str, low: float, high: float) -> float:
    if _NUMBER_RE.fullmatch(token) is None:
        raise ProtocolError("number", f"{name} {token!r} is not a decimal number")
    value = float(token) + 0.0
    if not low <= value <= high:
        raise ProtocolError("range", f"{name} {value} is outside {low:g}-{high:g}")
    return value


def _optional_decimal(token: bytes, name: str, low: float, high: float) -> float | None:
    return None if not token else _decimal(token, name, low, high)


def _relays(token: bytes) -> tuple[bool, ...]:
    if _RELAYS_RE.fullmatch(token) is None:
        raise ProtocolError("number", f"relays {token!r} is not a string of 0 and 1")
    if len(token) > MAX_RELAYS:
        raise ProtocolError("range", f"{len(token)} relays, at most {MAX_RELAYS}")
    return tuple([state == _ON for state in token])


def _code(token: bytes, name: str, *, error_only: bool = False) -> str:
    pattern, allowed = ((_ERROR_CODE_RE, "an E... code") if error_only
                        else (_CODE_RE, "OK or an E... code"))
    if pattern.fullmatch(token) is None:
        raise ProtocolError("fields", f"{name} {token!r} is not {allowed}")
    return token.decode("ascii")


def parse_board_line(line: bytes) -> BoardFrame:
    """Parse one board→host ET1 line. Raises `ProtocolError`."""
    fields = _unframe(line)
    type_ = fields[0].decode("ascii")
    expected = _BOARD_FIELD_COUNTS.get(type_)
    if expected is None:
        raise ProtocolError("type", f"{type_!r} is not a board frame type")
    # Fields after the known ones are a later firmware's additions (docs/protocol.md 2.1).
    if len(fields) - 1 < expected:
        raise ProtocolError(
            "fields", f"{type_} has {expected} fields, this frame {len(fields) - 1}"
        )
    seq = _uint(fields[1], "seq", 0, SEQ_MAX)
    if type_ == "ETM":
        return MeasurementFrame(
            seq,
            _optional_decimal(fields[2], "vrms", 0.0, VRMS_MAX_V),
            _optional_decimal(fields[3], "freq", FREQUENCY_MIN_HZ, FREQUENCY_MAX_HZ),
            _relays(fields[4]),
            _uint(fields[5], "gas", 0, GAS_PULSES_MAX),
        )
    if type_ == "ETA":
        return AckFrame(
            seq, _uint(fields[2], "cmd_id", 1, SEQ_MAX), _code(fields[3], "result"),
            _relays(fields[4]),
        )
    if type_ == "ETH":
        if not fields[2]:
            raise ProtocolError("fields", "empty fw_version")
        cal = _decimal(fields[4], "cal", CAL_MIN, CAL_MAX)
        # Only said, never acted on: an odd one leaves the cause unknown, not the hello lost.
        reset = (fields[5].decode("ascii")
                 if len(fields) > 5 and _RESET_RE.fullmatch(fields[5]) else None)
        n_relays = _uint(fields[3], "n_relays", 0, MAX_RELAYS)
        # An odd one is unknown: the host then sends its pattern, as to firmware < 1.5.0.
        safe = (_relays(fields[6]) if len(fields) > 6 and _RELAYS_RE.fullmatch(fields[6])
                and len(fields[6]) == n_relays else None)
        return HelloFrame(seq, fields[2].decode("ascii"), n_relays, cal, reset, safe)
    # An ETE reports a rejected line: "OK" there would be a board bug, not a state
    return BoardErrorFrame(seq, _code(fields[2], "code", error_only=True))


def parse_command_line(line: bytes) -> CommandFrame:
    """Parse one host→board ET1 command line. Raises `ProtocolError`.

    The command name and its arguments are not checked here: the board answers an
    unknown, empty or missing command or a bad argument with an `ETA` carrying
    EBADCMD/EBADARG, since its `cmd_id` can be acknowledged (docs/protocol.md 2.1).
    """
    fields = _unframe(line)
    type_ = fields[0].decode("ascii")
    if type_ != COMMAND_FRAME_TYPE:
        raise ProtocolError("type", f"{type_!r} is not a command frame")
    if len(fields) < 2:
        raise ProtocolError("fields", "a command frame needs a cmd_id")
    cmd_id = _uint(fields[1], "cmd_id", 1, SEQ_MAX)
    command = fields[2].decode("ascii") if len(fields) > 2 else ""
    return CommandFrame(cmd_id, command, tuple([arg.decode("ascii") for arg in fields[3:]]))


def is_text(data: bytes) -> bool:
    """Printable ASCII, tabs and line ends only: what a board read at the right baud rate
    sends (at a wrong one, framing errors and stray bits make other bytes)."""
    return not data.translate(None, _TEXT)


def is_blank(line: bytes) -> bool:
    """A line with nothing before its line end: line noise both sides skip unlogged."""
    return not _strip_line_end(line)


def is_calibration_factor(text: str) -> bool:
    """What the board accepts as a `CAL` factor: a plain decimal in CAL_MIN-CAL_MAX."""
    token = text.encode("ascii", "replace")
    return (_BOARD_DECIMAL_RE.fullmatch(token) is not None
            and CAL_MIN <= float(token) <= CAL_MAX)


def is_board_uint(text: str) -> bool:
    """What the board accepts as a whole-number argument: 1-10 digits (its parse_uint)."""
    return _UINT_RE.fullmatch(text.encode("ascii", "replace")) is not None

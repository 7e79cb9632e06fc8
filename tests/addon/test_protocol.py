"""The line formats of docs/protocol.md: every documented form, every rejection reason,
and a property test that no input escapes the documented outcomes."""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from energy_tracker_addon.protocol import (
    REJECT_REASONS,
    RPICT_MODELS,
    AckFrame,
    BoardErrorFrame,
    CommandFrame,
    HelloFrame,
    MeasurementFrame,
    ProtocolError,
    RpictFrame,
    RpictParser,
    crc16,
    encode_command,
    frame,
    is_blank,
    is_calibration_factor,
    parse_board_line,
    parse_command_line,
)

# (powers, Irms in mA, Vrms, temperature field) per model, as the hat would print them.
MODEL_SAMPLES: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "rpict3t1": (["243.5", "-12.0", "1520.2"], [], [], ["21.4"]),
    "rpict3v1": (["243.5", "-12.0", "1520.2"], ["1100.0", "80.5", "6620.0"], ["231.4"], []),
    "rpict4v3": (
        ["10.0", "20.0", "-30.0", "40.0"], ["50.0", "60.0", "70.0", "80.0"],
        ["229.9", "231.0", "232.5"], [],
    ),
    "rpict7v1": ([str(10 * i) for i in range(7)], [str(250 * i) for i in range(7)], ["240.2"], []),
    "rpict8": ([f"{i}.5" for i in range(8)], [], [], []),
}


def sample_line(model: str, sep: str = " ", end: str = "\r\n") -> bytes:
    powers, currents, voltages, temps = MODEL_SAMPLES[model]
    return (sep.join(["11", *powers, *currents, *voltages, *temps]) + end).encode()


def test_models_constant_matches_the_documented_models() -> None:
    assert set(RPICT_MODELS) == set(MODEL_SAMPLES)


@pytest.mark.parametrize("model", RPICT_MODELS)
def test_each_model_line_parses_to_its_values(model: str) -> None:
    powers, currents, voltages, temps = MODEL_SAMPLES[model]
    parsed = RpictParser(model).parse(sample_line(model))
    assert parsed == RpictFrame(
        node_id=11,
        powers_w=tuple(float(p) for p in powers),
        currents_a=tuple(float(c) / 1000 for c in currents) if currents else None,
        voltages_v=tuple(float(v) for v in voltages) if voltages else None,
        temperature_c=float(temps[0]) if temps else None,
    )


@pytest.mark.parametrize("model", RPICT_MODELS)
@pytest.mark.parametrize(("sep", "end"), [(",", "\r\n"), (" ", "\n"), (",", "\n"), (" ", "")])
def test_separators_and_line_ends_do_not_change_the_reading(
    model: str, sep: str, end: str
) -> None:
    parser = RpictParser(model)
    assert parser.parse(sample_line(model, sep, end)) == parser.parse(sample_line(model))


def test_negative_zero_reads_as_plain_zero() -> None:
    parsed = RpictParser("rpict3t1").parse(b"11 -0.0 -0 0.0 21.4\r\n")
    assert parsed.powers_w == (0.0, 0.0, 0.0)
    assert all(math.copysign(1.0, p) == 1.0 for p in parsed.powers_w)


@pytest.mark.parametrize("marker", [b"-127", b"-127.00", b"-127.0"])
def test_no_probe_marker_makes_temperature_unavailable(marker: bytes) -> None:
    parsed = RpictParser("rpict3t1").parse(b"11,243.5,0.0,1520.2," + marker + b"\r\n")
    assert parsed.temperature_c is None
    assert parsed.powers_w == (243.5, 0.0, 1520.2)


def test_unknown_model_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="rpict9"):
        RpictParser("rpict9")


@pytest.mark.parametrize(
    ("model", "line", "reason"),
    [
        ("rpict3t1", b"11 243.5 0.0 1520.2 21\xb04\r\n", "encoding"),
        ("rpict3t1", b"11 243.5\t0.0 1520.2 21.4\r\n", "encoding"),
        ("rpict3t1", b"11 243.5 0.0 1520.2 21.4\r\r\n", "encoding"),
        ("rpict3t1", b"11 243.5 0.0 1520.2 21.4\x00\n", "encoding"),
        ("rpict3t1", b"11 " + b"1" * 260 + b" 0 0 0\r\n", "length"),
        ("rpict3t1", b"11 243.5 0.0 1520.2\r\n", "fields"),
        ("rpict3t1", b"11 243.5 0.0 1520.2 21.4 7\r\n", "fields"),
        ("rpict3t1", b"11 243.5,0.0 1520.2 21.4\r\n", "fields"),
        ("rpict3t1", b"11 243.5  1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 243.5  0.0 1520.2 21.4\r\n", "fields"),  # every value, one space too many
        ("rpict3t1", b"\r\n", "fields"),
        ("rpict3t1", b"11 nan 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 inf 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 0x1F 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 1e3 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 1_000 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 +5 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"11 5-3 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"-11 5 0.0 1520.2 21.4\r\n", "number"),
        ("rpict3t1", b"256 5 0.0 1520.2 21.4\r\n", "range"),
        ("rpict3t1", b"11 100000.1 0.0 1520.2 21.4\r\n", "range"),
        ("rpict3t1", b"11 -100000.1 0.0 1520.2 21.4\r\n", "range"),
        ("rpict3t1", b"11 5 0.0 1520.2 125.5\r\n", "range"),
        ("rpict3t1", b"11 5 0.0 1520.2 -55.1\r\n", "range"),
        ("rpict3v1", b"11 1 2 3 -1 0 0 230\r\n", "range"),
        ("rpict3v1", b"11 1 2 3 200000.5 0 0 230\r\n", "range"),
        ("rpict3v1", b"11 1 2 3 0 0 0 500.1\r\n", "range"),
    ],
)
def test_each_rejection_reason(model: str, line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as rejected:
        RpictParser(model).parse(line)
    assert rejected.value.reason == reason
    assert str(rejected.value).startswith(reason + ": ")


def test_limits_themselves_are_accepted() -> None:
    parsed = RpictParser("rpict3v1").parse(b"255 100000 -100000 0 200000 0 0 500\r\n")
    assert parsed.node_id == 255
    assert parsed.powers_w == (100000.0, -100000.0, 0.0)
    assert parsed.currents_a == (200.0, 0.0, 0.0)
    assert parsed.voltages_v == (500.0,)


# --------------------------------------------------------------------------- ET1


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_frame_layout_and_crc() -> None:
    encoded = frame("ETM", "17", "231.4", "50.01", "010", "1532")
    body = b"ETM,17,231.4,50.01,010,1532"
    assert encoded == b"$" + body + b"*" + f"{crc16(body):04X}".encode() + b"\r\n"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (("ETH", "0", "1.0.0", "3", "0.4512"), HelloFrame(0, "1.0.0", 3, 0.4512)),
        (
            ("ETM", "17", "231.4", "50.01", "010", "1532"),
            MeasurementFrame(17, 231.4, 50.01, (False, True, False), 1532),
        ),
        (("ETM", "18", "", "", "", "4294967295"), MeasurementFrame(18, None, None, (), 4294967295)),
        (("ETA", "18", "42", "OK", "011"), AckFrame(18, 42, "OK", (False, True, True))),
        (("ETA", "19", "43", "EBADARG", "011"), AckFrame(19, 43, "EBADARG", (False, True, True))),
        (("ETE", "65535", "ECRC"), BoardErrorFrame(65535, "ECRC")),
        # How the boot began (firmware 1.4.0 on); an odd cause is unknown, the hello kept.
        (("ETH", "0", "1.4.0", "3", "2.4", "power_on"),
         HelloFrame(0, "1.4.0", 3, 2.4, "power_on")),
        (("ETH", "0", "1.4.0", "3", "2.4", "Soft WDT!"), HelloFrame(0, "1.4.0", 3, 2.4, None)),
        (("ETH", "0", "1.4.0", "3", "2.4", ""), HelloFrame(0, "1.4.0", 3, 2.4, None)),
        # Its fail-safe pattern (firmware 1.5.0 on); an odd one is unknown, the hello kept.
        (("ETH", "0", "1.5.0", "3", "2.4", "power_on", "010"),
         HelloFrame(0, "1.5.0", 3, 2.4, "power_on", (False, True, False))),
        (("ETH", "0", "1.5.0", "3", "2.4", "power_on", "01"),
         HelloFrame(0, "1.5.0", 3, 2.4, "power_on", None)),
        (("ETH", "0", "1.5.0", "3", "2.4", "power_on", "0x0"),
         HelloFrame(0, "1.5.0", 3, 2.4, "power_on", None)),
        (("ETH", "0", "1.5.0", "0", "2.4", "power_on", ""),
         HelloFrame(0, "1.5.0", 0, 2.4, "power_on", ())),
        # A later firmware's added fields are ignored: a board upgraded before the add-on.
        (("ETH", "0", "1.6.0", "3", "2.4", "exception", "000", "x"),
         HelloFrame(0, "1.6.0", 3, 2.4, "exception", (False, False, False))),
        (("ETM", "20", "230.0", "50.00", "000", "7", "", "12"),
         MeasurementFrame(20, 230.0, 50.0, (False, False, False), 7)),
    ],
)
@pytest.mark.parametrize("end", [b"\r\n", b"\n"])
def test_board_frames_parse(fields: tuple[str, ...], expected: object, end: bytes) -> None:
    line = frame(*fields)[:-2] + end
    assert parse_board_line(line) == expected


def with_crc(body: bytes) -> bytes:
    """A frame around any body, with a correct CRC (to reach the field checks)."""
    return b"$%b*%04X\r\n" % (body, crc16(body))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (with_crc(b"ETM,1,231.4,50.01,010," + b"1" * 120), "length"),
        (with_crc(b"ETM,1,231.4,50.01,010,15\xe932"), "encoding"),
        (b"ETM,1,231.4,50.01,010,1532*0000\r\n", "frame"),
        (b"$ETM,1,231.4,50.01,010,1532\r\n", "frame"),
        (with_crc(b"ETM,1,231.4,50.01,010,1532").lower(), "frame"),
        (frame("ETM", "1", "231.4", "50.01", "010", "1532").replace(b"231", b"232"), "crc"),
        (with_crc(b"ETX,1,2"), "type"),
        (encode_command(5, "PING"), "type"),
        (with_crc(b"ETM,1,231.4,50.01,010"), "fields"),
        (with_crc(b"ETE,1"), "fields"),
        (with_crc(b"ETE,1,OK"), "fields"),
        (with_crc(b"ETA,1,2,OKAY,010"), "fields"),
        (with_crc(b"ETH,1,,3,0.45"), "fields"),
        (with_crc(b"ETM,x,231.4,50.01,010,1532"), "number"),
        (with_crc(b"ETM,-1,231.4,50.01,010,1532"), "number"),
        (with_crc(b"ETM,1,nan,50.01,010,1532"), "number"),
        (with_crc(b"ETM,1,231.4,50.01,012,1532"), "number"),
        (with_crc(b"ETM,65536,231.4,50.01,010,1532"), "range"),
        (with_crc(b"ETM,1,500.1,50.01,010,1532"), "range"),
        (with_crc(b"ETM,1,231.4,39.9,010,1532"), "range"),
        (with_crc(b"ETM,1,231.4,70.1,010,1532"), "range"),
        (with_crc(b"ETM,1,231.4,50,010101010,1532"), "range"),
        (with_crc(b"ETM,1,231.4,50,010,4294967296"), "range"),
        (with_crc(b"ETH,0,1.0.0,9,0.45"), "range"),
        (with_crc(b"ETH,0,1.0.0,3,0"), "range"),
        (with_crc(b"ETH,0,1.0.0,3,0.0009"), "range"),
        (with_crc(b"ETH,0,1.0.0,3,100.5"), "range"),
        (with_crc(b"ETH,0,1.0.0,3,1e-07"), "number"),
        (with_crc(b"ETA,1,0,OK,010"), "range"),
    ],
)
def test_board_line_rejections(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as rejected:
        parse_board_line(line)
    assert rejected.value.reason == reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (frame("ETM", "1", "231.4", "50.01", "010", "1532"), "type"),
        (with_crc(b"ETC"), "fields"),
        (with_crc(b"ETC,0,PING"), "range"),
        (with_crc(b"ETC,abc,PING"), "number"),
        (with_crc(b"ETC,,PING"), "number"),
        (encode_command(42, "PING").replace(b"42", b"43"), "crc"),
    ],
)
def test_command_line_rejections(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as rejected:
        parse_command_line(line)
    assert rejected.value.reason == reason


@pytest.mark.parametrize("body", [b"ETC,42", b"ETC,42,"])
def test_a_command_frame_without_a_command_keeps_its_cmd_id(body: bytes) -> None:
    # The board can acknowledge it (EBADCMD) instead of an unattributable ETE.
    assert parse_command_line(with_crc(body)) == CommandFrame(42, "", ())


@pytest.mark.parametrize(
    ("text", "accepted"),
    [("0.4512", True), ("0.001", True), ("100", True), ("100.0001", False),
     ("0.0009", False), ("0", False), ("-1", False), ("1e3", False), ("nan", False),
     ("", False), ("é", False), ("1.000000000000", True), ("1.0000000000000", False),
     ("000000000001.5", True), ("0000000000001.5", False)],
)
def test_calibration_factors_the_board_accepts(text: str, accepted: bool) -> None:
    assert is_calibration_factor(text) is accepted


@pytest.mark.parametrize(("line", "blank"), [
    (b"\r\n", True), (b"\n", True), (b"", True), (b" \r\n", False), (b"\r\r\n", False),
])
def test_only_a_line_with_nothing_before_its_line_end_is_blank(line: bytes, blank: bool) -> None:
    assert is_blank(line) is blank


@pytest.mark.parametrize(
    ("cmd_id", "command", "args"),
    [(0, "PING", ()), (65536, "PING", ()), (1, "", ()), (1, "RELAY", ("1,2",)),
     (1, "CAL", ("0.4*",)), (1, "CAL", ("é",)), (1, "SAFE", ("0" * 120,))],
)
def test_encode_command_refuses_what_it_cannot_frame(
    cmd_id: int, command: str, args: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        encode_command(cmd_id, command, *args)


ARG = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", max_size=8)


@given(
    cmd_id=st.integers(1, 65535),
    command=st.sampled_from(["RELAY", "PING", "CAL", "WDT", "SAFE", "HELLO", "BOGUS"]),
    args=st.lists(ARG, max_size=4),
)
def test_command_round_trip(cmd_id: int, command: str, args: list[str]) -> None:
    parsed = parse_command_line(encode_command(cmd_id, command, *args))
    assert parsed == CommandFrame(cmd_id, command, tuple(args))


def decimal_text(low: int, high: int, places: int) -> st.SearchStrategy[str]:
    return st.decimals(low, high, places=places, allow_nan=False, allow_infinity=False).map(
        lambda d: f"{d:.{places}f}"
    )


@given(
    seq=st.integers(0, 65535),
    vrms=st.one_of(st.just(""), decimal_text(0, 500, 1)),
    freq=st.one_of(st.just(""), decimal_text(40, 70, 2)),
    relays=st.lists(st.booleans(), max_size=8),
    gas=st.integers(0, 4294967295),
)
def test_measurement_round_trip(
    seq: int, vrms: str, freq: str, relays: list[bool], gas: int
) -> None:
    relay_text = "".join("1" if on else "0" for on in relays)
    parsed = parse_board_line(frame("ETM", str(seq), vrms, freq, relay_text, str(gas)))
    assert parsed == MeasurementFrame(
        seq,
        float(Decimal(vrms)) if vrms else None,
        float(Decimal(freq)) if freq else None,
        tuple(relays),
        gas,
    )


# --------------------------------------------------------------------------- properties


def assert_rpict_frame_in_range(parsed: RpictFrame) -> None:
    values = [*parsed.powers_w, *(parsed.currents_a or ()), *(parsed.voltages_v or ())]
    if parsed.temperature_c is not None:
        values.append(parsed.temperature_c)
        assert -55 <= parsed.temperature_c <= 125
    assert all(math.isfinite(v) for v in values)
    assert 0 <= parsed.node_id <= 255
    assert all(-100_000 <= p <= 100_000 for p in parsed.powers_w)
    assert all(0 <= a <= 200 for a in parsed.currents_a or ())
    assert all(0 <= v <= 500 for v in parsed.voltages_v or ())


def assert_board_frame_in_range(parsed: object) -> None:
    match parsed:
        case MeasurementFrame(seq, vrms, freq, relays, gas):
            assert 0 <= seq <= 65535
            assert vrms is None or (math.isfinite(vrms) and 0 <= vrms <= 500)
            assert freq is None or (math.isfinite(freq) and 40 <= freq <= 70)
            assert len(relays) <= 8
            assert 0 <= gas <= 4294967295
        case HelloFrame(seq, fw_version, n_relays, cal):
            assert 0 <= seq <= 65535
            assert fw_version
            assert 0 <= n_relays <= 8
            assert math.isfinite(cal)
            assert cal > 0
        case AckFrame(seq, cmd_id, _, relays):
            assert 0 <= seq <= 65535
            assert 1 <= cmd_id <= 65535
            assert len(relays) <= 8
        case BoardErrorFrame(seq, code):
            assert 0 <= seq <= 65535
            assert code
        case _:
            pytest.fail(f"unexpected result {parsed!r}")


def outcome[T](parse: Callable[[bytes], T], line: bytes) -> T | ProtocolError:
    """What a parser makes of a line: its frame, or the rejection (any other error escapes)."""
    try:
        return parse(line)
    except ProtocolError as err:
        return err


VALID_RPICT = [sample_line(model, sep) for model in RPICT_MODELS for sep in " ,"]
VALID_ET1 = [
    frame("ETH", "0", "1.0.0", "3", "0.4512"),
    frame("ETM", "17", "231.4", "50.01", "010", "1532"),
    frame("ETA", "18", "42", "OK", "011"),
    frame("ETE", "3", "EFRAME"),
]
NOISE = st.sampled_from(list(b"0123456789.-, \r\n$*,ETHMACnaixe+_\t\x00\xff"))


@st.composite
def mutated(draw: st.DrawFn, valid: list[bytes], recrc: bool = False) -> bytes:
    """A valid line after a few edits: replace, insert, delete, truncate, repeat."""
    line = bytearray(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "repeat"]))
        pos = draw(st.integers(0, max(len(line) - 1, 0)))
        if op == "replace" and line:
            line[pos] = draw(st.one_of(NOISE, st.integers(0, 255)))
        elif op == "insert":
            line.insert(pos, draw(st.one_of(NOISE, st.integers(0, 255))))
        elif op == "delete" and line:
            del line[pos]
        elif op == "truncate":
            del line[pos:]
        elif op == "repeat":
            line = line * draw(st.integers(2, 12))
    if recrc and line.startswith(b"$") and b"*" in line:
        # Fix the CRC so the edit reaches the field checks instead of stopping at "crc".
        body = bytes(line[1 : line.index(b"*")])
        line = bytearray(b"$%b*%04X\r\n" % (body, crc16(body)))
    return bytes(line)


ANY_LINE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=400)
@given(model=st.sampled_from(RPICT_MODELS), line=st.one_of(ANY_LINE, mutated(VALID_RPICT)))
@example(model="rpict3t1", line=b"11 1e308 0 0 20")
@example(model="rpict3t1", line=b"11 " + b"9" * 250 + b" 0 0 20")
def test_rpict_parser_only_returns_valid_frames_or_documented_rejections(
    model: str, line: bytes
) -> None:
    parsed = outcome(RpictParser(model).parse, line)
    if isinstance(parsed, ProtocolError):
        assert parsed.reason in REJECT_REASONS
        # The fast path and the diagnosis must agree on every refused line.
        assert "does not match the field list" not in parsed.detail
    else:
        assert_rpict_frame_in_range(parsed)


@settings(max_examples=400)
@given(
    line=st.one_of(
        ANY_LINE, mutated(VALID_ET1), mutated(VALID_ET1, recrc=True),
        mutated([encode_command(7, "RELAY", "1", "1")], recrc=True),
    )
)
def test_et1_parsers_only_return_valid_frames_or_documented_rejections(line: bytes) -> None:
    parsed = outcome(parse_board_line, line)
    if isinstance(parsed, ProtocolError):
        assert parsed.reason in REJECT_REASONS
    else:
        assert_board_frame_in_range(parsed)
    command = outcome(parse_command_line, line)
    if isinstance(command, ProtocolError):
        assert command.reason in REJECT_REASONS
    else:
        assert 1 <= command.cmd_id <= 65535
        # An empty command is kept for the board's EBADCMD; every field is plain ASCII.
        for field in (command.command, *command.args):
            assert field.isascii()
            assert field.isprintable()
            assert not set(field) & set("$*,")

"""The meter model: correction, totals, energy, staleness, rejected lines, persistence."""

from __future__ import annotations

import asyncio
import copy
import gzip
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energy_tracker_addon.config import ChannelConfig, Options, OptionsError
from energy_tracker_addon.meter import PORT_LOG_INTERVAL_S, Meter
from energy_tracker_addon.metrics import Metrics
from energy_tracker_addon.persistence import CounterStore
from energy_tracker_addon.protocol import (
    ProtocolError,
    RpictParser,
    frame,
    is_blank,
    parse_board_line,
)

from .polling import wait_until


class FakeClock:
    """Monotonic time the test moves by hand (the meter's only time source)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def etm(seq: int, vrms: str = "230.0", freq: str = "50.00", relays: str = "") -> bytes:
    return frame("ETM", str(seq), vrms, freq, relays, "0")


def rpict(*powers: float, temperature: float = 21.5) -> bytes:
    return (" ".join(["11", *(f"{p:.1f}" for p in powers), f"{temperature:.1f}"]) + "\r\n").encode()


def make_meter(
    path: Path, clock: FakeClock, metrics: Metrics | None = None, **options: Any
) -> Meter:
    return Meter(
        Options(**options),
        CounterStore(path / "energy.json"),
        metrics or Metrics(),
        "0123456789abcdef0123456789abcdef",
        clock=clock,
        wall_clock=lambda: datetime(2026, 11, 24, 10, 15, 2, 113000, tzinfo=UTC),
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ------------------------------------------------------------------ correction and totals


def test_voltage_board_corrects_the_powers_of_a_3t1(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock, rpict_vest=230.0)
    meter.feed_voltage_line(etm(1, vrms="240.0", freq="50.02"))

    meter.feed_rpict_line(rpict(230.0, -115.0, 0.0))

    state = meter.snapshot()
    assert [c["power_w"] for c in state["channels"]] == [240.0, -120.0, 0.0]
    # I = |P| / vest, from the printed power.
    assert [c["current_a"] for c in state["channels"]] == [1.0, 0.5, 0.0]
    assert state["total_power_w"] == 240.0
    assert state["voltage_v"] == 240.0
    assert state["frequency_hz"] == 50.02
    assert state["temperature_c"] == 21.5
    assert state["power_factor"] is None
    assert state["available"] is True


def test_without_voltage_the_printed_power_stands_and_voltage_is_null(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0")

    meter.feed_rpict_line(rpict(1520.2, 0.0, 0.0))

    state = meter.snapshot()
    assert state["channels"][0]["power_w"] == 1520.2
    assert state["voltage_v"] is None
    assert state["frequency_hz"] is None
    assert "voltage" not in state["boards"]


def test_stale_voltage_falls_back_to_vest(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock, stale_after_s=10)
    meter.feed_voltage_line(etm(1, vrms="240.0"))
    clock.now += 11

    meter.feed_rpict_line(rpict(230.0, 0.0, 0.0))

    assert meter.snapshot()["channels"][0]["power_w"] == 230.0


@pytest.mark.parametrize("with_board", [False, True])
def test_metrics_export_the_voltage_the_state_shows(
    tmp_path: Path, clock: FakeClock, with_board: bool
) -> None:
    """A hat with its own voltage input: /metrics said NaN (no voltage board) or the
    board's voltage while the state and MQTT showed the hat's (helper 95)."""
    metrics = Metrics()
    meter = make_meter(tmp_path, clock, metrics, rpict_model="rpict3v1")
    if with_board:
        meter.feed_voltage_line(etm(1, vrms="240.0"))
    meter.feed_rpict_line(b"11 500.0 0.0 0.0 2500 0 0 231.0\r\n")
    assert meter.snapshot()["voltage_v"] == 231.0
    assert sample(metrics, "energy_tracker_voltage_volts") == 231.0


def test_hat_with_its_own_voltage_ignores_the_voltage_board(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock, rpict_model="rpict3v1")
    meter.feed_voltage_line(etm(1, vrms="240.0"))

    meter.feed_rpict_line(b"11 500.0 0.0 0.0 2500 0 0 231.0\r\n")

    state = meter.snapshot()
    mains = state["channels"][0]
    assert mains["power_w"] == 500.0
    assert mains["current_a"] == 2.5
    assert mains["power_factor"] == pytest.approx(500 / (231 * 2.5), abs=1e-3)
    assert state["voltage_v"] == 231.0
    assert state["power_factor"] == pytest.approx(500 / (231 * 2.5), abs=1e-3)


def test_total_is_the_sum_of_mains_channels(tmp_path: Path, clock: FakeClock) -> None:
    channels = (
        ChannelConfig(1, "Phase 1", "mains"),
        ChannelConfig(2, "Oven", "circuit"),
        ChannelConfig(3, "Phase 2", "mains"),
    )
    meter = make_meter(tmp_path, clock, channels=channels, rpict_port="/dev/ttyAMA0")

    meter.feed_rpict_line(rpict(1000.0, 700.0, 250.0))

    assert meter.snapshot()["total_power_w"] == 1250.0


def test_total_is_the_sum_of_all_channels_when_none_is_mains(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    channels = (ChannelConfig(1, "Oven", "circuit"), ChannelConfig(3, "Dryer", "circuit"))
    caplog.set_level(logging.INFO)
    meter = make_meter(tmp_path, clock, channels=channels, rpict_port="/dev/ttyAMA0")
    # Said at start: a mains clamp left as `circuit` would count the house twice.
    assert ("No channel has role mains: the total is the sum of every channel (1, 3)"
            in caplog.messages)

    meter.feed_rpict_line(rpict(1000.0, 700.0, 250.0))

    state = meter.snapshot()
    assert state["total_power_w"] == 1250.0
    assert [c["id"] for c in state["channels"]] == [1, 3]


def test_channel_beyond_the_hat_is_an_options_error(tmp_path: Path, clock: FakeClock) -> None:
    channels = (ChannelConfig(1, "Mains", "mains"), ChannelConfig(4, "Four", "circuit"))

    with pytest.raises(OptionsError, match="channels: channel id 4 does not exist"):
        make_meter(tmp_path, clock, channels=channels)


# ------------------------------------------------------------------ energy


def replay_slice(rows: int) -> dict[str, npt.NDArray[np.float64]]:
    """The first `rows` minutes of the packaged real replay data, read independently."""
    raw = resources.files("energy_tracker_addon").joinpath("data", "uci_replay.csv.gz")
    text = gzip.decompress(raw.read_bytes()).decode()
    header = text.split("\n", 1)[0].split(",")
    values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, max_rows=rows,
                        usecols=range(1, len(header)))
    return {name: values[:, i] for i, name in enumerate(header[1:])}


def test_energy_matches_trapezoid_integration_of_real_data(
    tmp_path: Path, clock: FakeClock
) -> None:
    data = replay_slice(24 * 60)
    columns = ("mains_w", "kitchen_w", "water_heater_ac_w")
    meter = make_meter(tmp_path, clock, stale_after_s=120, rpict_vest=230.0)
    # One reading per minute of data, as the 3T1 would print it for the real voltage.
    for minute in range(len(data["mains_w"])):
        voltage = data["voltage_v"][minute]
        meter.feed_voltage_line(etm(minute + 1, vrms=f"{voltage:.2f}"))
        meter.feed_rpict_line(rpict(*(data[c][minute] * 230.0 / voltage for c in columns)))
        clock.now += 60.0

    state = meter.snapshot()
    expected = {
        c: float(np.trapezoid(np.maximum(data[c], 0.0), dx=60.0)) / 3.6e6 for c in columns
    }
    assert expected["mains_w"] > 5.0  # a real day of a real house, not an idle fixture
    for channel, column in zip(state["channels"], columns, strict=True):
        assert channel["energy_kwh"] == pytest.approx(expected[column], rel=1e-4)
    assert state["total_energy_kwh"] == pytest.approx(expected["mains_w"], rel=1e-4)


def test_a_step_in_power_counts_half_of_it_for_the_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The trapezoid rule on every channel and the total: 0 W, then 3600 W two seconds
    later, is 1 Wh (a rectangle would say 0 or 2). The day of real data above cannot tell
    the rules apart on a channel (helper 109)."""
    meter = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0")
    meter.feed_rpict_line(rpict(0.0, 0.0, 0.0))
    clock.now += 2
    meter.feed_rpict_line(rpict(3600.0, 3600.0, 0.0))
    state = meter.snapshot()
    assert state["total_energy_kwh"] == pytest.approx(0.001)
    assert [c["energy_kwh"] for c in state["channels"]] == pytest.approx([0.001, 0.001, 0.0])


def test_no_energy_is_counted_across_a_gap(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock, stale_after_s=10, rpict_port="/dev/ttyAMA0")
    for step in (0, 2, 2, 30, 2):  # 4 s, then a 30 s gap, then 2 s
        clock.now += step
        meter.feed_rpict_line(rpict(3600.0, 0.0, 0.0))

    # 3600 W for 6 s of uninterrupted readings = 6 Wh.
    assert meter.snapshot()["total_energy_kwh"] == pytest.approx(0.006)


def test_a_line_a_moment_late_is_no_gap_even_at_the_shortest_stale_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    """stale_after_s 2 (its minimum) and the hat's lines every 2 s, a few ms late: about
    half of the energy was dropped as gaps (helper 90)."""
    meter = make_meter(tmp_path, clock, stale_after_s=2, rpict_port="/dev/ttyAMA0")
    for _ in range(31):
        meter.feed_rpict_line(rpict(3600.0, 0.0, 0.0))
        clock.now += 2.0019
    assert meter.snapshot()["total_energy_kwh"] == pytest.approx(30 * 2.0019 / 1000)


def test_exported_power_does_not_reduce_energy(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0")
    for power in (3600.0, -3600.0, -3600.0, 3600.0):
        meter.feed_rpict_line(rpict(power, 0.0, 0.0))
        clock.now += 1.0

    # Trapezoids of max(P, 0): 0.5 s + 0 s + 0.5 s at 3600 W = 1 Wh.
    assert meter.snapshot()["total_energy_kwh"] == pytest.approx(0.001)


# ------------------------------------------------------------------ staleness


async def test_stale_rpict_makes_values_null_not_zero_and_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock, stale_after_s=10)
    seen: list[dict[str, Any]] = []
    changed = asyncio.Event()

    def listener(state: dict[str, Any]) -> None:
        seen.append(state)
        changed.set()

    meter.add_listener(listener)
    await meter.start()
    try:
        meter.feed_voltage_line(etm(1))
        meter.feed_rpict_line(rpict(1000.0, 10.0, 0.0))
        clock.now += 2
        meter.feed_rpict_line(rpict(1000.0, 10.0, 0.0))
        energy = meter.snapshot()["total_energy_kwh"]
        changed.clear()

        clock.now += 11
        async with asyncio.timeout(2):
            while seen[-1]["available"]:
                await changed.wait()
                changed.clear()

        stale = seen[-1]
        assert stale["total_power_w"] is None
        assert stale["temperature_c"] is None
        assert stale["voltage_v"] is None
        assert stale["frequency_hz"] is None
        assert all(c["power_w"] is None and c["current_a"] is None for c in stale["channels"])
        assert stale["total_energy_kwh"] == energy
        assert all(isinstance(c["energy_kwh"], float) for c in stale["channels"])
        assert stale == meter.snapshot()

        meter.feed_rpict_line(rpict(500.0, 10.0, 0.0))

        back = meter.snapshot()
        assert back["available"] is True
        assert back["total_power_w"] == 500.0
        assert back["total_energy_kwh"] == energy  # nothing integrated over the gap
        assert back["seq"] > stale["seq"]
    finally:
        await meter.stop()


def test_listener_gets_every_reading_with_increasing_seq(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock)
    seen: list[int] = []
    remove = meter.add_listener(lambda state: seen.append(state["seq"]))

    for _ in range(3):
        meter.feed_rpict_line(rpict(1.0, 2.0, 3.0))
        clock.now += 2
    remove()
    meter.feed_rpict_line(rpict(1.0, 2.0, 3.0))

    assert seen == [1, 2, 3]
    assert meter.snapshot()["seq"] == 4


def test_snapshot_is_json_with_utc_timestamps(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock)
    meter.set_board_connected("rpict", True)
    meter.feed_rpict_line(rpict(1.0, 2.0, 3.0))

    state = json.loads(json.dumps(meter.snapshot()))

    assert state["timestamp"] == "2026-11-24T10:15:02.113Z"
    assert state["boards"]["rpict"] == {
        "connected": True,
        "last_frame": "2026-11-24T10:15:02.113Z",
        "lines_ok": 1,
        "lines_rejected": 0,
    }
    assert state["meter_id"] == "0123456789abcdef0123456789abcdef"
    assert meter.info_channels() == [
        {"id": 1, "name": "Mains", "role": "mains"},
        {"id": 2, "name": "Kitchen", "role": "circuit"},
        {"id": 3, "name": "Water heater & AC", "role": "circuit"},
    ]


# ------------------------------------------------------------------ voltage board frames


def test_sequence_gaps_count_lost_frames(tmp_path: Path, clock: FakeClock) -> None:
    metrics = Metrics()
    meter = make_meter(tmp_path, clock, metrics)

    def feed(*lines: bytes) -> int:
        for line in lines:
            meter.feed_voltage_line(line)
        lost: int = meter.snapshot()["boards"]["voltage"]["frames_lost"]
        assert lost == sample(metrics, "energy_tracker_serial_frames_lost_total")
        return lost

    assert feed(frame("ETH", "0", "1.0.0", "2", "0.4512"), etm(1), etm(2), etm(5)) == 2
    assert feed(frame("ETA", "7", "42", "OK", "00")) == 3  # every frame type counts
    # A reboot starts again at 0 with a hello: nothing lost.
    assert feed(frame("ETH", "0", "1.0.1", "2", "0.4512"), etm(1)) == 3
    assert meter.fw_version == "1.0.1"
    # The counter wraps at 65535 without loss; a repeated seq loses nothing either.
    assert feed(etm(2), etm(2), *(etm(seq) for seq in range(3, 65536)), etm(0), etm(1)) == 3
    # 1 -> 30000 over 8.3 hours (a serial link down) loses 29998 frames; 30000 -> 10 is far
    # behind: a restart whose hello was lost, not 35000 lost frames.
    clock.now += 30000
    assert feed(etm(30000), etm(10)) == 3 + 29998
    # After 9 hours up (seq 36000 by then), a brown-out reboot whose hello was lost: seq 1
    # three seconds later is a restart, not 29535 frames lost (helper 102).
    clock.now += 18000
    feed(etm(18000))
    clock.now += 18000
    before = feed(etm(36000))
    clock.now += 3
    assert feed(etm(1), etm(2)) == before


def test_relay_states_follow_measurements_and_acks(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock)

    meter.feed_voltage_line(etm(1, relays="010"))
    assert meter.snapshot()["boards"]["voltage"]["relays"] == [False, True, False]

    meter.feed_voltage_line(frame("ETA", "2", "42", "OK", "011"))
    assert meter.snapshot()["boards"]["voltage"]["relays"] == [False, True, True]
    assert meter.relays == (False, True, True)


# ------------------------------------------------------------------ rejected lines


def _rejected(parse: Callable[[bytes], object], line: bytes) -> bool:
    try:
        parse(line)
    except ProtocolError:
        return True
    return False


_RPICT = RpictParser("rpict3t1").parse
_VALID_RPICT = [b"11 243.5 -0.0 1520.2 21.4\r\n", b"11,243.5,0.0,1520.2,-127\r\n"]
_VALID_BOARD = [etm(9, "231.4", "50.01", "010"), frame("ETA", "18", "42", "OK", "011")]


def _mutations(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Near misses: a valid line with one byte replaced, inserted or removed."""

    def mutate(line: bytes, index: int, byte: int, how: int) -> bytes:
        index %= len(line)
        if how == 0:
            return line[:index] + bytes([byte]) + line[index + 1 :]
        if how == 1:
            return line[:index] + bytes([byte]) + line[index:]
        return line[:index] + line[index + 1 :]

    return st.builds(
        mutate, st.sampled_from(valid), st.integers(0, 200), st.integers(0, 255),
        st.integers(0, 2),
    )


def _garbage(valid: list[bytes], parse: Callable[[bytes], object]) -> st.SearchStrategy[bytes]:
    # Empty lines are not garbage but line noise, skipped uncounted (the test below).
    return st.one_of(st.binary(max_size=300), _mutations(valid)).filter(
        lambda line: not is_blank(line) and _rejected(parse, line)
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rpict_lines=st.lists(_garbage(_VALID_RPICT, _RPICT), max_size=20),
    board_lines=st.lists(_garbage(_VALID_BOARD, parse_board_line), max_size=20),
)
def test_garbage_is_counted_by_reason_and_changes_nothing(
    tmp_path: Path, rpict_lines: list[bytes], board_lines: list[bytes]
) -> None:
    clock = FakeClock()
    metrics = Metrics()
    meter = Meter(
        Options(), CounterStore(tmp_path / "unused.json"), metrics, "id", clock=clock
    )
    meter.feed_voltage_line(etm(1, relays="01"))
    meter.feed_rpict_line(_VALID_RPICT[0])
    before = meter.snapshot()

    for line in rpict_lines:
        meter.feed_rpict_line(line)
    for line in board_lines:
        meter.feed_voltage_line(line)

    after = copy.deepcopy(meter.snapshot())
    for board, lines, parse in (
        ("rpict", rpict_lines, _RPICT),
        ("voltage", board_lines, parse_board_line),
    ):
        reasons: dict[str, int] = {}
        for line in lines:
            try:
                parse(line)
            except ProtocolError as error:
                reasons[error.reason] = reasons.get(error.reason, 0) + 1
        for reason, count in reasons.items():
            labels = {"board": board, "reason": reason}
            assert sample(metrics, "energy_tracker_serial_lines_rejected_total", **labels) == count
        assert after["boards"][board]["lines_rejected"] == len(lines)
        assert sample(metrics, "energy_tracker_serial_lines_total", board=board) == len(lines) + 1
        after["boards"][board]["lines_rejected"] -= len(lines)
    assert after == before


def test_empty_lines_are_skipped_without_counting_or_logging(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The voltage board starts every boot with one, to end its ROM's boot noise.
    metrics = Metrics()
    meter = make_meter(tmp_path, clock, metrics)
    caplog.set_level(logging.INFO)
    for line in (b"\r\n", b"\n"):
        meter.feed_rpict_line(line)
        meter.feed_voltage_line(line)
    meter.feed_rpict_line(rpict(100.0, 0.0, 0.0))

    boards = meter.snapshot()["boards"]
    assert boards["rpict"]["lines_rejected"] == 0
    assert (boards["voltage"]["lines_ok"], boards["voltage"]["lines_rejected"]) == (0, 0)
    assert sample(metrics, "energy_tracker_serial_lines_total", board="rpict") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_mains_seen_without_a_voltage_is_explained_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The board withholds the Vrms of a wave clipped on its ADC's rails (firmware/).
    meter = make_meter(tmp_path, clock, rpict_vest=230.0)
    caplog.set_level(logging.INFO)
    for seq in (1, 2, 3):
        meter.feed_voltage_line(etm(seq, vrms="", freq="50.01"))
    meter.feed_rpict_line(rpict(1000.0, 0.0, 0.0))
    assert meter.snapshot()["voltage_v"] is None
    assert meter.snapshot()["channels"][0]["power_w"] == 1000.0  # as printed, at vest

    meter.feed_voltage_line(etm(4, vrms="", freq=""))  # no mains: nothing new to say
    meter.feed_voltage_line(etm(5, vrms="235.0", freq="50.01"))
    messages = [r.getMessage() for r in caplog.records if "voltage board" in r.getMessage()]
    assert len(messages) == 2
    assert "clips the ADC" in messages[0]
    assert "rpict_vest" in messages[0]
    assert "trimmer" in messages[0]
    assert "again" in messages[1]
    assert meter.snapshot()["voltage_v"] == 235.0


def test_a_board_that_sees_no_mains_wave_says_so_once_per_cause(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An unplugged ZMPT101B sends empty fields (the firmware drops signals under 20 ADC
    counts), not a low voltage: it used to leave nothing in the log."""
    meter = make_meter(tmp_path, clock, rpict_vest=230.0)
    caplog.set_level(logging.INFO)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "voltage board" in r.getMessage()]

    meter.feed_voltage_line(etm(1, vrms="", freq=""))  # a start: not yet worth a line
    assert said() == []
    for seq in range(2, 12):
        meter.feed_voltage_line(etm(seq, vrms="", freq=""))
    assert len(said()) == 1
    assert "sees no mains wave" in said()[0]
    assert "unplugged" in said()[0]
    # Another cause is another line; the same cause again is not.
    meter.feed_voltage_line(etm(12, vrms="30.0", freq="50.00"))
    meter.feed_voltage_line(etm(13, vrms="30.0", freq="50.00"))
    assert len(said()) == 2
    assert "reads 30 V" in said()[1]
    meter.feed_voltage_line(etm(14, vrms="231.0", freq="50.00"))
    assert "again" in said()[2]
    assert meter.snapshot()["voltage_v"] == 231.0


def test_a_voltage_below_any_mains_is_not_used_to_scale_the_powers(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # 0 V from an unplugged ZMPT101B or a wrong CAL would zero every power and the energy.
    meter = make_meter(tmp_path, clock, rpict_vest=230.0)
    caplog.set_level(logging.WARNING)
    meter.feed_voltage_line(etm(1, vrms="0.0", freq=""))
    meter.feed_rpict_line(rpict(1000.0, 200.0, 300.0))
    clock.now += 2
    meter.feed_voltage_line(etm(2, vrms="3.5", freq=""))
    meter.feed_rpict_line(rpict(1000.0, 200.0, 300.0))

    state = meter.snapshot()
    assert state["voltage_v"] is None
    assert [c["power_w"] for c in state["channels"]] == [1000.0, 200.0, 300.0]
    assert state["total_energy_kwh"] > 0
    warnings = [r.getMessage() for r in caplog.records if "voltage board" in r.getMessage()]
    assert len(warnings) == 1
    assert "0 V" in warnings[0]


def test_rejected_lines_are_logged_at_a_limited_rate(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    meter = make_meter(tmp_path, clock)
    caplog.set_level(logging.WARNING)

    for _ in range(100):
        meter.feed_rpict_line(b"11 nan 0 0 20\r\n")
    clock.now += 11
    meter.feed_rpict_line(b"11 1 2\r\n")

    rejects = [r.getMessage() for r in caplog.records if "Rejected rpict line" in r.message]
    assert len(rejects) == 2
    assert "number" in rejects[0]
    assert "99 more rejected" in rejects[1]
    assert meter.snapshot()["boards"]["rpict"]["lines_rejected"] == 101


def test_reject_lines_name_swapped_ports_and_a_wrong_baud_rate(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Swapped ports read "fields: 6 fields, rpict3t1 lines have 5", which DOCS.md ties to
    rpict_model, and a wrong baud rate "encoding: byte 0x9c…": neither said what to check."""
    meter = make_meter(tmp_path, clock, voltage_port="/dev/ttyUSB0")
    caplog.set_level(logging.WARNING)
    meter.feed_rpict_line(etm(14))
    meter.feed_voltage_line(b"11 1487.8 304.5 1000.0 21.4\r\n")
    clock.now += 11
    meter.feed_rpict_line(b"\x9c\x9c\xe0\x00\x80\n")
    meter.feed_voltage_line(b"\x9c\x9c\xe0\x00\x80\n")
    clock.now += 11
    meter.feed_rpict_line(b"\x00\xe0" * 300)  # overlong: its newlines were lost too
    rejects = [r.getMessage() for r in caplog.records if "Rejected" in r.message]
    assert len(rejects) == 5
    assert ": length: " in rejects[4]
    assert rejects[4].endswith("check rpict_baudrate)")
    assert rejects[0].endswith("(the voltage board's protocol: rpict_port and voltage_port "
                               "swapped?)")
    assert rejects[1].endswith("(an RPICT hat's line: rpict_port and voltage_port swapped?)")
    assert rejects[2].endswith("(bytes like these come from the wrong baud rate: check "
                               "rpict_baudrate)")
    assert rejects[3].endswith("check voltage_baudrate)")
    clock.now += 11
    meter.feed_rpict_line(b"11 1 2\r\n")  # a line too short says nothing more
    last = next(r.getMessage() for r in reversed(caplog.records) if "Rejected" in r.message)
    assert last.endswith("rpict3t1 lines have 5")
    # Both ports set at their (different) default speeds: swapped, each board is read at the
    # other's speed, bytes that are not text; the hint named only the baud rate (helper 102).
    both = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0", voltage_port="/dev/ttyUSB0")
    both.feed_voltage_line(b"\x1c\xe0\x00\xe0\n")
    last = next(r.getMessage() for r in reversed(caplog.records) if "Rejected" in r.message)
    assert last.endswith("check voltage_baudrate, or rpict_port and voltage_port swapped)")


async def test_a_port_that_sends_nothing_is_said_once_per_opening(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The wrong UART or the Pi's serial console on it: "connected to /dev/ttyAMA0" and then
    no word, ever (values unavailable, health ok, no line counted)."""
    meter = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0", voltage_port="/dev/ttyUSB0",
                       stale_after_s=10)
    caplog.set_level(logging.WARNING)

    def silent_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "has sent nothing" in r.message]

    await meter.start()
    try:
        meter.set_board_connected("rpict", True)
        meter.set_board_connected("voltage", True)
        meter.feed_voltage_line(etm(1))  # the voltage board talks
        clock.now += 9
        await asyncio.sleep(0.8)
        assert silent_lines() == []  # not yet: a board may take a moment
        clock.now += 2
        await wait_until(lambda: bool(silent_lines()), timeout=2, what="the silent port said")
        clock.now += 100
        await asyncio.sleep(0.8)
        assert silent_lines() == [
            "RPICT port /dev/ttyAMA0 has sent nothing in 10 s since it opened: is it the "
            "hat's port (on a Raspberry Pi: /dev/ttyAMA0 or /dev/serial0 with the serial "
            "console off and the UART on), and is the hat seated?"]
        # Unplugged and plugged again: said again if it is still silent.
        meter.set_board_connected("rpict", False)
        meter.set_board_connected("rpict", True)
        clock.now += 11
        await wait_until(lambda: len(silent_lines()) == 2, timeout=2, what="said again")
    finally:
        await meter.stop()


def test_a_port_closing_again_and_again_is_said_once_per_interval(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Two info lines per drop of a flapping port (closed, values back) filled the log
    beside the link's own lines (helper 106): one per PORT_LOG_INTERVAL_S, with a count."""
    meter = make_meter(tmp_path, clock, rpict_port="/dev/ttyAMA0")
    caplog.set_level(logging.INFO)

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.levelno >= logging.INFO and "RPICT" in r.getMessage()]

    for _ in range(20):  # a drop every 3 s for a minute
        meter.set_board_connected("rpict", True)
        meter.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
        clock.now += 3
        meter.set_board_connected("rpict", False)
    assert said() == ["RPICT readings available", "RPICT port closed: values unavailable",
                      "RPICT readings available"]  # the closings after the first: silent
    assert meter.snapshot()["available"] is False  # the state itself is not held back
    clock.now += PORT_LOG_INTERVAL_S
    meter.set_board_connected("rpict", True)
    meter.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
    meter.set_board_connected("rpict", False)
    assert said()[3:] == [
        "RPICT port closed: values unavailable (closed 19 more times since the last message)"]
    meter.set_board_connected("rpict", True)
    meter.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
    assert said()[4:] == ["RPICT readings available"]
    clock.now += 3
    meter.set_board_connected("rpict", False)
    meter.set_board_connected("rpict", True)
    meter.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
    assert said()[5:] == []  # its closing was held back: so is the values' return
    assert meter.snapshot()["available"] is True


def test_a_vest_far_from_the_measured_voltage_is_said_once(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """rpict_vest 120 on a 230 V hat: powers scaled by 1.92 without a word."""
    meter = make_meter(tmp_path, clock, rpict_vest=120.0)
    caplog.set_level(logging.WARNING)
    meter.feed_voltage_line(etm(1, vrms="230.6"))
    for _ in range(3):
        meter.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
        clock.now += 1
    said = [r.getMessage() for r in caplog.records if "rpict_vest" in r.message]
    assert said == ["The voltage board measures 230.6 V but rpict_vest is 120 V: powers are "
                    "scaled by 1.92. Set rpict_vest to the voltage the hat's firmware assumes "
                    "(its Vest: 230 or 240 V in most of the world, 120 V in North America)"]
    # 240 V measured on a 230 V vest is an ordinary mains: nothing to say.
    caplog.clear()
    other = make_meter(tmp_path / "other", clock, rpict_vest=230.0)
    other.feed_voltage_line(etm(1, vrms="244.0"))
    other.feed_rpict_line(rpict(1500.0, 0.0, 0.0))
    assert not [r for r in caplog.records if "rpict_vest" in r.message]


def test_board_error_frames_are_logged_at_a_limited_rate(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A noisy line makes the board answer ETE after ETE: a warning per frame would flood
    the add-on's log."""
    meter = make_meter(tmp_path, clock)
    caplog.set_level(logging.WARNING)

    for seq in range(50):
        meter.feed_voltage_line(frame("ETE", str(seq), "EFRAME"))
    clock.now += 11
    meter.feed_voltage_line(frame("ETE", "50", "ECRC"))

    said = [r.getMessage() for r in caplog.records if "rejected a command line" in r.message]
    assert said == ["Voltage board rejected a command line: EFRAME",
                    "Voltage board rejected a command line: ECRC (49 more since the last "
                    "message)"]


# ------------------------------------------------------------------ persistence


async def test_energy_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    meter = make_meter(tmp_path, clock)
    await meter.start()
    for _ in range(11):
        meter.feed_rpict_line(rpict(3600.0, 1800.0, 0.0))
        clock.now += 1.0
    await meter.stop()

    restarted = make_meter(tmp_path, clock)

    energy = restarted.energy()
    assert energy["total_energy_kwh"] == pytest.approx(0.010)
    assert [c["energy_kwh"] for c in energy["channels"]] == pytest.approx([0.010, 0.005, 0.0])
    assert energy["since"] == "2026-11-24T10:15:02Z"
    assert restarted.snapshot()["total_energy_kwh"] == pytest.approx(0.010)
    assert restarted.snapshot()["available"] is False


async def test_a_removed_channel_keeps_its_counter_and_saving_goes_on(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock)
    await meter.start()
    for _ in range(11):
        meter.feed_rpict_line(rpict(3600.0, 1800.0, 720.0))
        clock.now += 1.0
    await meter.stop()

    two = [ChannelConfig(1, "Mains", "mains"), ChannelConfig(2, "Kitchen", "circuit")]
    fewer = make_meter(tmp_path, clock, channels=two)
    await fewer.start()
    for _ in range(11):
        fewer.feed_rpict_line(rpict(3600.0, 1800.0, 720.0))
        clock.now += 1.0
    await fewer.stop()  # the save raised "energy counters must never decrease" before

    saved = CounterStore(tmp_path / "energy.json").load()
    assert saved is not None
    assert saved.total_kwh == pytest.approx(0.020)
    assert dict(saved.channels_kwh) == pytest.approx({1: 0.020, 2: 0.010, 3: 0.002})
    # Put back, the channel goes on from where it stopped.
    restored = make_meter(tmp_path, clock)
    assert [c["energy_kwh"] for c in restored.energy()["channels"]] == pytest.approx(
        [0.020, 0.010, 0.002])


async def test_counters_are_written_every_persist_interval(
    tmp_path: Path, clock: FakeClock
) -> None:
    meter = make_meter(tmp_path, clock, persist_interval_s=5, rpict_port="/dev/ttyAMA0")
    await meter.start()
    try:
        meter.feed_rpict_line(rpict(3600.0, 0.0, 0.0))
        clock.now += 1.0
        meter.feed_rpict_line(rpict(3600.0, 0.0, 0.0))
        clock.now += 5.0
        store = CounterStore(tmp_path / "energy.json")
        async with asyncio.timeout(2):
            # A file appearing has no event to wait for: poll.
            while (saved := store.load()) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert saved.total_kwh == pytest.approx(0.001)
    finally:
        await meter.stop()


def test_a_disk_that_refuses_the_counters_is_said_once_and_retried(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The data folder is gone from under the add-on (here a file where it was).
    blocked = tmp_path / "data"
    blocked.mkdir()
    meter = make_meter(blocked, clock)
    blocked.rmdir()
    blocked.write_text("not a folder")
    for _ in range(3):
        clock.now += 2
        meter.feed_rpict_line(rpict(1000.0, 0.0, 0.0))
        meter.persist()
    assert meter.snapshot()["total_energy_kwh"] > 0
    errors = [r.getMessage() for r in caplog.records
              if r.getMessage().startswith("Could not write the energy counters:")]
    assert len(errors) == 1, errors
    blocked.unlink()
    blocked.mkdir()
    clock.now += 2
    meter.feed_rpict_line(rpict(1000.0, 0.0, 0.0))
    meter.persist()
    assert "Energy counters written again" in caplog.text
    assert CounterStore(blocked / "energy.json").load() is not None

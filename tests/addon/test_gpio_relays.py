"""GPIO relays: only the gpiod line request is a test double (there is no GPIO chip here).

The double behaves like the kernel's lines: each has a level, `get_value` reads it back,
and a line can be "stuck" (its driver does not follow, as with a dead relay board).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gpiod import LineSettings
from gpiod.line import Direction, Value

from energy_tracker_addon.config import Options, RelayConfig
from energy_tracker_addon.gpio_relays import GpioRelays, OpenedLines
from energy_tracker_addon.relays import RelayManager, RelayUnavailable
from energy_tracker_addon.service import AddonService

from .polling import wait_until
from .test_api import TOKEN, auth

PINS = {1: 22, 2: 23, 3: 24}
CONFIGS = [RelayConfig(i, f"Relay {i}", "gpio", gpio=pin) for i, pin in PINS.items()]


class FakeLineRequest:
    """Stands in for `gpiod.LineRequest` on BCM lines with the given starting levels."""

    def __init__(self, levels: dict[int, Value], outputs: Iterable[int] = ()) -> None:
        """`outputs`: lines an earlier run left driving their level; the others are
        inputs, whose level is their pull resistor's."""
        self.levels = dict(levels)
        self.outputs = frozenset(outputs)
        self.directions = {pin: Direction.OUTPUT if pin in self.outputs else Direction.INPUT
                           for pin in levels}
        self.stuck: set[int] = set()
        self.released = False

    def get_value(self, line: int | str) -> Value:
        return self.levels[int(line)]

    def set_value(self, line: int | str, value: Value) -> None:
        pin = int(line)
        if self.directions[pin] != Direction.OUTPUT:
            raise OSError(1, "line is not an output")
        if pin not in self.stuck:
            self.levels[pin] = value

    def reconfigure_lines(
        self, config: dict[Iterable[int | str] | int | str, LineSettings | None]
    ) -> None:
        for line, settings in config.items():
            assert isinstance(line, int)
            assert settings is not None
            self.directions[line] = settings.direction
            self.levels[line] = settings.output_value

    def release(self) -> None:
        self.released = True


async def _manager(tmp_path: Path, request_or_error: FakeLineRequest | Exception
                   ) -> tuple[RelayManager, GpioRelays, list[tuple[str, tuple[int, ...]]]]:
    manager = RelayManager(CONFIGS, tmp_path)
    opened: list[tuple[str, tuple[int, ...]]] = []

    def open_request(chip: str, pins: tuple[int, ...]) -> Any:
        opened.append((chip, pins))
        if isinstance(request_or_error, Exception):
            raise request_or_error
        return OpenedLines(request_or_error, request_or_error.outputs)

    backend = GpioRelays(PINS, manager.report, open_request)
    manager.attach(list(PINS), backend)
    await manager.start()
    return manager, backend, opened


async def test_gpio_relays_keep_their_levels_at_start_and_report_the_line_read_back(
    tmp_path: Path,
) -> None:
    lines = FakeLineRequest({22: Value.ACTIVE, 23: Value.INACTIVE, 24: Value.INACTIVE},
                            outputs=(22, 23, 24))
    manager, _, opened = await _manager(tmp_path, lines)
    try:
        assert opened == [("/dev/gpiochip0", (22, 23, 24))]
        # A restart of the add-on does not click any relay: outputs keep the levels read.
        assert lines.directions == dict.fromkeys((22, 23, 24), Direction.OUTPUT)
        assert [r.state for r in manager.relays] == [True, False, False]
        assert [manager.as_json(r)["source"] for r in manager.relays] == ["gpio"] * 3

        await manager.switch(2, True)
        assert lines.levels[23] == Value.ACTIVE
        assert manager.get(2).state is True
        await manager.switch(1, False)
        assert (lines.levels[22], manager.get(1).state) == (Value.INACTIVE, False)

        # A line that does not follow: the reported state is what it reads, not the request.
        lines.stuck.add(24)
        await manager.switch(3, True)
        assert manager.get(3).state is False
    finally:
        await manager.stop()
    assert lines.released


async def test_gpio_lines_still_inputs_start_off_whatever_their_pull_reads(
    tmp_path: Path,
) -> None:
    """First start after a boot: the lines are inputs, and BCM 0-8 (and 2-3 on every
    board) read high through pull-ups. They used to become outputs driving that level:
    a relay on such a pin switched on by itself."""
    lines = FakeLineRequest({22: Value.ACTIVE, 23: Value.INACTIVE, 24: Value.ACTIVE},
                            outputs=(24,))  # 24: left on by an earlier run
    manager, _, _ = await _manager(tmp_path, lines)
    try:
        assert lines.directions == dict.fromkeys((22, 23, 24), Direction.OUTPUT)
        assert lines.levels == {22: Value.INACTIVE, 23: Value.INACTIVE, 24: Value.ACTIVE}
        assert [r.state for r in manager.relays] == [False, False, True]
    finally:
        await manager.stop()


async def test_gpio_relays_that_cannot_be_requested_are_unavailable_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    manager, _, _ = await _manager(tmp_path, PermissionError(13, "Permission denied"))
    try:
        assert [manager.as_json(r)["available"] for r in manager.relays] == [False] * 3
        assert [r.state for r in manager.relays] == [None] * 3
        with pytest.raises(RelayUnavailable):
            await manager.switch(1, True)
        assert "GPIO relays on BCM [22, 23, 24] are unavailable" in caplog.text
        assert "Permission denied" in caplog.text
    finally:
        await manager.stop()


async def test_pins_a_small_gpio_chip_lacks_are_said_and_only_the_gpio_relays_stay_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A /dev/gpiochip0 of 4 lines (not a Pi, or a USB adapter's GPIO): gpiod's ValueError
    stopped the add-on with a traceback (helper 90). The chip is the kernel's, so its info
    is the double here; the rest is the real gpiod code and request_lines."""
    import gpiod
    from gpiod.chip_info import ChipInfo

    from energy_tracker_addon.gpio_relays import request_lines

    class KernelChip:  # what the kernel answers for a 4-line chip (gpiod._ext.Chip)
        def get_info(self) -> ChipInfo:
            return ChipInfo("gpiochip0", "cp2104", 4)

        def close(self) -> None:
            pass

    class FourLineChip(gpiod.Chip):
        def __init__(self, path: str) -> None:
            self._chip, self._info = KernelChip(), None  # type: ignore[assignment]

    monkeypatch.setattr(gpiod, "Chip", FourLineChip)
    with pytest.raises(OSError, match="has 4 lines, so no BCM 22, 23, 24: is it the"):
        request_lines("/dev/gpiochip0", (22, 23, 24))
    # gpiod's own refusal of a line is taken like any other.
    manager, _, _ = await _manager(tmp_path, ValueError("line offset of out range"))
    try:
        assert [manager.as_json(r)["available"] for r in manager.relays] == [False] * 3
        assert "GPIO relays on BCM [22, 23, 24] are unavailable" in caplog.text
    finally:
        await manager.stop()


async def test_missing_gpiod_package_is_logged_clearly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager, _, _ = await _manager(tmp_path, ImportError("No module named 'gpiod'"))
    try:
        assert not manager.as_json(manager.get(1))["available"]
        assert "gpiod package is not installed" in caplog.text
    finally:
        await manager.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.mark.usefixtures("socket_enabled")
async def test_service_without_a_gpio_chip_serves_gpio_relays_as_unavailable(
    tmp_path: Path, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The real gpiod on this machine, which has no /dev/gpiochip0: no double at all."""
    options = Options(api_token=TOKEN, relays=(
        RelayConfig(1, "Water heater", "board"),
        RelayConfig(4, "Pump", "gpio", gpio=22, fail_safe_on=True),
    ))
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        async with session.get(service.url + "/api/v1/relays", headers=auth()) as resp:
            pump = (await resp.json())["relays"][1]
        assert (pump["id"], pump["source"], pump["available"], pump["state"]) == (
            4, "gpio", False, None)
        async with session.put(service.url + "/api/v1/relays/4", json={"state": True},
                               headers=auth()) as resp:
            assert resp.status == 503
    finally:
        await service.stop()
    # Nothing on the Pi would carry it out: said, not silently taken.
    assert "Relay 4 (Pump) is a gpio relay: fail_safe_on applies to board relays only" \
        in caplog.text
    assert pump["fail_safe_on"] is False


@pytest.mark.usefixtures("socket_enabled")
async def test_a_gpio_relay_left_off_does_not_open_the_simulated_boards_relay(
    tmp_path: Path,
) -> None:
    """The simulated board started its relays from every saved relay state: a GPIO relay 1
    found off (after the Pi booted) opened the board's relay 1, which switches the replayed
    water heater, for good (helper 90)."""
    from energy_tracker_addon.relays import SETTINGS_FILE

    data = tmp_path / "data"
    data.mkdir()
    (data / SETTINGS_FILE).write_text(json.dumps({"1": {
        "priority": 50, "min_on_s": 0, "shed": False, "state": False,
        "on_since": None, "last_changed": 1_780_000_000.0}}))
    options = Options(api_token=TOKEN, nilm_enabled=False,
                      relays=(RelayConfig(1, "Heat pump", "gpio", gpio=22),))
    service = AddonService(options, data, host="127.0.0.1", port=0)
    await service.start()
    try:
        await wait_until(lambda: service.meter.snapshot()["boards"]["voltage"]["relays"]
                         is not None, what="the simulated board's first frame")
        assert service.meter.snapshot()["boards"]["voltage"]["relays"] == [True, True, True]
    finally:
        await service.stop()

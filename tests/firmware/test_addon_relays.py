"""The add-on switching the real firmware's relays (host build on a pty, bridged to the
add-on's serial port): command, ack and reported state, end to end over ET1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from energy_tracker_addon.config import DEFAULT_RELAYS, Options
from energy_tracker_addon.service import AddonService
from tests.addon.polling import wait_until
from tests.addon.pty_bridge import PtyBridge
from tests.addon.ptys import PtyPort
from tests.addon.test_api import TOKEN, auth

pytestmark = pytest.mark.usefixtures("socket_enabled")


@contextlib.contextmanager
def firmware_board(firmware_build: Path, tmp_path: Path, *args: str) -> Iterator[Options]:
    """The real firmware on a pty (bridged to the add-on's port); the add-on's options for
    it, with a silent RPICT port (relays need no readings)."""
    bridge = PtyBridge(tmp_path / "ttyVOLT")
    bridge.start()
    board = subprocess.Popen(
        [str(firmware_build / "et1_pty_board"), "--port", bridge.board_path,
         "--settings", str(tmp_path / "flash.bin"), *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    rpict = PtyPort(tmp_path / "ttyRPICT")
    rpict.plug()
    try:
        yield Options(api_token=TOKEN, rpict_port=str(rpict.path),
                      voltage_port=str(bridge.host_path))
    finally:
        board.terminate()
        _, errors = board.communicate(timeout=5)
        bridge.close()
        rpict.unplug()
    assert board.returncode in (0, -15), errors


@contextlib.asynccontextmanager
async def serving(options: Options, data_dir: Path) -> AsyncIterator[AddonService]:
    service = AddonService(options, data_dir, host="127.0.0.1", port=0)
    try:
        await service.start()
        await wait_until(lambda: all(service.relays.available(r) for r in service.relays.relays))
        yield service
    finally:
        await service.stop()


@pytest.fixture
async def service(firmware_build: Path, tmp_path: Path) -> AsyncIterator[AddonService]:
    with firmware_board(firmware_build, tmp_path) as options:
        async with serving(replace(options, relay_watchdog_s=60), tmp_path / "data") as service:
            yield service


async def test_firmware_relays_switch_and_report_the_acknowledged_state(
    service: AddonService,
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def relays() -> list[bool | None]:
            async with session.get(service.url + "/api/v1/relays", headers=auth()) as resp:
                return [r["state"] for r in (await resp.json())["relays"]]

        # The firmware boots into its fail-safe pattern: all open until SAFE is set.
        await wait_until(lambda: service.meter.relays == (False, False, False))
        assert await relays() == [False, False, False]
        for relay_id, state, expected in ((2, True, [False, True, False]),
                                          (1, True, [True, True, False]),
                                          (2, False, [True, False, False])):
            async with session.put(f"{service.url}/api/v1/relays/{relay_id}",
                                   json={"state": state}, headers=auth()) as resp:
                assert resp.status == 200
                assert (await resp.json())["state"] is state
            assert await relays() == expected


@pytest.mark.parametrize(("sdk_reason", "cause", "warned"), [
    (3, "soft_watchdog", "a software watchdog reset (the firmware got stuck for seconds)"),
    (2, "exception", "a crash (an exception in the firmware)"),
    (0, "power_on", None),
])
async def test_a_board_that_crashed_says_so_in_the_log_and_the_state(
    firmware_build: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    sdk_reason: int, cause: str, warned: str | None,
) -> None:
    """A board restarting in a loop (a crash, a stuck loop) looked like any power cut."""
    with (firmware_board(firmware_build, tmp_path, "--reset-reason", str(sdk_reason))
          as options, caplog.at_level(logging.WARNING, logger="energy_tracker_addon.meter")):
        async with serving(options, tmp_path / "data") as service:
            def voltage_board() -> dict[str, object]:
                board: dict[str, object] = service.meter.snapshot()["boards"]["voltage"]
                return board
            await wait_until(lambda: voltage_board()["boot_cause"] is not None)
            shown = voltage_board()["boot_cause"]
    assert shown == cause
    warnings = [r.getMessage() for r in caplog.records if "voltage board" in r.getMessage()]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1, warnings
        assert f"after {warned} (firmware 1.5.1)" in warnings[0]


async def test_a_fail_safe_relay_is_closed_by_the_board_when_the_addon_is_gone(
    firmware_build: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A freezer on relay 2: the board's watchdog and its boot opened every relay, the
    freezer's too, whatever the user wanted. Stored once, not at every start (flash)."""
    relays = tuple(replace(r, fail_safe_on=r.id == 2) for r in DEFAULT_RELAYS)
    flash, data = tmp_path / "flash.bin", tmp_path / "data"
    with firmware_board(firmware_build, tmp_path) as options:
        options = replace(options, relays=relays, relay_watchdog_s=2)
        async with serving(options, data) as first:
            await wait_until(lambda: "fail-safe state stored" in caplog.text)
            await first.relays.switch(1, True)
            assert first.meter.relays == (True, False, False)
        written = flash.stat().st_mtime_ns
        await asyncio.sleep(3.0)  # the add-on is gone: past the board's watchdog
        async with serving(options, data) as second:
            await wait_until(lambda: second.meter.relays is not None)
            assert second.meter.relays == (False, True, False)
    # The board restarts (a power cut): it boots with the freezer on.
    with firmware_board(firmware_build, tmp_path) as options:
        async with serving(replace(options, relays=relays), data) as third:
            await wait_until(lambda: third.meter.relays is not None)
            assert third.meter.relays == (False, True, False)
            await asyncio.sleep(1.0)  # time for a SAFE, had one been sent
    assert flash.stat().st_mtime_ns == written
    assert caplog.text.count("fail-safe state stored") == 1


async def test_watchdog_set_to_0_disarms_a_board_a_previous_run_armed(
    firmware_build: Path, tmp_path: Path
) -> None:
    """The board outlives the add-on (an options change restarts only the add-on). With
    the watchdog turned off, its old watchdog used to trip a few seconds later and open
    relay 1, which nobody had commanded."""
    with firmware_board(firmware_build, tmp_path, "--speed", "10") as options:
        # 30 board seconds (3 s here): the restart below fits in it, even on a busy machine.
        async with serving(replace(options, relay_watchdog_s=30), tmp_path / "data") as first:
            await first.relays.switch(1, True)
        async with serving(replace(options, relay_watchdog_s=0), tmp_path / "data") as second:
            await wait_until(lambda: second.meter.relays is not None)
            await asyncio.sleep(4.0)  # 40 s of board time: past the old watchdog
            assert second.meter.relays == (True, False, False)



async def test_calibrating_against_a_multimeter_makes_the_firmware_read_it(
    firmware_build: Path, tmp_path: Path
) -> None:
    """The firmware README's CAL, through the add-on's API: the board reads 230 V, the
    multimeter 236.9 V; afterwards the board reads the multimeter's value, and keeps it
    in its flash."""
    with firmware_board(firmware_build, tmp_path, "--vrms", "230") as options:
        async with serving(options, tmp_path / "data") as service, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_until(lambda: service.meter.snapshot()["voltage_v"] is not None)
            before = service.meter.snapshot()["voltage_v"]
            assert abs(before - 230.0) < 1.0
            url = f"{service.url}/api/v1/boards/voltage/calibration"
            # The first calibration may halve the factor (a 120 V grid) but not raise it
            # by 1.7: 400 for 240 V is a typo, and every power would be 1.7 times too high.
            async with session.post(url, json={"measured_v": 400}, headers=auth()) as resp:
                assert resp.status == 400
            async with session.post(url, json={"measured_v": 236.9}, headers=auth()) as resp:
                assert resp.status == 200
                answer = await resp.json()
            assert answer["cal_before"] == 2.4
            assert answer["cal"] == pytest.approx(2.4 * 236.9 / answer["board_v_before"],
                                                  abs=1e-5)
            await wait_until(
                lambda: abs(service.meter.snapshot()["voltage_v"] - 236.9) < 0.3)
            # A reading far from the board's is refused, not stored.
            async with session.post(url, json={"measured_v": 400}, headers=auth()) as resp:
                assert resp.status == 400
                assert "ZMPT101B trimmer" in (await resp.json())["detail"]
            # 22 % below what the board reads is within the documented 25 % (it was
            # measured against the multimeter's value, so refused below 20 %).
            async with session.post(url, json={"measured_v": 185}, headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
            await wait_until(lambda: abs(service.meter.snapshot()["voltage_v"] - 185) < 0.3)
            async with session.post(url, json={"measured_v": 230}, headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
            await wait_until(lambda: abs(service.meter.snapshot()["voltage_v"] - 230) < 0.3)
            async with session.post(url, json={"measured_v": 236.9}, headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
                answer = await resp.json()
    # The firmware kept it in flash: a new boot says hello with the new factor.
    with firmware_board(firmware_build, tmp_path, "--vrms", "230") as options:
        async with serving(options, tmp_path / "data") as service:
            await wait_until(lambda: service.voltage_calibration.cal is not None)
            assert service.voltage_calibration.cal == answer["cal"]


async def test_a_board_on_a_120_v_grid_calibrates_from_the_firmware_default(
    firmware_build: Path, tmp_path: Path
) -> None:
    """The firmware's default factor is for 230 V: a module trimmed as the README says on a
    120 V grid reads 230 V, and a correction by half was refused as a typo."""
    with firmware_board(firmware_build, tmp_path, "--vrms", "120", "--freq", "60",
                        "--wiring-cal", "1.25") as options:
        async with serving(options, tmp_path / "data") as service, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_until(lambda: service.meter.snapshot()["voltage_v"] is not None)
            assert service.meter.snapshot()["voltage_v"] == pytest.approx(230.4, abs=1.5)
            url = f"{service.url}/api/v1/boards/voltage/calibration"
            async with session.post(url, json={"measured_v": 120.0}, headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["cal"] == pytest.approx(1.25, abs=0.01)
            await wait_until(lambda: abs(service.meter.snapshot()["voltage_v"] - 120.0) < 0.3)
            # Calibrated once, a correction by half is a typo again.
            async with session.post(url, json={"measured_v": 240.0}, headers=auth()) as resp:
                assert resp.status == 400


async def test_a_board_on_the_old_default_factor_calibrates_up_to_the_real_voltage(
    firmware_build: Path, tmp_path: Path
) -> None:
    """Firmware before 1.3.0 defaulted to 1.8, which reads the usual trim 20-30 % low: its
    first calibration must be able to raise it by a third (0.3.19 first refused it)."""
    with firmware_board(firmware_build, tmp_path, "--vrms", "230") as options:
        async with serving(options, tmp_path / "data") as service, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_until(lambda: service.meter.snapshot()["voltage_v"] is not None)
            board_v = service.meter.snapshot()["voltage_v"]
            url = f"{service.url}/api/v1/boards/voltage/calibration"
            # A board of an old firmware: factor 1.8, reading 3/4 of the mains.
            async with session.post(url, json={"measured_v": board_v * 0.75},
                                    headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["cal"] == pytest.approx(1.8, abs=0.01)
            await wait_until(lambda: service.voltage_calibration.cal is not None
                             and abs(service.meter.snapshot()["voltage_v"] - board_v * 0.75)
                             < 0.5)
            async with session.post(url, json={"measured_v": 230.0}, headers=auth()) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["cal"] == pytest.approx(2.4, abs=0.02)


async def test_a_calibration_the_board_cannot_store_is_reported_not_passed_off(
    firmware_build: Path, tmp_path: Path
) -> None:
    """A board whose flash fails (worn out) applies CAL until its next boot: the user is
    told it will not last, instead of a success that a power cut silently undoes."""
    flash = tmp_path / "missing-dir" / "flash.bin"  # the board cannot write its settings
    with firmware_board(firmware_build, tmp_path, "--vrms", "230",
                        "--settings", str(flash)) as options:
        async with serving(options, tmp_path / "data") as service, aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10)) as session:
            await wait_until(lambda: service.meter.snapshot()["voltage_v"] is not None)
            url = f"{service.url}/api/v1/boards/voltage/calibration"
            async with session.post(url, json={"measured_v": 236.9}, headers=auth()) as resp:
                assert resp.status == 507
                answer = await resp.json()
            assert answer["error"] == "not_stored"
            assert "could not store it in its flash" in answer["detail"]
            assert answer["detail"].endswith("after its next boot it reads with 2.4 again")
            # In use all the same until the board reboots.
            await wait_until(
                lambda: abs(service.meter.snapshot()["voltage_v"] - 236.9) < 0.3)
            # Again: the board still boots with what its flash holds, not the last factor.
            await wait_until(lambda: service.voltage_calibration.cal is not None
                             and service.meter.snapshot()["voltage_v"] is not None)
            async with session.post(url, json={"measured_v": 240.0}, headers=auth()) as resp:
                assert resp.status == 507
                again = await resp.json()
            assert again["detail"].endswith("after its next boot it reads with 2.4 again")


async def test_a_stray_byte_on_the_line_does_not_spoil_the_next_switch(
    service: AddonService,
) -> None:
    """Line noise left a partial line in the board's buffer: the add-on's next command
    still gets through (it starts with a line end), not a timeout."""
    port = service.options.voltage_port
    fd = os.open(port, os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, b"~")
    finally:
        os.close(fd)
    await asyncio.sleep(0.2)  # through the bridge to the board
    await service.relays.switch(3, True)
    await wait_until(lambda: service.meter.relays == (False, False, True))

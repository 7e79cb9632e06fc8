"""The add-on switching the real firmware's relays (host build on a pty, bridged to the
add-on's serial port): command, ack and reported state, end to end over ET1."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from energy_tracker_addon.config import Options
from energy_tracker_addon.service import AddonService
from tests.addon.polling import wait_until
from tests.addon.pty_bridge import PtyBridge
from tests.addon.ptys import PtyPort
from tests.addon.test_api import TOKEN, auth

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
async def service(firmware_build: Path, tmp_path: Path) -> AsyncIterator[AddonService]:
    bridge = PtyBridge(tmp_path / "ttyVOLT")
    bridge.start()
    board = subprocess.Popen(
        [str(firmware_build / "et1_pty_board"), "--port", bridge.board_path,
         "--settings", str(tmp_path / "flash.bin")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    rpict = PtyPort(tmp_path / "ttyRPICT")  # present but silent: relays need no readings
    rpict.plug()
    options = Options(api_token=TOKEN, rpict_port=str(rpict.path),
                      voltage_port=str(bridge.host_path), relay_watchdog_s=60)
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    try:
        await service.start()
        await wait_until(lambda: all(service.relays.available(r) for r in service.relays.relays))
        yield service
    finally:
        await service.stop()
        board.terminate()
        _, errors = board.communicate(timeout=5)
        bridge.close()
        rpict.unplug()
    assert board.returncode in (0, -15), errors


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

"""Fixtures: the real add-on service in-process, and config entries pointing at it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_tracker import config_flow as config_flow_module
from custom_components.energy_tracker import coordinator as coordinator_module
from custom_components.energy_tracker.const import CONF_UPDATE_INTERVAL, DOMAIN
from energy_tracker_addon.config import load_options
from energy_tracker_addon.service import AddonService

HOST = "127.0.0.1"
# Fast replay so values move within a test; short staleness so stale data shows quickly.
ADDON_OPTIONS: dict[str, Any] = {"simulation_speed": 60, "stale_after_s": 3}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let HA load custom_components/energy_tracker."""


@pytest.fixture(autouse=True)
def real_sockets(socket_enabled: None) -> None:
    """Real servers on 127.0.0.1 (phacc still refuses connections to any other host)."""


# The zone Home Assistant's test harness sets (hass.config.time_zone).
HA_TEST_ZONE = "US/Pacific"


@pytest.fixture(autouse=True)
def addon_in_home_assistant_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Supervisor starts an add-on with Home Assistant's time zone as $TZ."""
    monkeypatch.setenv("TZ", HA_TEST_ZONE)


@pytest.fixture(autouse=True)
def every_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries without the option publish every reading, as the tests' boards print one
    every 0.5 s to see each; tests marked `shipped_update_interval` keep the 5 s default."""
    if request.node.get_closest_marker("shipped_update_interval") is None:
        monkeypatch.setattr(coordinator_module, "DEFAULT_UPDATE_INTERVAL", 0)
        monkeypatch.setattr(config_flow_module, "DEFAULT_UPDATE_INTERVAL", 0)


class Addon:
    """The add-on service under test; restartable on the same port and data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.service: AddonService | None = None
        self.port = 0

    async def start(self, **options: Any) -> None:
        (self.data_dir / "options.json").write_text(json.dumps({**ADDON_OPTIONS, **options}))
        self.service = AddonService(load_options(self.data_dir), self.data_dir, host=HOST,
                                    port=self.port)
        await self.service.start()
        self.port = self.service.port

    async def wait_for_reading(self) -> None:
        """Until the simulated meter has produced its first reading."""
        async def has_reading() -> bool:
            return (await self.get("state"))["total_power_w"] is not None

        await wait_for(has_reading, 10, "the simulated meter's first reading")

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    @property
    def token(self) -> str:
        assert self.service is not None
        return str(self.service.token)

    @property
    def meter_id(self) -> str:
        assert self.service is not None
        return str(self.service.meter_id)

    @property
    def entry_data(self) -> dict[str, Any]:
        return {CONF_HOST: HOST, CONF_PORT: self.port, CONF_API_TOKEN: self.token}

    async def get(self, path: str) -> Any:
        """What the add-on serves right now (the reference the entities must match)."""
        return json.loads(await self.get_text(f"/api/v1/{path}"))

    async def get_text(self, path: str) -> str:
        async with aiohttp.ClientSession() as session, session.get(
            f"http://{HOST}:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            response.raise_for_status()
            return await response.text()


async def _running_addon(tmp_path: Path, name: str) -> Addon:
    data_dir = tmp_path / name
    data_dir.mkdir()
    addon = Addon(data_dir)
    await addon.start()
    return addon


@pytest.fixture
async def addon(tmp_path: Path) -> AsyncIterator[Addon]:
    """The add-on service on the simulated meter, on a free port of 127.0.0.1."""
    service = await _running_addon(tmp_path, "addon")
    yield service
    await service.stop()


@pytest.fixture
async def other_addon(tmp_path: Path) -> AsyncIterator[Addon]:
    """A second add-on with its own data dir, hence another meter_id."""
    service = await _running_addon(tmp_path, "other-addon")
    yield service
    await service.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def config_entry(addon: Addon) -> MockConfigEntry:
    """An entry for the running add-on (with readings), not yet added to hass."""
    await addon.wait_for_reading()
    return MockConfigEntry(domain=DOMAIN, title="Energy Tracker", unique_id=addon.meter_id,
                           data=addon.entry_data)


@pytest.fixture
async def loaded_entry(hass: HomeAssistant, config_entry: MockConfigEntry) -> MockConfigEntry:
    """The entry set up and streaming."""
    config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(config_entry.entry_id)
    await hass.async_block_till_done()
    assert config_entry.state is ConfigEntryState.LOADED
    return config_entry


async def set_up_entry(hass: HomeAssistant, addon: Addon, *, unique_id: str | None = None,
                       **changes: Any) -> MockConfigEntry:
    """An entry for `addon` whose data differ by `changes` (an old `api_token`, another
    `port`) or that names another meter, added and set up: its state is the test's to check."""
    entry = MockConfigEntry(domain=DOMAIN, unique_id=unique_id or addon.meter_id,
                            data={**addon.entry_data, **changes})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def loaded_entry_with_interval(hass: HomeAssistant, addon: Addon,
                                     seconds: int) -> MockConfigEntry:
    """An entry for `addon` with this minimum update interval, set up and streaming."""
    await addon.wait_for_reading()
    entry = MockConfigEntry(domain=DOMAIN, unique_id=addon.meter_id, data=addon.entry_data,
                            options={CONF_UPDATE_INTERVAL: seconds})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def new_token_on_the_addon(hass: HomeAssistant, addon: Addon,
                                 token: str) -> dict[str, Any]:
    """Restart the add-on with another API token; the running entry's reauth flow."""
    await addon.stop()
    await addon.start(api_token=token)

    def reauth_flows() -> list[dict[str, Any]]:
        return [dict(flow) for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN)
                if flow["context"]["source"] == SOURCE_REAUTH]

    await wait_for(lambda: len(hass.config_entries.flow.async_progress_by_handler(DOMAIN)) == 1
                   and len(reauth_flows()) == 1, 10, "a reauth flow")
    return reauth_flows()[0]


def device_with(registry: dr.DeviceRegistry, identifier: tuple[str, str]
                ) -> dr.DeviceEntry | None:
    """The device holding `identifier`. async_get_device(identifiers=...) is deprecated
    from Home Assistant 2026.9 and raises when a test calls it, as does using `devices`
    as a mapping; iterating it gives ids before then, devices since: both work here."""
    for item in registry.devices:
        device = registry.async_get(item) if isinstance(item, str) else item
        if device is not None and identifier in device.identifiers:
            return device
    return None


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], timeout: float,
                   what: str) -> float:
    """Poll `condition` until true; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return loop.time() - started
        assert loop.time() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.05)

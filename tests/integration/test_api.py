"""The client refuses what is not the documented API: payload shapes, other servers."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web
from homeassistant import config_entries
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from custom_components.energy_tracker import api
from custom_components.energy_tracker.api import (
    CannotConnect,
    EnergyTrackerClient,
    InvalidData,
)
from custom_components.energy_tracker.const import DOMAIN
from custom_components.energy_tracker.models import MeterInfo, MeterState, NilmStatus

from .conftest import HOST, Addon
from .stall_proxy import StallProxy


@pytest.fixture
async def served_state(addon: Addon) -> dict[str, Any]:
    """A real state payload to corrupt."""
    state: dict[str, Any] = await addon.get("state")
    return state


async def test_real_payloads_are_accepted(addon: Addon, served_state: dict[str, Any]) -> None:
    state = MeterState.from_json(served_state)
    assert state.total_energy_kwh == served_state["total_energy_kwh"]
    assert sorted(state.channels) == sorted(c["id"] for c in served_state["channels"])
    info = MeterInfo.from_json(await addon.get("info"))
    assert info.meter_id == addon.meter_id


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("total_power_w",), "1873.2"),      # a string is not a number
        (("total_power_w",), True),          # nor is a boolean
        (("voltage_v",), float("nan")),      # Python's json reads NaN; it is no reading
        (("channels", 0, "energy_kwh"), [1]),
        (("seq",), 1.5),
        (("meter_id",), ""),
    ],
)
def test_malformed_state_is_invalid_data(
    served_state: dict[str, Any], path: tuple[str | int, ...], bad: object
) -> None:
    payload = copy.deepcopy(served_state)
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(InvalidData):
        MeterState.from_json(json.loads(json.dumps(payload)))


def test_missing_field_is_invalid_data(served_state: dict[str, Any]) -> None:
    del served_state["total_energy_kwh"]
    with pytest.raises(InvalidData):
        MeterState.from_json(served_state)


async def test_the_nilm_status_of_a_running_addon_is_not_broken(addon: Addon) -> None:
    status = NilmStatus.from_json(await addon.get("appliances"))
    assert (status.available, status.status, status.broken) == (True, "running", False)


@pytest.mark.parametrize(
    ("payload", "broken"),
    [
        ({"available": False, "status": "error", "reason": "no NILM models: /m: gone"}, True),
        # Decided by `status`, whatever the add-on's wording of `reason`
        ({"available": False, "status": "disabled", "reason": "switched off"}, False),
        ({"available": False, "status": "updating", "reason": None}, False),  # a newer add-on
        # Add-ons before 0.3.4 send no status: their reasons are known
        ({"available": False, "reason": "disabled (option nilm_enabled)"}, False),
        ({"available": False, "reason": "no NILM models: /m: gone"}, True),
        ({"available": True, "reason": None}, False),
    ],
)
def test_nilm_status_tells_broken_from_switched_off(payload: dict[str, Any], broken: bool) -> None:
    assert NilmStatus.from_json(payload).broken is broken


def test_a_nilm_status_that_is_not_text_is_invalid_data() -> None:
    with pytest.raises(InvalidData):
        NilmStatus.from_json({"available": False, "status": 3, "reason": None})


class OtherServer:
    """Something that is not the add-on, listening where the user pointed us."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port


@pytest.fixture
async def other_server() -> AsyncIterator[OtherServer]:
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>router login</html>", content_type="text/html")

    async def teapot(request: web.Request) -> web.Response:
        return web.json_response({"error": "teapot"}, status=418)

    async def ws_garbage(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "log", "data": "ignored"}))
        await ws.send_str("not json")
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/api/v1/info", html)
    app.router.add_get("/api/v1/state", teapot)
    app.router.add_get("/api/v1/stream", ws_garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield OtherServer(runner, port)
    await runner.cleanup()


async def test_other_server_errors(hass: HomeAssistant, other_server: OtherServer) -> None:
    client = EnergyTrackerClient(async_get_clientsession(hass), HOST, other_server.port, "t")
    with pytest.raises(InvalidData):
        await client.get_info()
    with pytest.raises(CannotConnect):
        await client.get_state()
    with pytest.raises(InvalidData):
        async for _ in client.stream():
            pass  # the unknown "log" message is skipped; "not json" is refused


async def test_user_flow_pointed_at_another_server_is_not_energy_tracker(
    hass: HomeAssistant, other_server: OtherServer
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"host": HOST, "port": other_server.port, "api_token": "t"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_energy_tracker"}


# aiohttp 3.11 re-arms the heartbeat timer of a WebSocket its heartbeat has just closed
# (receive() resets it after the ERROR message); the timer finds it closed and does nothing.
@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_a_stalled_connection_is_said_as_such_not_as_a_closed_stream(
    hass: HomeAssistant, addon: Addon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link that stalls without closing is found by the heartbeat; it used to end the
    stream as if the add-on had closed it ("the add-on closed the stream")."""
    monkeypatch.setattr(api, "STREAM_HEARTBEAT_S", 0.5)
    proxy = StallProxy(addon.port)
    await proxy.start()
    client = EnergyTrackerClient(async_get_clientsession(hass), HOST, proxy.port, addon.token)

    async def freeze_after_the_first_state() -> None:
        async with asyncio.timeout(10), aclosing(client.stream()) as stream:
            async for _state in stream:
                proxy.freeze()

    try:
        with pytest.raises(CannotConnect, match="no answer to the heartbeat"):
            await freeze_after_the_first_state()
    finally:
        proxy.thaw()
        await proxy.stop()


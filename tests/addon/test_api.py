"""The HTTP API of a running add-on service (docs/api.md), through a real server and pty.

The service is the real `AddonService` on 127.0.0.1 with its RPICT board on a
pseudo-terminal the test writes to, so every reading goes the whole way: pty → serial link
→ meter → API.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import BadHttpMessage

from energy_tracker_addon import __version__
from energy_tracker_addon import api as api_module
from energy_tracker_addon import service as service_module
from energy_tracker_addon.api import create_app
from energy_tracker_addon.config import ChannelConfig, Options
from energy_tracker_addon.http_noise import MalformedRequests
from energy_tracker_addon.service import AddonService

from .history_seed import LABEL_DAY, keep_a_week_of_readings
from .polling import wait_until
from .ptys import PtyPort

# Real servers on 127.0.0.1 (phacc still refuses connections to any other host).
pytestmark = pytest.mark.usefixtures("socket_enabled")

TOKEN = "test-token-0123456789abcdefghijklmnopqrstuvwxyz"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def rpict(pty_port: Callable[[str], PtyPort]) -> PtyPort:
    port = pty_port("ttyRPICT")
    port.plug()
    return port


@pytest.fixture
async def service(tmp_path: Path, rpict: PtyPort) -> AsyncIterator[AddonService]:
    """A running service reading an RPICT3T1 on `rpict` (no voltage board), connected."""
    options = Options(api_token=TOKEN, rpict_port=str(rpict.path), stale_after_s=2)
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        await wait_until(lambda: service.meter.board_connected("rpict"))
        yield service
    finally:
        await service.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # No connection limit: the default of 100 would queue a request behind 100 streams.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def rpict_line(p1: float, p2: float, p3: float) -> bytes:
    return f"11 {p1} {p2} {p3} 21.5\r\n".encode()


def protected_routes(service: AddonService) -> list[tuple[str, str]]:
    """(method, path) of every route of the application except health."""
    routes = []
    for resource in create_app(service).router.resources():
        for route in resource:
            if route.method != "HEAD" and resource.canonical != "/api/v1/health":
                routes.append((route.method, resource.canonical))
    return routes


# What the routes with a path parameter or a required body need to answer 200.
VALID_REQUESTS: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", "/api/v1/aggregates"): ("/api/v1/aggregates?period=day", None),
    ("GET", "/api/v1/export"): (
        "/api/v1/export?start=2020-01-01T00:00:00Z&end=2100-01-01T00:00:00Z", None
    ),
    ("PUT", "/api/v1/relays/{id}"): ("/api/v1/relays/1", {"priority": 50}),
    ("GET", "/api/v1/meters/{id}/state"): ("/api/v1/meters/main/state", None),
    ("POST", "/api/v1/shed"): ("/api/v1/shed", {"limit_w": 100000}),
    ("POST", "/api/v1/restore"): ("/api/v1/restore", {"stagger_s": 0}),
    ("POST", "/api/v1/labels"): ("/api/v1/labels", {
        "appliance": "kettle", "start": f"{LABEL_DAY}T07:00:00Z", "end": f"{LABEL_DAY}T07:05:00Z"}),
    # The label the POST stored (routes are tried in the order they are added).
    ("DELETE", "/api/v1/labels"): ("/api/v1/labels", {
        "appliance": "kettle", "start": f"{LABEL_DAY}T07:00:00Z", "end": f"{LABEL_DAY}T07:05:00Z"}),
    ("PUT", "/api/v1/co2_intensity"): ("/api/v1/co2_intensity", {"g_per_kwh": 120}),
    ("POST", "/api/v1/boards/voltage/calibration"): (
        "/api/v1/boards/voltage/calibration", {"measured_v": 230}),
}
# Let in, then refused for want of a voltage board (this rig has the RPICT only).
NO_BOARD = {("POST", "/api/v1/boards/voltage/calibration")}


async def test_every_route_but_health_needs_the_token(
    service: AddonService, session: aiohttp.ClientSession, rpict: PtyPort, tmp_path: Path
) -> None:
    keep_a_week_of_readings(tmp_path / "data")  # readings under the label of VALID_REQUESTS
    await rpict.write(rpict_line(100.0, 0.0, 0.0))  # a reading for the shed route
    await wait_until(lambda: service.meter.snapshot()["available"])
    routes = protected_routes(service)
    assert ("GET", "/api/v1/state") in routes
    assert ("GET", "/metrics") in routes
    for method, path in routes:
        url = service.url + path
        for headers in ({}, auth("wrong"), auth(TOKEN + "x"), {"Authorization": TOKEN}):
            async with session.request(method, url, headers=headers) as resp:
                assert resp.status == 401, (method, path, headers)
                assert await resp.json() == {"error": "invalid_auth"}
        if path == "/api/v1/stream":
            async with session.ws_connect(url, headers=auth()) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "state"
        else:
            valid_path, body = VALID_REQUESTS.get((method, path), (path, None))
            async with session.request(method, service.url + valid_path, json=body,
                                       headers=auth()) as resp:
                assert resp.status == (503 if (method, path) in NO_BOARD else 200), (
                    method, path)

    async with session.get(service.url + "/api/v1/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "version": __version__}
    # No answer names the server's library and version (a 401 included).
    async with session.get(service.url + "/api/v1/state") as resp:
        assert resp.status == 401
        assert resp.headers["Server"] == "Energy Tracker"


async def raw_request(service: AddonService, request: bytes) -> tuple[int, bytes]:
    """Send bytes aiohttp's client would refuse to (non-UTF-8 headers); (status, body)."""
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_mangled_or_odd_authorization_headers(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    # Bytes that are not UTF-8 used to raise inside the token check (a logged 500 without
    # a token); they are simply a wrong token.
    status, body = await raw_request(
        service, b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe"
                 b"\r\nConnection: close\r\n\r\n")
    assert (status, json.loads(body)) == (401, {"error": "invalid_auth"})
    # The scheme is case-insensitive (RFC 9110); the token is not.
    async with session.get(service.url + "/api/v1/state",
                           headers={"Authorization": f"bearer {TOKEN}"}) as resp:
        assert resp.status == 200
    async with session.get(service.url + "/api/v1/state",
                           headers={"Authorization": f"Bearer {TOKEN.upper()}"}) as resp:
        assert resp.status == 401
    # The token under another scheme, or none, is refused (docs/api.md: Bearer).
    for header in (f"Basic {TOKEN}", f"Token {TOKEN}", f" {TOKEN}"):
        async with session.get(service.url + "/api/v1/state",
                               headers={"Authorization": header}) as resp:
            assert resp.status == 401, header


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/v1/relays/1", b"\xff\xfe", 400),
        ("POST", "/api/v1/shed", b"\xff\xfe", 400),
        ("POST", "/api/v1/labels", b"\xff\xfe", 400),
        ("PUT", "/api/v1/co2_intensity", b"\xff\xfe", 400),
        ("PUT", "/api/v1/relays/1", b"[" * 100_000 + b"]" * 100_000, 400),
        ("PUT", "/api/v1/co2_intensity", b"[" * 100_000 + b"]" * 100_000, 400),
        ("POST", "/api/v1/labels", b"[" * 100_000 + b"]" * 100_000, 400),
        ("PUT", "/api/v1/co2_intensity", b" " * (2 * 1024 * 1024), 413),
        ("PUT", "/api/v1/relays/%EF%BC%91", b'{"state": true}', 404),  # a fullwidth "1"
        ("PUT", "/api/v1/relays/1", b'{"state": null}', 400),  # was a 200 doing nothing
        ("PUT", "/api/v1/relays/01", b'{"priority": 10}', 404),  # was relay 1
        # Integers too big for a float: were OverflowError's 500s
        ("POST", "/api/v1/boards/voltage/calibration",
         b'{"measured_v": ' + b"9" * 400 + b"}", 400),
        ("POST", "/api/v1/shed", b'{"limit_w": ' + b"9" * 400 + b"}", 400),
        ("PUT", "/api/v1/co2_intensity", b'{"g_per_kwh": -' + b"9" * 400 + b"}", 400),
        ("PUT", "/api/v1/co2_intensity", b'{"g_per_kwh": 100, "g": 1}', 400),
        ("PUT", "/api/v1/co2_intensity", b'{"g_per_kwh": ' + b"9" * 5000 + b"}", 400),
        # Before year 1 once in UTC: was an OverflowError's 500
        ("POST", "/api/v1/labels", b'{"appliance": "kettle", "start": "0001-01-01T00:00:00'
                                   b'+01:00", "end": "0001-01-01T00:05:00+01:00"}', 400),
    ],
)
async def test_bad_bodies_get_a_json_answer_not_a_server_error(
    service: AddonService, session: aiohttp.ClientSession,
    method: str, path: str, body: bytes, status: int,
) -> None:
    async with session.request(method, service.url + path, data=body,
                               headers=auth()) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        answer = await resp.json()
    assert answer.get("error") in {"invalid", "too_large", "not_found"}, answer


async def test_an_export_the_disk_refuses_gets_a_json_answer(
    service: AddonService, session: aiohttp.ClientSession, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Storage failures answered aiohttp's plain-text 500 with a traceback; ENOSPC itself
    is test_history.py's and test_nilm_service.py's (507 storage_full)."""
    exports = tmp_path / "data" / "exports"
    exports.rmdir()
    exports.write_text("")  # in the way of the export's temporary file
    # Parquet is built in the folder first (CSV is streamed as it is read).
    url = service.url + VALID_REQUESTS[("GET", "/api/v1/export")][0] + "&format=parquet"
    async with session.get(url, headers=auth()) as resp:
        assert resp.status == 500
        answer = await resp.json()
    assert answer["error"] == "storage_error"
    assert answer["detail"].startswith("writing the export failed: Not a directory")
    assert "Storage: writing the export failed: Not a directory" in caplog.text
    exports.unlink()
    exports.mkdir()
    async with session.get(url, headers=auth()) as resp:
        assert resp.status == 200
        assert (await resp.read()).startswith(b"PAR1")


async def test_bodies_are_utf8_whatever_charset_the_client_names(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    """An unknown charset answered 500 on every route with a body (aiohttp decoded by it)."""
    for method, path, body in (("PUT", "/api/v1/co2_intensity", '{"g_per_kwh": 100}'),
                               ("POST", "/api/v1/restore", '{"stagger_s": 0}')):
        for charset, status in (("foo", 200), ("latin-1", 200), ("utf-8", 200)):
            headers = {**auth(), "Content-Type": f"application/json; charset={charset}"}
            async with session.request(method, service.url + path, data=body.encode(),
                                       headers=headers) as resp:
                assert resp.status == status, (path, charset)
    headers = {**auth(), "Content-Type": "application/json; charset=latin-1"}
    async with session.put(service.url + "/api/v1/co2_intensity", headers=headers,
                           data='{"g_per_kwh": "é"}'.encode("latin-1")) as resp:
        assert resp.status == 400  # read as UTF-8, which it is not
        assert (await resp.json())["detail"] == "the body is not UTF-8 text"
    # A UTF-8 byte order mark (Windows tools write one) was "the body is not JSON".
    async with session.put(service.url + "/api/v1/co2_intensity", headers=auth(),
                           data=b'\xef\xbb\xbf{"g_per_kwh": 100}') as resp:
        assert resp.status == 200


async def test_the_stream_wants_a_websocket_and_does_not_compress(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    async with session.get(service.url + "/api/v1/stream", headers=auth()) as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": "websocket_expected"}
    # Each compressing client kept ~200 KB of zlib state after it left.
    async with session.ws_connect(service.url + "/api/v1/stream", headers=auth(),
                                  compress=15) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "state"
        assert ws.compress == 0


async def test_a_relay_request_that_fails_changes_nothing(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    """No voltage board here: the switch is refused, and so are the settings sent with it
    (they used to be saved anyway)."""
    url = service.url + "/api/v1/relays/1"
    async with session.put(url, json={"state": True, "priority": 42, "min_on_s": 99},
                           headers=auth()) as resp:
        assert resp.status == 503
    async with session.get(service.url + "/api/v1/relays", headers=auth()) as resp:
        relay = (await resp.json())["relays"][0]
    assert (relay["priority"], relay["min_on_s"]) != (42, 99)


@pytest.mark.parametrize("role", ["mains", "circuit"])
async def test_a_lone_channel_is_the_total_and_has_no_anomaly_series_of_its_own(
    tmp_path: Path, rpict: PtyPort, session: aiohttp.ClientSession, role: str
) -> None:
    """It used to be watched twice (as the total and as itself): every anomaly twice."""
    options = Options(api_token=TOKEN, rpict_port=str(rpict.path), relays=(),
                      channels=(ChannelConfig(1, "House", role),))  # type: ignore[arg-type]
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        async with session.get(service.url + "/api/v1/state", headers=auth()) as resp:
            series = (await resp.json())["anomaly"]["series"]
    finally:
        await service.stop()
    assert [s["series"] for s in series] == ["total"]


async def test_unknown_route_answers_json_404(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    async with session.get(service.url + "/api/v1/nothing", headers=auth()) as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "not_found"}


async def test_a_method_a_route_lacks_answers_405_with_the_methods_it_has(
    service: AddonService, session: aiohttp.ClientSession
) -> None:
    """HTTP requires the Allow header on a 405 (RFC 9110 15.5.6): it tells a client what
    the route takes."""
    async with session.post(service.url + "/api/v1/state", headers=auth()) as resp:
        assert resp.status == 405
        assert await resp.json() == {"error": "method_not_allowed"}
        assert resp.headers["Allow"] == "GET,HEAD"


async def test_rest_routes_serve_the_current_reading(
    service: AddonService, session: aiohttp.ClientSession, rpict: PtyPort
) -> None:
    await rpict.write(rpict_line(1200.5, 300.0, -0.0))

    async def state() -> dict[str, Any]:
        async with session.get(service.url + "/api/v1/state", headers=auth()) as resp:
            result: dict[str, Any] = await resp.json()
            return result

    await wait_until(lambda: _available(state))
    current = await state()
    assert current["total_power_w"] == 1200.5  # Mains is the only "mains" channel
    assert [c["power_w"] for c in current["channels"]] == [1200.5, 300.0, 0.0]
    assert current["voltage_v"] is None  # no voltage board: unknown, not 0

    async with session.get(service.url + "/api/v1/channels", headers=auth()) as resp:
        assert (await resp.json())["channels"] == current["channels"]
    async with session.get(service.url + "/api/v1/info", headers=auth()) as resp:
        info = await resp.json()
    assert info["meter_id"] == service.meter_id == current["meter_id"]
    assert info["source"] == "serial"
    assert info["boards"] == [
        {"id": "rpict", "model": "rpict3t1", "port": str(rpict.path), "connected": True}
    ]
    assert info["mqtt"] is None  # not publishing
    async with session.get(service.url + "/api/v1/energy", headers=auth()) as resp:
        energy = await resp.json()
    assert [c["id"] for c in energy["channels"]] == [1, 2, 3]
    assert energy["since"].endswith("Z")
    async with session.get(service.url + "/metrics", headers=auth()) as resp:
        assert resp.content_type == "text/plain"
        assert "energy_tracker_total_power_watts 1200.5" in await resp.text()


async def _available(state: Callable[[], Any]) -> bool:
    return bool((await state())["available"])


async def receive_states(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(states) < count:
            message = await ws.receive_json()
            assert message["type"] == "state"
            states.append(message["data"])
    return states


async def test_stream_sends_current_state_then_every_reading(
    service: AddonService, session: aiohttp.ClientSession, rpict: PtyPort
) -> None:
    async with session.ws_connect(service.url + "/api/v1/stream", headers=auth()) as ws:
        first = (await receive_states(ws, 1))[0]
        assert first["seq"] == service.meter.snapshot()["seq"]
        powers = [100.0 + 7 * i for i in range(30)]
        for power in powers:
            await rpict.write(rpict_line(power, 1.0, 2.0))
            await asyncio.sleep(0.01)
        states = await receive_states(ws, len(powers))
    assert [s["channels"][0]["power_w"] for s in states] == powers
    assert [s["seq"] for s in states] == list(range(first["seq"] + 1, first["seq"] + 31))


async def test_hundred_clients_all_receive_the_same_readings(
    service: AddonService, session: aiohttp.ClientSession, rpict: PtyPort
) -> None:
    url = service.url + "/api/v1/stream"
    clients = await asyncio.gather(*(session.ws_connect(url, headers=auth()) for _ in range(100)))
    try:
        await asyncio.gather(*(receive_states(ws, 1) for ws in clients))
        async with session.get(service.url + "/metrics", headers=auth()) as resp:
            assert "energy_tracker_websocket_clients 100.0" in await resp.text()
        powers = [500.0 + i for i in range(10)]
        for power in powers:
            await rpict.write(rpict_line(power, 0.0, 0.0))
            await asyncio.sleep(0.02)
        received = await asyncio.gather(*(receive_states(ws, len(powers)) for ws in clients))
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
    for states in received:
        assert [s["total_power_w"] for s in states] == powers
    assert len({json.dumps(states) for states in received}) == 1

    async def gauge_is_zero() -> bool:
        async with session.get(service.url + "/metrics", headers=auth()) as resp:
            return "energy_tracker_websocket_clients 0.0" in await resp.text()

    await wait_until(gauge_is_zero)


async def test_stopping_the_service_closes_stream_clients(
    tmp_path: Path, rpict: PtyPort, session: aiohttp.ClientSession
) -> None:
    options = Options(api_token=TOKEN, rpict_port=str(rpict.path))
    service = AddonService(options, tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        ws = await session.ws_connect(service.url + "/api/v1/stream", headers=auth())
        await receive_states(ws, 1)
    finally:
        async with asyncio.timeout(5):
            await service.stop()
    # A state already on its way (the stop's own "unavailable") may come first.
    while (message := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
        pass
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()


# A masked text frame, "hi": what keeps a client alive for the heartbeat.
CLIENT_FRAME = bytes([0x81, 0x80 | 2]) + b"\0\0\0\0" + b"hi"


async def _stream_client_that_never_reads(service: AddonService) -> socket.socket:
    """A stream client whose socket takes little (a small window) and is never read."""
    host, port = service.url.removeprefix("http://").split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(raw, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(raw, (
        f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    return raw


async def test_a_client_that_sends_but_never_reads_is_dropped(
    service: AddonService, session: aiohttp.ClientSession, rpict: PtyPort,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its own frames kept it "alive" for the heartbeat, so it stayed for ever while its
    unread states piled up in the kernel (2 KB/s a client); a reading client is unharmed."""
    monkeypatch.setattr(api_module, "SEND_DEADLINE_S", 1.0)  # 30 s in use
    raw = await _stream_client_that_never_reads(service)
    loop = asyncio.get_running_loop()
    reader = await session.ws_connect(service.url + "/api/v1/stream", headers=auth())
    seen = 0

    async def dropped() -> bool:
        async with session.get(service.url + "/metrics", headers=auth()) as resp:
            return "energy_tracker_websocket_clients 1.0" in await resp.text()

    try:
        for i in range(3000):  # ~5 MB of states: more than the socket buffers hold
            await rpict.write(rpict_line(500.0 + i % 7, 0.0, 0.0))
            if i % 50 == 0:
                await loop.sock_sendall(raw, CLIENT_FRAME)
                while True:  # the reading client keeps up
                    try:
                        await reader.receive_json(timeout=0.001)
                        seen += 1
                    except TimeoutError:
                        break
                if await dropped():
                    break
        await wait_until(dropped, 10, "the client that does not read to be dropped")
        await reader.receive_json(timeout=5)  # the other client still gets its states
    finally:
        raw.close()
        await reader.close()
    assert seen > 0


async def test_a_stream_client_that_stopped_reading_does_not_hold_the_stop(
    tmp_path: Path, rpict: PtyPort
) -> None:
    """A client on a stuck link with the add-on's buffers full: closing it waited for it to
    read the close frame, for ever, and the Supervisor killed the add-on before its
    counters' last save (helper 86)."""
    service = AddonService(Options(api_token=TOKEN, rpict_port=str(rpict.path)),
                           tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    raw = await _stream_client_that_never_reads(service)
    loop = asyncio.get_running_loop()
    try:
        for i in range(3000):  # ~5 MB of states: more than the socket buffers hold
            await rpict.write(rpict_line(500.0 + i % 7, 0.0, 0.0))
            if i % 50 == 0:
                await loop.sock_sendall(raw, CLIENT_FRAME)
        started = time.monotonic()
        async with asyncio.timeout(20):
            await service.stop()
        took = time.monotonic() - started
    finally:
        raw.close()
    assert took < 5.0, f"the stop took {took:.1f} s"


async def test_a_connection_that_never_finishes_its_request_is_closed(
    tmp_path: Path, rpict: PtyPort, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone on the network could hold sockets open with half a request (no token
    needed) until the add-on ran out of file descriptors and stopped answering."""
    monkeypatch.setattr(service_module, "API_IDLE_TIMEOUT_S", 1.0)
    service = AddonService(Options(api_token=TOKEN, rpict_port=str(rpict.path)),
                           tmp_path / "data", host="127.0.0.1", port=0)
    await service.start()
    try:
        host, port = service.url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
        for _reader, writer in held:
            writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n")  # no end of headers
            await writer.drain()
        async with asyncio.timeout(5):
            closed = await asyncio.gather(*(reader.read() for reader, _writer in held))
        assert closed == [b""] * 20  # closed by the add-on, without an answer
        for _reader, writer in held:
            writer.close()
        # A whole request on a new connection is answered as ever.
        async with aiohttp.ClientSession() as session, session.get(
                service.url + "/api/v1/health") as resp:
            assert resp.status == 200
    finally:
        await service.stop()


async def malformed_request(service: AddonService) -> bytes:
    """A request aiohttp's parser refuses (a control character in a header), no token."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nX-" + b"A" * 2000 + b": \x01\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_malformed_requests_do_not_flood_the_log(
    service: AddonService, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone on the network could send these without a token: each was logged at ERROR
    with a traceback and the bytes sent (80 MB of log for 5 000 requests)."""
    for _ in range(50):
        assert b" 400 Bad Request" in (await malformed_request(service)).split(b"\r\n")[0]
    await asyncio.sleep(0.1)
    from_server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.exc_info) for r in from_server] == [("WARNING", None)]
    line = from_server[0].getMessage()
    assert line.startswith("Refused a malformed HTTP request from 127.0.0.1 (")
    assert len(line) < 250  # not the 2 000 bytes sent
    # The meter goes on: the API answers.
    async with aiohttp.ClientSession() as session, session.get(
            service.url + "/api/v1/state", headers=auth()) as resp:
        assert resp.status == 200


async def test_a_malformed_request_with_a_token_does_not_log_the_token(
    service: AddonService, caplog: pytest.LogCaptureFixture
) -> None:
    """The parser quotes the offending header line: the real token, one control character
    after it, went into the add-on's log (helper 92)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                 + TOKEN.encode() + b"\x01\r\n\r\n")
    await writer.drain()
    assert b" 400 Bad Request" in (await reader.read()).split(b"\r\n")[0]
    writer.close()
    await asyncio.sleep(0.1)
    line = next(r.getMessage() for r in caplog.records if r.name == "aiohttp.server")
    assert "Authorization: <redacted>" in line
    assert TOKEN[:8] not in caplog.text


def test_malformed_requests_are_counted_and_handler_failures_kept() -> None:
    now = [0.0]
    summary = MalformedRequests(interval_s=60.0, clock=lambda: now[0])

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                 "Error handling request from %s", ("192.0.2.7",),
                                 (type(error), error, None))

    assert summary.filter(record(BadHttpMessage("Invalid header value char")))
    assert not any(summary.filter(record(BadHttpMessage("x"))) for _ in range(9))
    now[0] = 61.0
    later = record(BadHttpMessage("Duplicate Content-Length"))
    assert summary.filter(later)
    assert later.getMessage() == ("Refused a malformed HTTP request from 192.0.2.7 (Duplicate "
                                  "Content-Length); 9 more in the last minute, not logged")
    # A route's own bug is not the network's noise: kept whole, traceback and all.
    bug = record(ValueError("a bug"))
    assert summary.filter(bug)
    assert (bug.levelno, bug.exc_info is not None) == (logging.ERROR, True)


async def test_stream_clients_are_capped(
    service: AddonService, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone with the token could open thousands (3 000 held 60 MB after they left)."""
    monkeypatch.setattr(api_module, "MAX_STREAM_CLIENTS", 2)
    url = service.url + "/api/v1/stream"
    first = await session.ws_connect(url, headers=auth())
    second = await session.ws_connect(url, headers=auth())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url, headers=auth())
    assert refused.value.status == 503
    # Said once, then counted (a runaway client wrote 19 warnings a second).
    refusals = [m for r in caplog.records if "over the limit" in (m := r.getMessage())]
    assert refusals == ["Refused 1 stream client over the limit since the last such line (the "
                        "last: GET '/api/v1/stream' from 127.0.0.1): 256 are connected "
                        "already: a client that opens streams and does not close them"]
    async with session.get(url, headers={**auth(), "Connection": "Upgrade",
                                         "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
                           ) as resp:
        assert (resp.status, await resp.json()) == (503, {"error": "too_many_streams"})
    await first.close()
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def room_again() -> bool:
        try:
            opened.append(await session.ws_connect(url, headers=auth()))
        except aiohttp.WSServerHandshakeError:
            return False  # the server has not seen the close yet
        return True

    await wait_until(room_again, what="a stream once one left")
    assert (await opened[0].receive_json(timeout=5))["type"] == "state"
    assert len([r for r in caplog.records if "over the limit" in r.getMessage()]) == 1
    for ws in (second, *opened):
        await ws.close()


async def test_refused_tokens_are_logged_without_flooding_the_log(
    service: AddonService, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone trying tokens (6 000 a second were refused without a word) or a client with
    an old token shows in the log: the first refusal at once, then a count a minute."""
    for _ in range(50):
        async with session.get(service.url + "/api/v1/state", headers=auth("guess")) as resp:
            assert resp.status == 401
    lines = [m for r in caplog.records if "without a valid API token" in (m := r.getMessage())]
    assert len(lines) == 1
    assert "Refused 1 request without a valid API token" in lines[0]
    assert "GET '/api/v1/state' from 127.0.0.1" in lines[0]
    # A minute later, the count of those since.
    monkeypatch.setattr(api_module, "REFUSALS_REPORT_INTERVAL_S", 0.0)
    caplog.clear()
    async with session.get(service.url + "/metrics") as resp:
        assert resp.status == 401
    lines = [m for r in caplog.records if "without a valid API token" in (m := r.getMessage())]
    assert len(lines) == 1
    assert "Refused 50 requests without a valid API token" in lines[0]
    assert "GET '/metrics'" in lines[0]
    # Refusals after a line are counted when the interval ends, with no refusal after them
    # (they waited for the next one, however late).
    monkeypatch.setattr(api_module, "REFUSALS_REPORT_INTERVAL_S", 2.0)
    caplog.clear()
    for _ in range(3):
        async with session.get(service.url + "/api/v1/info", headers=auth("guess")) as resp:
            assert resp.status == 401

    def said() -> list[str]:
        return [m for r in caplog.records if "without a valid API token" in (m := r.getMessage())]

    assert said() == []  # within the interval of the last line
    await wait_until(lambda: len(said()) == 1, what="the count at the end of the interval")
    assert "Refused 3 requests without a valid API token" in said()[0]
    assert "GET '/api/v1/info'" in said()[0]

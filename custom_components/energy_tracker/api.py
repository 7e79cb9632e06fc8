"""Client for the add-on's HTTP and WebSocket API (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from .models import InvalidData, MeterInfo, MeterState

__all__ = [
    "CannotConnect",
    "EnergyTrackerClient",
    "EnergyTrackerError",
    "InvalidAuth",
    "InvalidData",
]

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# The server pings every 30 s; our own heartbeat notices a half-open connection
# (add-on host gone without closing TCP) that would otherwise look alive forever.
STREAM_HEARTBEAT_S = 30.0


class EnergyTrackerError(Exception):
    """Base class of the client's errors."""


class CannotConnect(EnergyTrackerError):
    """The add-on could not be reached, or the connection dropped."""


class InvalidAuth(EnergyTrackerError):
    """The add-on refused the API token."""


class EnergyTrackerClient:
    """Talks to one add-on service through the shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, host: str, port: int, token: str) -> None:
        """Keep what every request needs; no I/O here."""
        self._session = session
        self._base_url = f"http://{_url_host(host)}:{port}/api/v1"
        self._headers = {"Authorization": f"Bearer {token}"}

    async def get_info(self) -> MeterInfo:
        """GET /api/v1/info."""
        return MeterInfo.from_json(await self._get_json("info"))

    async def get_state(self) -> MeterState:
        """GET /api/v1/state."""
        return MeterState.from_json(await self._get_json("state"))

    async def stream(self) -> AsyncGenerator[MeterState]:
        """Yield the current state, then every new reading, until the connection ends.

        Ending normally means the server closed the stream; errors are raised as
        CannotConnect, InvalidAuth or InvalidData.
        """
        ws = await self._connect_stream()
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    # ERROR is followed by the end of the iteration; binary is not ours.
                    continue
                if (state := _parse_stream_message(message.data)) is not None:
                    yield state
        finally:
            await ws.close()

    async def _connect_stream(self) -> aiohttp.ClientWebSocketResponse:
        try:
            # The handshake gets the same bound as a request: a host that drops packets
            # must not hold the reconnect loop for the OS's TCP timeout.
            async with asyncio.timeout(REQUEST_TIMEOUT.total):
                return await self._session.ws_connect(
                    f"{self._base_url}/stream", headers=self._headers,
                    heartbeat=STREAM_HEARTBEAT_S,
                )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 401:
                raise InvalidAuth("the add-on refused the API token") from err
            raise CannotConnect(f"stream handshake failed: {err.status} {err.message}") from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"stream connection failed: {err!r}") from err

    async def _get_json(self, path: str) -> Any:
        try:
            async with self._session.get(
                f"{self._base_url}/{path}", headers=self._headers, timeout=REQUEST_TIMEOUT
            ) as response:
                if response.status == 401:
                    raise InvalidAuth("the add-on refused the API token")
                if response.status != 200:
                    raise CannotConnect(f"GET {path} answered {response.status}")
                try:
                    return await response.json()
                except (aiohttp.ContentTypeError, ValueError) as err:
                    raise InvalidData(f"GET {path} did not answer JSON") from err
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"GET {path} failed: {err!r}") from err


def _parse_stream_message(text: str) -> MeterState | None:
    """The state in a stream message; None for a message type this version ignores."""
    try:
        message = json.loads(text)
    except ValueError as err:
        raise InvalidData("stream message is not JSON") from err
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidData(f"unexpected stream message: {text[:200]!r}")
    if message["type"] != "state":
        return None
    return MeterState.from_json(message.get("data"))


def _url_host(host: str) -> str:
    # An IPv6 literal needs brackets inside a URL.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host

"""Client for the add-on's HTTP and WebSocket API (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import hdrs

from .models import (
    InvalidData,
    MeterInfo,
    MeterState,
    NilmStatus,
    RelayState,
    relays_from_json,
)

__all__ = [
    "CannotConnect",
    "CommandFailed",
    "EnergyTrackerClient",
    "EnergyTrackerError",
    "InvalidAuth",
    "InvalidData",
]

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Our heartbeat notices a half-open connection (add-on host gone without closing TCP, or a
# frozen add-on) that would otherwise look alive forever. aiohttp pings only after this long
# without a message (readings come every 2 s), so a stall shows within 30 s; the pong may
# take 10 s, so a busy Home Assistant (a loop blocked for seconds) is no false alarm.
STREAM_HEARTBEAT_S = 20.0
# Shedding waits for a reading after every relay it switches, restoring for the stagger.
SHED_TIMEOUT = aiohttp.ClientTimeout(total=120)
RESTORE_DEFAULT_STAGGER_S = 5.0  # the add-on's default (docs/api.md)
# An export of months of readings is large: no total limit, only a stalled connection ends it.
EXPORT_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
EXPORT_CHUNK_BYTES = 1024 * 1024
# The add-on's answers are a few kB. Whatever answers at the configured address (another
# server, a spoofed device on the LAN: the link is plain HTTP) must not make Home Assistant
# hold gigabytes: bodies are read up to this, never decompressed, never redirected.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class EnergyTrackerError(Exception):
    """Base class of the client's errors."""


def failure(err: BaseException) -> str:
    """Why a request failed, in a few words: aiohttp's repr dumps its whole connection
    key (host, port, proxy, SSL settings) into logs, the UI and diagnostics."""
    if isinstance(err, aiohttp.ClientConnectorError):
        os_error = err.os_error
        if isinstance(os_error, socket.gaierror):
            return f"host name not found ({os_error.strerror})"
        return os.strerror(os_error.errno) if os_error.errno else type(os_error).__name__
    if isinstance(err, TimeoutError):
        return "no answer in time"
    if isinstance(err, aiohttp.ClientResponseError):
        return f"{err.status} {err.message}"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class CannotConnect(EnergyTrackerError):
    """The add-on could not be reached, or the connection dropped."""


class InvalidAuth(EnergyTrackerError):
    """The add-on refused the API token."""


class CommandFailed(EnergyTrackerError):
    """The add-on answered a command with an error (docs/api.md, relays and shedding).

    `code` is the API's error code: relay_timeout, relay_rejected, board_unavailable,
    invalid or not_found.
    """

    def __init__(self, status: int, code: str, detail: str | None,
                 retry_after_s: int | None = None) -> None:
        """Keep the answer; the message is for logs."""
        super().__init__(f"{status} {code}" + (f": {detail}" if detail else ""))
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s  # min_off_time: when the relay may switch on


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

    async def get_nilm_status(self) -> NilmStatus:
        """GET /api/v1/appliances: is appliance detection running, and why not."""
        return NilmStatus.from_json(await self._get_json("appliances"))

    async def get_relays(self) -> dict[int, RelayState]:
        """GET /api/v1/relays."""
        return relays_from_json(await self._get_json("relays"))

    async def set_relay(self, relay_id: int, **changes: bool | int) -> RelayState:
        """PUT /api/v1/relays/{id} with any of state, priority, min_on_s, min_off_s.

        Answers once the relay acknowledged a state change; CommandFailed otherwise.
        """
        return RelayState.from_json(
            await self._send_json("PUT", f"relays/{relay_id}", changes)
        )

    async def shed(self, *, limit_w: float | None = None,
                   reduce_w: float | None = None) -> dict[str, Any]:
        """POST /api/v1/shed; the add-on's report (what was shed, what was skipped)."""
        body = {"limit_w": limit_w} if limit_w is not None else {"reduce_w": reduce_w}
        return await self._send_json("POST", "shed", body, timeout=SHED_TIMEOUT)

    async def restore(self, stagger_s: float | None = None, relays: int = 8) -> dict[str, Any]:
        """POST /api/v1/restore; the add-on's report (restored, failed, interrupted).

        It answers once the last of `relays` shed relays is back, `stagger_s` apart: the
        time allowed grows with both (a fixed 120 s gave up on restores that worked).
        """
        body = {} if stagger_s is None else {"stagger_s": stagger_s}
        stagger = RESTORE_DEFAULT_STAGGER_S if stagger_s is None else stagger_s
        timeout = aiohttp.ClientTimeout(
            total=(SHED_TIMEOUT.total or 0) + stagger * max(relays - 1, 0))
        return await self._send_json("POST", "restore", body, timeout=timeout)

    async def calibrate_voltage(self, measured_v: float) -> dict[str, Any]:
        """POST /api/v1/boards/voltage/calibration: the voltage board's new factor."""
        return await self._send_json("POST", "boards/voltage/calibration",
                                     {"measured_v": measured_v})

    async def set_co2_intensity(self, g_per_kwh: float) -> dict[str, Any]:
        """PUT /api/v1/co2_intensity: the grid's live carbon intensity (g/kWh)."""
        return await self._send_json("PUT", "co2_intensity", {"g_per_kwh": g_per_kwh})

    async def clear_co2_intensity(self) -> dict[str, Any]:
        """DELETE /api/v1/co2_intensity: back to the add-on's own co2_g_per_kwh."""
        return await self._send_json("DELETE", "co2_intensity", None)

    async def add_label(self, label: dict[str, Any]) -> dict[str, Any]:
        """POST /api/v1/labels: feedback on a detected appliance; the stored label."""
        return await self._send_json("POST", "labels", label)

    async def remove_label(self, label: dict[str, Any]) -> dict[str, Any]:
        """DELETE /api/v1/labels: take back a wrong label; the label removed."""
        return await self._send_json("DELETE", "labels", label)

    async def download_export(
        self, start: str, end: str, fmt: str, sink: Callable[[bytes], Awaitable[None]]
    ) -> int:
        """GET /api/v1/export, streamed chunk by chunk into `sink`; the add-on's row count.

        A refused request (bad times or format) raises CommandFailed with its detail.
        """
        params = {"start": start, "end": end, "format": fmt}
        try:
            async with self._session.get(
                f"{self._base_url}/export", headers=self._headers, params=params,
                timeout=EXPORT_TIMEOUT, allow_redirects=False, auto_decompress=False,
            ) as response:
                if response.status == 401:
                    raise InvalidAuth("the add-on refused the API token")
                if response.status != 200:
                    try:
                        answer = await _read_json(response, "GET export")
                    except InvalidData:
                        answer = {}
                    if not isinstance(answer, dict):
                        answer = {}
                    raise CommandFailed(response.status, str(answer.get("error", "unknown")),
                                        answer.get("detail"))
                lines = 0
                async for chunk in response.content.iter_chunked(EXPORT_CHUNK_BYTES):
                    lines += chunk.count(b"\n")
                    await sink(chunk)
                # A streamed CSV has no X-Export-Rows (known only at its end): its lines
                # but the header are the rows (numbers only: no line ends inside a cell).
                rows = response.headers.get("X-Export-Rows")
                return int(rows) if rows is not None else max(lines - 1, 0)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"GET export failed: {failure(err)}") from err

    async def stream(self) -> AsyncGenerator[MeterState]:
        """Yield the current state, then every new reading, until the connection ends.

        Ending normally means the server closed the stream; errors (a stalled link
        included) are raised as CannotConnect, InvalidAuth or InvalidData.
        """
        ws = await self._connect_stream()
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    # ERROR is followed by the end of the iteration; binary is not ours.
                    continue
                if (state := _parse_stream_message(message.data)) is not None:
                    yield state
            if isinstance(lost := ws.exception(), aiohttp.ServerTimeoutError):
                # Our heartbeat's ping went unanswered: the link stalled, nobody closed it.
                raise CannotConnect("the add-on stopped answering (no answer to the "
                                    f"heartbeat within {STREAM_HEARTBEAT_S / 2:g} s)") from lost
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
            raise CannotConnect(f"stream connection failed: {failure(err)}") from err

    async def _get_json(self, path: str) -> Any:
        try:
            async with self._session.get(
                f"{self._base_url}/{path}", headers=self._headers, timeout=REQUEST_TIMEOUT,
                allow_redirects=False, auto_decompress=False,
            ) as response:
                if response.status == 401:
                    if await _is_addon_refusal(response):
                        raise InvalidAuth("the add-on refused the API token")
                    raise InvalidData(f"GET {path} answered 401 without the add-on's error: "
                                      "another server")
                if response.status == 404:
                    # Every route of the add-on's API exists: another web server answers.
                    raise InvalidData(f"GET {path} answered 404: not the add-on's API")
                if 300 <= response.status < 400:  # the add-on never redirects
                    raise InvalidData(f"GET {path} answered a redirect ({response.status}): "
                                      "not the add-on's API")
                if response.status != 200:
                    raise CannotConnect(f"GET {path} answered {response.status}")
                return await _read_json(response, f"GET {path}")
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"GET {path} failed: {failure(err)}") from err


    async def _send_json(self, method: str, path: str, body: dict[str, Any] | None,
                         timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT) -> dict[str, Any]:
        try:
            async with self._session.request(
                method, f"{self._base_url}/{path}", headers=self._headers, json=body,
                timeout=timeout, allow_redirects=False, auto_decompress=False,
            ) as response:
                if response.status == 401:
                    raise InvalidAuth("the add-on refused the API token")
                answer = await _read_json(response, f"{method} {path}")
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise CannotConnect(f"{method} {path} failed: {failure(err)}") from err
        if response.status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            detail = answer.get("detail") if isinstance(answer, dict) else None
            retry = answer.get("retry_after_s") if isinstance(answer, dict) else None
            raise CommandFailed(response.status, str(error or "unknown"),
                                None if detail is None else str(detail),
                                retry if type(retry) is int else None)
        if not isinstance(answer, dict):
            raise InvalidData(f"{method} {path} did not answer an object")
        return answer


async def _is_addon_refusal(response: aiohttp.ClientResponse) -> bool:
    """A 401 with the add-on's own body (docs/api.md), not another server's login page."""
    try:
        body = json.loads(await _read_body(response, "the 401"))
    except (InvalidData, ValueError):
        return False
    return isinstance(body, dict) and body.get("error") == "invalid_auth"


async def _read_body(response: aiohttp.ClientResponse, what: str) -> bytes:
    """The body as sent, at most MAX_ANSWER_BYTES; InvalidData beyond, or if compressed."""
    if response.headers.get(hdrs.CONTENT_ENCODING, "identity").lower() != "identity":
        raise InvalidData(f"{what} answered a compressed body: not the add-on's API")
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        raise InvalidData(f"{what} answered {response.content_length} bytes: not the "
                          "add-on's API")
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise InvalidData(f"{what} answered more than {MAX_ANSWER_BYTES} bytes: not the "
                              "add-on's API")
    return bytes(body)


async def _read_json(response: aiohttp.ClientResponse, what: str) -> Any:
    if response.content_type != "application/json":
        raise InvalidData(f"{what} did not answer JSON")
    try:
        return json.loads(await _read_body(response, what))
    except ValueError as err:  # UnicodeDecodeError included
        raise InvalidData(f"{what} did not answer JSON") from err


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

"""The add-on's HTTP API (docs/api.md): token auth, REST routes, WebSocket stream, metrics.

The application only reads from the service it is given (see `ApiBackend`); it owns no
meter state itself, only the set of connected WebSocket clients.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import WSCloseCode, hdrs, web

from . import __version__
from .api_analytics import SEND_DEADLINE_S, register_analytics_routes
from .api_meters import register_meter_routes
from .api_nilm import register_nilm_routes
from .api_relays import register_relay_routes
from .meter import Meter
from .metrics import Metrics

_LOGGER = logging.getLogger(__name__)

HEALTH_PATH = "/api/v1/health"
STREAM_HEARTBEAT_S = 30.0
# Deep enough to ride out a scheduling hiccup at a reading every second; a client further
# behind than this only needs the newest state anyway (every message is a full state).
CLIENT_QUEUE_SIZE = 64
STREAM_CLOSE_TIMEOUT_S = 1.0  # at a stop, then the connection is cut
# Refused tokens are logged: the first at once, then a count at most this often (a client
# with an old token retries every few seconds; someone guessing tries thousands a second).
REFUSALS_REPORT_INTERVAL_S = 60.0
# Stream clients at once: Home Assistant holds one per entry; more is a runaway client.
MAX_STREAM_CLIENTS = 256

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiBackend(Protocol):
    """The running service as the API sees it (implemented by `AddonService`)."""

    @property
    def token(self) -> str: ...

    @property
    def meter(self) -> Meter: ...

    @property
    def metrics(self) -> Metrics: ...

    def info(self) -> dict[str, Any]:
        """The /api/v1/info object: it knows the boards' ports and connections."""
        ...


class Refusals:
    """Counts refused requests of one kind and says so in the log, without flooding it:
    the first at once, then a count of those since at most every REFUSALS_REPORT_INTERVAL_S
    (at the end of that interval, not at the next refusal, which may never come)."""

    def __init__(self, what: str, why: str) -> None:
        self._what = what  # "request{s} without a valid API token"
        self._why = why
        self._count = 0
        self._last: tuple[str, str, str | None] = ("", "", None)  # method, path, from
        self._last_report: float | None = None
        self._pending: asyncio.TimerHandle | None = None

    def add(self, request: web.Request) -> None:
        self._count += 1
        self._last = (request.method, request.path, request.remote)
        loop = asyncio.get_running_loop()
        wait = (0.0 if self._last_report is None
                else self._last_report + REFUSALS_REPORT_INTERVAL_S - loop.time())
        if wait <= 0:
            self._report()
        elif self._pending is None:
            self._pending = loop.call_later(wait, self._report)

    def flush(self) -> None:
        """Say the refusals not said yet (the API stops): no timer outlives it."""
        if self._pending is not None:
            self._report()

    def _report(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        method, path, remote = self._last
        _LOGGER.warning(
            "Refused %d %s since the last such line (the last: %s %r from %s): %s",
            self._count, self._what.format(s="" if self._count == 1 else "s"),
            method, path, remote, self._why)
        self._count = 0
        self._last_report = asyncio.get_running_loop().time()


class StreamHub:
    """Fans every reading out to the connected WebSocket clients, one bounded queue each."""

    def __init__(self, backend: ApiBackend) -> None:
        self._backend = backend
        # Each client's queue, and its connection to cut if it takes no close frame.
        self._clients: dict[web.WebSocketResponse,
                            tuple[asyncio.Queue[str], asyncio.Transport | None]] = {}
        self._remove_listener: Callable[[], None] | None = None

    def start(self) -> None:
        self._remove_listener = self._backend.meter.add_listener(self._on_reading)

    async def stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        await asyncio.gather(*(self._close(ws, transport)
                               for ws, (_queue, transport) in list(self._clients.items())),
                             return_exceptions=True)

    async def _close(self, ws: web.WebSocketResponse,
                     transport: asyncio.Transport | None) -> None:
        try:
            # A client that stopped reading with a full buffer never takes the close
            # frame: waiting for it held the add-on's stop for ever (the Supervisor kills
            # at 10 s, before the counters' last save).
            async with asyncio.timeout(STREAM_CLOSE_TIMEOUT_S):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        except TimeoutError:
            if transport is not None:
                transport.abort()

    def state_message(self, snapshot: dict[str, Any] | None = None) -> str:
        if snapshot is None:
            snapshot = self._backend.meter.snapshot()
        return json.dumps({"type": "state", "data": snapshot})

    @property
    def clients(self) -> int:
        """The connected stream clients."""
        return len(self._clients)

    def add(self, ws: web.WebSocketResponse,
            transport: asyncio.Transport | None = None) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE_SIZE)
        self._clients[ws] = (queue, transport)
        self._backend.metrics.websocket_clients.set(len(self._clients))
        return queue

    def remove(self, ws: web.WebSocketResponse) -> None:
        self._clients.pop(ws, None)
        self._backend.metrics.websocket_clients.set(len(self._clients))

    def _on_reading(self, snapshot: dict[str, Any]) -> None:
        if not self._clients:
            return
        message = self.state_message(snapshot)  # serialised once for all clients
        for queue, _transport in self._clients.values():
            if queue.full():
                # A slow client loses its oldest message, not everyone else's latency.
                queue.get_nowait()
            queue.put_nowait(message)


BACKEND_KEY = web.AppKey("backend", ApiBackend)
STREAM_KEY = web.AppKey("stream", StreamHub)
REFUSALS_KEY = web.AppKey("refused_tokens", Refusals)
STREAM_REFUSALS_KEY = web.AppKey("refused_streams", Refusals)


def create_app(backend: ApiBackend) -> web.Application:
    """The aiohttp application serving docs/api.md for `backend`."""
    app = web.Application(middlewares=[_json_errors, _require_token, _skip_abandoned])
    app[BACKEND_KEY] = backend
    app[STREAM_KEY] = StreamHub(backend)
    app[REFUSALS_KEY] = Refusals(
        "request{s} without a valid API token",
        "a client with an old or wrong token (Home Assistant then asks to re-authenticate), "
        "or someone trying tokens")
    app[STREAM_REFUSALS_KEY] = Refusals(
        "stream client{s} over the limit",
        f"{MAX_STREAM_CLIENTS} are connected already: a client that opens streams and "
        "does not close them")
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get("/api/v1/info", _info)
    app.router.add_get("/api/v1/state", _state)
    app.router.add_get("/api/v1/channels", _channels)
    app.router.add_get("/api/v1/energy", _energy)
    app.router.add_get("/api/v1/stream", _stream)
    app.router.add_get("/metrics", _metrics)
    register_analytics_routes(app, backend)
    register_relay_routes(app, backend)
    register_nilm_routes(app, backend)
    register_meter_routes(app, backend)
    # The ignores: aiosignal 1.4's Signal typing does not match aiohttp 3.11's annotation.
    app.on_startup.append(_start_stream)  # type: ignore[arg-type]
    # on_shutdown runs before the server waits for open handlers, so clients close first.
    app.on_shutdown.append(_stop_stream)  # type: ignore[arg-type]
    app.on_cleanup.append(_flush_refusals)  # type: ignore[arg-type]
    app.on_response_prepare.append(_no_server_version)  # type: ignore[arg-type]
    return app


async def _no_server_version(_request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp names itself and its version in every answer, a 401 included: a scanner's
    # shortcut to its advisories.
    response.headers[hdrs.SERVER] = "Energy Tracker"


async def _start_stream(app: web.Application) -> None:
    app[STREAM_KEY].start()


async def _stop_stream(app: web.Application) -> None:
    await app[STREAM_KEY].stop()


async def _flush_refusals(app: web.Application) -> None:
    app[REFUSALS_KEY].flush()
    app[STREAM_REFUSALS_KEY].flush()


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"error": code}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own error pages are HTML; the API answers JSON."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "not_found")
    except web.HTTPMethodNotAllowed as refused:
        answer = _error(405, "method_not_allowed")
        answer.headers[hdrs.ALLOW] = ",".join(sorted(refused.allowed_methods))
        return answer
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large")


@web.middleware
async def _require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != HEALTH_PATH:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        # Header bytes that are not UTF-8 arrive as lone surrogates: compare them as bytes.
        given = credentials.encode("utf-8", "surrogateescape")
        expected = request.app[BACKEND_KEY].token.encode()
        # The scheme is case-insensitive (RFC 9110 11.1); compare_digest keeps timing flat.
        if not hmac.compare_digest(given, expected) or scheme.lower() != "bearer":
            request.app[REFUSALS_KEY].add(request)
            return _error(401, "invalid_auth")
    return await handler(request)


@web.middleware
async def _skip_abandoned(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A command whose client has gone is not carried out. Requests sent while the add-on
    was frozen (SIGSTOP, a long stall) wait in the kernel; their clients time out and say
    they failed; run when it wakes, they all ran at once (a relay flipped back and forth)."""
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        # One turn of the loop first: the end of file a gone client sent behind its request
        # is read then (the selector reports it after this handler was scheduled).
        await asyncio.sleep(0)
        transport = request.transport
        if transport is None or transport.is_closing():
            _LOGGER.warning("%s %s not carried out: its client had gone before the add-on "
                            "read it (it gave up: the add-on was frozen or too busy; or it "
                            "closed its sending side to wait, which the API takes for gone)",
                            request.method, request.path)
            return web.Response(status=499)  # read by nobody: nginx's "client closed"
    return await handler(request)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def _info(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND_KEY].info())


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND_KEY].meter.snapshot())


async def _channels(request: web.Request) -> web.Response:
    snapshot = request.app[BACKEND_KEY].meter.snapshot()
    return web.json_response({"channels": snapshot["channels"]})


async def _energy(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND_KEY].meter.energy())


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[BACKEND_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": Metrics.content_type})


async def _stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[STREAM_KEY]
    # No permessage-deflate: the integration does not ask for it, and each compressing
    # client holds ~200 KB of zlib state that outlives it (RSS grew 50 MB per 300 clients).
    ws = web.WebSocketResponse(heartbeat=STREAM_HEARTBEAT_S, compress=False)
    if not ws.can_prepare(request).ok:
        return _error(400, "websocket_expected")  # a plain GET: aiohttp would answer text
    if hub.clients >= MAX_STREAM_CLIENTS:
        # Each holds a queue and a task: 3 000 took 60 MB that stayed after they left.
        request.app[STREAM_REFUSALS_KEY].add(request)
        return _error(503, "too_many_streams")
    await ws.prepare(request)
    queue = hub.add(ws, request.transport)
    sender = asyncio.create_task(_send_queue(request, ws, hub.state_message(), queue),
                                 name="websocket sender")
    try:
        # Reading is what answers pings, notices pongs and sees the client's close frame;
        # the client's own messages carry nothing for us.
        async for _message in ws:
            pass
    except ConnectionError as err:
        # Answering a ping on a socket the client already closed (it gave up on us while
        # this process was frozen): a client gone, not an error.
        _LOGGER.debug("websocket client gone: %s", err)
    finally:
        hub.remove(ws)
        sender.cancel()
        await asyncio.wait({sender})
    return ws


async def _send_queue(request: web.Request, ws: web.WebSocketResponse, first: str,
                      queue: asyncio.Queue[str]) -> None:
    message = first
    try:
        while True:
            # A send that cannot finish means the client's socket takes nothing: it stopped
            # reading. Pings do not show it when the client keeps sending (each frame it
            # sends counts as alive), so the deadline does.
            async with asyncio.timeout(SEND_DEADLINE_S):
                await ws.send_str(message)
            message = await queue.get()
    except ConnectionError as err:
        _LOGGER.debug("websocket client gone: %s", err)
        await ws.close()
    except TimeoutError:
        _LOGGER.info("Stream: dropping a client that has read nothing for %g s", SEND_DEADLINE_S)
        if request.transport is not None:
            request.transport.abort()  # a close frame would wait behind the unread bytes

"""Routes of the analytics (docs/api.md): energy per period, anomaly events, history export.

Registered on the main application by `register_analytics_routes(app, backend)`; the
backend is resolved per request, so the routes exist even before the service has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, cast

from aiohttp import web

from .aggregates import PERIODS
from .analytics import Analytics
from .api_body import read_json
from .api_errors import invalid, storage_error
from .history import ExportCancelled

_LOGGER = logging.getLogger(__name__)
SEND_DEADLINE_S: Final = 30.0  # a client that takes no byte for this long is not reading

EXPORT_FORMATS: Final = ("csv", "parquet")
CONTENT_TYPES: Final = {"csv": "text/csv; charset=utf-8",
                        "parquet": "application/vnd.apache.parquet"}
CHUNK_BYTES: Final = 256 * 1024


class AnalyticsBackend(Protocol):
    """The running service as these routes see it (implemented by `AddonService`)."""

    @property
    def analytics(self) -> Analytics: ...


ANALYTICS_KEY = web.AppKey("analytics_backend", AnalyticsBackend)


def register_analytics_routes(app: web.Application, backend: object) -> None:
    app[ANALYTICS_KEY] = cast(AnalyticsBackend, backend)
    app.router.add_get("/api/v1/aggregates", _aggregates)
    app.router.add_get("/api/v1/anomalies", _anomalies)
    # No HEAD: it would run the whole export and send it as a body (aiohttp drops no
    # streamed body), which broke the keep-alive connection.
    app.router.add_get("/api/v1/export", _export, allow_head=False)
    app.router.add_get("/api/v1/co2_intensity", _co2_intensity)
    app.router.add_put("/api/v1/co2_intensity", _set_co2_intensity)
    app.router.add_delete("/api/v1/co2_intensity", _clear_co2_intensity)



async def _aggregates(request: web.Request) -> web.Response:
    period = request.query.get("period", "")
    for known in PERIODS:
        if period == known:
            analytics = request.app[ANALYTICS_KEY].analytics
            return web.json_response(analytics.aggregates(known))
    return invalid(f"period must be one of {', '.join(PERIODS)} (got {period!r})")


async def _anomalies(request: web.Request) -> web.Response:
    return web.json_response({"anomalies": request.app[ANALYTICS_KEY].analytics.anomalies()})


async def _co2_intensity(request: web.Request) -> web.Response:
    return web.json_response(request.app[ANALYTICS_KEY].analytics.carbon.as_json())


async def _set_co2_intensity(request: web.Request) -> web.Response:
    """A live carbon intensity from Home Assistant: {"g_per_kwh": number}."""
    analytics = request.app[ANALYTICS_KEY].analytics
    try:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"g_per_kwh"}:
            raise ValueError('expected {"g_per_kwh": number} and nothing else')
        analytics.push_intensity(body["g_per_kwh"])
    except ValueError as error:  # BadBody is a ValueError
        return invalid(str(error))
    return web.json_response(analytics.carbon.as_json())


async def _clear_co2_intensity(request: web.Request) -> web.Response:
    analytics = request.app[ANALYTICS_KEY].analytics
    analytics.clear_intensity()
    return web.json_response(analytics.carbon.as_json())


def _time(query: Any, name: str) -> datetime:
    text = query.get(name)
    if not text:
        raise ValueError(f"{name} is required (ISO 8601 with a time zone, e.g. "
                         "2026-11-24T00:00:00Z)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} needs a time zone (e.g. a trailing Z): {text!r}")
    try:
        moment.astimezone(UTC)  # 0001-01-01T00:00+01:00 is before year 1 in UTC
    except OverflowError:
        raise ValueError(f"{name} is out of range in UTC: {text!r}") from None
    return moment


async def _export(request: web.Request) -> web.StreamResponse:
    query = request.query
    fmt = query.get("format", "csv")
    try:
        start, end = _time(query, "start"), _time(query, "end")
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)} (got {fmt!r})")
        if end <= start:
            raise ValueError("end must be after start")
    except ValueError as error:
        return invalid(str(error))
    analytics = request.app[ANALYTICS_KEY].analytics
    name = f"energy_tracker_{_utc_stamp(start)}_{_utc_stamp(end)}.{fmt}"
    headers = {"Content-Type": CONTENT_TYPES[fmt],
               "Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return await _stream_csv(request, analytics.csv_export(start, end), headers)
    return await _send_parquet(request, analytics, start, end, headers)


async def _stream_csv(request: web.Request, pieces: AsyncGenerator[bytes],
                      headers: dict[str, str]) -> web.StreamResponse:
    """CSV as it is read: the first bytes leave at once, however long the range (a
    90-day export took minutes to build, and clients gave up before its first byte). No
    Content-Length or X-Export-Rows: both are known only at the end."""
    try:
        try:
            piece: bytes | None = await anext(pieces)  # the header: the store answers
        except (OSError, sqlite3.Error) as error:
            return storage_error(error, "reading the history")
        except ExportCancelled:
            return web.json_response({"error": "stopping"}, status=503)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            while piece is not None:
                await _send(request, response, piece)
                piece = await anext(pieces, None)
            await response.write_eof()
        except ConnectionError:
            # Reset, or "Connection lost" while waiting for it to take bytes (HA's read
            # timeout, a restart, Ctrl-C): not a storage failure.
            _LOGGER.debug("Export: the client left before the end")
        except ExportCancelled:
            # The add-on stops. Headers are sent: only a cut connection tells the client
            # the file is not whole (a clean end of the chunks would not).
            _LOGGER.info("Export cut short: the add-on is stopping")
            if request.transport is not None:
                request.transport.abort()
        except (OSError, sqlite3.Error) as error:
            # Headers are sent: only a cut connection tells the client the file is not whole.
            _LOGGER.error("Storage: reading the history failed during an export: %s", error)
            raise
        return response
    finally:
        await pieces.aclose()


async def _send(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    """Write, or cut a client that takes nothing for SEND_DEADLINE_S: it would hold the
    request (and, for CSV, its place in the history's queue) for ever."""
    try:
        async with asyncio.timeout(SEND_DEADLINE_S):
            await response.write(data)
    except TimeoutError:
        _LOGGER.info("Export: dropping a client that has read nothing for %g s",
                     SEND_DEADLINE_S)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None


async def _send_parquet(request: web.Request, analytics: Analytics, start: datetime,
                        end: datetime, headers: dict[str, str]) -> web.StreamResponse:
    """Parquet is written whole (its footer comes last), then sent with its size and rows."""
    try:
        fd, name = tempfile.mkstemp(dir=analytics.export_dir, suffix=".parquet")
    except OSError as error:
        return storage_error(error, "writing the export")
    os.close(fd)
    temp = Path(name)
    try:
        try:
            rows = await analytics.export(start, end, "parquet", temp)
        except (OSError, sqlite3.Error) as error:
            return storage_error(error, "writing the export")
        except ExportCancelled:
            return web.json_response({"error": "stopping"}, status=503)
        response = web.StreamResponse(headers={**headers, "X-Export-Rows": str(rows)})
        # A local file in small chunks: each call takes far less than a reading's
        # interval, and no thread is needed.
        response.content_length = temp.stat().st_size  # noqa: ASYNC240
        try:
            await response.prepare(request)
            with temp.open("rb") as handle:  # noqa: ASYNC230
                while chunk := handle.read(CHUNK_BYTES):
                    await _send(request, response, chunk)
            await response.write_eof()
        except ConnectionError:
            _LOGGER.debug("Export: the client left before the end")
        return response
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()  # noqa: ASYNC240


def _utc_stamp(moment: datetime) -> str:
    """`20261124T000000Z`: UTC, so that two ranges given in different zones never share a
    file name, and four-digit years (strftime writes year 1 as "1")."""
    t = moment.astimezone(UTC)
    return (f"{t.year:04d}{t.month:02d}{t.day:02d}T"
            f"{t.hour:02d}{t.minute:02d}{t.second:02d}Z")

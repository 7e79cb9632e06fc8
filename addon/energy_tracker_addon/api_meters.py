"""The meter routes of the API (docs/api.md, "Several meters"): list, per-meter state,
energy comparison."""

from __future__ import annotations

from typing import Final, Protocol, cast

from aiohttp import web

from .aggregates import PERIODS
from .extra_meters import ExtraMeters


class MeterApiBackend(Protocol):
    @property
    def extra_meters(self) -> ExtraMeters: ...


METER_BACKEND_KEY: Final = web.AppKey("meter_backend", MeterApiBackend)


def register_meter_routes(app: web.Application, backend: object) -> None:
    """Add the routes; `backend` is the running service (`AddonService`)."""
    app[METER_BACKEND_KEY] = cast(MeterApiBackend, backend)
    app.router.add_get("/api/v1/meters", _list)
    app.router.add_get("/api/v1/meters/{id}/state", _state)
    app.router.add_get("/api/v1/compare", _compare)


async def _list(request: web.Request) -> web.Response:
    meters = request.app[METER_BACKEND_KEY].extra_meters
    return web.json_response({"meters": meters.summary()})


async def _state(request: web.Request) -> web.Response:
    meter = request.app[METER_BACKEND_KEY].extra_meters.get(request.match_info["id"])
    if meter is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(meter.snapshot())


async def _compare(request: web.Request) -> web.Response:
    period = request.query.get("period", "day")
    if period not in PERIODS:
        return web.json_response(
            {"error": "invalid", "detail": f"period must be one of {', '.join(PERIODS)}"},
            status=400,
        )
    meters = request.app[METER_BACKEND_KEY].extra_meters
    return web.json_response(meters.compare(period))



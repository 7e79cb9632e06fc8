"""The routes that command the boards (docs/api.md, "Relays and demand response" and
"Voltage calibration"): relays, demand response, the voltage board's calibration."""

from __future__ import annotations

import math
from typing import Any, Final, Protocol, cast

from aiohttp import web

from .api_body import BadBody, read_json
from .api_errors import invalid, storage_error
from .demand_response import DEFAULT_STAGGER_S, DemandResponse, NoReading
from .relays import (
    MIN_OFF_MAX_S,
    MIN_ON_MAX_S,
    PRIORITY_MAX,
    RelayError,
    RelayManager,
    RelayNotFound,
    RelayTooSoon,
)
from .voltage_calibration import CalibrationError, VoltageCalibration

MAX_STAGGER_S: Final = 600.0
MAX_POWER_W: Final = 1_000_000.0


class RelayApiBackend(Protocol):
    @property
    def relays(self) -> RelayManager: ...

    @property
    def demand_response(self) -> DemandResponse: ...

    @property
    def voltage_calibration(self) -> VoltageCalibration: ...


RELAY_BACKEND_KEY: Final = web.AppKey("relay_backend", RelayApiBackend)


class Invalid(Exception):
    """A bad request body; the message says what is wrong."""


def register_relay_routes(app: web.Application, backend: object) -> None:
    """Add the routes; `backend` is the running service (`AddonService`)."""
    app[RELAY_BACKEND_KEY] = cast(RelayApiBackend, backend)
    app.router.add_get("/api/v1/relays", _list)
    app.router.add_put("/api/v1/relays/{id:[1-9][0-9]*}", _put)  # "01" is no relay id
    app.router.add_post("/api/v1/shed", _shed)
    app.router.add_post("/api/v1/restore", _restore)
    app.router.add_post("/api/v1/boards/voltage/calibration", _calibrate)



def _relay_error(error: RelayError) -> web.Response:
    body: dict[str, Any] = {"error": error.code}
    if error.status == 502:
        body["detail"] = error.detail
    if isinstance(error, RelayTooSoon):
        body["detail"], body["retry_after_s"] = error.detail, error.retry_after_s
        return web.json_response(body, status=error.status,
                                 headers={"Retry-After": str(error.retry_after_s)})
    return web.json_response(body, status=error.status)


async def _list(request: web.Request) -> web.Response:
    manager = request.app[RELAY_BACKEND_KEY].relays
    return web.json_response({"relays": manager.all_json()})


async def _put(request: web.Request) -> web.Response:
    manager = request.app[RELAY_BACKEND_KEY].relays
    try:
        relay_id = int(request.match_info["id"])
        manager.get(relay_id)
    except (ValueError, RelayNotFound):
        return web.json_response({"error": "not_found"}, status=404)
    try:
        body = await _body(request, {"state", "priority", "min_on_s", "min_off_s"},
                           required=True)
        state = body.get("state")
        if "state" in body and not isinstance(state, bool):
            raise Invalid("state: expected true or false")
        priority = _optional_int(body, "priority", PRIORITY_MAX)
        min_on_s = _optional_int(body, "min_on_s", MIN_ON_MAX_S)
        min_off_s = _optional_int(body, "min_off_s", MIN_OFF_MAX_S)
    except Invalid as error:
        return invalid(str(error))
    try:
        # The switch first: a request that fails (503, 504) changes nothing at all.
        if state is not None:
            await manager.switch(relay_id, state)
        if priority is not None or min_on_s is not None or min_off_s is not None:
            await manager.update_settings(relay_id, priority=priority, min_on_s=min_on_s,
                                          min_off_s=min_off_s)
    except RelayError as error:
        return _relay_error(error)
    except OSError as error:
        return storage_error(error, "saving the relay settings")
    return web.json_response(manager.as_json(manager.get(relay_id)))


async def _shed(request: web.Request) -> web.Response:
    try:
        body = await _body(request, {"limit_w", "reduce_w"}, required=True)
        if len(body) != 1:
            raise Invalid("give either limit_w or reduce_w")
        (key, value), = body.items()
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or not 0 <= value <= MAX_POWER_W \
                or (key == "reduce_w" and value == 0):
            raise Invalid(f"{key}: expected a number of watts, 0 to {MAX_POWER_W:g}"
                          + (" (more than 0)" if key == "reduce_w" else ""))
    except Invalid as error:
        return invalid(str(error))
    demand = request.app[RELAY_BACKEND_KEY].demand_response
    try:
        result = await demand.shed(**{key: float(value)})
    except NoReading:
        return web.json_response({"error": "unavailable"}, status=503)
    return web.json_response(result)


async def _restore(request: web.Request) -> web.Response:
    try:
        body = await _body(request, {"stagger_s"}, required=False)
        stagger = body.get("stagger_s", DEFAULT_STAGGER_S)
        if isinstance(stagger, bool) or not isinstance(stagger, int | float) \
                or not 0 <= stagger <= MAX_STAGGER_S:
            raise Invalid(f"stagger_s: expected a number of seconds, 0 to {MAX_STAGGER_S:g}")
    except Invalid as error:
        return invalid(str(error))
    demand = request.app[RELAY_BACKEND_KEY].demand_response
    return web.json_response(await demand.restore(float(stagger)))


async def _calibrate(request: web.Request) -> web.Response:
    try:
        body = await _body(request, {"measured_v"}, required=True)
        measured = body["measured_v"]  # the only field, and required
        if isinstance(measured, bool) or not isinstance(measured, int | float) \
                or not math.isfinite(measured):
            raise Invalid("measured_v: expected the multimeter's reading in volts")
    except Invalid as error:
        return invalid(str(error))
    try:
        result = await request.app[RELAY_BACKEND_KEY].voltage_calibration.calibrate(
            float(measured))
    except CalibrationError as error:
        return web.json_response({"error": error.code, "detail": error.detail},
                                 status=error.status)
    return web.json_response(result)


async def _body(request: web.Request, allowed: set[str], *, required: bool) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except BadBody as error:
        raise Invalid(str(error)) from None
    if body == "" and not required:
        return {}
    if not isinstance(body, dict):
        raise Invalid("expected a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise Invalid(f"unknown field(s): {', '.join(sorted(unknown))}")
    if required and not body:
        raise Invalid(f"expected one of: {', '.join(sorted(allowed))}")
    return body


def _optional_int(body: dict[str, Any], key: str, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= high:
        raise Invalid(f"{key}: expected an integer, 0 to {high}")
    return value

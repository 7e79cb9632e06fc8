"""Routes of the appliance detection (docs/api.md, "Appliances"): estimates and labels.

Registered on the main application by `register_nilm_routes(app, backend)`; the backend is
resolved per request, so the routes exist even before the service has started.
"""

from __future__ import annotations

from typing import Protocol, cast

from aiohttp import web

from .api_body import BadBody, read_json
from .nilm_service import LabelError, NilmService


class NilmBackend(Protocol):
    """The running service as these routes see it (implemented by `AddonService`)."""

    @property
    def nilm(self) -> NilmService: ...


NILM_KEY = web.AppKey("nilm_backend", NilmBackend)


def register_nilm_routes(app: web.Application, backend: object) -> None:
    app[NILM_KEY] = cast(NilmBackend, backend)
    app.router.add_get("/api/v1/appliances", _appliances)
    app.router.add_get("/api/v1/labels", _labels)
    app.router.add_post("/api/v1/labels", _add_label)


async def _appliances(request: web.Request) -> web.Response:
    return web.json_response(request.app[NILM_KEY].nilm.summary())


async def _labels(request: web.Request) -> web.Response:
    return web.json_response({"labels": await request.app[NILM_KEY].nilm.all_labels()})


async def _add_label(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadBody:
        return _invalid("body must be JSON")
    try:
        label = await request.app[NILM_KEY].nilm.add_label(body)
    except LabelError as error:
        return _invalid(str(error))
    return web.json_response(label)


def _invalid(detail: str) -> web.Response:
    return web.json_response({"error": "invalid", "detail": detail}, status=400)

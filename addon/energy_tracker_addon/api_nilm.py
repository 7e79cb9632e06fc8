"""Routes of the appliance detection (docs/api.md, "Appliances"): estimates and labels.

Registered on the main application by `register_nilm_routes(app, backend)`; the backend is
resolved per request, so the routes exist even before the service has started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from aiohttp import web

from .api_body import BadBody, read_json
from .api_errors import invalid, storage_error
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
    app.router.add_delete("/api/v1/labels", _remove_label)


async def _appliances(request: web.Request) -> web.Response:
    return web.json_response(request.app[NILM_KEY].nilm.summary())


async def _labels(request: web.Request) -> web.Response:
    try:
        labels = await request.app[NILM_KEY].nilm.all_labels()
    except OSError as error:
        return storage_error(error, "reading the labels")
    return web.json_response({"labels": labels})


async def _add_label(request: web.Request) -> web.Response:
    nilm = request.app[NILM_KEY].nilm
    return await _change_labels(request, nilm.add_label, "saving the label")


async def _remove_label(request: web.Request) -> web.Response:
    nilm = request.app[NILM_KEY].nilm
    return await _change_labels(request, nilm.remove_label, "removing the label")


async def _change_labels(
    request: web.Request,
    change: Callable[[Any], Awaitable[dict[str, Any] | None]],
    doing: str,
) -> web.Response:
    """Read the label's fields from the body and answer with the label `change` returns
    (None: no label matched)."""
    try:
        body = await read_json(request)
    except BadBody:
        return invalid("body must be JSON")
    try:
        label = await change(body)
    except LabelError as error:
        return invalid(str(error))
    except OSError as error:
        return storage_error(error, doing)
    if label is None:
        return web.json_response({"error": "not_found", "detail": "no such label (GET "
                                  "/api/v1/labels lists them, times in UTC)"}, status=404)
    return web.json_response(label)

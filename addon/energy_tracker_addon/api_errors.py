"""Error answers shared by the API's route modules (docs/api.md, "Errors")."""

from __future__ import annotations

import errno
import logging
import sqlite3

from aiohttp import web

_LOGGER = logging.getLogger(__name__)

# A full disk or quota is the user's to fix, and HTTP has a status for it.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def invalid(detail: str) -> web.Response:
    """400: the request asked for something the API cannot do; `detail` says why."""
    return web.json_response({"error": "invalid", "detail": detail}, status=400)


def storage_error(error: OSError | sqlite3.Error, doing: str) -> web.Response:
    """The add-on's own storage failed while `doing` ("writing the export"): a JSON answer
    and a log line instead of aiohttp's plain-text 500 with a traceback.

    507 `storage_full` for a full disk or quota, 500 `storage_error` for anything else.
    """
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        if error.filename:
            reason = f"{reason} ({error.filename})"
        full = error.errno in _FULL
    else:
        reason = str(error)
        full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    _LOGGER.error("Storage: %s failed: %s", doing, reason)
    return web.json_response(
        {"error": "storage_full" if full else "storage_error",
         "detail": f"{doing} failed: {reason}"},
        status=507 if full else 500,
    )

"""Request bodies of the API: JSON, or one clear reason why not (answered 400)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class BadBody(ValueError):
    """The body is not UTF-8 JSON the API can read."""


async def read_json(request: web.Request) -> Any:
    """The decoded body; "" for an empty one. Raises BadBody.

    Decoding problems of every kind end here: bytes that are not UTF-8, text that is not
    JSON, and JSON nested deeper than the parser's recursion limit (RecursionError).
    """
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text") from None
    if not text.strip():
        return ""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadBody("the body is not JSON") from None

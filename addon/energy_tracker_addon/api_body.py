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
    # UTF-8 whatever the Content-Type's charset says (docs/api.md): aiohttp's
    # request.text() would decode by it, and fail with a 500 on a charset it has no codec for.
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text") from None
    if not text.strip():
        return ""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        # Python refuses integers of more than 4300 digits: JSON, but no number we take.
        reason = "a number too long" if "digits" in str(error) else "not JSON"
        raise BadBody(f"the body is {reason}") from None

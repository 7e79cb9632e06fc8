"""Request bodies of the API: JSON, or one clear reason why not (answered 400)."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

# Digits of the largest integer a float holds (~1.8e308): a longer one is no value any
# route takes, and math.isfinite() or float() on it raises OverflowError (a 500).
MAX_INT_DIGITS: Final = 308


class BadBody(ValueError):
    """The body is not UTF-8 JSON the API can read."""


class _NumberTooLong(ValueError):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:  # also before Python's 4300-digit limit
        raise _NumberTooLong
    return int(text)


async def read_json(request: web.Request) -> Any:
    """The decoded body; "" for an empty one. Raises BadBody.

    Decoding problems of every kind end here: bytes that are not UTF-8, text that is not
    JSON, and JSON nested deeper than the parser's recursion limit (RecursionError).
    """
    # UTF-8 whatever the Content-Type's charset says (docs/api.md): aiohttp's
    # request.text() would decode by it, and fail with a 500 on a charset it has no codec for.
    try:
        # A leading byte order mark (Windows tools write one) is read past (RFC 8259 8.1).
        text = (await request.read()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text") from None
    if not text.strip():
        return ""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except _NumberTooLong:
        raise BadBody("the body holds a number too long") from None
    except (ValueError, RecursionError):
        raise BadBody("the body is not JSON") from None

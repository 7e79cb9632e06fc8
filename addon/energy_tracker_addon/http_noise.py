"""Malformed HTTP from the network: one short log line a minute, not a traceback each.

aiohttp logs every request its parser refuses (a control character in a header, two
Content-Lengths) at ERROR, with a traceback and the offending bytes: anyone on the network,
without a token, could fill the add-on's log at ~16 kB a request (Home Assistant OS's
journal then drops or buries the real lines). Like refused tokens (api.py), they are summed
up: the first in a minute is one warning line, the others are counted and said with the
next. A handler's own failure is not a parser refusal and is still logged in full.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

REPORT_INTERVAL_S: Final = 60.0
_REASON_CHARS: Final = 120  # the parser's message quotes the offending bytes
AIOHTTP_SERVER_LOGGER: Final = "aiohttp.server"


_AUTHORIZATION: Final = re.compile(r"(?i)(authorization:\s*)[^\r\n']*")


class MalformedRequests(logging.Filter):
    """Turns aiohttp's parser refusals into at most one warning line per interval."""

    def __init__(self, interval_s: float = REPORT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._next_report = -math.inf
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next_report:
            self._held += 1
            return False
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        # The parser quotes the bad line: an Authorization header's token stays out.
        text = _AUTHORIZATION.sub(r"\1<redacted>", str(error.message or error))
        reason = repr(text)[1:-1][:_REASON_CHARS]
        record.msg = "Refused a malformed HTTP request from %s (%s)%s"
        record.args = (peer, reason, f"; {self._held} more in the last minute, not logged"
                       if self._held else "")
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._next_report, self._held = now + self._interval_s, 0
        return True


@contextmanager
def malformed_requests_summed_up() -> Iterator[MalformedRequests]:
    """While the API runs: aiohttp's server logger goes through a MalformedRequests."""
    logger = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    summary = MalformedRequests()
    logger.addFilter(summary)
    try:
        yield summary
    finally:
        logger.removeFilter(summary)

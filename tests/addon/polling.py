"""Wait for something a running service shows, by asking it again and again."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_INTERVAL_S = 0.05


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = ""
) -> float:
    """Poll `condition` until it is true; return the seconds it took (TimeoutError if never)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return loop.time() - started
                await asyncio.sleep(POLL_INTERVAL_S)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout} s: {what or condition}") from None

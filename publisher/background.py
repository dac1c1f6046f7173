"""Work the server repeats while it runs, started and stopped with the app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def every(
    seconds: float,
    work: Callable[[], Awaitable[None]],
    *,
    at_start: bool = False,
    at_end: Callable[[], Awaitable[None]] | None = None,
) -> CleanupContext:
    """A cleanup context that runs ``work`` every ``seconds`` (and once more at the end)."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            if not at_start:
                await asyncio.sleep(seconds)
            while True:
                try:
                    await work()
                except Exception:  # one failed round must not end the loop
                    log.exception("background work failed")
                await asyncio.sleep(seconds)

        task = asyncio.ensure_future(loop())
        yield
        task.cancel()
        if at_end is not None:
            await at_end()

    return context

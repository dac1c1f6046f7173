"""Repeated background work: it runs on schedule, survives a failing round, ends with the app."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from publisher.background import every


async def test_work_repeats_survives_a_failure_and_runs_once_more_at_the_end() -> None:
    rounds: list[str] = []
    ran_twice = asyncio.Event()

    async def work() -> None:
        rounds.append("work")
        if len(rounds) == 1:
            raise RuntimeError("one bad round")
        ran_twice.set()

    async def end() -> None:
        rounds.append("end")

    context = every(0.001, work, at_start=True, at_end=end)(web.Application())
    await context.__anext__()
    await asyncio.wait_for(ran_twice.wait(), 5)
    with contextlib.suppress(StopAsyncIteration):  # the app stops: the context ends
        await context.__anext__()
    assert rounds[:2] == ["work", "work"] and rounds[-1] == "end"

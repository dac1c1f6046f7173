"""Render or hit: the one place the flow of a chart request is told.

URL parts in, an ``Entry`` and how it was obtained out. The server's views and
the ``publisher render`` command both come through here, so they cannot
disagree about what a chart is.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from .cache import Entry, TieredCache
from .catalog import Catalog, Chart, Notebook
from .errors import Overloaded, PublisherError
from .executor import Job
from .extract import FORMATS, chart_image
from .inject import cells_to_run
from .keys import render_key
from .pool import KernelPool
from .query import Query, read_query
from .settings import Settings

log = logging.getLogger(__name__)

HIT, MISS, STALE = "hit", "miss", "stale"
RESOLVED_URLS = 4096  # recently seen URLs whose render request is kept ready
REMEMBERED_FAILURES = 1024


@dataclass(frozen=True)
class RenderRequest:
    notebook: Notebook
    chart: Chart
    query: Query
    key: str


@dataclass(frozen=True)
class Result:
    entry: Entry
    cache: str  # HIT, MISS or STALE
    render_seconds: float | None = None


class _Flight:
    """One execution shared by every request for the same render."""

    def __init__(self, key: str, render: Coroutine[Any, Any, tuple[Entry, float]]) -> None:
        self.key = key
        self.waiters = 0
        self.started = False  # a kernel is running it: it will finish even if nobody waits
        self.task = asyncio.ensure_future(render)


@dataclass
class Stats:
    renders: int = 0  # executions started


Observer = Callable[[str, float | None], None]


class Publisher:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        cache: TieredCache,
        pool: KernelPool,
        coordinate: Callable[[str, Callable[[], Awaitable[Entry]]], Awaitable[Entry]] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cache = cache
        self.pool = pool
        self.coordinate = coordinate
        self.stats = Stats()
        self.observers: list[Observer] = []
        self._flights: dict[str, _Flight] = {}
        self._resolved: OrderedDict[tuple[object, ...], RenderRequest] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, PublisherError]] = OrderedDict()
        self.clock: Callable[[], float] = time.monotonic  # tests move it instead of waiting

    def resolve(self, notebook_id: str, chart: str | None, query: str, fmt: str) -> RenderRequest:
        """The render a URL (its raw query string) names; raises the 4xx it deserves.

        A URL seen before (same notebook content, same query text) is looked
        up rather than parsed and hashed again: the hot path of a hit.
        """
        notebook = self.catalog.get(notebook_id)
        seen = (notebook_id, notebook.digest, chart, fmt, query)
        request = self._resolved.get(seen)
        if request is not None:
            self._resolved.move_to_end(seen)
            return request
        chart_ = notebook.chart(chart)
        items = parse_qsl(query, keep_blank_values=True)
        parsed = read_query(notebook, items, fmt, self.settings)
        key = render_key(notebook.id, notebook.digest, chart_.name, parsed.values, parsed.options)
        request = RenderRequest(notebook, chart_, parsed, key)
        self._resolved[seen] = request
        if len(self._resolved) > RESOLVED_URLS:
            self._resolved.popitem(last=False)
        return request

    async def get(self, request: RenderRequest) -> Result:
        """A cached entry when there is a usable one, else the outcome of one shared render."""
        key = request.key
        entry = self.cache.memory.peek(key)
        if entry is None:
            entry, _ = await self.cache.get(key)
            entry = entry or self.cache.memory.peek(key)  # a flight may have ended meanwhile
        if entry is not None:
            left = entry.fresh_for()
            if left is None or left > 0:
                return Result(entry, HIT)
            if -left <= self.settings.max_stale:
                if not self._failed_recently(key):
                    self._flight(request)  # revalidate in the background, serve stale now
                return Result(entry, STALE)
        self._raise_recent_failure(key)
        entry, seconds = await self._wait(self._flight(request))
        return Result(entry, MISS, seconds)

    def _failed_recently(self, key: str) -> PublisherError | None:
        failed = self._failures.get(key)
        if failed is None:
            return None
        until, error = failed
        if self.clock() < until:
            return error
        del self._failures[key]
        return None

    def _raise_recent_failure(self, key: str) -> None:
        """A render that just failed fails again at once, without a kernel.

        A broken chart on a busy page would otherwise cost a kernel (and, for
        a timeout, the whole time limit) per viewer.
        """
        error = self._failed_recently(key)
        if error is not None:
            raise copy.copy(error)  # a fresh exception: the stored one keeps no traceback

    def _remember_failure(self, key: str, error: PublisherError) -> None:
        if isinstance(error, Overloaded) or self.settings.error_ttl <= 0:
            return  # the server's load, not the render's fault
        self._failures[key] = (self.clock() + self.settings.error_ttl, copy.copy(error))
        self._failures.move_to_end(key)
        if len(self._failures) > REMEMBERED_FAILURES:
            self._failures.popitem(last=False)

    def _flight(self, request: RenderRequest) -> _Flight:
        key = request.key
        flight = self._flights.get(key)
        if flight is None or flight.task.cancelling() or flight.task.done():
            flight = self._flights[key] = _Flight(key, self._render_and_store(request))
            flight.task.add_done_callback(lambda _: self._forget(flight))
            flight.task.add_done_callback(_consume)
        return flight

    def _forget(self, flight: _Flight) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def _wait(self, flight: _Flight) -> tuple[Entry, float]:
        """Wait for a flight; the last waiter to leave before it started calls it off."""
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.started and not flight.task.done():
                flight.task.cancel()
                self._forget(flight)  # a request arriving now starts afresh

    async def _render_and_store(self, request: RenderRequest) -> tuple[Entry, float]:
        flight = self._flights[request.key]  # set before this task first runs
        started = time.perf_counter()

        async def produce() -> Entry:
            async with self.pool.kernel(fresh=request.notebook.fresh_kernel) as kernel:
                flight.started = True
                self.stats.renders += 1
                outputs = await kernel.run(self._job(request), self.settings.timeout)
            image = chart_image(outputs, request.query.options.fmt, request.chart.cell is None)
            mime = FORMATS[request.query.options.fmt]
            entry = Entry.of(image, mime, request.notebook.ttl)
            await self.cache.put(request.key, entry)
            return entry

        try:
            entry = await (self.coordinate(request.key, produce) if self.coordinate else produce())
        except PublisherError as e:
            self._remember_failure(request.key, e)
            raise
        finally:
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(request.key, seconds if flight.started else None)
        return entry, seconds

    def _job(self, request: RenderRequest) -> Job:
        notebook = request.notebook
        return Job(
            cwd=str(notebook.folder),
            cells=cells_to_run(notebook, request.chart, request.query.injected),
            options=request.query.options,
            root=str(self.catalog.root),
            max_pixels=self.settings.max_pixels,
        )


def _consume(task: asyncio.Task[object]) -> None:
    """A background revalidation nobody waits for must not log 'exception never retrieved'."""
    if not task.cancelled() and task.exception() is not None:
        log.info("render failed: %s", task.exception())

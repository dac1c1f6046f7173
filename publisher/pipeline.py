"""The cache pipeline: how a render key becomes an entry, layer by layer.

A chart request goes down these layers and its entry comes back up::

    memory -> flights -> disk -> redis (tier and cluster lock) -> render

Every layer below the memory answers the one call ``get_or_render(key,
produce)``. A layer that holds entries answers from its own store when it
can, and otherwise asks the layer below and keeps what comes back: each layer
fills itself, and none writes another's store. ``produce`` (a render: the
``Renderer`` in the server) is only ever called by the bottom layer.

The layers, and why they are in this order:

- **memory** (``Pipeline``) is in front and synchronous: a hit there costs no
  await and no system call. The policy that needs a whole view of a key lives
  here too: a stale entry within ``--max-stale`` is served at once while one
  background revalidation runs, and a render that just failed fails again at
  once (for ``--error-ttl``) rather than costing a kernel per viewer.
- **flights** come next, before any I/O: a burst of requests for a chart that
  is not in memory reads the disk and Redis once, and renders once. A flight
  that every waiter left before its render started is called off.
- **disk** survives restarts; **redis** is shared by every server, and its
  lock makes one render per key in the whole cluster.
- **render** calls ``produce`` and times it.

Freshness is judged in one place, ``Freshness``, with one clock that tests
can move: a ttl that ran out and data files that changed make an entry stale
alike.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .bounded import Bounded
from .cache import Entry, MemoryCache
from .data import NO_DATA, DataWatch
from .errors import Overloaded, PublisherError
from .outcome import HIT, MISS, STALE, Outcome

log = logging.getLogger(__name__)

Clock = Callable[[], float]  # epoch seconds; entries are shared between servers
Started = Callable[[], None]
# A render: it calls ``started()`` once its work may no longer be called off (it holds a kernel).
Produce = Callable[[Started], Awaitable[Entry]]
FRESH, EXPIRED = "fresh", "expired"  # and STALE: past its ttl, still within --max-stale
REMEMBERED_FAILURES = 1024


class Layer(Protocol):
    async def get_or_render(self, key: str, produce: Produce, revalidate: bool = False) -> Outcome:
        """The entry for ``key``; with ``revalidate``, a stale one does not answer."""
        ...


class Store(Protocol):
    name: str

    async def get(self, key: str) -> Entry | None: ...

    async def put(self, key: str, entry: Entry) -> None: ...


class Freshness:
    """Whether an entry may answer: fresh, stale but servable, or expired.

    An entry goes stale when its ttl runs out, or when the data its render
    read changed (looked at once per ``data_interval``); either way it may be
    served for ``max_stale`` seconds more while a new render is made.
    """

    def __init__(
        self, max_stale: float, clock: Clock = time.time, data_interval: float = 1.0
    ) -> None:
        self.max_stale = max_stale
        self.clock = clock
        self.data = DataWatch(data_interval)

    def judge(self, entry: Entry) -> str:
        now = self.clock()
        left = entry.fresh_for(now)
        stale_for = None if left is None or left > 0 else -left
        if entry.data is not NO_DATA:  # identity, not truthiness: no call on most hits
            since = self.data.changed_since(entry.data, entry.created, now)
            if since is not None:
                stale_for = max(now - since, stale_for or 0.0)
        if stale_for is None:
            return FRESH
        return STALE if stale_for < self.max_stale else EXPIRED

    def answer(self, entry: Entry, tier: str, revalidate: bool) -> Outcome | None:
        """The outcome of finding ``entry`` in ``tier``, or None when it cannot answer."""
        state = self.judge(entry)
        if state == FRESH:
            return Outcome(entry, HIT, tier)
        if state == STALE and not revalidate:
            return Outcome(entry, STALE, tier)
        return None


class Pipeline:
    """The front of the pipeline: the memory tier, stale-while-revalidate and the failure memo."""

    def __init__(
        self, memory: MemoryCache, below: Layer, freshness: Freshness, error_ttl: float
    ) -> None:
        self.memory = memory
        self.below = below
        self.freshness = freshness
        self.error_ttl = error_ttl
        self._failures: Bounded[str, tuple[float, PublisherError]] = Bounded(REMEMBERED_FAILURES)
        self._revalidations: dict[str, asyncio.Task[None]] = {}

    @property
    def revalidating(self) -> int:
        """Background renders of stale entries running now."""
        return len(self._revalidations)

    async def get_or_render(self, key: str, produce: Produce) -> Outcome:
        entry = self.memory.get(key)
        if entry is not None:
            state = self.freshness.judge(entry)
            if state == FRESH:
                return Outcome(entry, HIT, self.memory.name)
            if state == STALE:
                self._revalidate(key, produce)
                return Outcome(entry, STALE, self.memory.name)
        self._raise_recent_failure(key)
        try:
            outcome = await self.below.get_or_render(key, produce)
        except PublisherError as e:
            self._remember_failure(key, e)
            raise
        self.memory.put(key, outcome.entry)
        if outcome.cache == STALE:  # from a tier below: served, and renewed behind it
            self._revalidate(key, produce)
        return outcome

    def close(self) -> None:
        """Call off the background revalidations: nobody waits for them."""
        for task in list(self._revalidations.values()):
            task.cancel()

    def _revalidate(self, key: str, produce: Produce) -> None:
        if key in self._revalidations or self._failed_recently(key):
            return
        task = asyncio.ensure_future(self._renew(key, produce))
        self._revalidations[key] = task
        task.add_done_callback(lambda _: self._revalidations.pop(key, None))

    async def _renew(self, key: str, produce: Produce) -> None:
        try:
            outcome = await self.below.get_or_render(key, produce, revalidate=True)
        except PublisherError as e:
            self._remember_failure(key, e)
            log.info("revalidation failed, serving the stale chart meanwhile: %s", e)
            return
        except Exception:
            log.exception("revalidation of %s failed", key)
            return
        self.memory.put(key, outcome.entry)

    def _failed_recently(self, key: str) -> PublisherError | None:
        failed = self._failures.get(key)
        if failed is None:
            return None
        until, error = failed
        if self.freshness.clock() < until:
            return error
        del self._failures[key]
        return None

    def _raise_recent_failure(self, key: str) -> None:
        error = self._failed_recently(key)
        if error is not None:
            raise copy.copy(error)  # a fresh exception: the stored one keeps no traceback

    def _remember_failure(self, key: str, error: PublisherError) -> None:
        if isinstance(error, Overloaded) or self.error_ttl <= 0:
            return  # the server's load, not the render's fault
        stored = copy.copy(error).with_traceback(None)
        self._failures[key] = (self.freshness.clock() + self.error_ttl, stored)


class _Flight:
    """One trip down the pipeline, shared by every request for the same key."""

    def __init__(self) -> None:
        self.waiters = 0
        self.started = False  # its render holds a kernel: it finishes even if nobody waits
        self.task: asyncio.Task[Outcome] | None = None

    def marking(self, produce: Produce) -> Produce:
        """``produce``, also marking this flight as started when it is."""

        def run(started: Started) -> Awaitable[Entry]:
            def both() -> None:
                self.started = True
                started()

            return produce(both)

        return run


class Flights:
    """Local single flight: concurrent requests for one key make one trip below."""

    def __init__(self, below: Layer) -> None:
        self.below = below
        self._flights: dict[str, _Flight] = {}

    async def get_or_render(self, key: str, produce: Produce, revalidate: bool = False) -> Outcome:
        flight = self._flights.get(key)
        if flight is None or flight.task is None or flight.task.cancelling() or flight.task.done():
            flight = self._start(key, produce, revalidate)
        assert flight.task is not None
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.started and not flight.task.done():
                flight.task.cancel()  # nobody waits and no kernel was taken: call it off
                self._forget(key, flight)  # a request arriving now starts afresh

    def _start(self, key: str, produce: Produce, revalidate: bool) -> _Flight:
        flight = self._flights[key] = _Flight()
        trip = self.below.get_or_render(key, flight.marking(produce), revalidate)
        flight.task = task = asyncio.create_task(trip)
        task.add_done_callback(lambda _: self._forget(key, flight))
        task.add_done_callback(_retrieve)
        return flight

    def _forget(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


def _retrieve(task: asyncio.Task[Outcome]) -> None:
    """A flight whose waiters all left must not log 'exception was never retrieved'."""
    if not task.cancelled():
        task.exception()


class Stored:
    """A tier that survives the process (the disk): answer from it, else fill it from below."""

    def __init__(self, store: Store, below: Layer, freshness: Freshness) -> None:
        self.store = store
        self.below = below
        self.freshness = freshness

    async def get_or_render(self, key: str, produce: Produce, revalidate: bool = False) -> Outcome:
        entry = await self.store.get(key)
        if entry is not None:
            outcome = self.freshness.answer(entry, self.store.name, revalidate)
            if outcome is not None:
                return outcome
        outcome = await self.below.get_or_render(key, produce, revalidate)
        await self.store.put(key, outcome.entry)
        return outcome


class Render:
    """The bottom of the pipeline: run the render, and time it."""

    async def get_or_render(self, key: str, produce: Produce, revalidate: bool = False) -> Outcome:
        started = time.perf_counter()
        entry = await produce(_nothing)
        return Outcome(entry, MISS, None, time.perf_counter() - started)


def _nothing() -> None:
    pass

"""The cache pipeline's policy, with a fake render and a fake clock: no kernel, no waiting.

Single flight, flights called off, stale-while-revalidate, the failure memo,
and each tier filling itself. The real-kernel tests (test_http, test_live,
test_redis) check the same rules end to end.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from publisher.cache import DiskCache, Entry, MemoryCache
from publisher.data import Data, DataFile, declared
from publisher.errors import NotebookFailed, Overloaded
from publisher.outcome import Outcome
from publisher.pipeline import Flights, Freshness, Pipeline, Render, Started, Stored

TTL, MAX_STALE, ERROR_TTL = 60.0, 600.0, 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Renders:
    """A fake ``produce``: counts its calls, can be held at a gate, fails on request."""

    def __init__(self, clock: Clock, ttl: float | None = TTL) -> None:
        self.clock, self.ttl = clock, ttl
        self.calls = 0
        self.started_calls = 0
        self.cancelled = 0
        self.queue: asyncio.Event | None = None  # held before a kernel is taken: may be called off
        self.gate: asyncio.Event | None = None  # held while rendering: may not be called off
        self.error: Exception | None = None

    async def __call__(self, started: Started) -> Entry:
        self.calls += 1
        try:
            if self.queue is not None:
                await self.queue.wait()
            started()
            self.started_calls += 1
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return Entry.of(
            f"render {self.calls}".encode(), "image/png", self.ttl, created=self.clock()
        )


class DictStore:
    """A store in a dict, standing in for the disk."""

    name = "disk"

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.reads = 0

    async def get(self, key: str) -> Entry | None:
        self.reads += 1
        return self.entries.get(key)

    async def put(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry


class Stack:
    """memory -> flights -> disk -> render, as ``assembly.build`` puts them, without Redis."""

    def __init__(self, clock: Clock, disk: DictStore | DiskCache | None = None) -> None:
        self.clock = clock
        freshness = Freshness(MAX_STALE, clock)
        self.disk = disk if disk is not None else DictStore()
        self.memory = MemoryCache(10_000)
        below = Flights(Stored(self.disk, Render(), freshness))
        self.pipeline = Pipeline(self.memory, below, freshness, ERROR_TTL)

    async def get(self, produce: Renders, key: str = "k") -> Outcome:
        return await self.pipeline.get_or_render(key, produce)

    async def settle(self) -> None:
        while self.pipeline.revalidating:
            await asyncio.sleep(0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stack(clock: Clock) -> Stack:
    return Stack(clock)


@pytest.fixture
def renders(clock: Clock) -> Renders:
    return Renders(clock)


async def until(condition: object) -> None:
    for _ in range(1000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_a_miss_renders_then_the_memory_answers(stack: Stack, renders: Renders) -> None:
    first = await stack.get(renders)
    assert (first.cache, first.tier, renders.calls) == ("miss", None, 1)
    assert first.render_seconds is not None
    again = await stack.get(renders)
    assert (again.cache, again.tier, again.entry) == ("hit", "memory", first.entry)
    assert again.render_seconds is None and renders.calls == 1


async def test_a_memory_hit_does_not_suspend(stack: Stack, renders: Renders) -> None:
    await stack.get(renders)
    reads = stack.disk.reads
    step = stack.get(renders).__await__()
    with pytest.raises(StopIteration) as done:  # finished on the first step: no await
        next(step)
    assert done.value.value.tier == "memory" and stack.disk.reads == reads


async def test_each_tier_fills_itself_on_the_way_back(stack: Stack, renders: Renders) -> None:
    rendered = await stack.get(renders)
    assert stack.disk.entries["k"] == rendered.entry and stack.memory.get("k") == rendered.entry


async def test_a_disk_hit_fills_the_memory(clock: Clock, renders: Renders) -> None:
    disk = DictStore()
    disk.entries["k"] = Entry.of(b"from a previous run", "image/png", created=clock())
    stack = Stack(clock, disk)
    first = await stack.get(renders)
    assert (first.cache, first.tier, renders.calls) == ("hit", "disk", 0)
    assert (await stack.get(renders)).tier == "memory"


async def test_a_real_disk_cache_answers_after_a_restart(
    tmp_path: Path, clock: Clock, renders: Renders
) -> None:
    rendered = await Stack(clock, DiskCache(tmp_path)).get(renders)
    restarted = await Stack(clock, DiskCache(tmp_path)).get(renders)
    assert (restarted.tier, restarted.entry, renders.calls) == ("disk", rendered.entry, 1)


async def test_concurrent_misses_make_one_trip_below(stack: Stack, renders: Renders) -> None:
    renders.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(stack.get(renders)) for _ in range(20)]
    await until(lambda: renders.started_calls == 1)
    renders.gate.set()
    outcomes = await asyncio.gather(*waiting)
    assert renders.calls == 1 and stack.disk.reads == 1
    assert {o.entry for o in outcomes} == {outcomes[0].entry}
    assert {o.cache for o in outcomes} == {"miss"}


async def test_a_flight_everyone_left_before_it_started_is_called_off(
    stack: Stack, renders: Renders
) -> None:
    renders.queue = asyncio.Event()  # waiting for a kernel
    waiters = [asyncio.ensure_future(stack.get(renders)) for _ in range(3)]
    await until(lambda: renders.calls == 1)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await until(lambda: renders.cancelled == 1)
    assert renders.started_calls == 0
    renders.queue.set()
    fresh = await stack.get(renders)  # a request arriving now starts afresh
    assert fresh.cache == "miss" and renders.calls == 2


async def test_a_started_flight_finishes_and_is_kept_when_its_waiters_leave(
    stack: Stack, renders: Renders
) -> None:
    renders.gate = asyncio.Event()  # holding a kernel
    waiter = asyncio.ensure_future(stack.get(renders))
    await until(lambda: renders.started_calls == 1)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    renders.gate.set()
    await until(lambda: "k" in stack.disk.entries)
    assert renders.cancelled == 0
    assert (await stack.get(renders)).cache == "hit" and renders.calls == 1


async def test_one_waiter_leaving_does_not_call_off_the_others(
    stack: Stack, renders: Renders
) -> None:
    renders.queue = asyncio.Event()
    leaving, staying = (asyncio.ensure_future(stack.get(renders)) for _ in range(2))
    await until(lambda: renders.calls == 1)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    renders.queue.set()
    assert (await staying).cache == "miss" and renders.calls == 1 and renders.cancelled == 0


async def test_stale_is_served_at_once_and_revalidated_once(
    stack: Stack, renders: Renders, clock: Clock
) -> None:
    first = await stack.get(renders)
    clock.now += TTL + 1
    renders.gate = asyncio.Event()
    stale = [await stack.get(renders) for _ in range(5)]
    assert {(o.cache, o.entry) for o in stale} == {("stale", first.entry)}
    assert stack.pipeline.revalidating == 1
    renders.gate.set()
    await stack.settle()
    assert renders.calls == 2
    fresh = await stack.get(renders)
    assert fresh.cache == "hit" and fresh.entry != first.entry
    assert stack.disk.entries["k"] == fresh.entry  # the revalidation filled every tier


async def test_past_the_maximum_staleness_a_request_waits_for_a_render(
    stack: Stack, renders: Renders, clock: Clock
) -> None:
    first = await stack.get(renders)
    clock.now += TTL + MAX_STALE + 1
    late = await stack.get(renders)
    assert late.cache == "miss" and late.entry != first.entry and renders.calls == 2


async def test_a_stale_entry_on_disk_is_served_and_revalidated(
    clock: Clock, renders: Renders
) -> None:
    disk = DictStore()
    disk.entries["k"] = Entry.of(b"old", "image/png", TTL, created=clock() - TTL - 1)
    stack = Stack(clock, disk)
    stale = await stack.get(renders)
    assert (stale.cache, stale.tier, stale.entry.body) == ("stale", "disk", b"old")
    await stack.settle()
    assert renders.calls == 1  # the revalidation passed the stale disk entry by
    assert (await stack.get(renders)).entry.body == b"render 1"


async def test_a_chart_without_a_ttl_never_goes_stale(clock: Clock) -> None:
    stack, renders = Stack(clock), Renders(clock, ttl=None)
    first = await stack.get(renders)
    clock.now += 10 * 365 * 24 * 3600
    assert (await stack.get(renders)).entry == first.entry and renders.calls == 1


async def test_a_failure_is_remembered_for_the_error_ttl(
    stack: Stack, renders: Renders, clock: Clock
) -> None:
    renders.error = NotebookFailed("ZeroDivisionError: division by zero")
    with pytest.raises(NotebookFailed) as first:
        await stack.get(renders)
    with pytest.raises(NotebookFailed) as again:
        await stack.get(renders)
    assert renders.calls == 1 and again.value.message == first.value.message
    assert again.value is not first.value  # a copy: the remembered one collects no tracebacks
    clock.now += ERROR_TTL + 1
    with pytest.raises(NotebookFailed):
        await stack.get(renders)
    assert renders.calls == 2


async def test_an_overloaded_server_is_not_remembered(stack: Stack, renders: Renders) -> None:
    renders.error = Overloaded("all kernels are busy")
    for _ in range(2):
        with pytest.raises(Overloaded):
            await stack.get(renders)
    assert renders.calls == 2


async def test_a_failing_revalidation_keeps_serving_stale_and_is_not_retried_at_once(
    stack: Stack, renders: Renders, clock: Clock
) -> None:
    first = await stack.get(renders)
    clock.now += TTL + 1
    renders.error = NotebookFailed("the data source is down")
    for _ in range(5):
        stale = await stack.get(renders)
        await stack.settle()
        assert (stale.cache, stale.entry) == ("stale", first.entry)
    assert renders.calls == 2  # one revalidation, then the failure is remembered
    clock.now += ERROR_TTL + 1
    renders.error = None
    assert (await stack.get(renders)).cache == "stale"
    await stack.settle()
    assert renders.calls == 3 and (await stack.get(renders)).cache == "hit"


async def test_closing_leaves_no_revalidation_waiting(
    stack: Stack, renders: Renders, clock: Clock
) -> None:
    await stack.get(renders)
    clock.now += TTL + 1
    renders.queue = asyncio.Event()  # never set: the kernels are gone
    await stack.get(renders)
    await until(lambda: renders.calls == 2)
    stack.pipeline.close()
    await until(lambda: stack.pipeline.revalidating == 0)
    await until(lambda: renders.cancelled == 1)  # its flight had no other waiter


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (TTL - 1, "fresh"),
        (TTL + 1, "stale"),
        (TTL + MAX_STALE - 1, "stale"),
        (TTL + MAX_STALE + 1, "expired"),
    ],
)
def test_freshness_judges_by_ttl_and_maximum_staleness(
    clock: Clock, age: float, state: str
) -> None:
    entry = Entry.of(b"x", "image/png", TTL, created=clock() - age)
    assert Freshness(MAX_STALE, clock).judge(entry) == state


def test_an_entrys_data_is_looked_at_once_per_interval(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text("1,2\n")
    entry = Entry.of(b"x", "image/png", created=clock(), data=Data((DataFile.of(str(csv)),)))
    looks: list[str] = []
    real = DataFile.of
    monkeypatch.setattr(DataFile, "of", lambda path: looks.append(path) or real(path))
    freshness = Freshness(MAX_STALE, clock, data_interval=1.0)
    assert [freshness.judge(entry) for _ in range(100)] == ["fresh"] * 100
    assert len(looks) == 1  # the hits in between made no system call
    csv.write_text("1,2,3\n")
    assert freshness.judge(entry) == "fresh"  # not looked at again yet
    clock.now += 1.0
    assert freshness.judge(entry) == "stale" and len(looks) == 2
    clock.now += MAX_STALE + 1
    assert freshness.judge(entry) == "expired"


def test_a_vanished_data_file_or_a_new_glob_match_makes_an_entry_stale(
    tmp_path: Path, clock: Clock
) -> None:
    (tmp_path / "a.parquet").write_text("a")
    declared_now = declared(tmp_path, ["*.parquet"])
    entry = Entry.of(b"x", "image/png", created=clock(), data=declared_now)
    freshness = Freshness(MAX_STALE, clock, data_interval=0.0)
    assert freshness.judge(entry) == "fresh"
    (tmp_path / "b.parquet").write_text("b")
    assert freshness.judge(entry) == "stale"
    gone = Entry.of(b"y", "image/png", created=clock(), data=declared(tmp_path, ["a.parquet"]))
    (tmp_path / "a.parquet").unlink()
    assert freshness.judge(gone) == "stale"


async def test_changed_data_is_served_stale_while_one_render_replaces_it(
    tmp_path: Path, clock: Clock
) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text("1\n")
    renders = Renders(clock, ttl=None)

    async def produce(started: Started) -> Entry:
        entry = await renders(started)
        return Entry.of(
            entry.body, entry.content_type, created=clock(), data=declared(tmp_path, ["*.csv"])
        )

    stack = Stack(clock)
    stack.pipeline.freshness.data.interval = 0.0
    first = await stack.pipeline.get_or_render("k", produce)
    csv.write_text("2\n")
    os.utime(csv, ns=(1, 1))
    stale = await stack.pipeline.get_or_render("k", produce)
    assert (stale.cache, stale.entry) == ("stale", first.entry)
    await stack.settle()
    fresh = await stack.pipeline.get_or_render("k", produce)
    assert fresh.cache == "hit" and fresh.entry.body == b"render 2"


def test_a_stale_entry_read_again_from_a_tier_stays_as_stale_as_it_was(
    tmp_path: Path, clock: Clock
) -> None:
    """Every read from the disk or Redis is a new object: the change is remembered by value."""
    csv = tmp_path / "sales.csv"
    csv.write_text("1\n")
    entry = Entry.of(b"x", "image/png", created=clock(), data=declared(tmp_path, ["*.csv"]))
    freshness = Freshness(MAX_STALE, clock, data_interval=0.0)
    csv.write_text("1,2\n")
    os.utime(csv, ns=(1, 1))
    assert freshness.judge(entry) == "stale"
    clock.now += MAX_STALE + 1
    again = Entry.from_bytes(entry.to_bytes())  # as the disk tier gives it back
    assert again is not None and again.data is not entry.data
    assert freshness.judge(again) == "expired"

"""Redis shared by two real servers: one render in the cluster, hits across servers, outages.

A real redis-server runs on a free loopback port; two real servers with real
kernels share it and one notebook folder, each with its own disk cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
import redis
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from publisher import redis_shared, state
from publisher.cache import DiskCache, Entry, MemoryCache
from publisher.outcome import Outcome
from publisher.pipeline import Flights, Freshness, Pipeline, Render, Started, Stored
from publisher.redis_shared import DONE, ENTRY, LOCK, RedisLayer, RedisShared
from publisher.settings import Settings
from publisher.state import SERVICE

from .conftest import free_port, require_program, serve, test_settings
from .notebooks import IMPORTS, chart, csv_chart, rewrite, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")

CACHE = "X-Publisher-Cache"


class RedisServer:
    """A throwaway redis-server on a loopback port that a test may stop and start again."""

    def __init__(self, program: str, folder: Path) -> None:
        self.program, self.folder = program, folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(require_program("redis-server"), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notebook_dir(reference_dir: Path) -> Path:
    write_notebook(
        reference_dir / "slow_fails.ipynb",
        [
            IMPORTS,
            ("seconds = 1.0", ["parameters"]),
            chart("import time\ntime.sleep(seconds)\n1 / 0"),
        ],
    )
    csv_chart(reference_dir, "followed")
    return reference_dir


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers(
    redis_server: RedisServer, notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[TestClient, TestClient]]:
    async with contextlib.AsyncExitStack() as stack:
        a, b = await asyncio.gather(
            *(
                stack.enter_async_context(
                    serve(
                        test_settings(
                            notebook_dir,
                            tmp_path_factory.mktemp(f"cache-{name}"),
                            kernels=1,
                            redis_url=redis_server.url,
                        )
                    )
                )
                for name in "ab"
            )
        )
        yield a, b


@pytest_asyncio.fixture(loop_scope="module")
async def store(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at and tamper with what the servers keep in Redis."""
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def across(
    servers: tuple[TestClient, TestClient], path: str, count: int
) -> list[ClientResponse]:
    """``count`` concurrent requests for one URL, alternating between the two servers."""
    return await asyncio.gather(*(servers[i % 2].get(path) for i in range(count)))


def renders(*clients: TestClient) -> int:
    return sum(client.app[SERVICE].pool.renders for client in clients)


def key_of(client: TestClient, notebook: str, **params: str) -> str:
    service = client.app[SERVICE]
    found, chart = service.catalog.chart(notebook)
    return service.resolve(found, chart, urlencode(params), "png").key


def outage_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        r.name == redis_shared.__name__ and r.levelno == logging.WARNING and "unreachable" in r.msg
        for r in caplog.records
    )


async def wait_until_up(client: TestClient, seconds: float = 10.0) -> None:
    """Poke Redis through the server's pipeline (a no-op during the back-off) until it answers."""
    shared = client.app[SERVICE].redis
    assert shared is not None
    deadline = time.monotonic() + seconds
    while not shared.health()["up"]:
        assert time.monotonic() < deadline, "redis never counted as up again"
        with contextlib.suppress(Exception):
            await shared.call(shared.client.ping)
        await asyncio.sleep(0.05)


async def test_a_render_on_one_server_is_a_hit_on_the_other(
    servers: tuple[TestClient, TestClient], store: aioredis.Redis
) -> None:
    a, b = servers
    first = await a.get("/charts/echo.png?count=101")
    assert first.status == 200 and first.headers[CACHE] == "miss"
    before = renders(b)
    second = await b.get("/charts/echo.png?count=101")
    assert second.status == 200 and second.headers[CACHE] == "hit"
    assert await second.read() == await first.read()
    for header in ("ETag", "Content-Type", "Last-Modified"):
        assert second.headers[header] == first.headers[header]
    assert renders(b) == before
    ttl = await store.ttl(ENTRY + key_of(a, "echo", count="101"))
    assert 0 < ttl <= a.app[state.SETTINGS].redis_ttl


async def test_a_data_change_recorded_by_one_servers_render_is_noticed_by_the_other(
    servers: tuple[TestClient, TestClient], notebook_dir: Path
) -> None:
    a, b = servers
    rendered = await a.get("/charts/followed.png")
    assert rendered.headers[CACHE] == "miss"
    shared = await b.get("/charts/followed.png")
    assert shared.headers[CACHE] == "hit" and shared.headers["ETag"] == rendered.headers["ETag"]
    before = renders(a, b)
    rewrite(notebook_dir / "followed.csv", "month,total\n1,9\n2,1\n")
    noticed = await b.get("/charts/followed.png")  # B only knows A's render, through Redis
    assert noticed.headers[CACHE] == "stale"
    assert noticed.headers["Cache-Control"] == "public, max-age=0"  # known outdated: not kept
    for _ in range(400):
        if not b.app[SERVICE].pipeline.revalidating:
            break
        await asyncio.sleep(0.025)
    again = await b.get("/charts/followed.png")
    assert again.headers[CACHE] == "hit" and again.headers["ETag"] != rendered.headers["ETag"]
    assert renders(a, b) - before == 1


async def test_concurrent_requests_across_both_servers_execute_once(
    servers: tuple[TestClient, TestClient],
) -> None:
    a, b = servers
    before = renders(a, b)
    responses = await across(servers, "/charts/slow.png?seconds=1.01", 10)
    assert [r.status for r in responses] == [200] * 10
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1
    assert renders(a, b) - before == 1


async def test_a_notebook_error_reaches_waiters_on_the_other_server(
    servers: tuple[TestClient, TestClient],
) -> None:
    a, b = servers
    before = renders(a, b)
    responses = await across(servers, "/charts/slow_fails.png?seconds=1.02", 4)
    assert [r.status for r in responses] == [500] * 4
    errors = [await r.json() for r in responses]
    assert errors[0]["error"]["code"] == "notebook_error"
    assert "ZeroDivisionError" in errors[0]["error"]["message"]
    assert all(e == errors[0] for e in errors)
    assert renders(a, b) - before == 1


async def test_a_redis_outage_is_served_locally_logged_once_and_healed(
    servers: tuple[TestClient, TestClient],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = servers
    caplog.set_level(logging.INFO, logger=redis_shared.__name__)
    redis_server.stop()
    try:
        for client, counts in ((a, (401, 402, 403)), (b, (404, 405, 406))):
            for count in counts:
                response = await client.get(f"/charts/echo.png?count={count}")
                assert response.status == 200, await response.text()
                assert response.headers[CACHE] == "miss"
            health = await client.get("/healthz")
            assert health.status == 200
            assert (await health.json())["redis"]["up"] is False
            assert (await health.json())["redis"]["last_error"]
        assert outage_warnings(caplog) == 2  # once a server, not once a request
    finally:
        redis_server.start()
    await asyncio.gather(wait_until_up(a), wait_until_up(b))
    assert sum("reachable again" in r.msg for r in caplog.records) == 2
    await a.get("/charts/echo.png?count=407")
    again = await b.get("/charts/echo.png?count=407")
    assert again.headers[CACHE] == "hit"
    assert (await (await b.get("/healthz")).json())["redis"]["up"] is True


async def test_a_lock_left_by_a_dead_owner_holds_a_render_only_until_it_expires(
    servers: tuple[TestClient, TestClient], store: aioredis.Redis
) -> None:
    a, _ = servers
    await store.set(LOCK + key_of(a, "echo", count="501"), "a-server-that-died", px=1500)
    before = renders(a)
    started = time.monotonic()
    response = await a.get("/charts/echo.png?count=501")
    waited = time.monotonic() - started
    assert response.status == 200
    assert renders(a) - before == 1
    assert 1.2 < waited < 4.0


def unit_settings(tmp_path: Path, url: str) -> Settings:
    return test_settings(tmp_path, tmp_path, redis_url=url)


@contextlib.asynccontextmanager
async def layer(settings: Settings, **timing: float) -> AsyncIterator[RedisLayer]:
    """A server's Redis layer with nothing but a render below it: no kernel, no local tiers."""
    shared = RedisShared(settings)
    try:
        yield RedisLayer(shared, Render(), Freshness(settings.max_stale), **timing)
    finally:
        await shared.close()


def rendering(entry: Entry, gate: asyncio.Event | None = None) -> Any:
    """A produce that waits for ``gate``, then returns ``entry``."""

    async def produce(started: Started) -> Entry:
        started()
        if gate is not None:
            await gate.wait()
        return entry

    return produce


async def must_not_run(started: Started) -> Entry:
    raise AssertionError("rendered where it should have waited")


async def test_a_damaged_entry_in_redis_is_a_miss_and_is_dropped(
    redis_server: RedisServer, store: aioredis.Redis, tmp_path: Path
) -> None:
    async with layer(unit_settings(tmp_path, redis_server.url)) as tier:
        good = Entry.of(b"chart bytes", "image/png")
        await store.set(ENTRY + "garbage", b"\xff\x00 not an entry")
        await store.set(ENTRY + "cut", json.dumps(good.header()).encode() + b"\nchart")
        for key in ("garbage", "cut"):
            assert await tier.get(key) is None
            assert await store.exists(ENTRY + key) == 0
        await tier.put("good", good)
        assert await tier.get("good") == good
        assert tier.shared.health()["up"] is True


async def test_a_waiter_wakes_on_the_done_message_without_polling(
    redis_server: RedisServer, store: aioredis.Redis, tmp_path: Path
) -> None:
    settings = unit_settings(tmp_path, redis_server.url)
    release = asyncio.Event()
    entry = Entry.of(b"rendered once", "image/png")
    async with layer(settings) as owner, layer(settings, poll=60.0) as waiter:
        owning = asyncio.ensure_future(owner.get_or_render("wake", rendering(entry, release)))
        await _until(lambda: store.exists(LOCK + "wake"))
        waiting = asyncio.ensure_future(waiter.get_or_render("wake", must_not_run))
        await _until(lambda: _subscribers(store, DONE + "wake"))
        release.set()
        assert (await owning).entry == entry
        followed: Outcome = await asyncio.wait_for(waiting, 5)  # far sooner than the 60 s poll
        assert (followed.entry, followed.cache, followed.tier) == (entry, "miss", "redis")
        assert await store.exists(LOCK + "wake") == 0


async def test_an_owner_keeps_its_lock_for_a_render_longer_than_the_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = unit_settings(tmp_path, redis_server.url)
    started = asyncio.Event()
    entry = Entry.of(b"long render", "image/png")

    async def produce(_: Started) -> Entry:
        started.set()
        await asyncio.sleep(1.0)  # a render that outlasts three leases
        return entry

    async with layer(settings, lease=0.3) as owner, layer(settings, poll=0.05) as waiter:
        owning = asyncio.ensure_future(owner.get_or_render("long", produce))
        await started.wait()
        assert (await waiter.get_or_render("long", must_not_run)).entry == entry
        assert (await owning).entry == entry


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to kill without disturbing the shared one."""
    server = RedisServer(require_program("redis-server"), tmp_path)
    server.start()
    yield server
    server.stop()


async def test_redis_dying_while_a_server_waits_renders_there_instead(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = unit_settings(tmp_path, own_redis.url)
    release = asyncio.Event()
    theirs, ours = Entry.of(b"owner's", "image/png"), Entry.of(b"waiter's", "image/png")
    async with layer(settings) as owner, layer(settings) as waiter:
        owning = asyncio.ensure_future(owner.get_or_render("orphan", rendering(theirs, release)))
        probe = aioredis.from_url(own_redis.url)
        try:
            await _until(lambda: probe.exists(LOCK + "orphan"))
            waiting = asyncio.ensure_future(waiter.get_or_render("orphan", rendering(ours)))
            await _until(lambda: _subscribers(probe, DONE + "orphan"))
        finally:
            await probe.aclose()
        own_redis.stop()
        try:
            assert (await asyncio.wait_for(waiting, 5)).entry == ours
            release.set()
            # its put, publish and release fail quietly
            assert (await asyncio.wait_for(owning, 5)).entry == theirs
            assert waiter.shared.health()["up"] is False and owner.shared.health()["up"] is False
        finally:
            release.set()


async def test_a_pipeline_goes_on_without_redis_and_shares_again_once_it_is_back(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = unit_settings(tmp_path, own_redis.url)
    shared = [RedisShared(settings, backoff=0.05) for _ in "ab"]

    def pipeline(redis: RedisShared, name: str) -> Pipeline:
        """A server's pipeline as ``assembly.build`` makes it, with a fake render below."""
        fresh = Freshness(settings.max_stale)
        below = RedisLayer(redis, Render(), fresh)
        stored = Stored(DiskCache(tmp_path / name), below, fresh)
        return Pipeline(MemoryCache(2**20), Flights(stored), fresh, settings.error_ttl)

    a, b = pipeline(shared[0], "a"), pipeline(shared[1], "b")
    try:
        own_redis.stop()
        for server, body in ((a, b"a's"), (b, b"b's")):
            down = await server.get_or_render("down", rendering(Entry.of(body, "image/png")))
            assert (down.cache, down.tier, down.entry.body) == ("miss", None, body)
        assert not shared[0].health()["up"] and not shared[1].health()["up"]
        own_redis.start()
        for attempt in range(200):
            await asyncio.sleep(0.05)
            await a.get_or_render(f"probe-{attempt}", rendering(Entry.of(b"p", "image/png")))
            if shared[0].health()["up"]:
                break
        rendered = await a.get_or_render("back", rendering(Entry.of(b"a's", "image/png")))
        shared_hit = await b.get_or_render("back", must_not_run)
        assert (shared_hit.cache, shared_hit.tier) == ("hit", "redis")
        assert shared_hit.entry == rendered.entry
    finally:
        for redis in shared:
            await redis.close()


async def test_an_unreachable_or_silent_redis_is_skipped_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    silent_port = silent.sockets[0].getsockname()[1]
    entry = Entry.of(b"local render", "image/png")
    try:
        for url in (f"redis://127.0.0.1:{free_port()}/0", f"redis://127.0.0.1:{silent_port}/0"):
            caplog.clear()
            async with layer(unit_settings(tmp_path, url)) as tier:
                started = time.monotonic()
                for _ in range(5):
                    assert await tier.get("k") is None
                    await tier.put("k", entry)
                    outcome = await tier.get_or_render("k", rendering(entry))
                    assert (outcome.entry, outcome.cache, outcome.tier) == (entry, "miss", None)
                assert time.monotonic() - started < 2.0
                assert tier.shared.health()["up"] is False
                assert outage_warnings(caplog) == 1
    finally:
        silent.close()


async def _subscribers(store: aioredis.Redis, channel: str) -> int:
    return int(dict(await store.pubsub_numsub(channel))[channel.encode()])


async def _until(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)

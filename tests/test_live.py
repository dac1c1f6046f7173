"""Live-data charts: a ttl makes an entry stale; stale is served at once and re-rendered once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from publisher.assembly import build
from publisher.state import SERVICE

from .conftest import serve, test_settings
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")
TTL, MAX_STALE = 60, 600


class Clock:
    """The server's clock, moved by the tests, so freshness moves without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    tmp_path_factory: pytest.TempPathFactory, clock: Clock
) -> AsyncIterator[TestClient]:
    folder = tmp_path_factory.mktemp("live")
    random_chart = chart("ax.plot(np.random.rand(5))")  # new bytes on every render
    write_notebook(folder / "live.ipynb", [IMPORTS, random_chart], {"publisher": {"ttl": TTL}})
    write_notebook(folder / "static.ipynb", [IMPORTS, random_chart])
    settings = test_settings(folder, tmp_path_factory.mktemp("cache"), max_stale=MAX_STALE)
    async with serve(settings, build(settings, clock=clock)) as client:
        yield client


async def flights_done(client: TestClient) -> None:
    pipeline = client.app[SERVICE].pipeline
    for _ in range(400):
        if not pipeline.revalidating:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("background render did not finish")


async def test_fresh_answer_tells_caches_the_freshness_left(
    client: TestClient, clock: Clock
) -> None:
    first = await client.get("/charts/live.png?_dpi=50")
    assert first.headers["X-Publisher-Cache"] == "miss"
    assert first.headers["Cache-Control"] == f"public, max-age={TTL}"
    clock.now += 25
    again = await client.get("/charts/live.png?_dpi=50")
    assert again.headers["X-Publisher-Cache"] == "hit"
    assert again.headers["Cache-Control"] == f"public, max-age={TTL - 25}"


async def test_stale_is_served_at_once_and_rendered_again_once(
    client: TestClient, clock: Clock
) -> None:
    first = await client.get("/charts/live.png?_dpi=60")
    renders = client.app[SERVICE].pool.renders
    clock.now += TTL + 1
    stale = await asyncio.gather(*(client.get("/charts/live.png?_dpi=60") for _ in range(5)))
    assert {r.headers["X-Publisher-Cache"] for r in stale} == {"stale"}
    assert {r.headers["ETag"] for r in stale} == {first.headers["ETag"]}
    assert stale[0].headers["Cache-Control"] == "public, max-age=0"
    await flights_done(client)
    assert client.app[SERVICE].pool.renders == renders + 1
    fresh = await client.get("/charts/live.png?_dpi=60")
    assert fresh.headers["X-Publisher-Cache"] == "hit"
    assert fresh.headers["ETag"] != first.headers["ETag"]


async def test_past_the_maximum_staleness_a_request_waits_for_a_new_render(
    client: TestClient, clock: Clock
) -> None:
    first = await client.get("/charts/live.png?_dpi=70")
    clock.now += TTL + MAX_STALE + 1
    late = await client.get("/charts/live.png?_dpi=70")
    assert late.headers["X-Publisher-Cache"] == "miss"
    assert late.headers["ETag"] != first.headers["ETag"]


async def test_a_chart_without_ttl_never_goes_stale(client: TestClient, clock: Clock) -> None:
    first = await client.get("/charts/static.png")
    clock.now += 10 * 365 * 24 * 3600
    again = await client.get("/charts/static.png")
    assert again.headers["X-Publisher-Cache"] == "hit"
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"] == "public, max-age=300"


async def test_a_failing_revalidation_keeps_serving_stale_and_runs_once(
    client: TestClient, clock: Clock
) -> None:
    service = client.app[SERVICE]
    folder = service.settings.notebook_dir
    failing = chart(
        "import os\nassert not os.path.exists('down'), 'data source down'\nax.plot([1])"
    )
    write_notebook(folder / "flaky.ipynb", [IMPORTS, failing], {"publisher": {"ttl": TTL}})
    await service.catalog.scanned()  # the server reads new notebooks in the background
    first = await client.get("/charts/flaky.png")
    assert first.status == 200
    (folder / "down").write_text("")
    try:
        clock.now += TTL + 1
        renders = service.pool.renders
        for _ in range(5):
            stale = await client.get("/charts/flaky.png")
            assert stale.headers["X-Publisher-Cache"] == "stale"
            await flights_done(client)
        assert service.pool.renders == renders + 1  # the failure is remembered
    finally:
        (folder / "down").unlink()

"""Repeat hits answered before routing: the same answer as the long way, and only when it is.

Each test compares the short way with the long way on a real server, or
makes the short way's checks fail (an edited notebook, changed data, a
conditional request, a ttl, an expiring signature) and expects the long way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from publisher import hits
from publisher.cache import Entry
from publisher.logs import ACCESS_LOG
from publisher.signing import sign_url
from publisher.state import HITS, SERVICE

from .conftest import serve, test_settings
from .notebooks import IMPORTS, chart, csv_chart, rewrite, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "repeat-hits-secret"
HIT_METRIC = 'publisher_chart_cache_total{result="hit"}'
VARYING = {"Date"}  # the only header two answers to one URL may differ in


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hits")
    # as analysts write them: no plt.show(), the figure shown because the cell ends
    write_notebook(folder / "bars.ipynb", [IMPORTS, "plt.bar(['north', 'south'], [3, 4]);"])
    write_notebook(folder / "edited.ipynb", [IMPORTS, "fig, ax = plt.subplots()\nax.plot([1, 2])"])
    write_notebook(folder / "live.ipynb", [IMPORTS, chart()], {"publisher": {"ttl": 600}})
    csv_chart(folder, "sales")
    return folder


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    async with serve(
        test_settings(folder, tmp_path_factory.mktemp("cache"), max_stale=0.0)
    ) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def signed(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    settings = test_settings(folder, tmp_path_factory.mktemp("cache"), secret=SECRET, kernels=1)
    async with serve(settings) as client:
        yield client


def served(client: TestClient) -> int:
    return client.app[HITS].served


def headers(response: ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VARYING}


async def twice(client: TestClient, url: str) -> tuple[ClientResponse, ClientResponse, int]:
    """The answers to a hit and to its repeat, and how many repeats were answered short."""
    await client.get(url)  # rendered
    hit = await client.get(url)
    before = served(client)
    repeat = await client.get(url)
    return hit, repeat, served(client) - before


async def rendered_again(client: TestClient, url: str, hit: ClientResponse) -> None:
    """The long way, to a new render: what a changed notebook or changed data must get."""
    before = served(client)
    after = await client.get(url)
    assert served(client) == before
    assert after.headers["X-Publisher-Cache"] == "miss"
    assert after.headers["ETag"] != hit.headers["ETag"]


async def test_a_repeat_hit_is_the_same_answer_the_short_way(client: TestClient) -> None:
    hit, repeat, short = await twice(client, "/charts/bars.png?_dpi=40")
    assert short == 1
    assert repeat.status == hit.status == 200
    assert await repeat.read() == await hit.read()
    assert headers(repeat) == headers(hit)
    assert repeat.headers["X-Publisher-Cache"] == "hit"
    assert repeat.headers["X-Content-Type-Options"] == "nosniff"


async def hits_counted(client: TestClient) -> float:
    text = await (await client.get("/metrics")).text()
    [line] = [line for line in text.splitlines() if line.startswith(HIT_METRIC)]
    return float(line.split()[-1])


async def test_a_repeat_hit_is_counted_and_logged_as_a_hit(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await twice(client, "/charts/bars.svg")
    before = await hits_counted(client)
    assert (await client.get("/charts/bars.svg")).status == 200
    assert await hits_counted(client) == before + 1
    ACCESS_LOG.flush()
    [line] = [line for line in capsys.readouterr().err.splitlines() if "/charts/bars.svg" in line][
        -1:
    ]
    assert " 200 cache=hit render_ms=- " in line


async def test_an_edited_notebook_goes_the_long_way(client: TestClient, folder: Path) -> None:
    hit, _, _ = await twice(client, "/charts/edited.png")
    write_notebook(folder / "edited.ipynb", [IMPORTS, "fig, ax = plt.subplots()\nax.plot([2, 1])"])
    await client.app[SERVICE].catalog.scanned()
    await rendered_again(client, "/charts/edited.png", hit)


async def test_changed_data_goes_the_long_way(client: TestClient, folder: Path) -> None:
    hit, _, _ = await twice(client, "/charts/sales.png")
    rewrite(folder / "sales.csv", "month,total\n1,9\n2,2\n")
    await rendered_again(client, "/charts/sales.png", hit)


async def test_an_entry_gone_from_memory_goes_the_long_way(client: TestClient) -> None:
    hit, _, _ = await twice(client, "/charts/bars.png?_dpi=44")
    service = client.app[SERVICE]
    pipeline = service.pipeline
    render_key = service.resolve(*service.catalog.chart("bars"), "_dpi=44", "png").key
    pipeline.memory.put(render_key, Entry.of(b"x" * (pipeline.memory.max_bytes + 1), "image/png"))
    before = served(client)
    again = await client.get("/charts/bars.png?_dpi=44")  # from the disk, the long way
    assert served(client) == before
    assert again.headers["ETag"] == hit.headers["ETag"] and await again.read() == await hit.read()


async def test_conditional_and_head_requests_go_the_long_way(client: TestClient) -> None:
    hit, _, _ = await twice(client, "/charts/bars.png?_dpi=45")
    before = served(client)
    revalidated = await client.get(
        "/charts/bars.png?_dpi=45", headers={"If-None-Match": hit.headers["ETag"]}
    )
    head = await client.head("/charts/bars.png?_dpi=45")
    assert revalidated.status == 304 and head.status == 200
    assert served(client) == before


async def test_a_chart_with_a_ttl_is_never_answered_short(client: TestClient) -> None:
    _, repeat, short = await twice(client, "/charts/live.png")
    assert short == 0 and repeat.headers["X-Publisher-Cache"] == "hit"


async def test_a_signed_url_is_answered_short_unless_it_expires(signed: TestClient) -> None:
    lasting = sign_url("/charts/bars.png?_dpi=41", SECRET)
    _, repeat, short = await twice(signed, lasting)
    assert short == 1 and repeat.status == 200
    expiring = sign_url("/charts/bars.png?_dpi=42", SECRET, int(time.time()) + 3600)
    _, repeat, short = await twice(signed, expiring)
    assert short == 0 and repeat.status == 200
    tampered = lasting.replace("_dpi=41", "_dpi=43")
    assert (await signed.get(tampered)).status == 403


async def test_a_page_of_more_urls_than_remembered_keeps_its_busy_ones_short(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound the URL answered longest ago is forgotten, not the whole map."""
    monkeypatch.setattr(hits, "REMEMBERED", 2)
    async with serve(test_settings(folder, tmp_path / "cache", kernels=1)) as small:
        busy, quiet, new = (f"/charts/bars.png?_dpi={dpi}" for dpi in (50, 51, 52))
        assert (await twice(small, busy))[2] == 1
        assert (await twice(small, quiet))[2] == 1
        assert (await twice(small, busy))[2] == 1  # touched: now the one answered last
        await twice(small, new)  # a third URL: one of the two must go
        before = served(small)
        await small.get(busy)
        assert served(small) == before + 1
        await small.get(quiet)
        assert served(small) == before + 1  # forgotten: the long way, which remembers it again

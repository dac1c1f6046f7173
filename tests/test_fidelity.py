"""A reused kernel shows exactly what a fresh one shows.

The oracle is a fresh nbclient run of each corpus notebook, in a new kernel
of its own. The server renders every style notebook right after every
notebook that leaves state behind, on one reused kernel, in two orders, and
each image it serves must equal the oracle's pixel for pixel.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator, Iterator
from itertools import count
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from publisher.state import SERVICE

from .conftest import serve, test_settings
from .fidelity_corpus import LEAVERS, RETIRING, write_corpus
from .oracle import difference, fresh_image

pytestmark = pytest.mark.asyncio(loop_scope="module")
Corpus = tuple[Path, dict[str, list[str]]]
_runs = count(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def oracle(corpus: Corpus) -> dict[str, bytes]:
    folder, ids = corpus
    every = [id for group in ids.values() for id in group]
    limit = asyncio.Semaphore(3)

    async def one(id: str) -> bytes:
        async with limit:
            return await fresh_image(folder / f"{id}.ipynb")

    return dict(zip(every, await asyncio.gather(*(one(id) for id in every)), strict=True))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def one_kernel(
    corpus: Corpus, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    settings = test_settings(
        corpus[0],
        tmp_path_factory.mktemp("cache"),
        kernels=1,
        renders_per_kernel=100_000,
        timeout=60.0,
        error_ttl=0.0,
    )
    async with serve(settings) as client:
        yield client


async def render(client: TestClient, id: str) -> bytes:
    """A new render (a cache miss) of the notebook's chart on the server's one kernel."""
    response = await client.get(f"/charts/{id}.png?run={next(_runs)}")
    body = await response.read()
    assert response.status == 200, f"{id}: {response.status} {body[:300]!r}"
    assert response.headers["X-Publisher-Cache"] == "miss"
    return body


async def mismatches(client: TestClient, oracle: dict[str, bytes], order: list[str]) -> list[str]:
    found = []
    previous = "(a new kernel)"
    for id in order:
        wrong = difference(await render(client, id), oracle[id])
        if wrong:
            found.append(f"{id} after {previous}: {wrong}")
        previous = id
    return found


@pytest.mark.parametrize("leaver", [f"leavers/{name}" for name in LEAVERS] + ["team_a/chart"])
async def test_every_style_after_a_notebook_that_leaves_state(
    one_kernel: TestClient, oracle: dict[str, bytes], corpus: Corpus, leaver: str
) -> None:
    order = [x for style in corpus[1]["styles"] for x in (leaver, style)]
    assert await mismatches(one_kernel, oracle, order) == []


@pytest.fixture(params=[None, True], ids=["reset after the answer", "reset in the render"])
def reset_in_render(request: pytest.FixtureRequest, one_kernel: TestClient) -> Iterator[None]:
    """Both ways a kernel is reset: a render alone, and a render with others waiting
    (forced here, since these tests render one at a time)."""
    pool = one_kernel.app[SERVICE].pool
    pool.reset_in_render = request.param
    yield
    pool.reset_in_render = None


@pytest.mark.usefixtures("reset_in_render")
async def test_shuffled_orders(
    one_kernel: TestClient, oracle: dict[str, bytes], corpus: Corpus
) -> None:
    ids = corpus[1]
    every = ids["styles"] + ids["leavers"]
    order = []
    for seed in (1, 2):
        shuffled = every[:]
        random.Random(seed).shuffle(shuffled)
        order += shuffled
    assert await mismatches(one_kernel, oracle, order) == []


@pytest.mark.usefixtures("reset_in_render")
@pytest.mark.parametrize("retiring", [f"retiring/{name}" for name in RETIRING])
async def test_a_kernel_reset_cannot_clean_is_retired(
    one_kernel: TestClient, oracle: dict[str, bytes], corpus: Corpus, retiring: str
) -> None:
    pool = one_kernel.app[SERVICE].pool
    before = pool.tainted
    styles = corpus[1]["styles"][:3]
    order = [x for style in styles for x in (retiring, style)]
    assert await mismatches(one_kernel, oracle, order) == []
    assert pool.tainted == before + len(styles)


async def test_the_corpus_is_mostly_written_without_plt_show(corpus: Corpus) -> None:
    folder, ids = corpus
    sources = [(folder / f"{id}.ipynb").read_text() for group in ids.values() for id in group]
    assert sum("plt.show()" not in s for s in sources) > len(sources) / 2


@pytest.mark.parametrize("id", ["styles/cell_ends", "styles/pandas_dates"])
async def test_publisher_render_gives_the_image_the_server_gives(
    one_kernel: TestClient, oracle: dict[str, bytes], corpus: Corpus, id: str, tmp_path: Path
) -> None:
    folder = corpus[0]
    command = [sys.executable, "-m", "publisher", "render", id, "-p", "run", "7"]
    command += ["--notebooks", str(folder), "-o", str(tmp_path / "chart.png")]
    env = {**os.environ, "PUBLISHER_CACHE_DIR": str(tmp_path / "cache")}
    process = await asyncio.create_subprocess_exec(*command, env=env, cwd=tmp_path)
    assert await process.wait() == 0
    rendered = (tmp_path / "chart.png").read_bytes()
    response = await one_kernel.get(f"/charts/{id}.png?run=7")
    assert response.status == 200
    assert difference(rendered, await response.read()) is None
    assert difference(rendered, oracle[id]) is None

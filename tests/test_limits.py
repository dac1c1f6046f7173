"""Every size limit holds on the final image: after aspect scaling, after dpi, before drawing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from PIL import Image

from publisher.app import POOL

from .conftest import error_of, serve, test_settings
from .notebooks import IMPORTS, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")


def figure(width: float, height: float, dpi: int = 100) -> list[str | tuple[str, list[str]]]:
    return [
        IMPORTS,
        (
            f"fig, ax = plt.subplots(figsize=({width}, {height}), dpi={dpi})\nax.plot([1, 3, 2])",
            ["chart"],
        ),
    ]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestClient]:
    folder = tmp_path_factory.mktemp("limits")
    write_notebook(folder / "banner.ipynb", figure(12, 1))
    write_notebook(folder / "ribbon.ipynb", figure(0.5, 20))
    write_notebook(folder / "plain.ipynb", figure(8, 4))
    write_notebook(folder / "poster.ipynb", figure(50, 30))
    settings = test_settings(folder, tmp_path_factory.mktemp("cache"), max_pixels=4096)
    async with serve(settings) as client:
        yield client


@pytest.mark.parametrize(
    "url, size",
    [
        ("/charts/banner.png?_height=4096", "49152x4096"),
        ("/charts/ribbon.png?_width=4096", "4096x163840"),
        ("/charts/plain.png?_height=4096", "8192x4096"),
        ("/charts/plain.png?_dpi=600", "4800x2400"),
    ],
)
async def test_a_requested_size_past_the_limit_after_scaling_is_a_400(
    client: TestClient, url: str, size: str
) -> None:
    response = await client.get(url)
    assert response.status == 400
    error = await error_of(response)
    assert error["code"] == "invalid_option"
    assert size in error["message"] and "4096" in error["message"]


async def test_a_figure_too_big_at_its_own_size_is_a_clear_500(client: TestClient) -> None:
    response = await client.get("/charts/poster.png")
    assert response.status == 500
    error = await error_of(response)
    assert error["code"] == "image_too_large"
    assert "5000x3000" in error["message"] and "own size" in error["message"]


async def test_one_side_keeps_the_aspect_within_the_limit(client: TestClient) -> None:
    response = await client.get("/charts/plain.png?_height=1000")
    assert response.status == 200
    assert Image.open(io.BytesIO(await response.read())).size == (2000, 1000)


async def test_a_size_inside_the_limit_at_a_high_dpi_renders(client: TestClient) -> None:
    response = await client.get("/charts/banner.png?_dpi=300")
    assert response.status == 200
    width, height = Image.open(io.BytesIO(await response.read())).size
    assert width <= 4096 and height <= 4096


async def test_the_kernel_is_kept_after_a_refused_size(client: TestClient) -> None:
    before = client.app[POOL].restarts
    assert (await client.get("/charts/banner.png?_height=3000")).status == 400
    assert (await client.get("/charts/plain.png?_width=640")).status == 200
    assert client.app[POOL].restarts == before

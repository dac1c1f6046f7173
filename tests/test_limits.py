"""Every size limit holds on the final image: after aspect scaling, after dpi, before drawing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from PIL import Image

from publisher.state import SERVICE

from .conftest import error_of, serve, test_settings
from .notebooks import IMPORTS, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")


def figure(
    width: float, height: float, dpi: int = 100, extra: str = ""
) -> list[str | tuple[str, list[str]]]:
    draw = f"fig, ax = plt.subplots(figsize=({width}, {height}), dpi={dpi})\nax.plot([1, 3, 2])"
    return [IMPORTS, (f"{draw}\n{extra}", ["chart"])]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestClient]:
    folder = tmp_path_factory.mktemp("limits")
    write_notebook(folder / "banner.ipynb", figure(12, 1))
    write_notebook(folder / "ribbon.ipynb", figure(0.5, 20))
    write_notebook(folder / "plain.ipynb", figure(8, 4))
    write_notebook(folder / "poster.ipynb", figure(50, 30))
    legend = "ax.legend(['sales, all regions, net of returns'], loc='upper left', bbox_to_anchor=(1.02, 1))"
    write_notebook(folder / "legend.ipynb", figure(6.5, 4, extra=legend))
    write_notebook(folder / "far_label.ipynb", figure(4, 3, extra="ax.text(60, 0.5, 'label')"))
    retina = (
        "%config InlineBackend.figure_format = 'retina'\n"
        "%config InlineBackend.print_figure_kwargs = {'dpi': 300, 'bbox_inches': 'tight'}"
    )
    write_notebook(folder / "retina.ipynb", [retina, *figure(8, 6)])
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
    before = client.app[SERVICE].pool.restarts
    assert (await client.get("/charts/banner.png?_height=3000")).status == 400
    assert (await client.get("/charts/plain.png?_width=640")).status == 200
    assert client.app[SERVICE].pool.restarts == before


async def test_a_tight_crop_that_grows_past_the_limit_is_refused_before_drawing(
    client: TestClient,
) -> None:
    # 6.5 x 4 inches at 600 dpi fits (3900 pixels); the legend outside the axes does not
    response = await client.get("/charts/legend.png?_dpi=600")
    assert response.status == 400
    assert "4096" in (await error_of(response))["message"]
    assert (await client.get("/charts/legend.png?_dpi=300")).status == 200


async def test_a_drawing_far_outside_its_figure_is_a_500_not_a_huge_image(
    client: TestClient,
) -> None:
    response = await client.get("/charts/far_label.png")
    assert response.status == 500
    assert (await error_of(response))["code"] == "image_too_large"


async def test_the_limit_counts_pixels_as_ipython_does_for_retina(client: TestClient) -> None:
    # a dpi in print_figure_kwargs replaces retina's doubling: 8 x 6 inches at 300 dpi
    response = await client.get("/charts/retina.png")
    assert response.status == 200
    width, height = Image.open(io.BytesIO(await response.read())).size
    assert width <= 2400 and height <= 1800

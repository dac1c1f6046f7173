"""Security headers over HTTP: ``nosniff`` on every kind of answer, a policy for pages and SVG."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from .conftest import serve, test_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRAME_ANCESTORS = "'self' https://wiki.example.org"
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    settings = test_settings(
        reference_dir, tmp_path_factory.mktemp("cache"), frame_ancestors=FRAME_ANCESTORS
    )
    async with serve(settings) as client:
        yield client


def policy(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy as directive -> sources."""
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: sources for name, *sources in directives}


async def asset_url(client: TestClient, name: str) -> str:
    page = await (await client.get("/")).text()
    found = re.search(rf'"\.(/static/{re.escape(name)}\?v=[^"]+)"', page)  # page-relative
    assert found is not None, name
    return found.group(1)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/charts/echo.png", {}),
        ("GET", "/charts/echo.svg", {}),
        ("GET", "/charts/echo.pdf", {}),
        ("HEAD", "/charts/echo.png", {}),
        ("GET", "/charts/echo.png?count=x", {}),  # 400, JSON
        ("GET", "/charts/echo.png?count=x", {"Accept": IMAGE_ACCEPT}),  # 400, a PNG
        ("GET", "/charts/nope.png", {}),
        ("GET", "/no/such/page", {}),
        ("POST", "/charts/echo.png", {}),  # 405 from aiohttp's router
        ("GET", "/api/notebooks", {}),
        ("GET", "/api/notebooks/echo", {}),
        ("GET", "/", {}),
        ("GET", "/healthz", {}),
        ("GET", "/metrics", {}),
        ("GET", "/static/gallery.css", {}),
        ("GET", "/static/no-such-file.css", {}),
    ],
)
async def test_every_answer_says_nosniff(
    client: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await client.request(method, path, headers=headers)
    await response.read()
    assert response.headers["X-Content-Type-Options"] == "nosniff", response.status


async def test_not_modified_answers_say_nosniff(client: TestClient) -> None:
    chart = await client.get("/charts/echo.png?count=31")
    again = await client.get(
        "/charts/echo.png?count=31", headers={"If-None-Match": chart.headers["ETag"]}
    )
    asset = await client.get(await asset_url(client, "gallery.js"))
    cached = await client.get(
        await asset_url(client, "gallery.js"),
        headers={"If-Modified-Since": asset.headers["Last-Modified"]},
    )
    assert again.status == cached.status == 304
    assert again.headers["X-Content-Type-Options"] == "nosniff"
    assert cached.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_gallery_runs_only_its_own_files_and_is_framed_where_settings_say(
    client: TestClient,
) -> None:
    response = await client.get("/")
    csp = policy(response.headers["Content-Security-Policy"])

    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == csp["style-src"] == csp["img-src"] == ["'self'"]
    assert csp["frame-ancestors"] == FRAME_ANCESTORS.split()
    assert not any("unsafe" in source for sources in csp.values() for source in sources)


@pytest.mark.parametrize("accept", ["*/*", IMAGE_ACCEPT])
async def test_an_svg_chart_may_run_no_script(client: TestClient, accept: str) -> None:
    response = await client.get("/charts/echo.svg?count=32", headers={"Accept": accept})
    assert response.content_type == "image/svg+xml"
    csp = policy(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert "sandbox" in csp
    assert "script-src" not in csp


async def test_an_svg_not_modified_answer_keeps_its_policy(client: TestClient) -> None:
    first = await client.get("/charts/echo.svg?count=33")
    again = await client.get(
        "/charts/echo.svg?count=33", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]


async def test_the_svg_favicon_has_the_svg_policy_too(client: TestClient) -> None:
    response = await client.get(await asset_url(client, "favicon.svg"))
    assert response.content_type == "image/svg+xml"
    assert "sandbox" in policy(response.headers["Content-Security-Policy"])


async def test_a_pdf_chart_is_not_sandboxed_which_would_stop_pdf_viewers(
    client: TestClient,
) -> None:
    response = await client.get("/charts/echo.pdf?count=34")
    assert response.content_type == "application/pdf"
    assert "Content-Security-Policy" not in response.headers

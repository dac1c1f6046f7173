"""Signed URLs: with a secret, only URLs its holder signed are rendered."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from publisher.cli import main
from publisher.signing import sign_url

from .conftest import error_of, serve, test_settings
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "correct horse battery staple"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    write_notebook(reference_dir / "Q1 (draft).ipynb", [IMPORTS, chart()])
    settings = test_settings(reference_dir, tmp_path_factory.mktemp("cache"), secret=SECRET)
    async with serve(settings) as client:
        yield client


async def forbidden(client: TestClient, url: str) -> str:
    response = await client.get(url)
    assert response.status == 403
    error = await error_of(response)
    assert error["code"] == "forbidden"
    return error["message"]


async def test_a_signed_url_renders(client: TestClient) -> None:
    response = await client.get(sign_url("/charts/echo.png?count=5&text=a%20b", SECRET))
    assert response.status == 200


async def test_an_unsigned_url_is_refused_before_anything_else(client: TestClient) -> None:
    assert "no _sig" in await forbidden(client, "/charts/echo.png?count=5")
    assert "no _sig" in await forbidden(client, "/charts/no-such-notebook.png")


async def test_a_changed_parameter_breaks_the_signature(client: TestClient) -> None:
    signed = sign_url("/charts/echo.png?count=5", SECRET)
    assert "does not match" in await forbidden(client, signed.replace("count=5", "count=6"))
    assert "does not match" in await forbidden(client, signed + "&text=x")


async def test_a_signature_for_another_path_is_refused(client: TestClient) -> None:
    signed = sign_url("/charts/echo.png?count=5", SECRET)
    assert "does not match" in await forbidden(client, signed.replace("echo.png", "echo.svg"))


async def test_a_signature_made_with_another_secret_is_refused(client: TestClient) -> None:
    assert "does not match" in await forbidden(client, sign_url("/charts/echo.png", "guess"))


async def test_an_expired_url_is_refused(client: TestClient) -> None:
    past = sign_url("/charts/echo.png", SECRET, expires=int(time.time()) - 1)
    assert "expired" in await forbidden(client, past)
    future = sign_url("/charts/echo.png", SECRET, expires=int(time.time()) + 600)
    assert (await client.get(future)).status == 200


async def test_the_api_shows_only_signed_default_urls(client: TestClient) -> None:
    listing = await (await client.get("/api/notebooks")).json()
    echo = next(nb for nb in listing["notebooks"] if nb["id"] == "echo")
    url = echo["charts"][0]["url"]
    assert "_sig=" in url and "count" not in url
    assert (await client.get(url)).status == 200
    for fmt_url in echo["charts"][0]["urls"].values():
        assert (await client.get(fmt_url)).status == 200


async def test_reordered_repeated_values_are_refused(client: TestClient) -> None:
    """A list's order is data the notebook sees: North then West is not West then North."""
    signed = sign_url("/charts/echo.png?names=North&names=West", SECRET)
    assert (await client.get(signed)).status == 200
    swapped = signed.replace("names=North&names=West", "names=West&names=North")
    assert "does not match" in await forbidden(client, swapped)


async def test_reordered_keys_are_refused_too(client: TestClient) -> None:
    """A signature covers the URL as printed; the SPEC signs every key and value in order."""
    signed = sign_url("/charts/echo.png?count=5&text=a", SECRET)
    assert "does not match" in await forbidden(
        client, signed.replace("count=5&text=a", "text=a&count=5")
    )


@pytest.mark.parametrize(
    "url",
    [
        "/charts/Q1%20(draft).png",
        "/charts/Q1 (draft).png",
        "/charts/Q1%20%28draft%29/chart.svg",
        "/charts/echo.png?text=h%C3%A9llo%20w%C3%B6rld&names=%E6%9D%B1&names=West",
        "/charts/echo.png?text=héllo wörld+&names=東&names=a%26b%3Dc",
        "/charts/echo/chart.png?names=b&count=2&names=a&_dpi=50",
        "/charts/echo.png?text=&names=x",
    ],
)
async def test_the_urls_publisher_sign_prints_are_accepted(
    client: TestClient, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", SECRET)
    result = CliRunner().invoke(main, ["sign", url, "--expires", "600"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (await client.get(result.output.strip())).status == 200


async def test_the_gallery_images_are_signed_urls_that_render(client: TestClient) -> None:
    page = await (await client.get("/")).text()
    urls = {html.unescape(u) for u in re.findall(r'data-url(?:2x)?="([^"]+)"', page)}
    assert urls and all("_sig=" in u for u in urls)
    echo = {u for u in urls if "/charts/echo/" in u}
    assert len(echo) == 2 and any("_dpi=" in u for u in echo)  # the chart, and its 2x variant
    for url in echo:
        parts = urlsplit(url)
        assert (await client.get(f"{parts.path}?{parts.query}")).status == 200, url

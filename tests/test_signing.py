"""Signed URLs: with a secret, only URLs its holder signed are rendered."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from publisher.signing import sign_url

from .conftest import error_of, serve, test_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "correct horse battery staple"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
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

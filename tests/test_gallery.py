"""The gallery page over HTTP: whose address its snippets carry, and what markup it holds."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from .conftest import serve, test_settings
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHART = "/charts/one/chart.png"
PUBLIC_URL = "https://example.org/charts-proxy/"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "charts.example.org:8443"}


@pytest.fixture(scope="module")
def notebook_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gallery")
    write_notebook(folder / "one.ipynb", [IMPORTS, chart()])
    return folder


def _server(
    notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory, **changes: object
) -> AbstractAsyncContextManager[TestClient]:
    cache = tmp_path_factory.mktemp("cache")
    return serve(test_settings(notebook_dir, cache, kernels=1, preload="", **changes))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def direct(
    notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    async with _server(notebook_dir, tmp_path_factory) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def proxied(
    notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    async with _server(notebook_dir, tmp_path_factory, trust_forwarded=True) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def public(
    notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    changes = {"public_url": PUBLIC_URL, "trust_forwarded": True}
    async with _server(notebook_dir, tmp_path_factory, **changes) as client:
        yield client


async def snippets(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The page's embed snippets of its one chart, and the base the page gives its script."""
    page = await (await client.get("/", headers=headers)).text()
    found = dict(re.findall(r'data-snippet="(\w+)"[^>]*>([^<]*)</textarea>', page))
    base = re.search(r'<html[^>]* data-public-url="([^"]*)"', page)
    assert base is not None and set(found) == {"url", "markdown", "html"}
    found["base"] = base.group(1)
    return {kind: html.unescape(text) for kind, text in found.items()}


async def test_snippets_name_the_address_the_request_came_to(direct: TestClient) -> None:
    origin = f"http://{direct.host}:{direct.port}"
    got = await snippets(direct)
    assert got["url"] == origin + CHART
    assert got["markdown"] == f"![one]({origin}{CHART})"
    assert f'src="{origin}{CHART}"' in got["html"]
    assert got["base"] == origin


async def test_forwarded_headers_are_ignored_unless_trusted(direct: TestClient) -> None:
    got = await snippets(direct, FORWARDED)
    assert got["url"] == f"http://{direct.host}:{direct.port}{CHART}"
    assert "example.org" not in "".join(got.values())


async def test_trusted_forwarded_headers_name_the_address(proxied: TestClient) -> None:
    origin = "https://charts.example.org:8443"
    got = await snippets(proxied, FORWARDED)
    assert got["url"] == origin + CHART
    assert f'srcset="{origin}{CHART}?_dpi=200 2x"' in got["html"]
    assert got["base"] == origin


async def test_the_nearest_proxys_value_counts_and_a_malformed_one_is_ignored(
    proxied: TestClient,
) -> None:
    nearest = {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example"}
    assert (await snippets(proxied, nearest))["url"] == f"https://b.example{CHART}"
    malformed = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": 'x.example/"><b>'}
    assert (await snippets(proxied, malformed))["url"] == (
        f"http://{proxied.host}:{proxied.port}{CHART}"
    )


async def test_public_url_is_the_origin_and_path_prefix_whatever_the_headers(
    public: TestClient,
) -> None:
    base = PUBLIC_URL.rstrip("/")
    for headers in (None, FORWARDED):
        got = await snippets(public, headers)
        assert got["url"] == base + CHART
        assert got["markdown"] == f"![one]({base}{CHART})"
        assert got["base"] == base


class _Inline(HTMLParser):
    """Whatever a page policy without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("an inline <script>")
        self.found += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        if "style" in names:
            self.found.append(f"style= on <{tag}>")
        if tag == "style":
            self.found.append("a <style> element")
        href = dict(attrs).get("href") or ""
        if href.startswith("javascript:"):
            self.found.append("a javascript: link")


async def test_the_page_holds_no_inline_script_or_style(direct: TestClient) -> None:
    inline = _Inline()
    inline.feed(await (await direct.get("/")).text())
    assert inline.found == []

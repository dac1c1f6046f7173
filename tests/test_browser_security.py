"""The security headers in a real browser: an SVG chart's script stays dead, the gallery still works.

Debian's Chromium, driven by Playwright, against ``python -m publisher serve`` over
the example notebooks plus one whose chart is an SVG carrying a script.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import require_program
from .notebooks import IMPORTS, chart, write_notebook
from .test_gallery_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RENDER_MS,
    TIMESERIES,
    _load_every_image,
    _serve,
    _wait_loaded_with,
)

PUBLIC_URL = "https://charts.example.org/proxy"
RAN = "script ran"
DOT = (  # a 1x1 PNG, as matplotlib embeds raster images in an SVG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
HOSTILE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80">'
    f'<script>document.title = "{RAN}"; fetch("/script-ran");</script>'
    "<style>text { font: 20px sans-serif; }</style>"
    f'<image href="data:image/png;base64,{DOT}" width="10" height="10"/>'
    '<text x="20" y="40">hostile</text></svg>'
)
# the PNG is a matplotlib figure; the SVG is the markup displayed last, as a raw output
HOSTILE_CELL = chart(
    f"ax.plot([1, 2])\nplt.show()\ndisplay({{'image/svg+xml': {HOSTILE_SVG!r}}}, raw=True)"
)
WATCH_POLICY = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def server(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_program(str(CHROMIUM))
    write_notebook(examples_dir / "hostile.ipynb", ["# Hostile", IMPORTS, HOSTILE_CELL])
    tmp = tmp_path_factory.mktemp("server")
    yield from _serve(examples_dir, tmp, "--public-url", PUBLIC_URL)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_program(str(CHROMIUM)), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[Page]:
    context = browser.new_context(base_url=server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    context.add_init_script(WATCH_POLICY)
    try:
        page = context.new_page()
        page.set_default_timeout(RENDER_MS)
        yield page
    finally:
        context.close()


def _record(page: Page) -> tuple[list[str], list[str]]:
    """The paths the page asks for, and its console errors, from now on."""
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return requests, errors


def test_a_notebooks_svg_runs_no_script_on_the_servers_origin(page: Page, server: str) -> None:
    url = "/charts/hostile.svg"
    answer = page.request.get(url)
    assert answer.ok and b"<script>" in answer.body()
    # the control: the same bytes without the server's headers do run their script
    page.route(
        "**/control.svg",
        lambda route: route.fulfill(body=answer.body(), content_type="image/svg+xml"),
    )
    page.goto("/control.svg")
    page.wait_for_function(f"document.title === {RAN!r}")

    requests, errors = _record(page)
    response = page.goto(url, wait_until="load")

    assert response is not None and response.ok
    assert "sandbox" in response.headers["content-security-policy"]
    assert page.title() != RAN
    assert not any(u.endswith("/script-ran") for u in requests)
    assert [e for e in errors if "image" in e] == []  # its embedded data: image still draws


def test_the_gallery_works_under_its_policy(page: Page) -> None:
    requests, errors = _record(page)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    response = page.goto("/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    _load_every_image(page)

    card = page.locator(TIMESERIES)
    card.locator("input[name=window]").fill("21")
    _wait_loaded_with(card.locator("img"), "window=21")
    url = f"{PUBLIC_URL}/charts/timeseries/chart.png?window=21"
    expect(card.locator("[data-snippet=url]")).to_have_value(url)
    card.get_by_role("button", name="Copy the URL").click()
    expect(card.get_by_role("button", name="Copy the URL")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url

    assert page.evaluate("window.violations") == []
    assert page_errors == [] and errors == []
    assert any("/static/gallery.js" in u for u in requests)

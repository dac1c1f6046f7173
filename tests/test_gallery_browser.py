"""The gallery page (``GET /``) in a real browser against a real server.

Debian's Chromium, driven by Playwright's sync API, loads the page from
``python -m publisher serve`` running over a copy of the example notebooks.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import nbformat
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from .conftest import free_port, require_program, stop

ROOT = Path(__file__).parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = "s3cret"
STARTUP_SECONDS = 60
RENDER_MS = 60_000  # a first render starts a notebook in a kernel: allow for a slow machine
FAILED_RESOURCE = "Failed to load resource"
TIMESERIES = "section[data-notebook='timeseries'] article.chart"

# the input for a parameter type: type and step; lists, str and untyped are text fields
INPUTS = {"int": ("number", "1"), "float": ("number", "any"), "bool": ("checkbox", None)}


@dataclass
class Session:
    """A page and everything it did: each request's URL, script errors, console errors."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def record_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; without it the tests skip, or fail when CI=true."""
    return Path(require_program(str(CHROMIUM)))


@pytest.fixture(scope="module")
def notebook_dir(examples_dir: Path) -> Path:
    """A copy of the example notebooks, plus one that is broken."""
    _write_broken_notebook(examples_dir / "broken.ipynb")
    return examples_dir


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(
    chromium: Path, notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    yield from _serve(notebook_dir, tmp_path_factory.mktemp("server"))


@pytest.fixture(scope="module")
def signed_server(
    chromium: Path, notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("signed")
    (tmp / "secret").write_text(SECRET + "\n")  # the key never goes on a command line
    yield from _serve(notebook_dir, tmp, "--secret-file", str(tmp / "secret"))


PREFIX = "/charts-proxy"
PROXY = """
import sys
from aiohttp import ClientSession, web

port, upstream, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
KEPT = {"accept", "if-none-match"}
DROPPED = {"content-length", "content-encoding", "transfer-encoding", "connection"}

async def forward(request):
    path = request.raw_path.removeprefix(prefix) or "/"
    headers = {k: v for k, v in request.headers.items() if k.lower() in KEPT}
    async with request.app["client"].request(
        request.method, upstream + path, headers=headers, allow_redirects=False
    ) as answer:
        body = await answer.read()
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in DROPPED}
        return web.Response(status=answer.status, headers=kept, body=body)

async def client(app):
    app["client"] = ClientSession(auto_decompress=False)
    yield
    await app["client"].close()

app = web.Application()
app.cleanup_ctx.append(client)
app.router.add_route("GET", prefix + "/{tail:.*}", forward)
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


@pytest.fixture(scope="module")
def prefixed(
    chromium: Path, notebook_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The server behind a reverse proxy that serves it under PREFIX, as ``--public-url`` says."""
    port = free_port()
    public = f"http://127.0.0.1:{port}{PREFIX}"
    for upstream in _serve(
        notebook_dir, tmp_path_factory.mktemp("prefixed"), "--public-url", public
    ):
        proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(port), upstream, PREFIX])
        try:
            _wait_healthy(proxy, public, Path(os.devnull))
            yield public
        finally:
            stop(proxy)


@pytest.fixture
def prefixed_session(browser: Browser, prefixed: str) -> Iterator[Session]:
    yield from _session(browser, prefixed)


@pytest.fixture
def session(browser: Browser, server: str) -> Iterator[Session]:
    yield from _session(browser, server)


@pytest.fixture
def signed_session(browser: Browser, signed_server: str) -> Iterator[Session]:
    yield from _session(browser, signed_server)


def _serve(notebooks: Path, tmp: Path, *options: str) -> Iterator[str]:
    """``publisher serve`` on a free port, run in ``tmp``; yields its origin once it is healthy."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "publisher", "serve", str(notebooks),
        "--port", str(port), "--cache-dir", str(tmp / "cache"), "--kernels", "2", *options,
    ]  # fmt: skip
    # the package beside these tests, and no PUBLISHER_* setting from the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(process, origin, log)
        yield origin
    finally:
        stop(process)


def _write_broken_notebook(path: Path) -> None:
    """A notebook whose parameters cell does not parse: the gallery shows why, not charts."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Broken example"),
        nbformat.v4.new_code_cell("year = (", metadata={"tags": ["parameters"]}),
    ]
    nbformat.write(notebook, path)


def _wait_healthy(process: subprocess.Popen[bytes], origin: str, log: Path) -> None:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with direct.open(f"{origin}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /healthz within {STARTUP_SECONDS}s:\n{log.read_text()}")


def _session(browser: Browser, origin: str) -> Iterator[Session]:
    context = browser.new_context(base_url=origin, viewport={"width": 1280, "height": 900})
    try:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        page = context.new_page()
        page.set_default_timeout(RENDER_MS)
        session = Session(page, origin)
        page.on("request", lambda request: session.requests.append(request.url))
        page.on("pageerror", lambda error: session.page_errors.append(str(error)))
        page.on("console", session.record_console)
        yield session
    finally:
        context.close()


def _load_every_image(page: Page) -> Locator:
    """Scroll each lazy chart into view, then wait until every one has loaded."""
    images = page.locator("img")
    for image in images.all():
        image.scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.images].every(img => img.complete && img.naturalWidth > 0)",
        timeout=RENDER_MS,
    )
    return images


def _wait_loaded_with(image: Locator, text: str) -> None:
    image.page.wait_for_function(
        "([img, text]) => img.src.includes(text) && img.complete && img.naturalWidth > 0",
        arg=[image.element_handle(), text],
        timeout=RENDER_MS,
    )


def _browse(page: Page, name: str, value: str) -> Locator:
    """Open the gallery, load every chart, preview one timeseries value; returns that card."""
    page.goto("/")
    _load_every_image(page)
    card = page.locator(TIMESERIES)
    card.locator(f"input[name={name}]").fill(value)
    _wait_loaded_with(card.locator("img"), f"{name}={value}")
    return card


def _folder_page(notebook_id: str) -> str:
    """The gallery page that shows a notebook: its folder's."""
    folder = notebook_id.rpartition("/")[0]
    return f"/?{urlencode({'folder': folder})}" if folder else "/"


def _server_message(session: Session, path: str) -> str:
    response = session.page.request.get(path, headers={"Accept": "application/json"})
    assert not response.ok
    return str(response.json()["error"]["message"])


def test_every_chart_image_loads(session: Session) -> None:
    page = session.page
    notebooks = page.request.get("/api/notebooks").json()["notebooks"]
    shown = 0
    for url in sorted({_folder_page(nb["id"]) for nb in notebooks}):
        page.goto(url)
        images = _load_every_image(page)
        shown += images.count()
        for nb in notebooks:
            if _folder_page(nb["id"]) == url:
                expect(page.get_by_role("heading", level=2, name=nb["title"])).to_be_visible()
        for image in images.all():
            assert image.get_attribute("loading") == "lazy"
    assert shown == sum(len(nb["charts"]) for nb in notebooks) > 0
    page.goto("/")  # the top: its folders, then its notebooks
    _load_every_image(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "gallery.png", full_page=True)


def test_form_fields_fit_each_parameter_and_hold_its_default(session: Session) -> None:
    page = session.page
    notebooks = page.request.get("/api/notebooks").json()["notebooks"]
    checked = 0
    for nb in notebooks:
        page.goto(_folder_page(nb["id"]))
        form = page.locator(f"section[data-notebook='{nb['id']}'] form").first
        for param in nb["parameters"]:
            field = form.locator(f"input[name={param['name']}]")
            kind, step = INPUTS.get(param["type"], ("text", None))
            assert (field.get_attribute("type"), field.get_attribute("step")) == (kind, step)
            if kind == "checkbox":
                assert field.is_checked() is param["default"]
            elif isinstance(param["default"], list):
                assert field.input_value() == ",".join(map(str, param["default"]))
            else:
                assert field.input_value() == str(param["default"])
            label = form.locator(f"label[for='{field.get_attribute('id')}']")
            expect(label).to_contain_text(param["name"])
            helper = page.locator(f"#{field.get_attribute('aria-describedby')}")
            expect(helper).to_have_text(param["help"])
            checked += 1
    assert checked > 0


def test_changing_a_parameter_loads_the_new_chart(session: Session) -> None:
    page = session.page
    page.goto("/")
    card = page.locator(TIMESERIES)
    image = card.locator("img")
    default_src = image.get_attribute("src")

    card.locator("input[name=window]").fill("21")

    _wait_loaded_with(image, "window=21")
    assert image.get_attribute("src") != default_src
    expect(card.locator(".chart-message")).to_be_empty()
    expect(card.locator("a", has_text="SVG")).to_have_attribute(
        "href", "./charts/timeseries/chart.svg?window=21"
    )


def test_snippets_hold_the_absolute_url_of_the_chosen_values(session: Session) -> None:
    page = session.page
    page.goto("/")
    card = page.locator(TIMESERIES)
    card.locator("input[name=window]").fill("14")
    card.locator("input[name=show_raw]").uncheck()
    card.locator("input[name=title]").fill("Signups & <visits>")

    query = "?window=14&show_raw=false&title=Signups%20%26%20%3Cvisits%3E"
    url = f"{session.origin}/charts/timeseries/chart.png{query}"

    def snippet(kind: str) -> Locator:
        return card.locator(f"[data-snippet={kind}]")

    expect(snippet("url")).to_have_value(url)
    expect(snippet("markdown")).to_have_value(f"![Daily signups]({url})")
    expect(snippet("html")).to_have_value(
        f'<img src="{html.escape(url)}" srcset="{html.escape(url)}&amp;_dpi=200 2x"'
        ' alt="Daily signups">'
    )
    for kind in ("url", "markdown", "html"):
        expect(snippet(kind)).to_have_attribute("readonly", "")

    card.get_by_role("button", name="Copy the URL").click()
    expect(card.get_by_role("button", name="Copy the URL")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url


def test_default_snippets_are_absolute_urls_of_each_chart(session: Session) -> None:
    page = session.page
    page.goto(_folder_page("sales/regions"))
    card = page.locator("section[data-notebook='sales/regions'] article.chart").nth(1)

    url = f"{session.origin}/charts/sales/regions/trend.png"
    expect(card.locator("[data-snippet=url]")).to_have_value(url)
    expect(card.locator("[data-snippet=markdown]")).to_have_value(
        f"![Regional sales: trend]({url})"
    )


def test_no_request_leaves_the_server(session: Session) -> None:
    _browse(session.page, "noise", "0.25")

    assert any("/charts/" in url for url in session.requests)
    outside = [url for url in session.requests if not url.startswith(session.origin + "/")]
    assert outside == []


def test_page_runs_without_script_errors(session: Session) -> None:
    card = _browse(session.page, "days", "90")
    card.get_by_role("button", name="Copy the HTML").click()

    assert session.page_errors == []
    assert session.console_errors == []


def test_notebook_exception_shows_the_servers_message(session: Session) -> None:
    page = session.page
    page.goto("/")
    card = page.locator(TIMESERIES)
    card.locator("input[name=window]").fill("-5")

    message = card.locator(".chart-message")
    expected = _server_message(session, "/charts/timeseries/chart.png?window=-5")
    assert "window must be at least 1 day" in expected
    expect(message).to_have_text(expected)
    expect(message).to_have_attribute("data-state", "error")
    assert session.page_errors == []
    assert [e for e in session.console_errors if FAILED_RESOURCE not in e] == []


def test_rejected_value_shows_the_servers_message(session: Session) -> None:
    page = session.page
    page.goto("/")
    card = page.locator(TIMESERIES)
    card.locator("input[name=events]").fill("x,y")

    expected = _server_message(session, "/charts/timeseries/chart.png?events=x,y")
    assert "events" in expected and "list[int]" in expected
    expect(card.locator(".chart-message")).to_have_text(expected)
    assert session.page_errors == []
    assert [e for e in session.console_errors if FAILED_RESOURCE not in e] == []


def test_broken_notebook_shows_its_error_instead_of_charts(session: Session) -> None:
    page = session.page
    page.goto("/")
    body = page.request.get("/api/notebooks/broken").json()
    section = page.locator("section[data-notebook='broken']")

    assert body["error"]["message"]
    expect(section.locator(".notebook-error")).to_have_text(body["error"]["message"])
    expect(section.locator("img")).to_have_count(0)
    expect(section.locator("form")).to_have_count(0)


def test_signed_server_hides_the_forms_and_serves_signed_images(signed_session: Session) -> None:
    page = signed_session.page
    page.goto("/")
    images = _load_every_image(page)

    assert images.count() > 0
    expect(page.locator("form.params")).to_have_count(0)  # the search form stays
    expect(page.get_by_text("URLs are signed on this server")).to_be_visible()
    urls = page.locator("[data-snippet=url]")
    assert urls.count() == images.count()
    for url in urls.all():
        assert "_sig=" in url.input_value()
        assert url.input_value().startswith(signed_session.origin + "/charts/")
    for image in images.all():  # the 2x image of each snippet is signed too
        retina = (image.get_attribute("srcset") or "").removesuffix(" 2x")
        assert "_dpi=200" in retina and "_sig=" in retina
        assert page.request.get(retina).status == 200
    assert signed_session.page_errors == []
    assert signed_session.console_errors == []


def test_default_charts_and_snippets_work_without_javascript(browser: Browser, server: str) -> None:
    context = browser.new_context(base_url=server, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/")
        images = _load_every_image(page)

        assert images.count() > 0
        expect(page.locator("button.copy").first).to_be_hidden()
        url = f"{server}/charts/timeseries/chart.png"
        expect(page.locator(f"{TIMESERIES} [data-snippet=url]")).to_have_value(url)
    finally:
        context.close()


def test_behind_a_path_prefix_proxy_every_link_keeps_the_prefix(
    prefixed_session: Session,
) -> None:
    """Charts, assets, previews, the API links: the page asks nothing outside the prefix."""
    session, prefixed = prefixed_session, prefixed_session.origin
    page = session.page
    page.goto(prefixed + "/")
    _load_every_image(page)
    expect(page.locator("html")).to_have_class(re.compile(r"\bjs\b"))  # gallery.js ran
    assert page.evaluate("document.styleSheets[0].cssRules.length") > 0
    card = page.locator(TIMESERIES)
    card.locator("input[name=window]").fill("21")
    _wait_loaded_with(card.locator("img"), "window=21")
    url = f"{prefixed}/charts/timeseries/chart.png?window=21"
    expect(card.locator("[data-snippet=url]")).to_have_value(url)
    json_link = page.locator("section[data-notebook='timeseries'] a", has_text="JSON")
    assert page.request.get(json_link.evaluate("a => a.href")).json()["id"] == "timeseries"
    outside = [u for u in session.requests if not u.startswith(prefixed + "/")]
    assert outside == [] and any("/charts/" in u for u in session.requests)
    assert session.page_errors == [] and session.console_errors == []

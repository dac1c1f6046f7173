"""The gallery at a thousand notebooks in Chromium: walk the folders, page, search, try a chart.

``python -m publisher serve`` over ``tests/corpus.py`` (over a thousand
notebooks in nested folders). The walking tests answer chart images with a
stub, so only the last test renders a chart, in a real kernel.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from . import test_browser_security as security
from .conftest import require_program
from .corpus import BIG_TEAM, CHARTED, TITLED, write_corpus
from .test_gallery_browser import (
    CHROMIUM,
    Session,
    _serve,
    _session,
    _wait_loaded_with,
)

STUB = base64.b64decode(security.DOT)
browser = security.browser  # the fixture: Debian's Chromium, once for the module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_program(str(CHROMIUM))
    folder = tmp_path_factory.mktemp("corpus")
    assert len(write_corpus(folder)) > 1000
    yield from _serve(folder, tmp_path_factory.mktemp("server"))


@pytest.fixture
def session(browser: Browser, server: str) -> Iterator[Session]:
    """A page that records what it did, and must end with no script error or CSP violation."""
    opened = _session(browser, server)
    session = next(opened)
    try:
        session.page.context.add_init_script(security.WATCH_POLICY)
        yield session
        assert session.page_errors == []
        assert session.page.evaluate("window.violations") == []
    finally:
        opened.close()


@pytest.fixture
def walking(session: Session) -> Session:
    """A session whose chart images are a stub: walking the folders renders nothing."""
    session.page.route("**/charts/**", _stub)
    return session


def _stub(route: Route) -> None:
    route.fulfill(body=STUB, content_type="image/png")


def _open_folder(page: Page, name: str) -> None:
    folder = page.locator(".folder-name", has_text=re.compile(f"^{re.escape(name)}$"))
    page.locator("nav.folders a", has=folder).click()
    expect(page.locator("h1")).to_have_text(name)


def _crumbs(page: Page) -> list[str]:
    return page.get_by_role("navigation", name="Breadcrumb").get_by_role("link").all_inner_texts()


def _shown(page: Page) -> list[str]:
    return [
        str(section.get_attribute("data-notebook"))
        for section in page.locator("section[data-notebook]").all()
    ]


def test_walking_down_the_folders_and_back_up_by_the_breadcrumbs(walking: Session) -> None:
    page = walking.page
    page.goto("/")
    expect(page.locator("h1")).to_have_text("All notebooks")
    names = page.locator(".folder-name").all_inner_texts()
    assert names[:3] == ["team1", "team2", "team3"] and names[-1] == "team12"

    _open_folder(page, "team2")
    _open_folder(page, "project 1")
    _open_folder(page, "archive")
    assert _crumbs(page) == ["All notebooks", "team2", "project 1"]
    assert _shown(page) == [f"team2/project 1/archive/report {i}" for i in range(1, 11)]
    bookmark = page.url
    assert bookmark.endswith("/?folder=team2/project%201/archive")

    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="team2").click()
    expect(page.locator("h1")).to_have_text("team2")
    assert page.locator(".folder-name").all_inner_texts() == ["project 1", "project 2"]

    page.goto(bookmark)  # the same page again, from the address alone
    expect(page.locator("h1")).to_have_text("archive")
    assert len(_shown(page)) == 10


def test_a_big_folder_pages_with_next_and_previous(walking: Session) -> None:
    page = walking.page
    page.goto(f"/?folder={BIG_TEAM}")
    assert _shown(page)[:3] == [f"{BIG_TEAM}/report {i}" for i in (1, 2, 3)]
    assert len(_shown(page)) == 50

    page.locator("nav.pager").first.get_by_role("link", name="Next").click()
    expect(page.locator("section[data-notebook]").first).to_have_attribute(
        "data-notebook", f"{BIG_TEAM}/report 51"
    )
    assert "page=2" in page.url
    page.locator("nav.pager").last.get_by_role("link", name="Previous").click()
    expect(page.locator("section[data-notebook]").first).to_have_attribute(
        "data-notebook", f"{BIG_TEAM}/report 1"
    )


def test_charts_load_only_as_they_come_into_view(walking: Session) -> None:
    page = walking.page
    page.goto(f"/?folder={BIG_TEAM}")
    images = page.locator("section[data-notebook] img")
    _wait_loaded_with(images.first, "report%201/")
    charts = lambda: [url for url in walking.requests if "/charts/" in url]  # noqa: E731
    assert images.count() == 50 and 0 < len(charts()) < 50
    last = images.last
    last.scroll_into_view_if_needed()
    _wait_loaded_with(last, "report%2050/")
    assert any("report%2050/" in url for url in charts())


def test_a_search_without_javascript(browser: Browser, server: str) -> None:
    context = browser.new_context(base_url=server, java_script_enabled=False)
    try:
        page = context.new_page()
        page.route("**/charts/**", _stub)
        page.goto("/?folder=team3")
        page.get_by_label("Search").fill("quarterly revenue")
        page.get_by_label("Search").press("Enter")
        expect(page.locator("h1")).to_have_text("Search: quarterly revenue")
        assert _shown(page) == [TITLED]

        page.goto("/?folder=team2")  # a search limited to the folder: every hit is in it
        page.get_by_label("Search").fill("report 1")
        page.get_by_label("only in").check()
        page.get_by_role("button", name="Search").click()
        assert "folder=team2" in page.url and "q=report+1" in page.url
        found = _shown(page)
        assert found and all(id.startswith("team2/") for id in found)
    finally:
        context.close()


def test_typing_refines_the_results_without_leaving_the_page(walking: Session) -> None:
    page = walking.page
    page.goto("/")
    page.evaluate("window.stayed = true")  # gone if the browser loads another page
    box = page.get_by_label("Search")

    box.press_sequentially("waterf")
    expect(page.locator("section[data-notebook]")).to_have_count(1)
    assert _shown(page) == [CHARTED]
    expect(page.locator("h1")).to_have_text("Search: waterf")
    assert page.url.endswith("/?q=waterf")  # the address of what is shown, to bookmark

    box.fill("")
    expect(page.locator("h1")).to_have_text("All notebooks")
    assert page.evaluate("window.stayed") is True
    assert walking.console_errors == []


def test_a_found_notebooks_form_renders_a_new_chart(session: Session) -> None:
    page = session.page
    page.goto(f"/?folder={BIG_TEAM}")
    page.get_by_label("Search").press_sequentially(CHARTED.rpartition("/")[2] + " waterfall")
    card = page.locator(f"section[data-notebook='{CHARTED}'] article.chart")
    expect(card).to_have_count(1)

    card.locator("input[name=points]").fill("7")  # the live results' forms work too
    _wait_loaded_with(card.locator("img"), "points=7")
    expect(card.locator(".chart-message")).to_be_empty()
    expect(card.locator("[data-snippet=url]")).to_have_value(
        f"{session.origin}/charts/team5/project%202/report%203/waterfall.png?points=7"
    )


def test_a_search_the_server_cannot_answer_says_so_and_keeps_the_results(
    walking: Session,
) -> None:
    page = walking.page
    page.goto("/?folder=team4")
    page.route(re.compile(r"/\?q="), lambda route: route.abort())
    page.get_by_label("Search").press_sequentially("report")
    expect(page.locator(".summary")).to_contain_text("The search could not be run")
    expect(page.locator("h1")).to_have_text("team4")
    assert len(_shown(page)) == 40

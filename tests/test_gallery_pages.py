"""The gallery's pages over HTTP at a thousand notebooks: folders, breadcrumbs, search, pages.

One server over ``tests/corpus.py``; the pages are read as HTML, no chart is
rendered (``tests/test_gallery_scale_browser.py`` drives the same pages in Chromium).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from markupsafe import escape

from publisher.browse import MAX_QUERY_LENGTH
from publisher.gallery import PER_PAGE
from publisher.state import SERVICE

from .conftest import serve, test_settings
from .corpus import (
    ARCHIVED,
    BIG_TEAM,
    CHARTED,
    DIRECT,
    PER_PROJECT,
    PROJECTS,
    TEAMS,
    TOP_LEVEL,
    write_corpus,
)
from .notebooks import IMPORTS, chart, write_notebook
from .test_gallery import _Inline

pytestmark = pytest.mark.asyncio(loop_scope="module")

ODD_FOLDER = '<i>odd & "co"'  # a folder name that is markup


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    write_notebook(folder / ODD_FOLDER / "x.ipynb", ["# X", IMPORTS, chart()])
    return folder


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    cache = tmp_path_factory.mktemp("cache")
    settings = test_settings(corpus, cache, kernels=1, preload="", scan_interval=1.0)
    async with serve(settings) as client:
        await client.app[SERVICE].catalog.current()
        yield client


@dataclass
class Page(HTMLParser):
    """What a gallery page shows, read from its HTML."""

    heading: str = ""
    crumbs: list[tuple[str, str]] = field(default_factory=list)  # (label, href)
    folders: list[tuple[str, str]] = field(default_factory=list)
    notebooks: list[str] = field(default_factory=list)  # data-notebook, in order
    pager: dict[str, str] = field(default_factory=dict)  # rel -> href
    summary: str = ""
    problem: str = ""
    searches: int = 0  # search forms
    scope_checked: bool | None = None
    _in: list[str] = field(default_factory=list)
    _href: str = ""
    _text: str = ""

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "nav" and a.get("class") in ("crumbs", "folders"):
            self._in.append(a["class"])
        if tag == "a":
            self._href, self._text = a.get("href", ""), ""
            if a.get("rel") in ("prev", "next"):
                self.pager[a["rel"]] = a["href"]
        if tag == "section" and "data-notebook" in a:
            self.notebooks.append(a["data-notebook"])
        if tag == "form" and a.get("role") == "search":
            self.searches += 1
        if tag == "input" and a.get("name") == "folder":
            self.scope_checked = "checked" in a
        if tag in ("h1", "p") and a.get("class") in (None, "summary", "notebook-error"):
            self._in.append(
                {"h1": "h1", "summary": "summary", "notebook-error": "problem"}.get(
                    a.get("class") or tag, "other"
                )
            )

    def handle_endtag(self, tag: str) -> None:
        place = self._in[-1] if self._in else ""
        if tag == "a" and place in ("crumbs", "folders"):
            getattr(self, place).append((" ".join(self._text.split()), self._href))
        if tag == "nav" and place in ("crumbs", "folders"):
            self._in.pop()
        if tag in ("h1", "p") and place in ("h1", "summary", "problem", "other"):
            self._in.pop()

    def handle_data(self, data: str) -> None:
        self._text += data
        place = self._in[-1] if self._in else ""
        if place == "h1":
            self.heading += data
        elif place == "summary":
            self.summary += data
        elif place == "problem":
            self.problem += data


async def visit(client: TestClient, url: str, status: int = 200) -> tuple[Page, str]:
    response = await client.get(url)
    text = await response.text()
    assert response.status == status, text[:500]
    assert response.content_type == "text/html"
    page = Page()
    page.feed(text)
    return page, text


def follow(href: str) -> str:
    """A link of the page, as the browser at ``/`` resolves it."""
    return "/" if href == "./" else f"/{href}"


async def test_the_top_page_shows_the_top_folders_in_natural_order(client: TestClient) -> None:
    page, text = await visit(client, "/")
    names = [label.rsplit(" ", 2)[0] for label, _ in page.folders]
    assert names == [ODD_FOLDER] + [f"team{t}" for t in range(1, TEAMS + 1)]
    total = DIRECT[BIG_TEAM] + PROJECTS * PER_PROJECT + ARCHIVED
    assert page.folders[1] == (f"{BIG_TEAM} {total} notebooks", f"?folder={BIG_TEAM}")
    assert page.notebooks == sorted(TOP_LEVEL, key=str.casefold)
    assert page.crumbs == [] and page.heading == "All notebooks"
    assert len(text.encode()) < 300_000


async def test_a_folder_page_has_breadcrumbs_subfolders_and_its_notebooks(
    client: TestClient,
) -> None:
    page, _ = await visit(client, "/?folder=team1/project%201")
    assert page.heading == "project 1"
    assert page.crumbs == [("All notebooks", "./"), ("team1", "?folder=team1")]
    assert page.folders == [("archive 10 notebooks", "?folder=team1/project%201/archive")]
    assert page.notebooks == [f"team1/project 1/report {i}" for i in range(1, 21)]
    assert page.summary.strip() == "1 folder, 20 notebooks here."
    assert page.pager == {}


async def test_a_big_folder_is_paged_with_next_and_previous(client: TestClient) -> None:
    first, _ = await visit(client, f"/?folder={BIG_TEAM}")
    assert first.notebooks == [f"{BIG_TEAM}/report {i}" for i in range(1, PER_PAGE + 1)]
    assert "prev" not in first.pager
    second, _ = await visit(client, follow(first.pager["next"]))
    assert second.notebooks[0] == f"{BIG_TEAM}/report {PER_PAGE + 1}"
    last, _ = await visit(client, follow(second.pager["next"]))
    assert (
        last.notebooks[-1] == f"{BIG_TEAM}/report {DIRECT[BIG_TEAM]}" and "next" not in last.pager
    )
    back, _ = await visit(client, follow(last.pager["prev"]))
    assert back.notebooks == second.notebooks
    assert "(101–120 shown)" in last.summary


async def test_a_page_past_the_end_shows_the_last(client: TestClient) -> None:
    past, _ = await visit(client, f"/?folder={BIG_TEAM}&page=99")
    last, _ = await visit(client, f"/?folder={BIG_TEAM}&page=3")
    assert past.notebooks == last.notebooks != []


async def test_a_search_shows_where_each_result_lives(client: TestClient) -> None:
    page, text = await visit(client, "/?q=WATERFALL")
    assert page.notebooks == [CHARTED]
    assert page.heading == "Search: WATERFALL"
    assert page.summary.strip() == "1 notebook matches “WATERFALL”."
    assert 'in <a href="?folder=team5/project%202">team5/project 2</a>' in text


async def test_a_search_within_a_folder_keeps_its_scope_in_the_form(client: TestClient) -> None:
    page, _ = await visit(client, "/?folder=team2&q=archive")
    assert all(id.startswith("team2/project 1/archive/") for id in page.notebooks)
    assert len(page.notebooks) == ARCHIVED and page.scope_checked is True
    assert page.crumbs[-1] == ("team2", "?folder=team2")
    browsing, _ = await visit(client, "/?folder=team2")
    assert browsing.scope_checked is False  # on a folder's page, a search looks everywhere


async def test_a_search_lists_the_folders_it_matches(client: TestClient) -> None:
    page, _ = await visit(client, "/?q=archive")
    assert [label.rsplit(" ", 2)[0] for label, _ in page.folders] == [
        f"team{t}/project 1/archive" for t in range(1, TEAMS + 1)
    ]


async def test_a_search_that_finds_nothing_says_so(client: TestClient) -> None:
    page, _ = await visit(client, "/?q=nothing%20is%20called%20this")
    assert (
        page.notebooks == []
        and page.summary.strip() == "No notebook matches “nothing is called this”."
    )


async def test_a_search_is_paged_and_its_links_keep_the_words(client: TestClient) -> None:
    first, _ = await visit(client, "/?q=report")
    assert len(first.notebooks) == PER_PAGE
    query = parse_qs(urlsplit(first.pager["next"]).query)
    assert query == {"q": ["report"], "page": ["2"]}


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/?folder=team99", 404, "no folder 'team99'"),
        ("/?page=0", 400, "page must be a whole number"),
        ("/?page=two", 400, "page must be a whole number"),
        (f"/?q={'x' * (MAX_QUERY_LENGTH + 1)}", 400, f"at most {MAX_QUERY_LENGTH}"),
        ("/?q=a&q=b", 400, "q is given 2 times"),
    ],
)
async def test_a_bad_value_is_a_page_that_says_so(
    client: TestClient, url: str, status: int, says: str
) -> None:
    page, _ = await visit(client, url, status)
    assert says in page.problem
    assert page.searches == 1 and page.crumbs == [("All notebooks", "./")]


@pytest.mark.parametrize(
    "url", ["/", "/?folder=team1", "/?folder=team1&page=2", "/?q=report", "/?folder=nope"]
)
async def test_every_page_has_the_search_box_and_no_inline_script_or_style(
    client: TestClient, url: str
) -> None:
    response = await client.get(url)
    page, text = Page(), await response.text()
    page.feed(text)
    assert page.searches == 1
    inline = _Inline()
    inline.feed(text)
    assert inline.found == []
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


async def test_folder_names_and_search_words_are_escaped(client: TestClient) -> None:
    top, text = await visit(client, "/")
    assert "<i>" not in text and str(escape(ODD_FOLDER)) in text
    inside, _ = await visit(client, follow(top.folders[0][1]))
    assert inside.heading == ODD_FOLDER and inside.notebooks == [f"{ODD_FOLDER}/x"]
    _, text = await visit(client, "/?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


_opened: list[str] | None = None  # while a list, every file opened in this process is noted


def _note_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None:
        _opened.append(str(args[0]))


sys.addaudithook(_note_opens)  # a hook cannot be removed: it records only while asked


async def test_a_gallery_page_opens_no_file(client: TestClient) -> None:
    global _opened
    await client.get("/?folder=team1")  # templates and assets are read once, at first use
    _opened = []
    try:
        for url in ("/", "/?folder=team1", "/?q=report", "/api/notebooks?q=report"):
            assert (await client.get(url)).status == 200
        opened = list(_opened)
    finally:
        _opened = None
    assert opened == []

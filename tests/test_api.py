"""``/api/notebooks`` and ``/api/folders`` over a thousand notebooks: pages, filters, order, errors.

One server for the module, over ``tests/corpus.py``; no chart is rendered.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from publisher import catalog as catalog_module
from publisher import views
from publisher.browse import DEFAULT_LIMIT, MAX_LIMIT
from publisher.cli import main
from publisher.state import SERVICE

from .conftest import error_of, refuse_listing, serve, test_settings
from .corpus import (
    ARCHIVED,
    BIG_TEAM,
    CHARTED,
    DIRECT,
    DIRECT_DEFAULT,
    PARAMETERED,
    PER_PROJECT,
    PROJECTS,
    TEAMS,
    TITLED,
    natural,
    write_corpus,
)
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    corpus: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    cache = tmp_path_factory.mktemp("cache")
    settings = test_settings(corpus[0], cache, kernels=1, preload="", scan_interval=1.0)
    async with serve(settings) as client:
        await client.app[SERVICE].catalog.current()  # the first read, done at start
        yield client


async def page(client: TestClient, **query: Any) -> dict[str, Any]:
    response = await client.get("/api/notebooks", params={k: str(v) for k, v in query.items()})
    assert response.status == 200, await response.text()
    return dict(await response.json())


def ids(body: dict[str, Any]) -> list[str]:
    return [nb["id"] for nb in body["notebooks"]]


async def test_the_bare_url_lists_every_notebook_as_the_contract_says(
    client: TestClient, corpus: tuple[Path, list[str]]
) -> None:
    body = await page(client)
    assert body["total"] == len(corpus[1]) > 1000
    assert ids(body) == natural(corpus[1])
    assert body["next"] is None and body["previous"] is None


async def test_asking_for_a_page_gives_the_default_limit_and_the_total(
    client: TestClient, corpus: tuple[Path, list[str]]
) -> None:
    body = await page(client, offset=0)
    assert body["total"] == len(corpus[1])
    assert (body["offset"], body["limit"]) == (0, DEFAULT_LIMIT)
    assert ids(body) == natural(corpus[1])[:DEFAULT_LIMIT]
    assert body["previous"] is None and "offset=50" in body["next"]
    searched = await page(client, q="report")
    assert searched["limit"] == DEFAULT_LIMIT and searched["total"] > DEFAULT_LIMIT


async def test_following_next_lists_every_notebook_once_in_natural_order(
    client: TestClient, corpus: tuple[Path, list[str]]
) -> None:
    seen: list[str] = []
    url: str | None = f"/api/notebooks?limit={MAX_LIMIT}"
    while url is not None:
        body = await (await client.get(url)).json()
        seen += ids(body)
        url = body["next"]
    assert seen == natural(corpus[1])
    assert seen.index("team2/report 1") < seen.index("team10/report 1")


async def test_previous_leads_back_a_page(client: TestClient) -> None:
    later = await page(client, offset=60, limit=40)
    back = await (await client.get(later["previous"])).json()
    assert (back["offset"], back["limit"]) == (20, 40)
    assert ids(back)[-1] == ids(await page(client, offset=59, limit=1))[0]
    first = await (await client.get(back["previous"])).json()
    assert first["offset"] == 0 and first["previous"] is None


async def test_an_offset_past_the_end_is_an_empty_page(client: TestClient) -> None:
    body = await page(client, offset=10**6)
    assert body["notebooks"] == [] and body["total"] > 1000 and body["next"] is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("limit", "0"),
        ("limit", str(MAX_LIMIT + 1)),
        ("limit", "ten"),
        ("limit", "1.5"),
        ("offset", "-1"),
        ("offset", "9" * 5000),
        ("q", "x" * 201),
    ],
)
async def test_a_bad_value_is_400_in_the_error_shape_naming_it(
    client: TestClient, key: str, value: str
) -> None:
    response = await client.get("/api/notebooks", params={key: value})
    assert response.status == 400
    error = await error_of(response)
    assert error["code"] == "bad_request" and key in error["message"]


async def test_a_key_given_twice_is_400(client: TestClient) -> None:
    response = await client.get("/api/notebooks?limit=5&limit=6")
    assert response.status == 400
    assert "limit" in (await error_of(response))["message"]


async def test_a_folder_selects_everything_below_it(client: TestClient) -> None:
    body = await page(client, folder="team4", limit=MAX_LIMIT)
    below = DIRECT_DEFAULT + PROJECTS * PER_PROJECT + ARCHIVED
    assert body["total"] == len(body["notebooks"]) == below
    assert all(id.startswith("team4/") for id in ids(body))
    nested = await page(client, folder="team4/project 1/")  # a trailing slash is the same folder
    assert nested["total"] == PER_PROJECT + ARCHIVED


async def test_an_unknown_folder_is_404_in_the_error_shape(client: TestClient) -> None:
    for path in ("/api/notebooks?folder=team99", "/api/folders?folder=team1/nope"):
        response = await client.get(path)
        assert response.status == 404
        assert "team" in (await error_of(response))["message"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("quarterly revenue", TITLED),  # a title, in another case
        ("REGION quarterly", TITLED),  # every word, in any order
        ("team5/project 2/report 3", CHARTED),  # an id
        ("Waterfall", CHARTED),  # a chart name
        ("DISCOUNT_rate", PARAMETERED),  # a parameter name
    ],
)
async def test_a_search_finds_by_title_id_chart_or_parameter_name(
    client: TestClient, query: str, expected: str
) -> None:
    found = ids(await page(client, q=query))
    assert found[0] == expected  # the id's words are in "report 13" too: it comes after


async def test_a_search_counts_every_match_and_pages_them(client: TestClient) -> None:
    body = await page(client, q="report 1", limit=10)
    assert body["total"] > 10 and len(body["notebooks"]) == 10
    assert all("report 1" in id for id in ids(body))
    assert (await page(client, q="nothing is called this"))["total"] == 0


async def test_a_search_within_a_folder(client: TestClient) -> None:
    body = await page(client, q="archive", folder="team2", limit=MAX_LIMIT)
    assert body["total"] == ARCHIVED and all(
        id.startswith("team2/project 1/archive/") for id in ids(body)
    )


async def test_a_notebook_named_exactly_as_searched_comes_first(client: TestClient) -> None:
    found = ids(await page(client, q="Report 12", folder=BIG_TEAM, limit=MAX_LIMIT))
    exact = [f"{BIG_TEAM}/project 1/report 12", f"{BIG_TEAM}/project 2/report 12"]
    assert found[:3] == [*exact, f"{BIG_TEAM}/report 12"]
    assert f"{BIG_TEAM}/report 120" in found[3:] and f"{BIG_TEAM}/report 112" in found[3:]


async def test_the_folder_tree_has_counts_in_natural_order(client: TestClient) -> None:
    tree = await (await client.get("/api/folders")).json()
    assert (tree["path"], tree["notebooks"]) == ("", 2)
    assert [f["name"] for f in tree["folders"]] == [f"team{t}" for t in range(1, TEAMS + 1)]
    big = tree["folders"][0]
    assert big["notebooks"] == DIRECT[BIG_TEAM]
    assert big["total"] == DIRECT[BIG_TEAM] + PROJECTS * PER_PROJECT + ARCHIVED
    project = big["folders"][0]
    assert (project["path"], project["notebooks"], project["total"]) == (
        f"{BIG_TEAM}/project 1",
        PER_PROJECT,
        PER_PROJECT + ARCHIVED,
    )
    assert project["folders"][0]["path"] == f"{BIG_TEAM}/project 1/archive"
    assert tree["total"] == sum(f["total"] for f in tree["folders"]) + tree["notebooks"]


async def test_the_tree_below_one_folder(client: TestClient) -> None:
    subtree = await (await client.get("/api/folders", params={"folder": "team3"})).json()
    assert subtree["path"] == "team3"
    assert [f["name"] for f in subtree["folders"]] == ["project 1", "project 2"]


async def test_one_notebooks_json_is_unchanged(client: TestClient) -> None:
    response = await client.get("/api/notebooks/team7/report%2011")
    body = await response.json()
    assert body["id"] == PARAMETERED
    assert [p["name"] for p in body["parameters"]] == ["discount_rate", "points"]


async def test_no_request_reads_a_notebook_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    monkeypatch.setattr(catalog_module, "load", lambda id, path: loads.append(id))
    await page(client, limit=MAX_LIMIT)
    await page(client, q="revenue")
    await client.get("/api/folders")
    await client.get("/")
    await client.get("/?folder=team1&page=2")
    assert loads == []


async def test_healthz_says_the_notebooks_are_read(
    client: TestClient, corpus: tuple[Path, list[str]]
) -> None:
    health = await (await client.get("/healthz")).json()
    assert health["catalog"] == {
        "read": True,
        "notebooks": len(corpus[1]),
        "scan_error": None,
        "scan_failing_since": None,
    }


GONE = "the notebook folder cannot be read (No such file or directory)"


async def test_while_the_folder_is_gone_what_was_read_answers_and_renders_wait(
    tmp_path: Path,
) -> None:
    """Reported, not fatal, as with a Redis outage: the last listing and the cached charts
    answer; a render, which would fail in the kernel, is a 503 to ask again, not remembered."""
    folder = tmp_path / "notebooks"
    line = ("plt.plot([1, n])\nplt.title(f'{n} of them');", ["chart"])  # no plt.show()
    write_notebook(folder / "nb.ipynb", [IMPORTS, ("n = 1", ["parameters"]), line])
    async with serve(test_settings(folder, tmp_path / "cache", kernels=1)) as client:
        service = client.app[SERVICE]
        await service.catalog.scanned()
        assert (await client.get("/charts/nb.png?n=1")).status == 200
        folder.rename(tmp_path / "unmounted")
        await service.catalog.scanned()
        response = await client.get("/healthz")
        health = await response.json()
        assert response.status == 200 and health["ok"] and health["ready"]
        assert health["catalog"]["scan_error"] == GONE
        assert health["catalog"]["scan_failing_since"] > 0
        listed = await (await client.get("/api/notebooks")).json()
        assert [nb["id"] for nb in listed["notebooks"]] == ["nb"]
        assert (await client.get("/charts/nb.png?n=1")).status == 200  # cached
        waits = await client.get("/charts/nb.png?n=2")  # a render
        assert waits.status == 503 and waits.headers["Retry-After"] == "5"
        error = await error_of(waits)
        assert error == {"code": "notebooks_unreadable", "message": GONE}
        (tmp_path / "unmounted").rename(folder)
        await service.catalog.scanned()
        health = await (await client.get("/healthz")).json()
        assert health["catalog"]["scan_error"] is None
        assert (await client.get("/charts/nb.png?n=2")).status == 200  # not remembered


async def test_before_any_read_works_the_server_is_not_ready_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notebooks"
    write_notebook(folder / "nb.ipynb", [IMPORTS, chart()])
    refuse_listing(monkeypatch, folder)
    async with serve(test_settings(folder, tmp_path / "cache", kernels=1)) as client:
        catalog = client.app[SERVICE].catalog
        await client.app[SERVICE].pool.wait_ready()  # kernels up: only the folder keeps it
        await catalog.scanned()
        health = await (await client.get("/healthz")).json()
        assert not health["ready"] and health["catalog"]["read"] is False
        assert health["catalog"]["scan_error"] == (
            "the notebook folder cannot be read (Permission denied)"
        )
        listing = await client.get("/api/notebooks")
        assert listing.status == 503
        assert (await error_of(listing))["code"] == "notebooks_unreadable"
        monkeypatch.undo()
        await catalog.scanned()
        assert (await (await client.get("/healthz")).json())["ready"]
        assert (await client.get("/api/notebooks")).status == 200


async def test_publisher_list_gives_the_same_natural_order(
    corpus: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_CACHE_DIR", str(tmp_path / "cache"))
    run = CliRunner().invoke(main, ["list", str(corpus[0]), "--json"], catch_exceptions=False)
    body = json.loads(run.output)
    assert [nb["id"] for nb in body["notebooks"]] == natural(corpus[1])
    assert body["total"] == len(corpus[1])
    text = CliRunner().invoke(main, ["list", str(corpus[0])], catch_exceptions=False).output
    listed = [line.split("  (")[0] for line in text.splitlines() if not line.startswith(" ")]
    assert listed == natural(corpus[1])


async def test_the_bare_url_is_built_once_per_listing(client: TestClient) -> None:
    first = await (await client.get("/api/notebooks")).read()
    hits = views._every_notebook.cache_info().hits
    again = await (await client.get("/api/notebooks")).read()
    assert again == first and views._every_notebook.cache_info().hits == hits + 1


async def test_a_folder_tree_deeper_than_pythons_stack_is_answered(tmp_path: Path) -> None:
    depth = 600  # json.dumps of nested dicts recursed past Python's limit: it was a 500
    folder = tmp_path / "notebooks"
    deepest = folder.joinpath(*["d"] * depth)
    write_notebook(deepest / "bottom.ipynb", [IMPORTS, chart()])
    async with serve(test_settings(folder, tmp_path / "cache", kernels=1)) as client:
        response = await client.get("/api/folders")
        assert response.status == 200, await response.text()
        text = await response.text()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(4 * depth + limit)  # for json.loads here, not for the server
    try:
        tree = json.loads(text)
    finally:
        sys.setrecursionlimit(limit)
    for level in range(depth):
        assert (tree["name"], tree["total"], len(tree["folders"])) == ("d" if level else "", 1, 1)
        tree = tree["folders"][0]
    assert tree["path"] == "/".join(["d"] * depth) and tree["notebooks"] == 1

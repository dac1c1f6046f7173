"""Notebooks whose file names hold odd characters, end to end over HTTP and on the command line.

Every ``.ipynb`` file is listed by the API, the gallery and ``publisher list``;
the URL the API gives answers with the chart; a file that cannot be served is
listed with why. One server for the module, one render per servable name.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner
from markupsafe import escape
from yarl import URL

from publisher.cli import main
from publisher.state import SERVICE

from .conftest import error_of
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# id -> the file's name on disk, without .ipynb
SERVED = {
    "Q1 (draft)": "Q1 (draft)",
    "sales+costs": "sales+costs",
    "-draft": "-draft",
    "a#b?c%d": "a#b?c%d",  # each one means something else in a URL
    nfc("régions/café"): nfd("régions/café"),  # as macOS writes it
    "日本語 グラフ": "日本語 グラフ",
}
CONFLICT = nfc("résumé")  # two files, NFC and NFD: which one is meant cannot be told
FOLDER = "folder"  # a folder named folder.ipynb


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The odd names in place of the reference notebooks, so conftest's ``client`` serves them."""
    folder = tmp_path_factory.mktemp("names")
    for id, name in SERVED.items():
        write_notebook(folder / f"{name}.ipynb", [f"# {id}", IMPORTS, chart()])
    write_notebook(folder / f"{nfc(CONFLICT)}.ipynb", [IMPORTS, chart()])
    write_notebook(folder / f"{nfd(CONFLICT)}.ipynb", [IMPORTS, chart()])
    (folder / f"{FOLDER}.ipynb").mkdir()
    return folder


async def listing(client: TestClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/notebooks")
    assert response.status == 200
    return {nb["id"]: nb for nb in (await response.json())["notebooks"]}


async def get(client: TestClient, url: str) -> Any:
    """``url`` sent exactly as given, as a browser sends an ``<img src>`` it was handed."""
    return await client.get(URL(url, encoded=True))


async def test_the_api_lists_every_file_and_only_the_broken_ones_with_errors(
    client: TestClient,
) -> None:
    notebooks = await listing(client)
    assert set(notebooks) == {*SERVED, CONFLICT, FOLDER}
    assert all(notebooks[id]["error"] is None for id in SERVED)
    assert "normalization" in notebooks[CONFLICT]["error"]["message"]
    assert "cannot read" in notebooks[FOLDER]["error"]["message"]


@pytest.mark.parametrize("id", list(SERVED))
async def test_each_odd_name_answers_a_png_at_the_url_the_api_gives(
    client: TestClient, id: str
) -> None:
    url = (await listing(client))[id]["charts"][0]["url"]
    assert url == f"/charts/{quote(id)}/chart.png"
    response = await get(client, url)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "image/png"
    assert (await response.read())[:8] == b"\x89PNG\r\n\x1a\n"


async def test_an_nfd_url_is_the_same_notebook_and_the_same_cache_entry(client: TestClient) -> None:
    id = nfc("régions/café")
    first = await get(client, f"/charts/{quote(id)}.png?_dpi=50")
    renders = client.app[SERVICE].pool.renders
    again = await get(client, f"/charts/{quote(nfd(id))}.png?_dpi=50")
    assert first.status == again.status == 200
    assert again.headers["X-Publisher-Cache"] == "hit"
    assert client.app[SERVICE].pool.renders == renders


async def test_a_plus_in_a_path_is_a_plus_not_a_space(client: TestClient) -> None:
    await get(client, "/charts/sales%2Bcosts.png?_dpi=51")
    plain = await get(client, "/charts/sales+costs.png?_dpi=51")
    assert plain.status == 200 and plain.headers["X-Publisher-Cache"] == "hit"
    space = await get(client, "/charts/sales%20costs.png")
    assert space.status == 404


async def test_one_notebooks_json_is_at_its_quoted_id(client: TestClient) -> None:
    for id in SERVED:
        response = await get(client, f"/api/notebooks/{quote(id)}")
        assert response.status == 200 and (await response.json())["id"] == id


async def test_a_file_that_cannot_be_served_answers_with_why(client: TestClient) -> None:
    response = await get(client, f"/charts/{quote(CONFLICT)}.png")
    assert response.status == 500
    error = await error_of(response)
    assert error["code"] == "broken_notebook" and "normalization" in error["message"]


async def test_the_gallery_shows_every_notebook_on_its_folders_page(client: TestClient) -> None:
    for id in [*SERVED, CONFLICT, FOLDER]:
        folder = id.rpartition("/")[0]
        page = await (await client.get("/", params={"folder": folder})).text()
        assert f"<code>{escape(id)}</code>" in page


async def test_a_search_for_each_odd_name_finds_it(client: TestClient) -> None:
    for id in [*SERVED, CONFLICT, FOLDER]:
        for spelled in (id, nfd(id).upper()):  # any case, any normalization
            response = await client.get("/api/notebooks", params={"q": spelled})
            assert id in [nb["id"] for nb in (await response.json())["notebooks"]], spelled
        page = await (await client.get("/", params={"q": id})).text()
        assert f"<code>{escape(id)}</code>" in page


async def test_publisher_list_shows_every_notebook(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_CACHE_DIR", str(tmp_path / "cache"))
    text = CliRunner().invoke(main, ["list", str(reference_dir)], catch_exceptions=False).output
    for id in SERVED:
        assert f"{id}  ({id})\n  chart chart: /charts/{quote(id)}/chart.png\n" in text
    assert f"{CONFLICT}  ({CONFLICT})\n  error: cannot serve notebook" in text
    assert f"{FOLDER}  ({FOLDER})\n  error: cannot read notebook" in text
    result = CliRunner().invoke(
        main, ["list", str(reference_dir), "--json"], catch_exceptions=False
    )
    ids = [nb["id"] for nb in json.loads(result.output)["notebooks"]]
    assert sorted(ids) == sorted([*SERVED, CONFLICT, FOLDER])

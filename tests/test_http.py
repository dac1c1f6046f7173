"""End to end over HTTP: a real server, real kernels, the reference notebooks."""

from __future__ import annotations

import ast
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from publisher.state import SERVICE

from .conftest import error_of
from .notebooks import IMPORTS, chart, write_notebook

pytestmark = pytest.mark.asyncio(loop_scope="module")

BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def renders(client: TestClient) -> int:
    return client.app[SERVICE].pool.renders


async def noticed(client: TestClient) -> None:
    """Wait for the server's background scan to see what a test just wrote or removed."""
    await client.app[SERVICE].catalog.scanned()


def png_size(body: bytes) -> tuple[int, int]:
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", body[16:24])


async def echoed(client: TestClient, query: str) -> tuple[Any, ...]:
    """What the echo notebook's kernel saw, read back from the title of its SVG."""
    response = await client.get(f"/charts/echo.svg?{query}")
    assert response.status == 200, await response.text()
    svg = await response.text()
    hex_title = re.search(r">([0-9a-f]{8,})<", svg)
    assert hex_title is not None, "no hex title in the SVG"
    return ast.literal_eval(bytes.fromhex(hex_title.group(1)).decode("utf-8"))


async def test_chart_answer_carries_http_cache_headers(client: TestClient) -> None:
    response = await client.get("/charts/echo/chart.png?count=11")
    body = await response.read()
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert int(response.headers["Content-Length"]) == len(body)
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["ETag"])
    assert "max-age=" in response.headers["Cache-Control"]
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["X-Publisher-Cache"] == "miss"
    png_size(body)


async def test_second_request_is_a_hit_with_the_same_bytes(client: TestClient) -> None:
    first = await client.get("/charts/echo.png?count=12")
    before = renders(client)
    second = await client.get("/charts/echo.png?count=12")
    assert second.headers["X-Publisher-Cache"] == "hit"
    assert await first.read() == await second.read()
    assert renders(client) == before


async def test_if_none_match_gets_304_without_body(client: TestClient) -> None:
    first = await client.get("/charts/echo.png?count=13")
    etag = first.headers["ETag"]
    again = await client.get("/charts/echo.png?count=13", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag


async def test_head_gives_headers_only(client: TestClient) -> None:
    get = await client.get("/charts/echo.png?count=14")
    head = await client.head("/charts/echo.png?count=14")
    assert head.status == 200
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["ETag"] == get.headers["ETag"]
    assert await head.read() == b""


async def test_urls_meaning_the_same_render_share_one_entry(client: TestClient) -> None:
    await client.get("/charts/echo.png?ratio=2&count=5")
    before = renders(client)
    for query in (
        "count=5&ratio=2",
        "count=5&ratio=2.0",
        "ratio=2.0&count=5&flag=false&text=hello",
    ):
        response = await client.get(f"/charts/echo/chart.png?{query}")
        assert response.headers["X-Publisher-Cache"] == "hit", query
    assert renders(client) == before


async def test_values_reach_the_kernel_as_their_declared_types(client: TestClient) -> None:
    seen = await echoed(
        client,
        "text=a%27%22%5C%0Ab&count=-7&ratio=1&flag=on&names=x&names=y,z&numbers=4,5&anything=12",
    )
    # repeated keys are items as given, so a list item may hold a comma
    assert seen == ("a'\"\\\nb", -7, 1.0, True, ["x", "y,z"], [4, 5], 12)


async def test_defaults_apply_when_the_url_gives_none(client: TestClient) -> None:
    assert await echoed(client, "") == ("hello", 3, 0.5, False, ["a", "b"], [1, 2], None)


async def test_formats_svg_and_pdf(client: TestClient) -> None:
    svg = await client.get("/charts/echo.svg?count=20")
    pdf = await client.get("/charts/echo.pdf?count=20")
    assert svg.headers["Content-Type"] == "image/svg+xml"
    assert (await svg.read()).lstrip().startswith(b"<?xml")
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert (await pdf.read()).startswith(b"%PDF")


async def test_dpi_scales_the_image(client: TestClient) -> None:
    small = png_size(await (await client.get("/charts/partial/first.png?_dpi=50")).read())
    large = png_size(await (await client.get("/charts/partial/first.png?_dpi=100")).read())
    assert large[0] == pytest.approx(2 * small[0], abs=4)


async def test_width_and_height_give_exact_pixels(client: TestClient) -> None:
    both = await client.get("/charts/echo.png?count=22&_width=500&_height=200")
    assert png_size(await both.read()) == (500, 200)
    width_only = await client.get("/charts/echo.png?count=22&_width=400&_dpi=100")
    w, h = png_size(await width_only.read())
    assert (w, h) == (400, 300)  # the figure's own 4:3 aspect is kept


async def test_first_chart_when_the_url_names_none(client: TestClient) -> None:
    named = await client.get("/charts/partial/first.png")
    bare = await client.get("/charts/partial.png")
    assert bare.status == named.status == 200
    assert await bare.read() == await named.read()


async def test_untagged_notebook_publishes_its_last_image(client: TestClient) -> None:
    response = await client.get("/charts/untagged/chart.svg")
    svg = await response.text()
    assert "last image" in svg and "first image" not in svg


async def test_cells_after_the_chart_do_not_run(client: TestClient, reference_dir: Path) -> None:
    marker = reference_dir / "after.txt"
    assert (await client.get("/charts/partial/first.png")).status == 200
    assert not marker.exists()
    assert (await client.get("/charts/partial/second.png")).status == 200
    assert marker.read_text() == "ran"
    marker.unlink()


async def test_notebook_runs_in_its_own_folder(client: TestClient) -> None:
    response = await client.get("/charts/reads_csv.png")
    assert response.status == 200, await response.text()


async def test_notebook_in_a_subfolder_has_a_path_id(client: TestClient) -> None:
    response = await client.get("/charts/nested/deep/inner/chart.png")
    assert response.status == 200
    assert (await client.get("/charts/nested/deep/inner.png")).status == 200


async def test_invalid_value_is_400_naming_parameter_and_type(client: TestClient) -> None:
    response = await client.get("/charts/echo.png?count=many")
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "invalid_parameter"
    assert "'count'" in error["message"] and "int" in error["message"]


async def test_unknown_parameter_is_400_listing_valid_names(client: TestClient) -> None:
    response = await client.get("/charts/echo.png?colour=red")
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "unknown_parameter"
    assert "'colour'" in error["message"] and "count" in error["message"]
    assert "text" in error["valid"]


async def test_unknown_render_option_is_400(client: TestClient) -> None:
    response = await client.get("/charts/echo.png?_zoom=2")
    assert response.status == 400
    assert "_zoom" in (await error_of(response))["message"]


@pytest.mark.parametrize(
    "query", ["_dpi=0", "_dpi=nan", "_width=99999", "_height=-3", "_width=1.5"]
)
async def test_render_option_out_of_range_is_400(client: TestClient, query: str) -> None:
    response = await client.get(f"/charts/echo.png?{query}")
    assert response.status == 400
    assert (await error_of(response))["code"] == "invalid_option"


@pytest.mark.parametrize(
    "path",
    [
        "/charts/nope.png",
        "/charts/echo/nochart.png",
        "/charts/.hidden.png",
        "/charts/.ipynb_checkpoints/echo-checkpoint.png",
        "/charts/../notebooks/echo.png",
        "/charts/%2e%2e/echo.png",
        "/api/notebooks/nope",
        "/no/such/page",
    ],
)
async def test_unknown_things_are_404_json(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    await error_of(response)


async def test_unknown_chart_names_the_charts_there_are(client: TestClient) -> None:
    response = await client.get("/charts/partial/third.png")
    error = await error_of(response)
    assert error["code"] == "unknown_chart"
    assert "first" in error["message"] and "second" in error["message"]


async def test_notebook_exception_is_500_with_type_and_message(client: TestClient) -> None:
    response = await client.get("/charts/fails.png?reason=disk%20full")
    error = await error_of(response)
    assert response.status == 500
    assert error["code"] == "notebook_error"
    assert error["message"] == "ValueError: cannot chart: disk full"
    assert error["exception"] == "ValueError"


async def test_chart_cell_without_image_is_500_saying_so(client: TestClient) -> None:
    response = await client.get("/charts/noimage.png")
    error = await error_of(response)
    assert response.status == 500
    assert error["code"] == "no_image"
    assert "no png image" in error["message"]


@pytest.mark.parametrize("notebook", ["unreadable", "badparams"])
async def test_broken_notebook_is_500_and_listed_with_its_error(
    client: TestClient, notebook: str
) -> None:
    response = await client.get(f"/charts/{notebook}.png")
    error = await error_of(response)
    assert response.status == 500
    assert error["code"] == "broken_notebook"
    listing = await (await client.get("/api/notebooks")).json()
    entry = next(nb for nb in listing["notebooks"] if nb["id"] == notebook)
    assert entry["error"]["message"] == error["message"]
    assert (await client.get("/charts/echo.png")).status == 200


async def test_browser_image_request_gets_error_png_with_same_status(client: TestClient) -> None:
    response = await client.get("/charts/echo.png?count=x", headers={"Accept": BROWSER_ACCEPT})
    assert response.status == 400
    assert response.headers["Content-Type"] == "image/png"
    png_size(await response.read())


async def test_listing_skips_hidden_files_and_checkpoints(client: TestClient) -> None:
    listing = await (await client.get("/api/notebooks")).json()
    ids = {nb["id"] for nb in listing["notebooks"]}
    assert {"echo", "partial", "nested/deep/inner", "unreadable"} <= ids
    assert not any(".hidden" in i or "checkpoint" in i for i in ids)


async def test_renders_are_isolated_from_each_other(client: TestClient) -> None:
    for run in range(4):  # with two kernels, some renders reuse a kernel
        response = await client.get(f"/charts/state.png?run={run}")
        assert response.status == 200, await response.text()


async def test_edited_notebook_gives_a_new_image_at_the_same_url(
    client: TestClient, reference_dir: Path
) -> None:
    path = reference_dir / "edited.ipynb"
    write_notebook(path, [IMPORTS, chart("ax.plot([1, 2])")])
    await noticed(client)
    first = await client.get("/charts/edited.png")
    write_notebook(path, [IMPORTS, chart("ax.plot([2, 1, 5])")])
    await noticed(client)
    second = await client.get("/charts/edited.png")
    assert first.status == second.status == 200
    assert second.headers["X-Publisher-Cache"] == "miss"
    assert first.headers["ETag"] != second.headers["ETag"]


async def test_added_and_removed_notebooks_show_without_restart(
    client: TestClient, reference_dir: Path
) -> None:
    path = write_notebook(reference_dir / "fresh.ipynb", [IMPORTS, chart()])
    await noticed(client)
    listing = await (await client.get("/api/notebooks")).json()
    assert "fresh" in {nb["id"] for nb in listing["notebooks"]}
    assert (await client.get("/charts/fresh.png")).status == 200
    path.unlink()
    await noticed(client)
    listing = await (await client.get("/api/notebooks")).json()
    assert "fresh" not in {nb["id"] for nb in listing["notebooks"]}
    assert (await client.get("/charts/fresh.png")).status == 404


async def test_gallery_page_links_versioned_assets_cached_for_good(client: TestClient) -> None:
    page = await client.get("/")
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    css = re.search(r'href="\.(/static/gallery\.css\?v=[^"]+)"', text)  # page-relative
    assert css is not None
    asset = await client.get(css.group(1))
    assert asset.status == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"


async def test_gallery_escapes_what_notebooks_say(client: TestClient, reference_dir: Path) -> None:
    path = write_notebook(reference_dir / "xss.ipynb", ["# <script>alert(1)</script>", chart()])
    await noticed(client)
    try:
        text = await (await client.get("/")).text()
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    finally:
        path.unlink()


async def test_a_failed_render_fails_again_at_once_without_a_kernel(client: TestClient) -> None:
    first = await client.get("/charts/fails.png?reason=again")
    before = renders(client)
    second = await client.get("/charts/fails.png?reason=again")
    assert first.status == second.status == 500
    assert await first.json() == await second.json()
    assert renders(client) == before


async def test_a_failed_render_is_retried_after_the_error_ttl(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await client.get("/charts/fails.png?reason=later")).status == 500
    before = renders(client)
    service = client.app[SERVICE]
    later = time.time() + service.settings.error_ttl + 1
    monkeypatch.setattr(service.pipeline.freshness, "clock", lambda: later)
    assert (await client.get("/charts/fails.png?reason=later")).status == 500
    assert renders(client) == before + 1


async def test_cell_and_line_magics_work_before_and_in_the_chart_cell(client: TestClient) -> None:
    response = await client.get("/charts/magics.png")
    assert response.status == 200, await response.text()


async def test_a_notebook_with_no_cells_says_it_has_no_image(client: TestClient) -> None:
    response = await client.get("/charts/empty.png")
    assert response.status == 500
    assert (await error_of(response))["code"] == "no_image"


async def test_if_none_match_star_gets_304(client: TestClient) -> None:
    await client.get("/charts/echo.png?count=15")
    again = await client.get("/charts/echo.png?count=15", headers={"If-None-Match": "*"})
    assert again.status == 304


async def test_the_same_notebook_in_two_folders_reads_each_folders_data(
    client: TestClient, reference_dir: Path
) -> None:
    source = (reference_dir / "reads_csv.ipynb").read_text()
    for name, rows in (("east", "x,y\n1,1\n2,2\n"), ("west", "x,y\n1,9\n2,1\n3,5\n")):
        (reference_dir / name).mkdir(exist_ok=True)
        (reference_dir / name / "reads_csv.ipynb").write_text(source)
        (reference_dir / name / "data.csv").write_text(rows)
    await noticed(client)
    east = await client.get("/charts/east/reads_csv.png")
    west = await client.get("/charts/west/reads_csv.png")
    assert east.status == west.status == 200
    assert west.headers["X-Publisher-Cache"] == "miss"
    assert east.headers["ETag"] != west.headers["ETag"]


async def test_a_broken_notebook_does_not_hide_a_notebook_in_its_folder(
    client: TestClient, reference_dir: Path
) -> None:
    write_notebook(reference_dir / "badparams" / "inner.ipynb", [IMPORTS, chart()])
    await noticed(client)
    assert (await client.get("/charts/badparams/inner.png")).status == 200
    assert (await client.get("/charts/badparams.png")).status == 500


async def test_a_default_the_parameters_cell_computes_is_not_overwritten(
    client: TestClient, reference_dir: Path
) -> None:
    params = "start = None  # computed below when not given\nsize = (4, 3)\nif start is None:\n    start = 'computed'"
    body = (
        "assert start in ('computed', 'given'), start\nassert isinstance(size, tuple)\nax.plot([1])"
    )
    write_notebook(
        reference_dir / "computed.ipynb", [IMPORTS, (params, ["parameters"]), chart(body)]
    )
    await noticed(client)
    assert (await client.get("/charts/computed.png")).status == 200
    assert (await client.get("/charts/computed.png?start=given")).status == 200


async def test_a_method_the_route_does_not_take_is_405_in_the_one_error_shape(
    client: TestClient,
) -> None:
    response = await client.post("/charts/echo.png")
    assert response.status == 405
    assert (await error_of(response))["code"] == "method_not_allowed"

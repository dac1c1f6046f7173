"""What the app starts beside its routes: the catalog's background reading, the heap freeze."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from publisher.app import _freeze_once_read, create_app
from publisher.state import SERVICE

from .conftest import test_settings
from .notebooks import IMPORTS, chart, write_notebook


async def test_the_catalog_is_read_in_the_background_while_the_app_runs(tmp_path: Path) -> None:
    write_notebook(tmp_path / "nbs" / "first.ipynb", [IMPORTS, chart()])
    settings = test_settings(tmp_path / "nbs", tmp_path / "cache", kernels=1, preload="")
    app = create_app(settings)
    catalog = app[SERVICE].catalog
    async with TestClient(TestServer(app)) as client:
        assert catalog.watched
        assert [nb.id for nb in (await catalog.current()).notebooks] == ["first"]
        write_notebook(tmp_path / "nbs" / "second.ipynb", [IMPORTS, chart()])
        await catalog.scanned()  # the background task's next scan, not one this test runs
        body = await (await client.get("/api/notebooks")).json()
        assert [nb["id"] for nb in body["notebooks"]] == ["first", "second"]
    assert not catalog.watched  # stopped: used alone again, it looks on use


async def test_serve_freezes_the_heap_once_the_notebooks_are_read(tmp_path: Path) -> None:
    write_notebook(tmp_path / "nbs" / "nb.ipynb", [IMPORTS, chart()])
    app = create_app(test_settings(tmp_path / "nbs", tmp_path / "cache", kernels=1, preload=""))
    app[SERVICE].catalog.scan()
    context = _freeze_once_read(app)
    try:
        await context.__anext__()
        await asyncio.sleep(0)  # its task's first step: the notebooks are read, so it freezes
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        await context.aclose()


async def test_the_heap_is_frozen_once_a_folder_that_did_not_read_at_first_reads(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "nbs"
    app = create_app(test_settings(folder, tmp_path / "cache", kernels=1, preload=""))
    catalog = app[SERVICE].catalog
    catalog.watched = True  # as the background reading sets it
    context = _freeze_once_read(app)
    try:
        await context.__anext__()
        await catalog.refresh()  # the folder is not there yet: its first read fails
        for _ in range(3):
            await asyncio.sleep(0)
        assert catalog.scan_error is not None and gc.get_freeze_count() == 0
        write_notebook(folder / "nb.ipynb", [IMPORTS, chart()])
        await catalog.refresh()
        for _ in range(3):
            await asyncio.sleep(0)
        assert gc.get_freeze_count() > 0  # its task waited for the read, rather than dying
    finally:
        gc.unfreeze()
        await context.aclose()

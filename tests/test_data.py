"""Charts follow their data: real kernels read real files, and a changed file re-renders.

The notebooks are written the way analysts write them: pandas reading a CSV
and ending with ``df.plot(...)``, a helper module that loads the data, numpy
and sqlite files, a folder whose files a native reader would see (declared
in the metadata). The server runs with ``--max-stale 0``, so a chart whose
data changed is rendered again for the very next request.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from publisher.executor import Job, Kernel
from publisher.options import RenderOptions

from .conftest import error_of, serve, test_settings
from .notebooks import rewrite, write_notebook
from .oracle import difference, fresh_image

pytestmark = pytest.mark.asyncio(loop_scope="module")
MAX_FILES = 5

PANDAS = "import pandas as pd"
LOADER = """import pandas as pd


def load(name="helped.csv"):
    return pd.read_csv(name)
"""


def write_csv(path: Path, totals: list[int]) -> None:
    rows = "".join(f"{month},{total}\n" for month, total in enumerate(totals, 1))
    path.write_text("month,total\n" + rows)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    plot = "df.plot(x='month', y='total', title=f'total {df.total.sum()}');"
    for name in ("sales", "fragile", "shared", "never"):
        write_csv(folder / f"{name}.csv", [3, 5, 4])
        write_notebook(
            folder / f"{name}.ipynb",
            [PANDAS, (f"df = pd.read_csv('{name}.csv')\n{plot}", ["chart"])],
        )
    write_csv(folder / "helped.csv", [1, 2, 3])
    (folder / "loader.py").write_text(LOADER)
    write_notebook(folder / "via_helper.ipynb", ["from loader import load", f"df = load()\n{plot}"])
    (folder / "parts").mkdir()
    (folder / "parts" / "a.txt").write_text("a")
    write_notebook(
        folder / "declared.ipynb",
        [
            "import os\nimport matplotlib.pyplot as plt",
            "parts = sorted(os.listdir('parts'))  # a listing: no file is opened\n"
            "plt.bar(parts, [1] * len(parts))",
        ],
        {"publisher": {"data": ["parts/*.txt"]}},
    )
    write_formats(folder)
    for i in range(MAX_FILES + 3):
        (folder / f"many-{i}.txt").write_text(str(i))
    write_notebook(
        folder / "many.ipynb",
        [
            "import matplotlib.pyplot as plt",
            f"sizes = [len(open(f'many-{{i}}.txt').read()) for i in range({MAX_FILES + 3})]\n"
            "plt.plot(sizes)",
        ],
    )
    (folder / "other.txt").write_text("nobody reads this")
    # a name in Latin-1 bytes, as an old export leaves it: not UTF-8
    with open(os.path.join(os.fsencode(folder), b"ventes caf\xe9.csv"), "wb") as out:
        out.write(b"month,total\n1,3\n")
    write_notebook(
        folder / "latin.ipynb",
        [
            PANDAS,
            "import os\nname = next(n for n in os.listdir('.') if n.startswith('ventes'))\n"
            "pd.read_csv(name).plot(x='month', y='total');",
        ],
    )
    return folder


def write_formats(folder: Path) -> None:
    """One notebook reading a file of each kind a tracked reader opens."""
    np.save(folder / "points.npy", np.arange(5))
    with sqlite3.connect(folder / "shop.sqlite") as db:
        db.execute("create table sales (total int)")
        db.execute("insert into sales values (3), (4)")
    db.close()
    (folder / "meta.json").write_text('{"title": ["Sales"]}')
    (folder / "notes.txt").write_text("a note")
    pd.DataFrame({"total": [2, 6]}).to_excel(folder / "targets.xlsx", index=False)
    write_notebook(
        folder / "formats.ipynb",
        [
            "import sqlite3\nimport numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt",
            "points = np.load('points.npy')\n"
            "totals = [row[0] for row in sqlite3.connect('shop.sqlite').execute('select total from sales')]\n"
            "title = pd.read_json('meta.json').title[0] + open('notes.txt').read()\n"
            "targets = pd.read_excel('targets.xlsx').total\n"
            "fig, ax = plt.subplots()\n"
            "ax.plot(points)\n"
            "ax.bar(range(len(totals)), totals)\n"
            "ax.plot(targets)\n"
            "ax.set_title(title)",
        ],
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    settings = test_settings(
        folder, tmp_path_factory.mktemp("cache"), max_stale=0.0, max_data_files=MAX_FILES
    )
    async with serve(settings) as client:
        yield client


async def get(client: TestClient, path: str) -> tuple[str, str]:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return response.headers["X-Publisher-Cache"], response.headers["ETag"]


async def data_of(client: TestClient, notebook: str, chart: str = "chart") -> dict[str, Any]:
    body = await (await client.get(f"/api/notebooks/{notebook}")).json()
    [found] = [c for c in body["charts"] if c["name"] == chart]
    return found["data"]


async def test_an_edited_csv_shows_at_the_same_url(client: TestClient, folder: Path) -> None:
    first = await get(client, "/charts/sales.png")
    assert first[0] == "miss"
    assert await get(client, "/charts/sales.png") == ("hit", first[1])
    rewrite(folder / "sales.csv", "month,total\n1,9\n2,1\n")
    response = await client.get("/charts/sales.png")
    assert response.headers["X-Publisher-Cache"] == "miss"
    assert response.headers["ETag"] != first[1]
    # the new chart is what a new kernel draws from the new file
    assert difference(await response.read(), await fresh_image(folder / "sales.ipynb")) is None
    assert await get(client, "/charts/sales.png") == ("hit", response.headers["ETag"])


async def test_touching_an_unrelated_file_keeps_the_hit(client: TestClient, folder: Path) -> None:
    first = await get(client, "/charts/sales.png?_dpi=50")
    rewrite(folder / "other.txt", "still nobody reads this")
    assert await get(client, "/charts/sales.png?_dpi=50") == ("hit", first[1])


async def test_a_file_read_by_a_helper_module_is_followed(client: TestClient, folder: Path) -> None:
    first = await get(client, "/charts/via_helper.png")
    data = await data_of(client, "via_helper")
    assert "helped.csv" in [f["path"] for f in data["files"]]
    rewrite(folder / "helped.csv", "month,total\n1,7\n")
    cache, etag = await get(client, "/charts/via_helper.png")
    assert cache == "miss" and etag != first[1]


async def test_a_new_file_matching_a_declared_glob_renders_again(
    client: TestClient, folder: Path
) -> None:
    first = await get(client, "/charts/declared.png")
    assert (await data_of(client, "declared"))["globs"] == ["parts/*.txt"]
    assert await get(client, "/charts/declared.png") == ("hit", first[1])
    (folder / "parts" / "b.txt").write_text("b")
    cache, etag = await get(client, "/charts/declared.png")
    assert cache == "miss" and etag != first[1]


async def test_a_deleted_data_file_renders_again_and_shows_the_notebooks_error(
    client: TestClient, folder: Path
) -> None:
    assert (await get(client, "/charts/fragile.png"))[0] == "miss"
    (folder / "fragile.csv").unlink()
    response = await client.get("/charts/fragile.png")
    assert response.status == 500
    error = await error_of(response)
    assert error["code"] == "notebook_error" and error["exception"] == "FileNotFoundError"


async def test_each_kind_of_reader_is_tracked_and_the_system_is_not(client: TestClient) -> None:
    await get(client, "/charts/formats.png")
    data = await data_of(client, "formats")
    paths = [f["path"] for f in data["files"]]
    assert sorted(paths) == ["meta.json", "notes.txt", "points.npy", "shop.sqlite", "targets.xlsx"]
    assert all(f["size"] > 0 and f["modified"] > 0 for f in data["files"])


async def test_past_the_limit_the_first_files_are_followed_and_the_rest_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="publisher.render")
    await get(client, "/charts/many.png")
    data = await data_of(client, "many")
    assert [f["path"] for f in data["files"]] == [f"many-{i}.txt" for i in range(MAX_FILES)]
    assert data["dropped"] == 3
    warnings = [r for r in caplog.records if r.name == "publisher.render"]
    assert any("the first 5 are followed, 3 are not" in r.getMessage() for r in warnings)


async def test_a_data_file_whose_name_is_not_utf8_is_shown_with_a_replacement(
    client: TestClient,
) -> None:
    await get(client, "/charts/latin.png")
    assert [f["path"] for f in (await data_of(client, "latin"))["files"]] == [
        "ventes caf\ufffd.csv"
    ]
    page = await client.get("/?q=latin")
    assert page.status == 200 and "data: ventes caf\ufffd.csv, changed" in await page.text()


async def test_the_gallery_shows_a_charts_data(client: TestClient) -> None:
    await get(client, "/charts/shared.png")
    page = await (await client.get("/?q=shared")).text()
    assert "data: shared.csv, changed" in page


async def test_a_chart_not_rendered_here_has_no_data_to_tell(client: TestClient) -> None:
    assert await data_of(client, "never") is None
    await get(client, "/charts/never.png")
    assert [f["path"] for f in (await data_of(client, "never"))["files"]] == ["never.csv"]


async def test_a_render_reports_its_own_reads_and_not_what_it_wrote(tmp_path: Path) -> None:
    """Outside renders a kernel runs only its warm-up and its resets: neither is recorded."""
    for name in ("b.txt", "c.txt"):
        (tmp_path / name).write_text(name)
    kernel = await Kernel(["pandas", "matplotlib.pyplot"]).start()

    async def reads(*cells: str) -> list[str] | None:
        await kernel.run(Job(str(tmp_path), cells, RenderOptions()), 30)
        report = kernel.reads()
        await kernel.reset()
        return None if report is None else [path for path, _, _ in report["files"]]

    try:
        assert await reads("open('b.txt').read()") == [str(tmp_path / "b.txt")]
        assert await reads("x = 1") is None  # nothing read, nothing reported
        captured = "%%capture\nopen('c.txt').read()"  # a cell whose outputs are swallowed
        assert await reads(captured, "import matplotlib.pyplot as plt\nplt.plot([1])") == [
            str(tmp_path / "c.txt")
        ]
        wrote = "open('out.txt', 'w').write('x')\nopen('out.txt').read()\nopen('b.txt').read()"
        assert await reads(wrote) == [str(tmp_path / "b.txt")]  # its own output is not data
    finally:
        await kernel.shutdown()


async def test_the_hook_records_only_while_a_render_runs(tmp_path: Path) -> None:
    """The kernel-side hook, called as the interpreter would call it, in this process."""
    (tmp_path / "data.csv").write_text("1\n")
    side = kernel_side_module()
    opened = ("open", (str(tmp_path / "data.csv"), "r", 0))
    side._audit(*opened)
    assert side._reads == {}
    side._recording = True
    try:
        side._audit(*opened)
        side._audit("open", (str(tmp_path / "new.csv"), "w", 0))
        side._audit("sqlite3.connect", (":memory:",))
        side._audit("os.listdir", (str(tmp_path),))
    finally:
        side._recording = False
    size = (tmp_path / "data.csv").stat()
    assert side._reads == {str(tmp_path / "data.csv"): (size.st_size, size.st_mtime_ns)}
    assert side._written == {str(tmp_path / "new.csv")}


def kernel_side_module() -> types.ModuleType:
    """A fresh copy of the module the kernels run, so its globals are this test's own."""
    spec = importlib.util.find_spec("publisher.kernel_side")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

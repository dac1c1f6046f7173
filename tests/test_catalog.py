"""Finding notebooks: ids, chart tags, titles, ttl, and what makes one broken."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import unicodedata
from pathlib import Path

import nbformat
import pytest

from publisher import catalog as catalog_module
from publisher.api import notebook_json
from publisher.catalog import Catalog
from publisher.errors import BrokenNotebook, NotebooksUnreadable, UnknownChart, UnknownNotebook

from .notebooks import IMPORTS, chart, write_notebook


def test_ids_are_paths_without_suffix_and_hidden_files_are_ignored(reference_dir: Path) -> None:
    ids = Catalog(reference_dir).ids()
    assert "echo" in ids and "nested/deep/inner" in ids
    assert not any(i.startswith(".") or "checkpoint" in i for i in ids)


def test_title_is_the_first_heading(reference_dir: Path) -> None:
    assert Catalog(reference_dir).get("echo").title == "Echo"
    assert Catalog(reference_dir).get("fails").title == "fails"  # no heading: the id


def test_chart_tags_name_charts_in_order(reference_dir: Path) -> None:
    catalog = Catalog(reference_dir)
    notebook, first = catalog.chart("partial")
    assert [c.name for c in notebook.charts] == ["first", "second"]
    assert first.name == "first"
    assert catalog.chart("partial", "second")[1].name == "second"
    with pytest.raises(UnknownChart, match="first, second"):
        catalog.chart("partial", "third")


def test_a_notebook_without_chart_tags_has_one_chart_of_its_last_image(reference_dir: Path) -> None:
    charts = Catalog(reference_dir).get("untagged").charts
    assert [(c.name, c.cell) for c in charts] == [("chart", None)]


@pytest.mark.parametrize(
    "id",
    [
        "../x",
        "a/../echo",
        "nested/../echo",
        "./echo",
        "nested//deep/inner",
        "nested/deep/inner/",
        ".hidden",
        ".ipynb_checkpoints/echo-checkpoint",
        "/etc/passwd",
        "",
        "echo\x00",
    ],
)
def test_ids_that_could_leave_the_folder_are_unknown(reference_dir: Path, id: str) -> None:
    with pytest.raises(UnknownNotebook):
        Catalog(reference_dir).get(id)


def test_a_symlink_out_of_the_folder_is_listed_with_why_and_never_read(tmp_path: Path) -> None:
    outside = write_notebook(tmp_path / "outside.ipynb", [IMPORTS, chart()])
    (tmp_path / "nbs").mkdir()
    os.symlink(outside, tmp_path / "nbs" / "link.ipynb")
    catalog = Catalog(tmp_path / "nbs")
    assert [nb.id for nb in catalog.all()] == ["link"]
    notebook = catalog.get("link")
    assert notebook.error is not None and "outside the notebook folder" in notebook.error.message
    assert notebook.digest == "" and notebook.sources == ()  # not read
    assert str(tmp_path) not in notebook.error.message  # says why, not where it points


def test_a_symlink_to_a_notebook_in_the_folder_is_served(tmp_path: Path) -> None:
    write_notebook(tmp_path / "real.ipynb", [IMPORTS, chart()])
    os.symlink(tmp_path / "real.ipynb", tmp_path / "alias.ipynb")
    assert Catalog(tmp_path).get("alias").error is None


def broken_reason(tmp_path: Path, cells: list, metadata: dict | None = None) -> str:
    write_notebook(tmp_path / "nb.ipynb", cells, metadata)
    notebook = Catalog(tmp_path).get("nb")
    assert isinstance(notebook.error, BrokenNotebook)
    with pytest.raises(BrokenNotebook):
        Catalog(tmp_path).chart("nb")
    return notebook.error.message


def test_two_cells_with_one_chart_name_make_the_notebook_broken(tmp_path: Path) -> None:
    message = broken_reason(tmp_path, [chart(tag="chart:a"), chart(tag="chart:a")])
    assert "chart:a" in message


def test_a_chart_name_with_a_slash_makes_the_notebook_broken(tmp_path: Path) -> None:
    message = broken_reason(tmp_path, [chart(tag="chart:by/region")])
    assert "cannot hold '/'" in message


@pytest.mark.parametrize("kernel", ["cold", True])
def test_a_kernel_that_is_not_warm_or_fresh_makes_the_notebook_broken(
    tmp_path: Path, kernel: object
) -> None:
    message = broken_reason(tmp_path, [chart()], {"publisher": {"kernel": kernel}})
    assert "publisher.kernel" in message


@pytest.mark.parametrize("ttl", [0, -5, "60", True])
def test_a_ttl_that_is_not_a_positive_number_makes_the_notebook_broken(
    tmp_path: Path, ttl: object
) -> None:
    message = broken_reason(tmp_path, [chart()], {"publisher": {"ttl": ttl}})
    assert "ttl" in message


@pytest.mark.parametrize("data", ["data/*.csv", ["/etc/*.csv"], [""], [3], {"a": 1}])
def test_declared_data_that_is_not_a_list_of_relative_globs_makes_the_notebook_broken(
    tmp_path: Path, data: object
) -> None:
    message = broken_reason(tmp_path, [chart()], {"publisher": {"data": data}})
    assert "publisher.data" in message


def test_declared_data_is_read_from_metadata(tmp_path: Path) -> None:
    metadata = {"publisher": {"data": ["data/*.parquet", "lookup.feather"]}}
    write_notebook(tmp_path / "nb.ipynb", [chart()], metadata)
    assert Catalog(tmp_path).get("nb").data == ("data/*.parquet", "lookup.feather")


def test_a_parameters_cell_that_does_not_parse_makes_the_notebook_broken(tmp_path: Path) -> None:
    assert "parameters cell" in broken_reason(tmp_path, [("x = (", ["parameters"]), chart()])


def test_a_file_that_is_not_a_notebook_is_listed_with_its_error(reference_dir: Path) -> None:
    notebook = Catalog(reference_dir).get("unreadable")
    assert notebook.error is not None and "cannot read" in notebook.error.message


def test_ttl_is_read_from_metadata(tmp_path: Path) -> None:
    write_notebook(tmp_path / "live.ipynb", [chart()], {"publisher": {"ttl": 30}})
    assert Catalog(tmp_path).get("live").ttl == 30.0


def test_an_edit_is_seen_after_the_scan_interval_only(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [chart()])
    slow, fast = Catalog(tmp_path, scan_interval=3600), Catalog(tmp_path, scan_interval=0)
    digest = slow.get("nb").digest
    assert fast.get("nb").digest == digest  # both have read it before the edit
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n# edited"
    nbformat.write(nb, path)
    assert slow.get("nb").digest == digest  # no stat within the interval
    assert fast.get("nb").digest != digest


def test_a_broken_notebooks_error_is_raised_fresh_each_time(reference_dir: Path) -> None:
    catalog = Catalog(reference_dir)
    for _ in range(3):
        with pytest.raises(BrokenNotebook):
            catalog.chart("unreadable")
    notebook = catalog.get("unreadable")
    assert notebook.error is not None and notebook.error.__traceback__ is None


def test_a_broken_notebooks_error_keeps_no_frames_of_the_error_it_came_from(
    reference_dir: Path,
) -> None:
    error = Catalog(reference_dir).get("badparams").error
    assert error is not None and "parameters cell" in error.message
    assert error.__traceback__ is None and error.__context__ is None


def test_a_folder_named_like_a_notebook_is_listed_as_broken(tmp_path: Path) -> None:
    (tmp_path / "odd.ipynb").mkdir()
    write_notebook(tmp_path / "odd.ipynb" / "inside.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    assert catalog.ids() == ["odd", "odd.ipynb/inside"]
    notebook = catalog.get("odd")
    assert notebook.error is not None and "cannot read" in notebook.error.message


ODD_NAMES = [
    "Q1 (draft)",
    "sales+costs",
    "-draft",
    "a#b",
    "what?",
    "100% sure",
    "a%2Fb",
    "back\\slash",
    "semi;colon=1&x",
    'it\'s "quoted"',
    "日本語",
    "Ünïcödé résumé",
    "chart 📈",
    "sub folder (old)/x + y",
]


@pytest.mark.parametrize("id", ODD_NAMES)
def test_every_ipynb_file_is_a_notebook_whatever_its_name(tmp_path: Path, id: str) -> None:
    path = write_notebook(tmp_path / f"{id}.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    assert catalog.ids() == [id]
    notebook = catalog.get(id)
    assert notebook.error is None and notebook.path == path


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_a_name_stored_in_nfd_is_listed_and_found_by_its_nfc_id(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / nfd("résumés") / f"{nfd('café')}.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    nfc_id = unicodedata.normalize("NFC", "résumés/café")
    assert nfc_id != nfd(nfc_id)
    assert catalog.ids() == [nfc_id]
    for spelled in (nfc_id, nfd(nfc_id)):  # a browser sends NFC; whatever comes, one notebook
        notebook = catalog.get(spelled)
        assert notebook.id == nfc_id and notebook.error is None and notebook.path == path


def test_names_that_differ_only_in_normalization_are_listed_as_a_conflict(tmp_path: Path) -> None:
    write_notebook(tmp_path / f"{unicodedata.normalize('NFC', 'café')}.ipynb", [chart()])
    write_notebook(tmp_path / f"{nfd('café')}.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    [notebook] = catalog.all()
    assert notebook.id == unicodedata.normalize("NFC", "café")
    assert notebook.error is not None
    message = notebook.error.message
    assert "2 files" in message and "(NFC)" in message and "(NFD)" in message
    with pytest.raises(BrokenNotebook):
        catalog.chart(notebook.id)


def test_a_name_with_a_control_character_is_listed_with_why(tmp_path: Path) -> None:
    write_notebook(tmp_path / "two\nlines.ipynb", [chart()])
    [notebook] = Catalog(tmp_path).all()
    assert notebook.id == "two\\nlines"  # printable wherever it is listed
    assert notebook.error is not None and "control character" in notebook.error.message


def test_a_name_that_is_not_utf8_is_listed_with_why(tmp_path: Path) -> None:
    with open(os.path.join(bytes(tmp_path), b"caf\xe9.ipynb"), "w") as f:  # Latin-1
        f.write("{}")
    [notebook] = Catalog(tmp_path).all()
    assert notebook.id == "caf\ufffd"
    assert notebook.error is not None and "not UTF-8" in notebook.error.message
    json.dumps(notebook_json(notebook), ensure_ascii=False).encode("utf-8")  # the API can list it


def test_a_dangling_symlink_is_listed_with_why(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.ipynb", tmp_path / "link.ipynb")
    [notebook] = Catalog(tmp_path).all()
    assert notebook.id == "link"
    assert notebook.error is not None and "cannot read" in notebook.error.message


def test_a_symlink_loop_is_listed_with_why_and_the_rest_is_served(tmp_path: Path) -> None:
    write_notebook(tmp_path / "ok.ipynb", [chart()])
    os.symlink("self.ipynb", tmp_path / "self.ipynb")
    os.symlink("b.ipynb", tmp_path / "a.ipynb")
    os.symlink("a.ipynb", tmp_path / "b.ipynb")
    catalog = Catalog(tmp_path)
    listing = catalog.scan()  # the background scan: it must not fail for one file
    by_id = {nb.id: nb for nb in listing.notebooks}
    assert set(by_id) == {"ok", "self", "a", "b"}
    assert by_id["ok"].error is None
    for id in ("self", "a", "b"):
        error = by_id[id].error
        assert error is not None and "symbolic links" in error.message


def test_a_file_removed_between_the_walk_and_its_stat_is_gone_not_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "stays.ipynb", [chart()])
    write_notebook(tmp_path / "goes.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    walk = catalog._walk

    def walk_then_remove() -> dict[str, object]:
        found = walk()
        (tmp_path / "goes.ipynb").unlink()
        return found

    monkeypatch.setattr(catalog, "_walk", walk_then_remove)
    assert [nb.id for nb in catalog.scan().notebooks] == ["stays"]


def test_a_same_size_replacement_in_one_timestamp_tick_is_still_seen(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [chart("ax.plot([1, 2])")])
    catalog = Catalog(tmp_path, scan_interval=0)
    before = catalog.get("nb")
    stat = path.stat()
    replacement = tmp_path / "new.tmp"
    write_notebook(replacement, [chart("ax.plot([2, 1])")])
    assert replacement.stat().st_size == stat.st_size
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)  # a new inode, the same size and mtime
    assert catalog.get("nb").digest != before.digest


def test_listing_walks_the_folder_once_however_short_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        write_notebook(tmp_path / f"nb{i}.ipynb", [chart()])
    catalog = Catalog(tmp_path, scan_interval=0)
    walk, walks = catalog._walk, []

    def counted() -> dict:
        walks.append(1)
        return walk()

    monkeypatch.setattr(catalog, "_walk", counted)
    assert len(catalog.all()) == 5 and len(walks) == 1


def test_ids_and_listings_are_in_natural_order(tmp_path: Path) -> None:
    for id in ["Report 10", "Report 2", "team10/x", "team2/x", "Report 1"]:
        write_notebook(tmp_path / f"{id}.ipynb", [chart()])
    expected = ["Report 1", "Report 2", "Report 10", "team2/x", "team10/x"]
    assert Catalog(tmp_path).ids() == expected
    assert [nb.id for nb in Catalog(tmp_path).all()] == expected


def watched(folder: Path) -> Catalog:
    """A catalog as the server keeps it: scanned, and then only read by requests."""
    catalog = Catalog(folder, scan_interval=0)
    catalog.scan()
    catalog.watched = True
    return catalog


def test_a_watched_catalog_answers_without_a_file_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "nb.ipynb", [chart()])
    catalog = watched(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file system call on a request's path")

    for name in ("stat", "lstat", "scandir", "walk", "open"):
        monkeypatch.setattr(os, name, refuse)
    for name in ("stat", "read_bytes", "resolve"):
        monkeypatch.setattr(Path, name, refuse)
    assert catalog.get("nb").error is None
    assert [nb.id for nb in catalog.all()] == ["nb"]
    with pytest.raises(UnknownNotebook):
        catalog.get("nope")  # an unknown id from a URL walks nothing either


def test_a_scan_reads_again_only_the_notebook_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [write_notebook(tmp_path / f"nb{i}.ipynb", [chart()]) for i in range(5)]
    catalog = Catalog(tmp_path, scan_interval=0)
    first = catalog.scan()
    loads: list[str] = []
    load = catalog_module.load
    monkeypatch.setattr(catalog_module, "load", lambda id, path: loads.append(id) or load(id, path))

    assert catalog.scan() is first and loads == []  # nothing changed: nothing read or rebuilt
    write_notebook(paths[3], [chart("ax.plot([3, 1])")])
    second = catalog.scan()
    assert loads == ["nb3"]
    assert second is not first and second.get("nb0") is first.get("nb0")
    assert second.get("nb3") is not first.get("nb3")


def test_files_that_cannot_be_served_do_not_rebuild_the_listing(tmp_path: Path) -> None:
    (tmp_path / "nbs").mkdir()
    folder = tmp_path / "nbs"
    (folder / "folder.ipynb").mkdir()
    (folder / "junk.ipynb").write_text("not json")
    os.symlink(tmp_path / "gone.ipynb", folder / "dangling.ipynb")
    os.symlink(write_notebook(tmp_path / "out.ipynb", [chart()]), folder / "outside.ipynb")
    catalog = Catalog(folder, scan_interval=0)
    first = catalog.scan()
    assert len(first) == 4 and all(nb.error is not None for nb in first.notebooks)
    assert catalog.scan() is first


async def test_refresh_scans_in_a_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = Catalog(tmp_path)
    threads: list[threading.Thread] = []
    scan = catalog.scan
    monkeypatch.setattr(
        catalog, "scan", lambda: threads.append(threading.current_thread()) or scan()
    )
    await catalog.refresh()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


async def test_before_its_first_scan_ends_a_listing_waits_and_a_notebook_is_read_alone(
    tmp_path: Path,
) -> None:
    write_notebook(tmp_path / "nb.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    catalog.watched = True  # as the server sets it when its background task starts
    waiting = asyncio.ensure_future(catalog.current())
    await asyncio.sleep(0)  # let it run until it blocks
    assert not waiting.done()
    assert catalog.get("nb").error is None  # a chart request need not wait for every notebook
    await catalog.refresh()
    assert [nb.id for nb in (await waiting).notebooks] == ["nb"]


async def test_scanned_waits_for_a_scan_that_starts_after_it(tmp_path: Path) -> None:
    catalog = watched(tmp_path)
    running = asyncio.ensure_future(catalog.refresh())
    await asyncio.sleep(0)
    write_notebook(tmp_path / "new.ipynb", [chart()])  # the scan under way may miss it
    waiter = asyncio.ensure_future(catalog.scanned())
    await running
    await asyncio.sleep(0)
    assert not waiter.done()
    await catalog.refresh()  # what the server's background task does every scan_interval
    await waiter
    assert catalog.get("new").error is None


async def test_a_failed_scan_wakes_its_waiters_and_the_next_one_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "nb.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    catalog.watched = True
    waiter = asyncio.ensure_future(catalog.scanned())
    await asyncio.sleep(0)
    scan = catalog.scan
    monkeypatch.setattr(catalog, "scan", lambda: 1 / 0)
    await catalog.refresh()  # a bug: logged with its traceback once, and requests not left hanging
    assert catalog.scan_error == "the notebooks could not be read (ZeroDivisionError)"
    await waiter  # not left waiting for a scan that will never end
    catalog.check_readable()  # a bug of the scan says nothing of the folder: renders go on
    catalog.scan_interval = 60
    assert catalog.retry_after == 60  # the next scan is what can clear a 503
    monkeypatch.setattr(catalog, "scan", scan)
    await catalog.refresh()
    assert [nb.id for nb in (await catalog.current()).notebooks] == ["nb"]
    assert catalog.scan_error is None


async def test_a_folder_gone_keeps_the_last_listing_and_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unmounted or removed folder is a failed scan, not a folder without notebooks."""
    folder = tmp_path / "notebooks"
    write_notebook(folder / "nb.ipynb", [chart()])
    catalog = watched(folder)
    folder.rename(tmp_path / "away")
    with caplog.at_level(logging.INFO, logger="publisher.catalog"):
        for _ in range(3):
            await catalog.refresh()
        assert catalog.scan_error == GONE
        assert catalog.scan_failing_since is not None
        assert [nb.id for nb in (await catalog.current()).notebooks] == ["nb"]
        assert catalog.get("nb").error is None
        (tmp_path / "away").rename(folder)
        await catalog.refresh()
    assert catalog.scan_error is None and catalog.scan_failing_since is None
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [f"{GONE}: {folder}", f"the notebook folder {folder} reads again"]


def test_a_folder_removed_while_in_use_is_not_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bind mount whose source was deleted lists empty, and has no links left."""
    write_notebook(tmp_path / "nb.ipynb", [chart()])
    catalog = watched(tmp_path)
    real_scandir, real_stat = os.scandir, os.stat
    deleted = os.stat_result((0o40755, 1, 1, 0, 0, 0, 0, 0, 0, 0))  # st_nlink 0

    def scandir(path: str) -> object:
        return real_scandir(tmp_path / "empty") if path == str(tmp_path) else real_scandir(path)

    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(
        os, "stat", lambda p, **k: deleted if p == str(tmp_path) else real_stat(p, **k)
    )
    with pytest.raises(NotebooksUnreadable, match="was removed"):
        catalog.scan()
    listing = catalog.latest
    assert listing is not None and [nb.id for nb in listing.notebooks] == ["nb"]
    monkeypatch.setattr(os, "stat", real_stat)
    assert len(catalog.scan()) == 0  # a folder that is merely empty now: nothing to serve


GONE = "the notebook folder cannot be read (No such file or directory)"


async def test_before_any_read_a_folder_that_cannot_be_read_is_a_503(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "notebooks")  # not there (any more)
    catalog.watched = True
    waiting = asyncio.ensure_future(catalog.current())
    await asyncio.sleep(0)
    await catalog.refresh()
    with pytest.raises(NotebooksUnreadable) as raised:
        await waiting
    assert raised.value.status == 503 and raised.value.retry_after == 5
    with pytest.raises(NotebooksUnreadable):  # and a render would wait
        catalog.check_readable()
    assert str(tmp_path) not in raised.value.message  # no server path for the asker
    with pytest.raises(NotebooksUnreadable):  # a chart's lookup alone, before any read
        catalog.get("nb")


def test_a_folder_that_cannot_be_read_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_notebook(tmp_path / "open" / "a.ipynb", [chart()])
    write_notebook(tmp_path / "closed" / "b.ipynb", [chart()])
    scandir = os.scandir

    def refuse_closed(path: str) -> object:
        if path.endswith("closed"):
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_closed)
    assert Catalog(tmp_path).ids() == ["open/a"]


def test_an_entry_that_cannot_be_stated_is_not_a_folder() -> None:
    class Vanished:
        def is_dir(self, follow_symlinks: bool = True) -> bool:
            raise FileNotFoundError(2, "No such file or directory")

    assert catalog_module._is_folder(Vanished()) is False  # type: ignore[arg-type]


def test_a_url_path_names_a_chart_of_a_notebook_or_a_notebook_in_one_lookup(
    tmp_path: Path,
) -> None:
    write_notebook(tmp_path / "sales.ipynb", [chart(tag="chart:trend"), chart(tag="chart:mix")])
    write_notebook(tmp_path / "sales" / "regions.ipynb", [chart()])
    catalog = Catalog(tmp_path)
    notebook, found = catalog.find("sales/trend")
    assert (notebook.id, found.name) == ("sales", "trend")
    notebook, found = catalog.find("sales/regions")  # no chart of that name: the notebook
    assert (notebook.id, found.name) == ("sales/regions", "chart")
    assert catalog.find("sales")[1].name == "trend"  # a notebook alone: its first chart
    with pytest.raises(UnknownChart, match="trend, mix"):
        catalog.find("sales/nothing")
    with pytest.raises(UnknownNotebook, match="no notebook 'elsewhere'"):
        catalog.find("elsewhere/trend")

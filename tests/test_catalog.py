"""Finding notebooks: ids, chart tags, titles, ttl, and what makes one broken."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from publisher.catalog import Catalog
from publisher.errors import BrokenNotebook, UnknownChart, UnknownNotebook

from .notebooks import IMPORTS, chart, write_notebook


def test_ids_are_paths_without_suffix_and_hidden_files_are_ignored(reference_dir: Path) -> None:
    ids = Catalog(reference_dir).ids()
    assert "echo" in ids and "nested/deep/inner" in ids
    assert not any(i.startswith(".") or "checkpoint" in i for i in ids)


def test_title_is_the_first_heading(reference_dir: Path) -> None:
    assert Catalog(reference_dir).get("echo").title == "Echo"
    assert Catalog(reference_dir).get("fails").title == "fails"  # no heading: the id


def test_chart_tags_name_charts_in_order(reference_dir: Path) -> None:
    notebook = Catalog(reference_dir).get("partial")
    assert [c.name for c in notebook.charts] == ["first", "second"]
    assert notebook.chart().name == "first"
    with pytest.raises(UnknownChart, match="first, second"):
        notebook.chart("third")


def test_a_notebook_without_chart_tags_has_one_chart_of_its_last_image(reference_dir: Path) -> None:
    charts = Catalog(reference_dir).get("untagged").charts
    assert [(c.name, c.cell) for c in charts] == [("chart", None)]


@pytest.mark.parametrize("id", ["../x", "a/../echo", ".hidden", "/etc/passwd", "", "echo\x00"])
def test_ids_that_could_leave_the_folder_are_unknown(reference_dir: Path, id: str) -> None:
    with pytest.raises(UnknownNotebook):
        Catalog(reference_dir).get(id)


def test_a_symlink_out_of_the_folder_is_unknown(tmp_path: Path) -> None:
    outside = write_notebook(tmp_path / "outside.ipynb", [IMPORTS, chart()])
    (tmp_path / "nbs").mkdir()
    os.symlink(outside, tmp_path / "nbs" / "link.ipynb")
    with pytest.raises(UnknownNotebook):
        Catalog(tmp_path / "nbs").get("link")


def broken_reason(tmp_path: Path, cells: list, metadata: dict | None = None) -> str:
    write_notebook(tmp_path / "nb.ipynb", cells, metadata)
    notebook = Catalog(tmp_path).get("nb")
    assert isinstance(notebook.error, BrokenNotebook)
    with pytest.raises(BrokenNotebook):
        notebook.chart()
    return notebook.error.message


def test_two_cells_with_one_chart_name_make_the_notebook_broken(tmp_path: Path) -> None:
    message = broken_reason(tmp_path, [chart(tag="chart:a"), chart(tag="chart:a")])
    assert "chart:a" in message


@pytest.mark.parametrize("ttl", [0, -5, "60", True])
def test_a_ttl_that_is_not_a_positive_number_makes_the_notebook_broken(
    tmp_path: Path, ttl: object
) -> None:
    message = broken_reason(tmp_path, [chart()], {"publisher": {"ttl": ttl}})
    assert "ttl" in message


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
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n# edited"
    nbformat.write(nb, path)
    assert slow.get("nb").digest == digest  # no stat within the interval
    assert fast.get("nb").digest != digest


def test_a_broken_notebooks_error_is_raised_fresh_each_time(reference_dir: Path) -> None:
    notebook = Catalog(reference_dir).get("unreadable")
    for _ in range(3):
        with pytest.raises(BrokenNotebook):
            notebook.chart()
    assert notebook.error is not None and notebook.error.__traceback__ is None


def test_a_folder_named_like_a_notebook_is_broken_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "odd.ipynb").mkdir()
    notebook = Catalog(tmp_path).get("odd")
    assert notebook.error is not None and "cannot read" in notebook.error.message

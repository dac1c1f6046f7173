"""Natural order, the folder tree, search and pages, on notebooks made in memory."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import MultiDict

from publisher.browse import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Criteria,
    Listing,
    api_criteria,
    natural_key,
    page_criteria,
    page_of,
    path_key,
)
from publisher.catalog import Chart, Notebook
from publisher.errors import BadRequest, NotFound
from publisher.parameters import Parameter


def notebook(
    id: str, title: str = "", charts: tuple[str, ...] = ("chart",), params: tuple[str, ...] = ()
) -> Notebook:
    return Notebook(
        id=id,
        path=Path(f"/nowhere/{id}.ipynb"),
        digest="",
        mtime=0,
        title=title or id,
        charts=tuple(Chart(name, None) for name in charts),
        parameters=tuple(Parameter(name, "int", 1) for name in params),
    )


def listing(*ids: str) -> Listing:
    return Listing(notebook(id) for id in ids)


def test_numbers_sort_by_value() -> None:
    titles = ["Report 10", "Report 2", "Report 1", "Report 100", "Report 11"]
    assert sorted(titles, key=natural_key) == [
        "Report 1",
        "Report 2",
        "Report 10",
        "Report 11",
        "Report 100",
    ]


def test_case_aside_and_ties_broken_by_the_text() -> None:
    names = ["banana", "Apple", "apple", "Report 01", "Report 1", "report 1"]
    assert sorted(names, key=natural_key) == [
        "Apple",
        "apple",
        "banana",
        "Report 01",
        "Report 1",
        "report 1",
    ]


def test_a_number_too_long_for_int_still_sorts() -> None:
    huge, larger = "9" * 5000, "1" + "0" * 5000
    assert sorted([f"x {larger}", f"x {huge}", "x 7"], key=natural_key) == [
        "x 7",
        f"x {huge}",
        f"x {larger}",
    ]


def test_a_folders_notebooks_stay_together() -> None:
    ids = ["a/x", "a b/y", "a/z", "a", "a-b/w", "a10/v", "a2/u"]
    assert sorted(ids, key=path_key) == ["a", "a/x", "a/z", "a2/u", "a10/v", "a b/y", "a-b/w"]


def test_the_tree_counts_each_folders_notebooks() -> None:
    found = listing("top", "team2/a", "team2/sub/b", "team2/sub/c", "team10/d", "team2/sub/deep/e")
    root = found.folder("")
    assert root.folders == ("team2", "team10")
    assert [nb.id for nb in root.notebooks] == ["top"]
    team2 = found.folder("team2")
    assert (team2.name, len(team2.notebooks), team2.total) == ("team2", 1, 4)
    assert found.folder("/team2/sub/").total == 3  # slashes around a path are the same folder
    assert found.folder("team2/sub/deep").parents == ["", "team2", "team2/sub"]


def test_an_unknown_folder_is_not_found() -> None:
    found = listing("a/b")
    for path in ("nope", "a/b", "b"):  # a notebook is not a folder
        with pytest.raises(NotFound):
            found.folder(path)


folder_names = st.sampled_from(["a", "b", "a b", "a10", "a2", "B", "é", "x.ipynb"])
ids = st.lists(folder_names, min_size=1, max_size=4).map("/".join)


@given(st.sets(ids, min_size=1, max_size=40))
def test_a_folders_span_is_exactly_the_notebooks_below_it(chosen: set[str]) -> None:
    found = listing(*chosen)
    assert [nb.id for nb in found.notebooks] == sorted(chosen, key=path_key)
    for path, folder in found.folders.items():
        below = sorted((id for id in chosen if id.startswith(f"{path}/") or not path), key=path_key)
        assert [nb.id for nb in found.find("", path)] == below
        assert folder.total == len(below)
        assert {nb.id for nb in folder.notebooks} == {
            id for id in chosen if id.rpartition("/")[0] == path
        }
        assert list(folder.folders) == sorted(folder.folders, key=path_key)


SEARCHED = Listing(
    [
        notebook("sales/q1", "Quarterly Revenue", charts=("by_region",), params=("year",)),
        notebook("sales/q2", "Costs", charts=("waterfall",), params=("discount_rate",)),
        notebook("ops/revenue notes", "Notes"),
        notebook("ops/Café", "Café"),
    ]
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("quarterly", ["sales/q1"]),
        ("REVENUE", ["ops/revenue notes", "sales/q1"]),  # in an id, in a title
        ("sales/q2", ["sales/q2"]),
        ("WaterFall", ["sales/q2"]),
        ("discount", ["sales/q2"]),
        ("year quarterly", ["sales/q1"]),  # every word, in any field
        ("year costs", []),
        (unicodedata.normalize("NFD", "café"), ["ops/Café"]),
        ("   ", ["ops/Café", "ops/revenue notes", "sales/q1", "sales/q2"]),
    ],
)
def test_search_matches_title_id_chart_and_parameter_names(query: str, expected: list[str]) -> None:
    assert [nb.id for nb in SEARCHED.find(query)] == expected


def test_a_match_in_title_or_id_comes_before_one_in_a_chart_or_parameter_name() -> None:
    found = Listing([notebook("a", charts=("sales",)), notebook("b", "Sales")])
    assert [nb.id for nb in found.find("sales")] == ["b", "a"]


def test_search_within_a_folder() -> None:
    assert [nb.id for nb in SEARCHED.find("revenue", "ops")] == ["ops/revenue notes"]


def test_folders_are_found_by_their_path() -> None:
    found = listing("team2/x", "team2/sub/y", "team10/z", "other/w")
    assert [f.path for f in found.find_folders("TEAM")] == ["team2", "team2/sub", "team10"]
    assert [f.path for f in found.find_folders("sub", "team2")] == ["team2/sub"]
    assert found.find_folders("") == []


def test_a_long_search_is_refused() -> None:
    with pytest.raises(BadRequest, match="at most 200"):
        SEARCHED.find("x" * 201)


def test_pages_know_their_neighbours() -> None:
    items = list(range(120))
    first, last = page_of(items, 0, 50), page_of(items, 100, 50)
    assert (first.number, first.pages, first.previous_offset, first.next_offset) == (1, 3, None, 50)
    assert (list(last.items), last.number, last.next_offset) == (list(range(100, 120)), 3, None)
    assert page_of(items, 30, 50).previous_offset == 0
    assert page_of([], 0, 50).pages == 1


def test_api_criteria_default_and_read() -> None:
    assert api_criteria(MultiDict()) is None  # the bare URL: every notebook
    assert api_criteria(MultiDict(other="1")) is None
    assert api_criteria(MultiDict(offset="0")) == Criteria(limit=DEFAULT_LIMIT)
    assert api_criteria(MultiDict(q="x")) == Criteria(query="x", limit=DEFAULT_LIMIT)
    read = api_criteria(MultiDict(q="x", folder="a/b", offset="7", limit=str(MAX_LIMIT)))
    assert read is not None
    assert (read.query, read.folder, read.offset, read.limit) == ("x", "a/b", 7, MAX_LIMIT)


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": str(MAX_LIMIT + 1)},
        {"limit": "x"},
        {"limit": "٣"},  # a digit, but not one a URL means
        {"offset": "-1"},
        {"offset": "1" * 10},
    ],
)
def test_api_criteria_refuse_bad_numbers(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match=next(iter(query))):
        api_criteria(MultiDict(query))


def test_a_gallery_page_is_counted_from_one() -> None:
    assert page_criteria(MultiDict(page="3"), 50).offset == 100
    with pytest.raises(BadRequest, match="page"):
        page_criteria(MultiDict(page="0"), 50)
    with pytest.raises(BadRequest, match="folder"):
        page_criteria(MultiDict([("folder", "a"), ("folder", "b")]), 50)

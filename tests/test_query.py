"""Reading a query string: every value typed, defaults filled in, limits on raw text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from publisher.catalog import Notebook
from publisher.errors import BadRequest
from publisher.keys import render_key
from publisher.parameters import read_parameters
from publisher.query import NOTEBOOK_DEFAULT, read_query
from publisher.settings import Settings

SETTINGS = Settings()


def notebook(parameters: str) -> Notebook:
    params = read_parameters(parameters)
    return Notebook("nb", Path("nb.ipynb"), "digest", 0, parameters=params, parameters_cell=0)


def key(nb: Notebook, items: list[tuple[str, str]]) -> str:
    query = read_query(nb, items, "png", SETTINGS)
    return render_key(nb.id, nb.digest, "chart", query.values, query.options)


def test_only_values_that_differ_from_the_default_are_injected_as_papermill_does() -> None:
    nb = notebook("x: float = 1\nn = 2\nflag = True")
    query = read_query(nb, [("n", "3"), ("x", "1"), ("flag", "true")], "png", SETTINGS)
    assert query.injected == {"n": 3}
    assert query.values == {"x": 1.0, "n": 3, "flag": True}
    assert key(nb, [("x", "1"), ("flag", "true")]) == key(nb, [])


def test_a_default_with_no_url_form_is_left_to_the_notebook_and_keyed_apart() -> None:
    nb = notebook("opts = {'a': 1}")
    bare = read_query(nb, [], "png", SETTINGS)
    assert bare.values == {"opts": NOTEBOOK_DEFAULT} and bare.injected == {}
    assert key(nb, []) != key(nb, [("opts", "None")])


def test_the_same_content_in_two_folders_has_two_keys() -> None:
    nb = notebook("n = 1")
    other = Notebook("copy/nb", Path("copy/nb.ipynb"), nb.digest, 0, parameters=nb.parameters)
    query = read_query(nb, [], "png", SETTINGS)
    assert render_key(nb.id, nb.digest, "c", query.values, query.options) != render_key(
        other.id, other.digest, "c", query.values, query.options
    )


def test_too_many_keys_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="too many query keys"):
        read_query(notebook("n = 1"), [(f"k{i}", "1") for i in range(40)], "png", SETTINGS)


def test_reading_a_url_needs_nothing_that_drives_kernels() -> None:
    probe = (
        "import sys, publisher.query, publisher.keys, publisher.inject\n"
        "print(sorted(m for m in ('nbclient', 'jupyter_client', 'publisher.executor')"
        " if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"

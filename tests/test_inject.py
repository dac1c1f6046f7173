"""Values become literals, and a chart's cells become as few executions as is safe."""

from __future__ import annotations

import ast
import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from publisher.catalog import Chart, Notebook
from publisher.inject import cells_to_run, injected_cell, literal, merged

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


@given(VALUES)
def test_a_literal_evaluates_to_exactly_its_value(value: object) -> None:
    source = literal(value)  # type: ignore[arg-type]
    tree = ast.parse(source, mode="eval")
    result = eval(compile(tree, "<literal>", "eval"), {"__builtins__": {"float": float}})
    assert same(result, value)


def test_the_injected_cell_assigns_each_value() -> None:
    assert injected_cell({"year": 2024, "name": "a'b"}).splitlines()[1:] == [
        "year = 2024",
        'name = "a\'b"',
    ]


def notebook(*sources: str, parameters_cell: int | None = 1) -> Notebook:
    path = Path("nb.ipynb")
    return Notebook("nb", path, "d", 0, sources=sources, parameters_cell=parameters_cell)


def test_cells_before_the_chart_run_as_one_execution_with_the_values() -> None:
    nb = notebook("import x", "year = 1", "prep()", "chart()", "after()")
    cells = cells_to_run(nb, Chart("c", 3), {"year": 2})
    assert cells == ("import x\nyear = 1\n" + injected_cell({"year": 2}) + "\nprep()", "chart()")


def test_a_notebook_without_chart_tags_runs_every_cell_apart() -> None:
    nb = notebook("a()", "year = 1", "b()")
    assert cells_to_run(nb, Chart("chart", None), {}) == ("a()", "year = 1", "b()")


def test_a_cell_magic_keeps_its_cell_to_itself() -> None:
    cells = ["a()", "%%capture out\nb()", "c()", "  %%time\nd()", "e()"]
    assert merged(cells) == ["a()", "%%capture out\nb()", "c()", "  %%time\nd()", "e()"]
    assert merged(["a()", "", "b()"]) == ["a()\nb()"]


def test_values_are_not_injected_after_the_chart_they_cannot_reach() -> None:
    nb = notebook("chart()", "year = 1", parameters_cell=1)
    assert cells_to_run(nb, Chart("c", 0), {"year": 2}) == ("chart()",)

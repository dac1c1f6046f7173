"""Parameter values become a cell of Python literals, the way papermill injects them.

A value is data: it reaches the kernel as ``repr`` of an already-typed Python
value, never as text from the URL, so no query string can become code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .catalog import Chart, Notebook
from .parameters import Value


def literal(value: Value) -> str:
    """Python source that evaluates to exactly ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    raise TypeError(f"not a parameter value: {type(value).__name__}")


def injected_cell(values: Mapping[str, Value]) -> str:
    lines = ["# Parameters (injected by publisher)"]
    lines += [f"{name} = {literal(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def cells_to_run(notebook: Notebook, chart: Chart, values: Mapping[str, Value]) -> tuple[str, ...]:
    """The code cells a render needs: up to the chart's cell, with values after the parameters cell.

    Cells after the chart's cell do not run; a notebook without chart tags runs
    whole, since its chart is its last image.
    """
    end = len(notebook.sources) if chart.cell is None else chart.cell + 1
    cells = list(notebook.sources[:end])
    if values and notebook.parameters_cell is not None and notebook.parameters_cell < end - 1:
        cells.insert(notebook.parameters_cell + 1, injected_cell(values))
    if chart.cell is None:
        return tuple(cells)  # every cell's images count: keep each cell's outputs apart
    return (*merged(cells[:-1]), cells[-1])


def merged(cells: list[str]) -> list[str]:
    """Cells before the chart's, joined into as few executions as their semantics allow.

    Only the chart cell's outputs are read, and each execution is a round
    trip to the kernel, so consecutive cells run as one; a cell that starts
    with a cell magic (``%%``) runs alone, since the magic takes the whole cell.
    """
    blocks: list[list[str]] = []
    for source in cells:
        if not source.strip():
            continue
        if not blocks or cell_magic(source) or cell_magic(blocks[-1][0]):
            blocks.append([source])
        else:
            blocks[-1].append(source)
    return ["\n".join(block) for block in blocks]


def cell_magic(source: str) -> bool:
    return source.lstrip().startswith("%%")

"""The JSON description of notebooks, shared by ``/api/notebooks``, the gallery and ``list``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .catalog import Notebook
from .extract import FORMATS
from .signing import Signer


def chart_path(notebook_id: str, chart: str, fmt: str = "png") -> str:
    """The path of a chart, its id percent-encoded so the router gives back the same id.

    ``quote`` leaves only ``/`` (the id's folders) and unreserved characters
    as they are: a ``+``, ``#``, ``?``, ``%`` or space in a file name, and any
    script (as UTF-8), cannot be read as anything else on the way back.
    """
    return f"/charts/{quote(notebook_id)}/{quote(chart)}.{fmt}"


def notebook_json(notebook: Notebook, signer: Signer | None = None) -> dict[str, Any]:
    """Everything a person or a tool needs to embed this notebook's charts.

    With signing on, the chart URLs are signed defaults: the API shows what
    the server would render anyway, and signs nothing a caller chose.
    """
    sign = signer.sign if signer is not None else (lambda url: url)
    body: dict[str, Any] = {
        "id": notebook.id,
        "title": notebook.title,
        "ttl": notebook.ttl,
        "parameters": [p.to_json() for p in notebook.parameters],
        "charts": [
            {
                "name": chart.name,
                "url": sign(chart_path(notebook.id, chart.name)),
                "urls": {fmt: sign(chart_path(notebook.id, chart.name, fmt)) for fmt in FORMATS},
            }
            for chart in notebook.charts
        ],
        "error": notebook.error.body()["error"] if notebook.error else None,
    }
    return body

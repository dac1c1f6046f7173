"""The JSON description of notebooks and folders, shared by the API, the gallery and ``list``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from .browse import Folder, Listing, Page
from .catalog import Notebook, shown_name
from .data import Data
from .extract import FORMATS
from .signing import Signer


def chart_path(notebook_id: str, chart: str, fmt: str = "png") -> str:
    """The path of a chart, its id percent-encoded so the router gives back the same id.

    ``quote`` leaves only ``/`` (the id's folders) and unreserved characters
    as they are: a ``+``, ``#``, ``?``, ``%`` or space in a file name, and any
    script (as UTF-8), cannot be read as anything else on the way back.
    """
    return f"/charts/{quote(notebook_id)}/{quote(chart)}.{fmt}"


def notebook_json(
    notebook: Notebook, signer: Signer | None = None, data: Mapping[str, Data] | None = None
) -> dict[str, Any]:
    """Everything a person or a tool needs to embed this notebook's charts.

    With signing on, the chart URLs are signed defaults: the API shows what
    the server would render anyway, and signs nothing a caller chose.
    ``data``: each chart's data files as its last render read them, when
    there is one to tell of.
    """
    data = data or {}
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
                "data": data_json(data[chart.name], notebook) if chart.name in data else None,
            }
            for chart in notebook.charts
        ],
        "error": notebook.error.body()["error"] if notebook.error else None,
    }
    return body


def data_json(data: Data, notebook: Notebook) -> dict[str, Any]:
    """The files a render read, named relative to the notebook's folder.

    A file outside the notebooks' folder is named by its file name alone: the
    API does not show where else on the server it lives.
    """
    folder = str(notebook.folder)
    root = str(notebook.path.parents[notebook.id.count("/")])

    def name(path: str) -> str:
        inside = os.path.commonpath([path, root]) == root
        return shown_name(os.path.relpath(path, folder) if inside else os.path.basename(path))

    return {
        "files": [
            {"path": name(f.path), "size": f.size, "modified": f.mtime_ns / 1e9} for f in data.files
        ],
        "globs": [name(g.pattern) for g in data.globs],
        "dropped": data.dropped,
    }


def page_json(
    page: Page[Notebook], signer: Signer | None, link: Callable[[int], str]
) -> dict[str, Any]:
    """One page of notebooks, how many there are in all, and the paths of its neighbours.

    ``link`` turns an offset into the URL of that page, with the request's other keys kept.
    """
    return {
        "notebooks": [notebook_json(notebook, signer) for notebook in page.items],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next": link(page.next_offset) if page.next_offset is not None else None,
        "previous": link(page.previous_offset) if page.previous_offset is not None else None,
    }


def folder_json(listing: Listing, top: Folder) -> str:
    """A folder and every folder below it, with how many notebooks each holds, as JSON text.

    ``notebooks`` counts those directly inside, ``total`` those at any depth.
    Written out with a stack rather than by ``json.dumps`` of nested dicts,
    which recurses once per level: a folder tree can be deeper than Python's
    stack (a 600-deep one was a 500).
    """
    parts: list[str] = []
    pending: list[Folder | str] = [top]  # a folder to open, or text to write
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        head = {"path": item.path, "name": item.name, "notebooks": len(item.notebooks)}
        head |= {"total": item.total, "folders": []}
        parts.append(json.dumps(head, ensure_ascii=False)[: -len("]}")])  # left open
        pending.append("]}")
        for i in reversed(range(len(item.folders))):
            pending.append(listing.folders[item.folders[i]])
            if i:
                pending.append(", ")
    return "".join(parts)

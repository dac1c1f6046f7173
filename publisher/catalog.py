"""Which notebooks exist, and what each one publishes.

The catalog reads a notebook file once per edit: a notebook is looked at again
only when ``scan_interval`` has passed and its size or mtime changed, so a
cache hit costs no file system call while an edited notebook still shows up
within a second, without a restart.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .errors import BrokenNotebook, PublisherError, UnknownChart, UnknownNotebook
from .parameters import Parameter, read_parameters

SUFFIX = ".ipynb"
_ID = re.compile(r"^\w[\w.\- ]*(/\w[\w.\- ]*)*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Chart:
    """A published image: the output of one tagged cell, or of the whole notebook."""

    name: str
    cell: int | None  # index of the tagged cell; None means "the notebook's last image"


@dataclass(frozen=True)
class Notebook:
    id: str
    path: Path
    digest: str  # of the file's bytes: the cache follows the notebook's content
    mtime: float
    title: str = ""
    sources: tuple[str, ...] = ()  # code cells only, in order
    parameters: tuple[Parameter, ...] = ()
    parameters_cell: int | None = None  # index into ``sources``
    charts: tuple[Chart, ...] = ()
    ttl: float | None = None
    error: PublisherError | None = field(default=None, compare=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def chart(self, name: str | None = None) -> Chart:
        """The named chart, or the first one when no name is given."""
        if self.error is not None:
            raise copy.copy(self.error)  # the stored one must not collect tracebacks
        if name is None:
            return self.charts[0]
        for chart in self.charts:
            if chart.name == name:
                return chart
        names = ", ".join(c.name for c in self.charts)
        raise UnknownChart(
            f"notebook '{self.id}' has no chart '{name}' (charts: {names})",
            charts=[c.name for c in self.charts],
        )

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)


def load(id: str, path: Path) -> Notebook:
    """Read one notebook file; a broken one comes back with its error instead of raising."""
    try:
        stat = path.stat()
        raw = path.read_bytes()
    except OSError as e:  # a folder named *.ipynb, a file we may not read
        return Notebook(
            id=id,
            path=path,
            digest="",
            mtime=0,
            title=id,
            error=BrokenNotebook(f"cannot read notebook '{id}': {e.strerror}"),
        )
    digest = hashlib.sha256(raw).hexdigest()
    base = Notebook(id=id, path=path, digest=digest, mtime=stat.st_mtime)
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        return _describe(base, nb)
    except BrokenNotebook as e:
        return _with_error(base, e)
    except Exception as e:  # nbformat raises many kinds; all mean the same to a user
        return _with_error(base, BrokenNotebook(f"cannot read notebook '{id}': {e}"))


def _with_error(base: Notebook, error: PublisherError) -> Notebook:
    error = error.with_traceback(None)  # kept as long as the file: keep no frames with it
    return Notebook(
        id=base.id, path=base.path, digest=base.digest, mtime=base.mtime, title=base.id, error=error
    )


def _describe(base: Notebook, nb: Any) -> Notebook:
    sources: list[str] = []
    charts: dict[str, Chart] = {}
    parameters_cell: int | None = None
    parameters: tuple[Parameter, ...] = ()
    title = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not title:
            match = _HEADING.search(cell.source)
            title = match.group(1) if match else ""
        if cell.cell_type != "code":
            continue
        index = len(sources)
        sources.append(cell.source)
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and parameters_cell is None:
            parameters_cell = index
            try:
                parameters = read_parameters(cell.source)
            except BrokenNotebook as e:
                raise BrokenNotebook(
                    f"notebook '{base.id}': parameters cell: {e.message}"
                ) from None
        for tag in tags:
            if tag == "chart" or tag.startswith("chart:"):
                name = tag.partition(":")[2] or "chart"
                if name in charts:
                    raise BrokenNotebook(f"notebook '{base.id}': two cells are tagged chart:{name}")
                charts[name] = Chart(name, index)
    if not charts:
        charts["chart"] = Chart("chart", None)
    ttl = nb.metadata.get("publisher", {}).get("ttl")
    if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0):
        raise BrokenNotebook(
            f"notebook '{base.id}': metadata publisher.ttl must be a positive number"
        )
    return Notebook(
        id=base.id,
        path=base.path,
        digest=base.digest,
        mtime=base.mtime,
        title=title or base.id,
        sources=tuple(sources),
        parameters=parameters,
        parameters_cell=parameters_cell,
        charts=tuple(charts.values()),
        ttl=float(ttl) if ttl is not None else None,
    )


_Entry = tuple[float, tuple[int, int, int] | None, Notebook | None]  # checked at, file signature
_MAX_REMEMBERED = 10_000


class Catalog:
    """The notebooks under one folder, by id, kept current without a restart."""

    def __init__(self, root: Path, scan_interval: float = 1.0) -> None:
        self.root = root.resolve()
        self.scan_interval = scan_interval
        self._entries: dict[str, _Entry] = {}
        self._listing: tuple[float, list[str]] = (-1e18, [])

    def get(self, id: str) -> Notebook:
        """The notebook with this id, read again if its file changed; 404 if there is none."""
        now = time.monotonic()
        cached = self._entries.get(id)
        if cached is None or now - cached[0] >= self.scan_interval:
            cached = self._refresh(id, cached, now)
        notebook = cached[2]
        if notebook is None:
            raise UnknownNotebook(f"no notebook '{id}'")
        return notebook

    def _refresh(self, id: str, cached: _Entry | None, now: float) -> _Entry:
        try:
            stat = self._path(id).stat()
        except (OSError, UnknownNotebook):
            entry: _Entry = (now, None, None)
        else:
            signature = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)  # ctime: chmod
            if cached is not None and cached[1] == signature:
                entry = (now, signature, cached[2])
            else:
                entry = (now, signature, load(id, self._path(id)))
        if len(self._entries) >= _MAX_REMEMBERED and id not in self._entries:
            self._entries.clear()  # unknown ids from hostile URLs must not grow memory
        self._entries[id] = entry
        return entry

    def ids(self) -> list[str]:
        """Every notebook id, sorted; the folder is walked at most once per ``scan_interval``."""
        now = time.monotonic()
        if now - self._listing[0] >= self.scan_interval:
            self._listing = (now, sorted(self._walk()))
        return list(self._listing[1])

    def all(self) -> list[Notebook]:
        notebooks = []
        for id in self.ids():
            try:
                notebooks.append(self.get(id))
            except UnknownNotebook:  # removed since the walk
                continue
        return notebooks

    def _walk(self) -> list[str]:
        found = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            for name in files:
                if name.endswith(SUFFIX) and not _hidden(name):
                    rel = Path(folder, name).relative_to(self.root).as_posix()
                    found.append(rel[: -len(SUFFIX)])
        return found

    def _path(self, id: str) -> Path:
        """The file of an id, refusing anything that could leave the folder or is hidden."""
        if not _ID.match(id) or any(_hidden(part) for part in id.split("/")):
            raise UnknownNotebook(f"no notebook '{id}'")
        path = self.root / (id + SUFFIX)
        if not path.resolve().is_relative_to(self.root):
            raise UnknownNotebook(f"no notebook '{id}'")
        return path


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith("-checkpoint.ipynb")

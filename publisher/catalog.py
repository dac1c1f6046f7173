"""Which notebooks exist, and what each one publishes.

The catalog reads a notebook file once per edit: a notebook is looked at again
only when ``scan_interval`` has passed and its size or mtime changed, so a
cache hit costs no file system call while an edited notebook still shows up
within a second, without a restart.

An id is only ever looked up in the map the folder walk built, never turned
into a path: whatever characters a file name holds, the file is found by the
id the listing shows, and no id from a URL can name a file the walk did not.
Ids are NFC, the form a browser sends, even for a file macOS wrote in NFD.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .errors import BrokenNotebook, PublisherError, UnknownChart, UnknownNotebook
from .logs import CONTROL, escape
from .parameters import Parameter, read_parameters

SUFFIX = ".ipynb"
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
    fresh_kernel: bool = False  # metadata publisher.kernel = "fresh": a new kernel per render
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
        return _unservable(id, path, f"cannot read notebook '{id}': {e.strerror}")
    digest = hashlib.sha256(raw).hexdigest()
    base = Notebook(id=id, path=path, digest=digest, mtime=stat.st_mtime)
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        return _describe(base, nb)
    except BrokenNotebook as e:
        return _with_error(base, e)
    except Exception as e:  # nbformat raises many kinds; all mean the same to a user
        return _with_error(base, BrokenNotebook(f"cannot read notebook '{id}': {e}"))


def _unservable(id: str, path: Path, reason: str) -> Notebook:
    """A notebook listed with the reason it cannot be served, its file left unread."""
    return _with_error(Notebook(id=id, path=path, digest="", mtime=0), BrokenNotebook(reason))


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
    meta = nb.metadata.get("publisher", {})
    kernel = meta.get("kernel", "warm")
    if kernel not in ("warm", "fresh"):
        raise BrokenNotebook(
            f'notebook \'{base.id}\': metadata publisher.kernel must be "warm" or "fresh"'
        )
    ttl = meta.get("ttl")
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
        fresh_kernel=kernel == "fresh",
    )


_Entry = tuple[float, tuple[int, int, int] | None, Notebook | None]  # checked at, file signature
_MAX_REMEMBERED = 10_000
_BACKSLASH_SEPARATES = "\\" in (os.sep, os.altsep)  # on Windows


@dataclass(frozen=True)
class _Found:
    """What the walk found for one id: the file, or why the file cannot be served."""

    path: Path
    problem: str | None = None


class Catalog:
    """The notebooks under one folder, by id, kept current without a restart."""

    def __init__(self, root: Path, scan_interval: float = 1.0) -> None:
        self.root = root.resolve()
        self.scan_interval = scan_interval
        self._entries: dict[str, _Entry] = {}
        self._index: tuple[float, dict[str, _Found]] = (-1e18, {})

    def get(self, id: str) -> Notebook:
        """The notebook with this id, read again if its file changed; 404 if there is none.

        The id is normalized to NFC first, so an NFD spelling finds the same notebook.
        """
        id = unicodedata.normalize("NFC", id)
        notebook = self._notebook(id, time.monotonic(), None)
        if notebook is None:
            raise UnknownNotebook(f"no notebook '{id}'")
        return notebook

    def ids(self) -> list[str]:
        """Every notebook id, sorted; the folder is walked at most once per ``scan_interval``."""
        return sorted(self._found(time.monotonic()))

    def all(self) -> list[Notebook]:
        """Every notebook, those that cannot be served listed with their errors.

        One walk serves the whole listing, however short ``scan_interval`` is.
        """
        now = time.monotonic()
        index = self._found(now)
        notebooks = (self._notebook(id, now, index) for id in sorted(index))
        return [notebook for notebook in notebooks if notebook is not None]

    def _notebook(self, id: str, now: float, index: dict[str, _Found] | None) -> Notebook | None:
        cached = self._entries.get(id)
        if cached is None or now - cached[0] >= self.scan_interval:
            cached = self._refresh(id, cached, now, index)
        return cached[2]

    def _refresh(
        self, id: str, cached: _Entry | None, now: float, index: dict[str, _Found] | None
    ) -> _Entry:
        if index is None:
            index = self._found(now)
        found = None if _refused(id) else index.get(id)
        entry: _Entry
        if found is None:
            entry = (now, None, None)
        elif found.problem is not None:
            entry = (now, None, _unservable(id, found.path, found.problem))
        elif not found.path.resolve().is_relative_to(self.root):  # a symlink, now or since
            reason = f"cannot serve notebook '{id}': it links outside the notebook folder"
            entry = (now, None, _unservable(id, found.path, reason))
        else:
            try:
                stat = found.path.stat()
            except OSError:  # gone since the walk, or a dangling link: load says which
                entry = (now, None, load(id, found.path))
            else:
                signature = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)  # ctime: chmod
                if cached is not None and cached[1] == signature:
                    entry = (now, signature, cached[2])
                else:
                    entry = (now, signature, load(id, found.path))
        if len(self._entries) >= _MAX_REMEMBERED and id not in self._entries:
            self._entries.clear()  # unknown ids from hostile URLs must not grow memory
        self._entries[id] = entry
        return entry

    def _found(self, now: float) -> dict[str, _Found]:
        if now - self._index[0] >= self.scan_interval:
            self._index = (now, self._walk())
        return self._index[1]

    def _walk(self) -> dict[str, _Found]:
        """Every ``*.ipynb`` under the root, by id.

        Folders so named are included, to be listed as broken rather than left out.
        """
        paths: dict[str, list[Path]] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            for name in files + dirs:
                if name.endswith(SUFFIX) and not _hidden(name):
                    path = Path(folder, name)
                    rel = path.relative_to(self.root).as_posix()[: -len(SUFFIX)]
                    paths.setdefault(_id_of(rel), []).append(path)
        return {id: _found(id, sorted(found), self.root) for id, found in paths.items()}


def _id_of(rel: str) -> str:
    """The id of a path relative to the root, printable wherever it is shown.

    NFC, with bytes that are not UTF-8 shown as U+FFFD and control characters
    escaped: such a file is listed (with why it cannot be served), and its id
    must not break the JSON, the page or the terminal it is listed in.
    """
    return escape(unicodedata.normalize("NFC", _decoded(rel)))


def _decoded(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _found(id: str, paths: list[Path], root: Path) -> _Found:
    names = [p.relative_to(root).as_posix() for p in paths]
    if len(names) > 1:
        spelled = ", ".join(f"{ascii(name)} ({_form(name)})" for name in names)
        return _Found(
            paths[0],
            f"cannot serve notebook '{id}': {len(names)} files have this id ({spelled});"
            " names that differ only in Unicode normalization are one id: rename all but one",
        )
    if names[0] != _decoded(names[0]):
        return _Found(paths[0], f"cannot serve notebook '{id}': its file name is not UTF-8")
    if CONTROL.search(names[0]):
        return _Found(paths[0], f"cannot serve notebook '{id}': its name holds a control character")
    return _Found(paths[0])


def _form(name: str) -> str:
    """Which spelling a name is in, for a message that must tell two look-alikes apart."""
    if unicodedata.is_normalized("NFC", name):
        return "NFC"
    return "NFD" if unicodedata.is_normalized("NFD", name) else "neither NFC nor NFD"


def _refused(id: str) -> bool:
    """Ids no walk produces, refused before any lookup: defence in depth against traversal."""
    if not id or "\x00" in id or os.path.isabs(id) or (_BACKSLASH_SEPARATES and "\\" in id):
        return True
    return any(part in ("", ".", "..") or _hidden(part) for part in id.split("/"))


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith("-checkpoint.ipynb")

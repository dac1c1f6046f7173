"""Which notebooks exist, and what each one publishes.

The catalog reads a notebook file once per edit: a file is read again only
when its inode, size, mtime or ctime changed. In the server, a background task scans
the folder every ``scan_interval`` in a thread and publishes a ``Listing``;
requests only read that, so a chart, a gallery page or an API answer costs no
file system call, while an edited, added or removed notebook still shows up
within one ``scan_interval`` (a second by default), without a restart.

An id is only ever looked up in the map the folder walk built, never turned
into a path: whatever characters a file name holds, the file is found by the
id the listing shows, and no id from a URL can name a file the walk did not.
Ids are NFC, the form a browser sends, even for a file macOS wrote in NFD.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import math
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISLNK
from typing import Any

import nbformat

from .browse import Listing, path_key
from .errors import (
    BrokenNotebook,
    NotebooksUnreadable,
    PublisherError,
    UnknownChart,
    UnknownNotebook,
)
from .logs import CONTROL, escape
from .parameters import Parameter, read_parameters

log = logging.getLogger(__name__)

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
    data: tuple[str, ...] = ()  # metadata publisher.data: globs of files no hook sees
    error: PublisherError | None = field(default=None, compare=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

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
        # not nbformat.reads: its schema validation only logs, and is a quarter of a read
        nb = nbformat.convert(nbformat.reader.reads(raw.decode("utf-8")), 4)
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
    error.__context__ = None  # nor through the error it was raised from (frames, the parsed file)
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
                if "/" in name:  # a URL's last "/" separates the notebook from its chart
                    raise BrokenNotebook(
                        f"notebook '{base.id}': chart names cannot hold '/' (tag {tag!r})"
                    )
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
    data = meta.get("data", [])
    if not isinstance(data, list) or not all(_relative_glob(g) for g in data):
        raise BrokenNotebook(
            f"notebook '{base.id}': metadata publisher.data must be a list of globs"
            " relative to the notebook's folder"
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
        data=tuple(data),
    )


def _relative_glob(pattern: Any) -> bool:
    return isinstance(pattern, str) and bool(pattern.strip()) and not os.path.isabs(pattern)


_Entry = tuple[
    float, tuple[int, int, int, int] | None, Notebook | None
]  # checked at, file signature
_MAX_REMEMBERED = 10_000
_BACKSLASH_SEPARATES = "\\" in (os.sep, os.altsep)  # on Windows
MIN_SCAN_SECONDS = 0.05  # a background scan at most this often, whatever --scan-interval says


@dataclass(frozen=True)
class _Found:
    """What the walk found for one id: the file, or why the file cannot be served."""

    path: Path
    names: tuple[str, ...]  # the file names, relative to the root, that have this id
    problem: str | None = None
    refused: bool = False  # an id no lookup may find (see ``_refused``)


class Catalog:
    """The notebooks under one folder, by id, kept current without a restart.

    Two ways to keep current. Used alone (``publisher list``, ``render``), it
    looks again on use, at most once per ``scan_interval``. In the server, a
    background task calls ``refresh`` every ``scan_interval`` and sets
    ``watched``: from then on a request only reads the last ``Listing``, with
    no file system call at all, and an edit shows up within one interval.
    """

    def __init__(self, root: Path, scan_interval: float = 1.0) -> None:
        self.root = root.resolve()
        self.scan_interval = scan_interval
        self.watched = False  # a background task keeps the listing current
        self._entries: dict[str, _Entry] = {}
        self._index: tuple[float, dict[str, _Found]] = (-1e18, {})
        self._ids: dict[str, str] = {}  # file name (without suffix) -> id, from the last walk
        self._listing: tuple[float, Listing] | None = None
        self._lock = threading.Lock()  # one scan at a time
        self._scans_started = self._scans_finished = 0
        self._scan_ended: asyncio.Event | None = None
        # why the background scans fail, and since when (wall clock); None while they work
        self.scan_error: str | None = None
        self.scan_failing_since: float | None = None
        self._unreadable = False  # that error is the folder's, not a bug of the scan

    def get(self, id: str) -> Notebook:
        """The notebook with this id, even one that cannot be served; 404 if there is none."""
        notebook = self._lookup(id)
        if notebook is None:
            raise UnknownNotebook(f"no notebook '{id}'")
        return notebook

    def chart(self, id: str, name: str | None = None) -> tuple[Notebook, Chart]:
        """A notebook and its chart named ``name`` (the first, without a name), ready to render.

        Raises the 404 for an unknown notebook or chart, and a broken
        notebook's own error.
        """
        notebook = self.get(id)
        return notebook, _chart_of(notebook, name)

    def find(self, path: str) -> tuple[Notebook, Chart]:
        """The notebook and chart a URL path names, in one lookup per reading.

        ``{id}/{chart}`` when notebook ``{id}`` has that chart; else ``{id}``
        is the whole path, and its first chart is meant. When neither reads,
        the error is the one for the ``{id}/{chart}`` reading if its notebook
        exists (its charts are named in it), else "no notebook".
        """
        parent_id, _, name = path.rpartition("/")
        parent = self._lookup(parent_id) if parent_id else None
        if parent is not None and parent.error is None:
            chart = next((c for c in parent.charts if c.name == name), None)
            if chart is not None:
                return parent, chart
        notebook = self._lookup(path)
        if notebook is not None:
            return notebook, _chart_of(notebook, None)
        if parent is not None:
            return parent, _chart_of(parent, name)  # raises: the chart is not there
        raise UnknownNotebook(f"no notebook '{parent_id or path}'")

    def _lookup(self, id: str) -> Notebook | None:
        """The notebook with this id, or None; an NFD spelling finds the NFC id."""
        id = unicodedata.normalize("NFC", id)
        if _refused(id):
            return None
        current = self._listing
        if self.watched and current is not None:
            return current[1].get(id)
        return self._notebook(id, time.monotonic(), None)  # alone, or before the first scan

    def ids(self) -> list[str]:
        """Every notebook id, in natural order, without reading a notebook."""
        return sorted(self._found(time.monotonic()), key=path_key)

    def all(self) -> list[Notebook]:
        """Every notebook, in natural order, those that cannot be served with their errors."""
        return list(self.listing().notebooks)

    def listing(self) -> Listing:
        """Every notebook, ordered, by folder; scanned again here only when nothing else does."""
        current = self._listing
        if current is None or (
            not self.watched and time.monotonic() - current[0] >= self.scan_interval
        ):
            return self.scan()
        return current[1]

    @property
    def latest(self) -> Listing | None:
        """The last listing a scan built, as it is; None before the first."""
        return self._listing[1] if self._listing is not None else None

    async def current(self) -> Listing:
        """The listing for a request: in the server, the first scan's, once it has finished."""
        while self.watched and self._listing is None:
            if self.scan_error is not None:
                raise NotebooksUnreadable(self.scan_error, self.retry_after)
            await self._next_scan_end()
        return self.listing()

    @property
    def retry_after(self) -> int:
        """Seconds until the next scan may have found the folder again, and at least 5."""
        return max(5, math.ceil(self.scan_interval))

    def check_readable(self) -> None:
        """Raise while the last scan found the folder unreadable: a render now would fail in
        the kernel, as the notebook's error, with the folder's path in its message. (A scan
        that failed for a bug of its own says nothing about the folder: renders go on.)"""
        if self.scan_error is not None and self._unreadable:
            raise NotebooksUnreadable(self.scan_error, self.retry_after)

    def scan(self) -> Listing:
        """Walk the folder, stat every file, read again only those that changed.

        A new ``Listing`` is built only when a notebook came, went or changed.
        Safe to call from a thread: a request reads the listing it replaces
        until it is complete.
        """
        with self._lock:
            now = time.monotonic()
            index = self._walk()
            self._index = (now, index)  # the requests that come before the listing use it
            previous = self._entries
            entries = {
                id: self._entry(id, found, previous.get(id), now)
                for id, found in index.items()
                if not found.refused
            }
            notebooks = {id: entry[2] for id, entry in entries.items() if entry[2] is not None}
            old = self._listing[1] if self._listing is not None else None
            unchanged = (
                old is not None
                and len(old) == len(notebooks)
                and all(old.get(id) is notebook for id, notebook in notebooks.items())
            )
            listing = old if old is not None and unchanged else Listing(notebooks.values(), old)
            self._entries = entries
            self._listing = (now, listing)
            return listing

    async def refresh(self) -> None:
        """One scan in a thread, so the event loop goes on answering while files are read.

        A scan that fails (the folder's path gone or unreadable, or the folder
        deleted while in use) changes nothing: the last listing goes on answering,
        ``scan_error`` says why, and the log says so once, not at every scan, and
        again once the folder reads again.
        """
        self._scans_started += 1
        mine = self._scans_started
        try:
            await asyncio.to_thread(self.scan)
        except Exception as e:
            if isinstance(e, NotebooksUnreadable):
                error, trace = e.message, False
            else:  # a bug: with its traceback, but once, not at every scan
                error, trace = f"the notebooks could not be read ({type(e).__name__})", True
            if error != self.scan_error:
                log.error("%s: %s", error, self.root, exc_info=trace)
            self.scan_error, self._unreadable = error, not trace
            self.scan_failing_since = self.scan_failing_since or time.time()
        else:
            if self.scan_error is not None:
                log.warning("the notebook folder %s reads again", self.root)
            self.scan_error = self.scan_failing_since = None
            self._unreadable = False
        finally:
            self._scans_finished = max(self._scans_finished, mine)
            ended, self._scan_ended = self._scan_ended, None
            if ended is not None:
                ended.set()

    async def scanned(self) -> None:
        """Return once a scan that started after this call has finished.

        In the server that is the background task's next scan; alone, this scans.
        """
        if not self.watched:
            await self.refresh()
            return
        target = self._scans_started + 1
        while self._scans_finished < target:
            await self._next_scan_end()

    async def _next_scan_end(self) -> None:
        if self._scan_ended is None:
            self._scan_ended = asyncio.Event()
        await self._scan_ended.wait()

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
        entry = self._entry(id, index.get(id), cached, now)
        if len(self._entries) >= _MAX_REMEMBERED and id not in self._entries:
            self._entries.clear()  # unknown ids from hostile URLs must not grow memory
        self._entries[id] = entry
        return entry

    def _entry(self, id: str, found: _Found | None, cached: _Entry | None, now: float) -> _Entry:
        """What an id names now; its file is read again only when its signature changed.

        Whatever is wrong with one file (a link loop, a file that vanished) is
        that notebook's problem, listed with it: a scan of the rest goes on.
        """
        if found is None:
            return (now, None, None)
        if found.problem is not None:
            return (now, None, _kept(cached, _unservable(id, found.path, found.problem)))
        try:
            stat = os.lstat(found.path)
            if S_ISLNK(stat.st_mode):  # a symlink, now or since the walk
                target = Path(os.path.realpath(found.path))  # never raises, even on a loop
                if not target.is_relative_to(self.root):
                    reason = f"cannot serve notebook '{id}': it links outside the notebook folder"
                    return (now, None, _kept(cached, _unservable(id, found.path, reason)))
                stat = os.stat(found.path)
        except FileNotFoundError:
            if not os.path.lexists(found.path):
                return (now, None, None)  # removed since the walk: gone, not broken
            return (now, None, _kept(cached, load(id, found.path)))  # a dangling link
        except (OSError, RuntimeError) as e:  # a link loop, a file we may not stat
            reason = f"cannot read notebook '{id}': {getattr(e, 'strerror', None) or e}"
            return (now, None, _kept(cached, _unservable(id, found.path, reason)))
        # inode too: a same-size file replaced within one timestamp tick is still new
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        if cached is not None and cached[1] == signature:
            return (now, signature, cached[2])
        return (now, signature, load(id, found.path))

    def _found(self, now: float) -> dict[str, _Found]:
        if now - self._index[0] >= self.scan_interval:
            self._index = (now, self._walk())
        return self._index[1]

    def _walk(self) -> dict[str, _Found]:
        """Every ``*.ipynb`` under the root, by id, as ``os.walk`` would find them.

        Folders so named are included, to be listed as broken rather than left
        out; a linked folder is not entered. What the last walk found is kept
        when it is found again, so a scan of an unchanged folder builds nothing.
        """
        names: dict[str, list[str]] = {}
        ids, known_ids = {}, self._ids
        pending = [("", str(self.root))]
        while pending:
            rel, folder = pending.pop()
            try:
                with os.scandir(folder) as listed:
                    entries = list(listed)
            except OSError as e:  # a folder we may not read: go on without it, as os.walk does
                if not rel:  # the root: a scan that saw nothing must not empty the listing
                    reason = e.strerror or type(e).__name__
                    raise NotebooksUnreadable(
                        f"the notebook folder cannot be read ({reason})"
                    ) from None
                continue
            if not rel and not entries and (gone := _removed(folder)):
                raise NotebooksUnreadable(f"the notebook folder {gone}")
            for entry in entries:
                if _hidden(entry.name):
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.name.endswith(SUFFIX):
                    stem = path[: -len(SUFFIX)]
                    id = ids[stem] = known_ids.get(stem) or _id_of(stem)
                    names.setdefault(id, []).append(path)
                if _is_folder(entry):
                    pending.append((path, entry.path))
        self._ids = ids
        before = self._index[1]
        found: dict[str, _Found] = {}
        for id, spelled in names.items():
            known = before.get(id)
            ordered = tuple(sorted(spelled))
            found[id] = (
                known if known and known.names == ordered else _found(id, ordered, self.root)
            )
        return found


def _chart_of(notebook: Notebook, name: str | None) -> Chart:
    """The named chart of a notebook that can be served; raises why it cannot."""
    if notebook.error is not None:
        raise copy.copy(notebook.error)  # the stored one must not collect tracebacks
    if name is None:
        return notebook.charts[0]
    for chart in notebook.charts:
        if chart.name == name:
            return chart
    names = ", ".join(c.name for c in notebook.charts)
    raise UnknownChart(
        f"notebook '{notebook.id}' has no chart '{name}' (charts: {names})",
        charts=[c.name for c in notebook.charts],
    )


def _kept(cached: _Entry | None, notebook: Notebook) -> Notebook:
    """Last scan's notebook when this one says the same, so the listing need not be rebuilt."""
    before = cached[2] if cached is not None else None
    if before is not None and before == notebook and _reason(before) == _reason(notebook):
        return before
    return notebook


def _reason(notebook: Notebook) -> str | None:
    return notebook.error.message if notebook.error is not None else None


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _id_of(rel: str) -> str:
    """The id of a path relative to the root, printable wherever it is shown.

    NFC, with bytes that are not UTF-8 shown as U+FFFD and control characters
    escaped: such a file is listed (with why it cannot be served), and its id
    must not break the JSON, the page or the terminal it is listed in.
    """
    return escape(unicodedata.normalize("NFC", shown_name(rel)))


def shown_name(name: str) -> str:
    """A file name as text that can be sent: bytes that are not UTF-8 (``os.fsdecode``'s
    surrogates) become U+FFFD, which any answer can encode."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _found(id: str, names: tuple[str, ...], root: Path) -> _Found:
    path = Path(root, names[0])
    if _refused(id):
        return _Found(path, names, refused=True)
    if len(names) > 1:
        spelled = ", ".join(f"{ascii(name)} ({_form(name)})" for name in names)
        return _Found(
            path,
            names,
            f"cannot serve notebook '{id}': {len(names)} files have this id ({spelled});"
            " names that differ only in Unicode normalization are one id: rename all but one",
        )
    if names[0] != shown_name(names[0]):
        return _Found(path, names, f"cannot serve notebook '{id}': its file name is not UTF-8")
    if CONTROL.search(names[0]):
        return _Found(
            path, names, f"cannot serve notebook '{id}': its name holds a control character"
        )
    return _Found(path, names)


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


def _removed(folder: str) -> str | None:
    """Why a folder that lists empty is not merely empty: deleted while open (a bind mount
    whose source went away, with no links left), or no longer there to stat."""
    try:
        return "was removed" if os.stat(folder).st_nlink == 0 else None
    except OSError as e:
        return f"cannot be read ({e.strerror or type(e).__name__})"


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__" or name.endswith("-checkpoint.ipynb")

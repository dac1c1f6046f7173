"""Finding one notebook among thousands: natural order, the folder tree, search, pages.

A ``Listing`` is built each time the notebook folder changes (by the catalog's
scan, off the event loop) and only read afterwards: a gallery page or an API
answer then costs a slice of a sorted tuple and a substring test per notebook,
never a walk, a parse or a sort. Nothing here touches the file system.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from multidict import MultiMapping

from .errors import BadRequest, NotFound

if TYPE_CHECKING:
    from .catalog import Notebook

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY_LENGTH = 200  # a search is one substring test per word and notebook: keep it short
_DIGITS = re.compile(r"([0-9]+)")
_WHOLE = re.compile(r"[0-9]{1,9}")

T = TypeVar("T")
NaturalKey = tuple[tuple[str | tuple[int, str], ...], str]


def natural_key(text: str) -> NaturalKey:
    """Sorts "Report 2" before "Report 10", and "apple" before "Banana"; the text breaks ties.

    A run of digits compares by value, without ``int()``: once its leading
    zeros are gone the longer run is the larger, so a heading's 5,000-digit
    number sorts as well as a small one.
    """
    parts: list[str | tuple[int, str]] = []
    for i, part in enumerate(_DIGITS.split(text)):
        if i % 2:
            digits = part.lstrip("0")
            parts.append((len(digits), digits))
        else:
            parts.append(part.casefold())
    return tuple(parts), text


def path_key(path: str) -> tuple[NaturalKey, ...]:
    """Natural order one folder level at a time, so a folder's notebooks stay together."""
    return tuple(natural_key(part) for part in path.split("/"))


def words(query: str) -> tuple[str, ...]:
    """The words of a search, spelled as the index spells text: NFC, case folded."""
    if len(query) > MAX_QUERY_LENGTH:
        raise BadRequest(f"q is {len(query)} characters (at most {MAX_QUERY_LENGTH})")
    return tuple(_folded(query).split())


def _folded(text: str) -> str:
    if text.isascii():
        return text.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


@dataclass(frozen=True)
class Folder:
    """One folder of the tree; only a folder with a notebook somewhere below it is one."""

    path: str  # "" is the notebook folder itself
    folders: tuple[str, ...]  # the paths of its subfolders, in natural order
    notebooks: tuple[Notebook, ...]  # those directly inside it, in natural order
    start: int  # its notebooks at any depth are ``Listing.notebooks[start:end]``
    end: int

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def total(self) -> int:
        return self.end - self.start

    @property
    def parents(self) -> list[str]:
        """The paths from the top down to this folder's parent, for breadcrumbs."""
        parts = self.path.split("/") if self.path else []
        return ["/".join(parts[:i]) for i in range(len(parts))]


class Listing:
    """Every notebook in natural order, by folder, ready to search; never changed once built."""

    def __init__(self, notebooks: Iterable[Notebook], before: Listing | None = None) -> None:
        """``before``, the listing this one replaces, lends what it derived from unchanged notebooks."""
        known: dict[str, _Derived] = before._derived if before is not None else {}
        derived: dict[str, _Derived] = {}
        for notebook in notebooks:
            kept = known.get(notebook.id)
            derived[notebook.id] = kept if kept and kept.notebook is notebook else _derive(notebook)
        self._derived: dict[str, _Derived] = derived
        self._order = sorted(derived.values(), key=lambda d: d.key)
        self.notebooks: tuple[Notebook, ...] = tuple(d.notebook for d in self._order)
        self.chart_count = sum(len(nb.charts) for nb in self.notebooks)
        self.folders: dict[str, Folder] = _tree(self.notebooks)

    def __len__(self) -> int:
        return len(self.notebooks)

    def get(self, id: str) -> Notebook | None:
        derived = self._derived.get(id)
        return derived.notebook if derived is not None else None

    def folder(self, path: str) -> Folder:
        """The folder at ``path`` (``""`` or ``"/"`` for the top); 404 if no notebook is under it."""
        path = unicodedata.normalize("NFC", path).strip("/")
        found = self.folders.get(path)
        if found is None:
            raise NotFound(f"no folder '{path}' holds a notebook")
        return found

    def find(self, query: str = "", folder: str = "") -> Sequence[Notebook]:
        """The notebooks under ``folder`` (at any depth) whose text holds every word of ``query``.

        Title, id, chart names and parameter names are searched, case aside.
        A notebook whose title or file name is the query comes first, then
        those whose title or id hold every word, then the rest; each group in
        natural order.
        """
        scope = self.folder(folder)
        wanted = words(query)
        if not wanted:
            return self.notebooks[scope.start : scope.end]
        whole = " ".join(wanted)
        ranked: tuple[list[Notebook], ...] = ([], [], [])
        for derived in self._order[scope.start : scope.end]:
            text = derived.text
            for word in wanted:  # a loop, not all(): this runs once per notebook and word
                if word not in text:
                    break
            else:
                if whole in derived.exact:
                    rank = 0
                else:
                    rank = 1 if all(word in derived.names for word in wanted) else 2
                ranked[rank].append(derived.notebook)
        return ranked[0] + ranked[1] + ranked[2]

    def find_folders(self, query: str, folder: str = "") -> list[Folder]:
        """The folders below ``folder`` whose path holds every word of ``query``, in natural order."""
        scope = self.folder(folder)
        wanted = words(query)
        if not wanted:
            return []
        prefix = f"{scope.path}/" if scope.path else ""
        return [
            found
            for path, found in self.folders.items()
            if path.startswith(prefix) and all(word in _folded(path) for word in wanted)
        ]


class _Derived(NamedTuple):
    """What ordering and searching need of a notebook, worked out once per version of it."""

    notebook: Notebook
    key: tuple[NaturalKey, ...]
    exact: frozenset[str]  # its title and file name, folded, as a search for exactly it reads
    names: str  # its title and id, folded
    text: str  # everything searchable, folded, one field a line


def _derive(notebook: Notebook) -> _Derived:
    names = _folded(f"{notebook.title}\n{notebook.id}")
    others = [chart.name for chart in notebook.charts] + [p.name for p in notebook.parameters]
    text = "\n".join([names, *(_folded(name) for name in others)])
    exact = frozenset(
        " ".join(_folded(name).split()) for name in (notebook.title, notebook.id.split("/")[-1])
    )
    return _Derived(notebook, path_key(notebook.id), exact, names, text)


def _tree(ordered: Sequence[Notebook]) -> dict[str, Folder]:
    """The folders the ids name, each with its span of ``ordered``.

    ``ordered`` is in ``path_key`` order, in which everything under one folder
    is contiguous: a subtree is a slice.
    """
    spans: dict[str, list[int]] = {"": [0, len(ordered)]}
    direct: dict[str, list[Notebook]] = {"": []}
    children: dict[str, list[str]] = {"": []}
    for i, notebook in enumerate(ordered):
        path = notebook.id.rpartition("/")[0]
        direct.setdefault(path, []).append(notebook)
        while path:
            span = spans.get(path)
            parent = path.rpartition("/")[0]
            if span is None:
                spans[path] = [i, i + 1]
                children.setdefault(parent, []).append(path)  # first seen: in natural order
            else:
                span[1] = i + 1
            path = parent
    return {
        path: Folder(
            path=path,
            folders=tuple(children.get(path, ())),
            notebooks=tuple(direct.get(path, ())),
            start=spans[path][0],
            end=spans[path][1],
        )
        for path in sorted(spans, key=path_key)
    }


@dataclass(frozen=True)
class Page(Generic[T]):
    """One slice of a longer list, and where the slices before and after it start."""

    items: Sequence[T]
    total: int
    offset: int
    limit: int

    @property
    def number(self) -> int:
        return self.offset // self.limit + 1

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))

    @property
    def next_offset(self) -> int | None:
        after = self.offset + self.limit
        return after if after < self.total else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None


def page_of(items: Sequence[T], offset: int, limit: int) -> Page[T]:
    return Page(items[offset : offset + limit], len(items), offset, limit)


@dataclass(frozen=True)
class Criteria:
    """What a listing request asks for, read from its query string."""

    query: str = ""
    folder: str = ""
    offset: int = 0
    limit: int = DEFAULT_LIMIT


def api_criteria(query: MultiMapping[str]) -> Criteria | None:
    """``q``, ``folder``, ``limit`` (1 to ``MAX_LIMIT``) and ``offset`` of an API request.

    None for a request that asks for none of them: it lists every notebook, as
    the product's contract says. Any of them gives a page, ``DEFAULT_LIMIT``
    long unless it says.
    """
    if not any(key in query for key in ("q", "folder", "limit", "offset")):
        return None
    return Criteria(
        query=one_value(query, "q"),
        folder=one_value(query, "folder"),
        offset=_whole(query, "offset", 0, 0),
        limit=_whole(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    )


def page_criteria(query: MultiMapping[str], per_page: int) -> Criteria:
    """``q``, ``folder`` and ``page`` (from 1) of a gallery request: people count pages."""
    number = _whole(query, "page", 1, 1)
    return Criteria(
        query=one_value(query, "q"),
        folder=one_value(query, "folder"),
        offset=(number - 1) * per_page,
        limit=per_page,
    )


def one_value(query: MultiMapping[str], name: str) -> str:
    """The key's value, ``""`` when it is absent; a key given twice is ambiguous, so a 400."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name} is given {len(values)} times (at most once)")
    return values[0] if values else ""


def _whole(
    query: MultiMapping[str], name: str, default: int, low: int, high: int | None = None
) -> int:
    text = one_value(query, name).strip()
    if not text:
        return default
    most = f" and at most {high}" if high is not None else ""
    if not _WHOLE.fullmatch(text) or int(text) < low or (high is not None and int(text) > high):
        raise BadRequest(f"{name} must be a whole number of at least {low}{most}, not {text!r}")
    return int(text)

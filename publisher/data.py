"""A chart's data: the files its render read, and whether they have changed since.

The kernel records what a notebook opens for reading (``kernel_side``); a
notebook can also declare files no hook sees (``"publisher": {"data":
["data/*.parquet"]}``, globs relative to its folder). Each cache entry keeps
both, as they were at its render: a path with its size and mtime, and a glob
with the files it matched. ``DataWatch`` answers whether an entry's data
changed, looking at the file system at most once per interval for an entry
and for a path, so a hit in between makes no system call.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounded import Bounded

REMEMBERED = 10_000  # entries and paths whose last look is kept


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str  # absolute
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str) -> DataFile | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(path, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class DataGlob:
    pattern: str  # absolute
    matched: tuple[str, ...]  # sorted

    @classmethod
    def of(cls, pattern: str) -> DataGlob:
        return cls(pattern, tuple(sorted(glob.glob(pattern, recursive=True))))


@dataclass(frozen=True, slots=True)
class Data:
    """What one render read."""

    files: tuple[DataFile, ...] = ()
    globs: tuple[DataGlob, ...] = ()
    dropped: int = 0  # files past --max-data-files, not followed

    def __bool__(self) -> bool:
        return bool(self.files or self.globs)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [[f.path, f.size, f.mtime_ns] for f in self.files],
            "globs": [[g.pattern, list(g.matched)] for g in self.globs],
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Data:
        """Rebuild from ``to_json``'s form (or the kernel's report); raises on a damaged one."""
        if raw is None:
            return NO_DATA
        files = tuple(DataFile(str(p), int(s), int(m)) for p, s, m in raw.get("files", ()))
        globs = tuple(DataGlob(str(p), tuple(map(str, m))) for p, m in raw.get("globs", ()))
        dropped = int(raw.get("dropped", 0))
        return cls(files, globs, dropped) if files or globs or dropped else NO_DATA


NO_DATA = Data()


def declared(folder: Path, patterns: Iterable[str]) -> Data:
    """The files a notebook's declared globs match now, each with its size and mtime."""
    globs = tuple(DataGlob.of(os.path.join(folder, pattern)) for pattern in patterns)
    paths = dict.fromkeys(path for g in globs for path in g.matched)
    files = tuple(f for path in paths if (f := DataFile.of(path)) is not None)
    return Data(files, globs)


def merged(read: Data, declared: Data, limit: int) -> Data:
    """The files the kernel saw and those declared, each once, at most ``limit`` of them."""
    files = {f.path: f for f in (*read.files, *declared.files)}
    kept = tuple(files.values())[:limit]
    dropped = read.dropped + len(files) - len(kept)
    return Data(kept, declared.globs, dropped)


class DataWatch:
    """Whether an entry's data changed since its render; at most one look per interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # id of the entry's Data -> (that Data, when looked at, when found changed)
        self._entries: Bounded[int, tuple[Data, float, float | None]] = Bounded(REMEMBERED)
        # path or pattern -> (when looked at, what was found)
        self._files: Bounded[str, tuple[float, DataFile | None]] = Bounded(REMEMBERED)
        self._globs: Bounded[str, tuple[float, tuple[str, ...]]] = Bounded(REMEMBERED)
        # data seen changed -> when first seen; past the bound the earliest seen is forgotten,
        # not every other one (each would start its --max-stale again)
        self._noticed: Bounded[Data, float] = Bounded(REMEMBERED)

    def changed_since(self, data: Data, created: float, now: float) -> float | None:
        """When this server first saw the data changed, or None while it has not.

        ``created``: when the entry was rendered; a look older than that is
        looked again, since it may predate the very files the render read.
        The time a change was first seen is kept by the data's value too, so
        the same entry read again from the disk or Redis (a new object) is
        still as stale as it was, and expires after ``--max-stale``.
        """
        seen = self._entries.get(id(data))
        if seen is not None and seen[0] is data:
            _, looked, since = seen
            if since is not None or now - looked < self.interval:
                return since
        since = None
        if self._changed(data, now, created):
            since = self._noticed.setdefault(data, now)
        self._entries[id(data)] = (data, now, since)
        return since

    def _changed(self, data: Data, now: float, created: float) -> bool:
        look = self._look
        if any(look(self._files, f.path, DataFile.of, now, created) != f for f in data.files):
            return True
        matched = self._matched
        return any(
            look(self._globs, g.pattern, matched, now, created) != g.matched for g in data.globs
        )

    def _look(
        self,
        seen: dict[str, tuple[float, Any]],
        key: str,
        fetch: Callable[[str], Any],
        now: float,
        created: float,
    ) -> Any:
        """``fetch(key)``, or what it gave within the interval and since the render."""
        last = seen.get(key)
        if last is None or now - last[0] >= self.interval or last[0] < created:
            last = seen[key] = (now, fetch(key))
        return last[1]

    @staticmethod
    def _matched(pattern: str) -> tuple[str, ...]:
        return DataGlob.of(pattern).matched

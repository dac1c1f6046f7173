"""Rendered charts and the stores that keep them in this process: memory and disk.

Every store (Redis too, in ``redis_shared``) keeps the same ``Entry``: the
bytes and what HTTP needs to serve them. A store that cannot read an entry (a
damaged file, a lost connection) answers a miss; a cache failure never fails a
request. Which store is asked when is the pipeline's business (``pipeline``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from .data import NO_DATA, Data

log = logging.getLogger(__name__)
_ENTRY_NAME = re.compile(r"([0-9a-f]{2})/\1[0-9a-f]{62}")


@dataclass(frozen=True)
class Entry:
    body: bytes
    content_type: str
    etag: str  # strong: a digest of the body
    created: float  # epoch seconds of the render
    ttl: float | None = None  # seconds of freshness; None: fresh until the notebook changes
    data: Data = NO_DATA  # the files the render read: stale once they change

    @classmethod
    def of(
        cls,
        body: bytes,
        content_type: str,
        ttl: float | None = None,
        created: float | None = None,
        data: Data = NO_DATA,
    ) -> Entry:
        created = time.time() if created is None else created
        return cls(body, content_type, etag_of(body), created, ttl, data)

    @functools.cached_property
    def last_modified(self) -> str:
        """The HTTP date of the render, formatted once per entry rather than per answer."""
        return formatdate(self.created, usegmt=True)

    def to_bytes(self) -> bytes:
        """The stored form, on disk and in Redis: a JSON header line, then the body."""
        return json.dumps(self.header()).encode() + b"\n" + self.body

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry | None:
        """An entry from its stored form, or None when it is damaged in any way."""
        line, _, body = raw.partition(b"\n")
        try:
            header = json.loads(line)
        except ValueError:
            return None
        return cls.from_parts(header, body) if isinstance(header, dict) else None

    def age(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.created)

    def fresh_for(self, now: float | None = None) -> float | None:
        """Seconds of freshness left (negative once stale); None when it never goes stale."""
        return None if self.ttl is None else self.ttl - self.age(now)

    def header(self) -> dict[str, Any]:
        """Everything but the body, for tiers that store the two apart."""
        return {
            "content_type": self.content_type,
            "etag": self.etag,
            "created": self.created,
            "ttl": self.ttl,
            "data": self.data.to_json() if self.data else None,
            "length": len(self.body),
        }

    @classmethod
    def from_parts(cls, header: dict[str, Any], body: bytes) -> Entry | None:
        """Rebuild an entry, or None when the body is not the one the header describes."""
        try:
            if header["length"] != len(body) or header["etag"] != etag_of(body):
                return None
            ttl = header["ttl"]
            return cls(
                body,
                str(header["content_type"]),
                header["etag"],
                float(header["created"]),
                None if ttl is None else float(ttl),
                Data.from_json(header.get("data")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


class MemoryCache:
    """Least recently used entries, bounded by the bytes of their bodies."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def get(self, key: str) -> Entry | None:
        """Synchronous, unlike the other stores: the hot path of a hit needs no await."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.body)
        if len(entry.body) > self.max_bytes:
            return  # too big to keep; and the entry it replaces is gone, not left stale
        self._entries[key] = entry
        self.size += len(entry.body)
        while self.size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)


class DiskCache:
    """One file an entry: a JSON header line, then the body. Survives restarts.

    Writes go to a temporary file renamed into place, so a reader sees a whole
    entry or none; an entry whose body does not match its header is a miss.

    The cache keeps a byte count and a least-recently-used order of its files,
    so a write that passes ``max_bytes`` evicts at once, in the same thread,
    rather than at the next sweep. The folder is read for them by the first
    sweep, or by the first write if that comes sooner (``publisher render``),
    in a worker thread, never at construction; the periodic ``sweep`` reads it
    again, since other servers may share it.
    """

    name = "disk"

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # reads and writes run in worker threads
        self._sizes: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self.size = 0
        self._indexed = False

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    async def get(self, key: str) -> Entry | None:
        return await asyncio.to_thread(self._read, key)

    async def put(self, key: str, entry: Entry) -> None:
        try:
            await asyncio.to_thread(self._write, key, entry)
        except OSError as e:
            log.warning("disk cache: cannot write %s: %s", key, e)

    def sweep(self, max_bytes: int | None = None) -> int:
        """Read the folder again and remove the least recently used entries past
        ``max_bytes`` (down to 90% of it, so a sweep is not due again at once);
        returns how many were removed."""
        if max_bytes is not None:
            self.max_bytes = max_bytes
        with self._lock:  # a write meanwhile would be missing from the new index
            self._index(self._files())
        return self._evict()

    def _files(self) -> list[tuple[float, int, str]]:
        files = []
        for path in self.root.glob("??/*"):
            if not _ENTRY_NAME.fullmatch(path.parent.name + "/" + path.name):
                continue  # not ours: a write in progress, or a file someone else put here
            with contextlib.suppress(OSError):
                stat = path.stat()
                files.append((stat.st_mtime, stat.st_size, path.name))
        return files

    def _index(self, files: list[tuple[float, int, str]]) -> None:
        self._sizes = OrderedDict((key, size) for _, size, key in sorted(files))
        self.size = sum(self._sizes.values())
        self._indexed = True

    def _account(self, key: str, size: int | None) -> None:
        with self._lock:
            self._record(key, size)

    def _record(self, key: str, size: int | None) -> None:
        """Record a write (its size), a use (None) or a removal (0) of ``key``; under the lock."""
        if size is None:
            if key in self._sizes:
                self._sizes.move_to_end(key)
            return
        self.size -= self._sizes.pop(key, 0)
        if size:
            self._sizes[key] = size
            self.size += size

    def _evict(self) -> int:
        if self.max_bytes is None:
            return 0
        removed = 0
        with self._lock:  # unlinked under the lock: a write of the same key waits, not lost
            if self.size <= self.max_bytes:
                return 0
            while self._sizes and self.size > self.max_bytes * 0.9:
                key, size = self._sizes.popitem(last=False)
                self.size -= size
                with contextlib.suppress(OSError):
                    self.path(key).unlink()
                    removed += 1
        return removed

    def writable(self) -> bool:
        try:
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                return True
        except OSError:
            return False

    def _read(self, key: str) -> Entry | None:
        path = self.path(key)
        try:
            entry = Entry.from_bytes(path.read_bytes())
        except FileNotFoundError:
            with self._lock:  # a write may have put it in place since: count what is there
                if not path.exists():
                    self._record(key, 0)
            return None
        except OSError:
            entry = None
        if entry is not None:
            self._account(key, None)
            with contextlib.suppress(OSError):
                os.utime(path)  # its mtime is its last use, for the next server's index
        if entry is None:
            log.warning("disk cache: damaged entry %s, dropped", key)
            with self._lock:  # removed and uncounted at once, as a write puts and counts
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
                self._record(key, 0)
        return entry

    def _write(self, key: str, entry: Entry) -> None:
        path = self.path(key)
        path.parent.mkdir(exist_ok=True)
        data = entry.to_bytes()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with self._lock:  # in place and counted at once: no eviction sees one and not the other
                if not self._indexed:
                    self._index(self._files())
                os.replace(tmp, path)
                self._record(key, len(data))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._evict()

"""A mapping that keeps only the keys used last: the server's small memos of URLs,
renders and failures, which hostile or merely many URLs must not grow without end."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Bounded(OrderedDict[K, V]):
    """Past ``limit`` keys, the one set or touched (``move_to_end``) longest ago goes.

    ``m[k] = v``, ``setdefault`` and ``update`` set an item, and so keep the bound;
    ``copy()`` keeps it too. (Pickling, ``|`` and ``fromkeys`` are not supported.)
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)

    def copy(self) -> Bounded[K, V]:
        twin: Bounded[K, V] = Bounded(self.limit)
        twin.update(self)
        return twin

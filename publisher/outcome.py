"""What one chart request got: the entry, and how it was obtained.

A request carries its ``Outcome`` from the cache pipeline to the answer; the
response headers, the metrics and the access log all read it there, so no
fact about a request is ever parsed back out of its response.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .cache import Entry

HIT, MISS, STALE = "hit", "miss", "stale"


@dataclass(frozen=True, slots=True)
class Outcome:
    entry: Entry
    cache: str  # HIT, MISS or STALE
    tier: str | None = None  # the tier that answered (memory, disk, redis); None: a render here
    render_seconds: float | None = None  # of the render this request waited for, on this server


OUTCOME = web.RequestKey("outcome", Outcome)  # set by the chart view

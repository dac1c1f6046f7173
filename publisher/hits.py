"""Repeat hits, answered before routing.

A page of ``<img>`` tags asks for the same chart URLs again and again. When
the chart view answers a URL from memory, it remembers the answer's headers
here, and the next GET of that URL, byte for byte, is answered at once, before
aiohttp's router and the view run: about half the CPU of a hit. The checks
are the ones the view's path would make: the catalog still holds the same
notebook, the memory still holds the same entry, and it is still fresh (the
files it read included). Anything else goes the long way: a conditional
request, a HEAD, a chart with a ttl (its ``max-age`` changes by the second),
a signed URL that expires.
"""

from __future__ import annotations

from aiohttp import web

from .bounded import Bounded
from .cache import Entry
from .catalog import Catalog
from .outcome import HIT, OUTCOME, Outcome
from .pipeline import FRESH, Pipeline
from .render import RenderRequest

REMEMBERED = 4096  # URLs; past it, the one answered longest ago is forgotten
# a URL's render, which entry answered it (ETag, render time), and the answer's headers
Answer = tuple[RenderRequest, tuple[str, float], dict[str, str]]


class RepeatHits:
    def __init__(self, catalog: Catalog, pipeline: Pipeline) -> None:
        self.catalog = catalog
        self.pipeline = pipeline
        self.served = 0
        # no body: the memory has it, and keeps it within its bound
        self._answers: Bounded[str, Answer] = Bounded(REMEMBERED)

    def remember(
        self, request: web.Request, render: RenderRequest, outcome: Outcome, headers: dict[str, str]
    ) -> None:
        """Keep a memory hit's answer for its URL; the caller checked it may be repeated."""
        entry = outcome.entry
        self._answers[request.raw_path] = (render, (entry.etag, entry.created), headers)

    def answer(self, request: web.BaseRequest) -> web.Response | None:
        """The answer to a repeat of a remembered URL, or None to take the long way."""
        found = self._answers.get(request.raw_path)
        if found is None or request.method != "GET" or "If-None-Match" in request.headers:
            return None
        render, answered, headers = found
        entry = self._current(render, answered)
        if entry is None:
            del self._answers[request.raw_path]
            return None
        self._answers.move_to_end(request.raw_path)
        self.served += 1
        request[OUTCOME] = Outcome(entry, HIT, self.pipeline.memory.name)
        return web.Response(body=entry.body, headers=headers)

    def _current(self, render: RenderRequest, answered: tuple[str, float]) -> Entry | None:
        """The entry the memory holds for this render, if it is still the one answered."""
        listing = self.catalog.latest
        if not self.catalog.watched or listing is None:
            return None
        if listing.get(render.notebook.id) is not render.notebook:
            return None  # the notebook changed, or a scan read it again
        entry = self.pipeline.memory.get(render.key)
        if entry is None or (entry.etag, entry.created) != answered:
            return None  # evicted, or rendered again: its headers would differ
        return entry if self.pipeline.freshness.judge(entry) == FRESH else None

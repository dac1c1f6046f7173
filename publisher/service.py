"""A chart request: from a notebook, a chart and a query string to its ``Outcome``.

The request is resolved to a render key (parameters read and typed, options
checked), and the cache pipeline answers the key; at the pipeline's bottom,
the ``Renderer`` runs the notebook in a pooled kernel. The server's views and the
``publisher render`` command both come through here, so they cannot disagree
about what a chart is.
"""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import parse_qsl

from .bounded import Bounded
from .cache import DiskCache, Entry
from .catalog import Catalog, Chart, Notebook
from .data import Data
from .keys import render_key
from .outcome import Outcome
from .pipeline import Pipeline, Started
from .pool import KernelPool
from .query import read_query
from .redis_shared import RedisShared
from .render import Renderer, RenderRequest
from .settings import Settings

RESOLVED_URLS = 4096  # recently seen URLs whose render request is kept ready


class Publisher:
    """The service: a chart request resolved, then answered through the cache pipeline.

    Built by ``assembly.build``; it also holds the parts the server starts,
    sweeps and reports on (the pool, the disk, Redis).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        pipeline: Pipeline,
        renderer: Renderer,
        *,
        disk: DiskCache,
        redis: RedisShared | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pipeline = pipeline
        self.renderer = renderer
        self.pool: KernelPool = renderer.pool
        self.disk = disk
        self.redis = redis
        self.clock = renderer.clock
        self._resolved: Bounded[tuple[object, ...], RenderRequest] = Bounded(RESOLVED_URLS)

    def resolve(self, notebook: Notebook, chart: Chart, query: str, fmt: str) -> RenderRequest:
        """The render a chart and a raw query string name; raises the 4xx it deserves.

        A URL seen before (same notebook content, same query text) is looked
        up rather than parsed and hashed again: the hot path of a hit.
        """
        seen = (notebook.id, notebook.digest, chart.name, fmt, query)
        request = self._resolved.get(seen)
        if request is not None and request.notebook is notebook:
            self._resolved.move_to_end(seen)
            return request
        items = parse_qsl(query, keep_blank_values=True)
        parsed = read_query(notebook, items, fmt, self.settings)
        key = render_key(notebook.id, notebook.digest, chart.name, parsed.values, parsed.options)
        request = RenderRequest(notebook, chart, parsed, key)
        self._resolved[seen] = request
        return request

    async def get(self, request: RenderRequest) -> Outcome:
        """The chart's entry, from the first layer of the pipeline that has a usable one."""

        def produce(started: Started) -> Awaitable[Entry]:
            return self.renderer(request, started)

        return await self.pipeline.get_or_render(request.key, produce)

    def last_data(self, notebook: Notebook) -> dict[str, Data]:
        """Each chart's data files as its last render on this server read them."""
        return self.renderer.last_data(notebook)

    async def close(self) -> None:
        self.pipeline.close()
        await self.pool.close()
        if self.redis is not None:
            await self.redis.close()

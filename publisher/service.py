"""A chart request: from a notebook, a chart and a query string to its ``Outcome``.

The request is resolved to a render key (parameters read and typed, options
checked), and the cache pipeline answers the key; at the pipeline's bottom,
``_render`` runs the notebook in a pooled kernel. The server's views and the
``publisher render`` command both come through here, so they cannot disagree
about what a chart is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .cache import DiskCache, Entry
from .catalog import Catalog, Chart, Notebook
from .executor import Job
from .extract import FORMATS, chart_image
from .inject import cells_to_run
from .keys import render_key
from .outcome import Outcome
from .pipeline import Clock, Pipeline, Started
from .pool import KernelPool
from .query import Query, read_query
from .redis_shared import RedisShared
from .settings import Settings

RESOLVED_URLS = 4096  # recently seen URLs whose render request is kept ready


@dataclass(frozen=True)
class RenderRequest:
    notebook: Notebook
    chart: Chart
    query: Query
    key: str


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
        pool: KernelPool,
        *,
        disk: DiskCache,
        redis: RedisShared | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pipeline = pipeline
        self.pool = pool
        self.disk = disk
        self.redis = redis
        self.clock = clock
        self._resolved: OrderedDict[tuple[object, ...], RenderRequest] = OrderedDict()

    def resolve(self, notebook: Notebook, chart: Chart, query: str, fmt: str) -> RenderRequest:
        """The render a chart and a raw query string name; raises the 4xx it deserves.

        A URL seen before (same notebook content, same query text) is looked
        up rather than parsed and hashed again: the hot path of a hit.
        """
        seen = (notebook.id, notebook.digest, chart.name, fmt, query)
        request = self._resolved.get(seen)
        if request is not None:
            self._resolved.move_to_end(seen)
            return request
        items = parse_qsl(query, keep_blank_values=True)
        parsed = read_query(notebook, items, fmt, self.settings)
        key = render_key(notebook.id, notebook.digest, chart.name, parsed.values, parsed.options)
        request = RenderRequest(notebook, chart, parsed, key)
        self._resolved[seen] = request
        if len(self._resolved) > RESOLVED_URLS:
            self._resolved.popitem(last=False)
        return request

    async def get(self, request: RenderRequest) -> Outcome:
        """The chart's entry, from the first layer of the pipeline that has a usable one."""

        async def produce(started: Started) -> Entry:
            return await self._render(request, started)

        return await self.pipeline.get_or_render(request.key, produce)

    async def close(self) -> None:
        self.pipeline.close()
        await self.pool.close()
        if self.redis is not None:
            await self.redis.close()

    async def _render(self, request: RenderRequest, started: Started) -> Entry:
        options = request.query.options
        async with self.pool.kernel(fresh=request.notebook.fresh_kernel) as kernel:
            started()
            outputs = await kernel.run(self._job(request), self.settings.timeout)
        image = chart_image(outputs, options.fmt, request.chart.cell is None)
        return Entry.of(image, FORMATS[options.fmt], request.notebook.ttl, created=self.clock())

    def _job(self, request: RenderRequest) -> Job:
        notebook = request.notebook
        return Job(
            cwd=str(notebook.folder),
            cells=cells_to_run(notebook, request.chart, request.query.injected),
            options=request.query.options,
            root=str(self.catalog.root),
            max_pixels=self.settings.max_pixels,
        )

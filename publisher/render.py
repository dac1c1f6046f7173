"""One render, at the bottom of the cache pipeline: a notebook run in a pooled kernel.

What comes back is an ``Entry``: the chart's image, and the data files the
run read (with those the notebook declares), so the cache can follow them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from .bounded import Bounded
from .cache import Entry
from .catalog import Catalog, Chart, Notebook
from .data import NO_DATA, Data, declared, merged
from .executor import Job
from .extract import FORMATS, chart_image
from .inject import cells_to_run
from .pipeline import Clock, Started
from .pool import KernelPool
from .query import Query
from .settings import Settings

log = logging.getLogger(__name__)
REMEMBERED_DATA = 4096  # charts whose last render's data files the API shows


@dataclass(frozen=True)
class RenderRequest:
    """A chart with typed values and options, and the cache key they make."""

    notebook: Notebook
    chart: Chart
    query: Query
    key: str


class Renderer:
    def __init__(
        self, settings: Settings, pool: KernelPool, catalog: Catalog, clock: Clock = time.time
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.catalog = catalog
        self.root = str(catalog.root)  # modules imported from it are forgotten after a render
        self.clock = clock
        self._data: Bounded[tuple[str, str, str], Data] = Bounded(REMEMBERED_DATA)

    async def __call__(self, request: RenderRequest, started: Started) -> Entry:
        options, notebook = request.query.options, request.notebook
        self.catalog.check_readable()  # before anything looks in the notebook's folder
        declared_now = NO_DATA
        if notebook.data:  # before the run, so a file that changes during it is a change
            declared_now = await asyncio.to_thread(declared, notebook.folder, notebook.data)
        async with self.pool.kernel(fresh=notebook.fresh_kernel) as kernel:
            started()
            outputs = await kernel.run(self._job(request), self.settings.timeout)
            read = Data.from_json(kernel.reads())
        image = chart_image(outputs, options.fmt, request.chart.cell is None)
        data = self._data_of(request, read, declared_now)
        return Entry.of(image, FORMATS[options.fmt], notebook.ttl, self.clock(), data)

    def last_data(self, notebook: Notebook) -> dict[str, Data]:
        """Each chart's data files as its last render on this server read them."""
        found = {}
        for chart in notebook.charts:
            data = self._data.get((notebook.id, notebook.digest, chart.name))
            if data is not None:
                found[chart.name] = data
        return found

    def _data_of(self, request: RenderRequest, read: Data, declared_now: Data) -> Data:
        """What the render read, with what the notebook declares; remembered for the API."""
        notebook, limit = request.notebook, self.settings.max_data_files
        data = merged(read, declared_now, limit) if declared_now else read
        if data.dropped:
            log.warning(
                "notebook '%s' read more than %d files: the first %d are followed, %d are not",
                notebook.id,
                limit,
                len(data.files),
                data.dropped,
            )
        chart = (notebook.id, notebook.digest, request.chart.name)
        self._data[chart] = data
        return data

    def _job(self, request: RenderRequest) -> Job:
        notebook = request.notebook
        return Job(
            cwd=str(notebook.folder),
            cells=cells_to_run(notebook, request.chart, request.query.injected),
            options=request.query.options,
            root=self.root,
            max_pixels=self.settings.max_pixels,
            max_reads=self.settings.max_data_files,
        )

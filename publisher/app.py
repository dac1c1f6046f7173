"""The aiohttp application: routes, the error middleware, and what starts and stops with it."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from . import logs, state, views
from .assembly import build
from .background import CleanupContext, every
from .catalog import MIN_SCAN_SECONDS, Catalog
from .connections import Handler, use_connections
from .errors import NotebooksUnreadable, NotFound, PublisherError
from .extract import FORMATS
from .gallery import setup_gallery
from .headers import setup_headers
from .hits import RepeatHits
from .metrics import CONTENT_TYPE, Metrics
from .outcome import OUTCOME
from .responses import error_response, status_error
from .service import Publisher
from .settings import Settings
from .signing import Signer

log = logging.getLogger("publisher")
METRICS = web.AppKey("metrics", Metrics)
SWEEP_SECONDS = 60


def create_app(settings: Settings, service: Publisher | None = None) -> web.Application:
    """The whole server for these settings; tests call it with their own (and their own service)."""
    app = web.Application()
    service = service or build(settings)
    metrics = Metrics(service.pool)
    hits = RepeatHits(service.catalog, service.pipeline)
    use_connections(
        app,
        settings.header_timeout,
        _front(hits, metrics),
        lambda status: metrics.answered(status, None),
    )
    setup_headers(app, settings.frame_ancestors)
    app[state.SETTINGS] = settings
    app[state.SERVICE] = service
    app[state.SIGNER] = Signer(settings.secret)
    app[state.HITS] = hits
    app[METRICS] = metrics
    app[state.HEALTH] = lambda: _health(service)

    async def sweep() -> None:
        removed = await asyncio.to_thread(service.disk.sweep)
        if removed:
            log.info("disk cache: removed %d least recently used entries", removed)

    async def flush() -> None:
        logs.ACCESS_LOG.flush()

    app.cleanup_ctx.append(every(logs.FLUSH_SECONDS, flush, at_end=flush))  # ends last
    app.cleanup_ctx.append(every(SWEEP_SECONDS, sweep, at_start=True))
    app.cleanup_ctx.append(_running)
    app.cleanup_ctx.append(_watch(service.catalog))  # after the kernels: they start while it reads

    formats = "|".join(FORMATS)
    app.router.add_get(r"/charts/{path:.+}.{fmt:" + formats + "}", views.chart)
    app.router.add_get("/api/notebooks", views.notebooks)
    app.router.add_get("/api/folders", views.folders)
    app.router.add_get("/api/notebooks/{id:.+}", views.one_notebook)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/metrics", _metrics)
    setup_gallery(app)
    return app


async def _health(service: Publisher) -> dict[str, Any]:
    pool = service.pool
    writable = await asyncio.to_thread(service.disk.writable)  # file I/O: not on the loop
    catalog = service.catalog
    listing = catalog.latest
    return {
        # a kernel that keeps failing to start (a preload that cannot import) is fatal
        "ok": writable and not pool.closed and pool.failed_starts < 3,
        # alive, and able to render now; not while no read of the notebooks has worked
        "ready": pool.idle + pool.busy > 0 and (listing is not None or not catalog.scan_error),
        "kernels": {
            "size": pool.size,
            "idle": pool.idle,
            "busy": pool.busy,
            "waiting": pool.waiting,
            "restarts": pool.restarts,
            "tainted": pool.tainted,  # retired because a render left what no reset undoes
            "failed_starts": pool.failed_starts,
            "pids": pool.pids,
        },
        "cache": {
            "disk_writable": writable,
            "memory_entries": len(service.pipeline.memory),
            "revalidating": service.pipeline.revalidating,
        },
        # charts and listings wait for the first read of the notebooks
        "catalog": {
            "read": listing is not None,
            "notebooks": len(listing or ()),
            # the folder no longer reads: the last listing answers, reported, not fatal
            "scan_error": catalog.scan_error,
            "scan_failing_since": catalog.scan_failing_since,
        },
        # a Redis outage is reported, not fatal: servers go on from their local tiers
        "redis": service.redis.health() if service.redis else {"configured": False},
    }


def _watch(catalog: Catalog) -> CleanupContext:
    """Read the notebooks in the background from the start, then every ``--scan-interval``.

    The server listens while the first read runs (``/healthz`` answers); chart
    and listing requests wait for it. From then on no request walks, stats or
    parses the notebooks (a chart's data files are ``data.DataWatch``'s business).
    """
    scans = every(max(catalog.scan_interval, MIN_SCAN_SECONDS), catalog.refresh, at_start=True)

    async def context(app: web.Application) -> AsyncIterator[None]:
        catalog.watched = True
        async for _ in scans(app):
            yield
        catalog.watched = False

    return context


async def _freeze_once_read(app: web.Application) -> AsyncIterator[None]:
    """Keep what the server holds for good out of the garbage collector's full collections.

    Once the first read is done, the modules and the notebooks (thousands of
    them) live as long as the process; a full collection walking them took
    ~50 ms every few gallery pages at 3,000 notebooks. ``serve`` only: a test
    process that builds many apps should not freeze each one's leftovers.
    """

    async def freeze() -> None:
        catalog = app[state.SERVICE].catalog
        while True:
            try:
                await catalog.current()
                break
            except NotebooksUnreadable:  # not yet: once the folder reads
                await catalog.scanned()
        gc.freeze()

    task = asyncio.ensure_future(freeze())
    yield
    task.cancel()


async def _running(app: web.Application) -> AsyncIterator[None]:
    """The kernels start with the app; kernels, background renders and Redis stop with it."""
    service = app[state.SERVICE]
    service.pool.start()
    yield
    await service.close()


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _front(hits: RepeatHits, metrics: Metrics) -> Callable[[Handler], Handler]:
    """What every request goes through, around the app's own handler (routing and views).

    A repeat hit is answered before routing; every failure becomes the one
    error shape (nothing else builds error answers); every answer is counted.
    A wrapper rather than a middleware: aiohttp runs middlewares through two
    extra coroutine layers per request, a tenth of a cache hit's time.
    """

    def wrap(handler: Handler) -> Handler:
        async def front(request: web.BaseRequest) -> web.StreamResponse:
            repeat = hits.answer(request)
            response = await _handled(handler, request) if repeat is None else repeat
            metrics.answered(response.status, request.get(OUTCOME))
            return response

        return front

    return wrap


async def _handled(handler: Handler, request: web.BaseRequest) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as e:
        return error_response(_as_error(request, e), request.headers.get("Accept", ""))


def _as_error(request: web.BaseRequest, e: Exception) -> PublisherError:
    if isinstance(e, PublisherError):
        return e
    if isinstance(e, web.HTTPNotFound):
        return NotFound(f"no such page: {request.path}")
    if isinstance(e, web.HTTPException):  # from aiohttp itself: 405 and the like
        return status_error(e.status, e.reason)
    log.exception("unexpected error on %s", request.path_qs, exc_info=e)
    return PublisherError("internal server error")


def run(settings: Settings) -> None:
    logs.configure()
    started = time.time()
    log.info("serving %s on http://%s:%s", settings.notebook_dir, settings.host, settings.port)
    app = create_app(settings)
    app.cleanup_ctx.append(_freeze_once_read)  # after the catalog's: it waits for its first read
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log_class=logs.AccessLogger,
        handler_cancellation=True,  # a client that leaves stops waiting (and queued renders)
        print=None,
        shutdown_timeout=settings.timeout + 5,
    )
    log.info("stopped after %.0fs", time.time() - started)

"""Put a publisher together from its settings: the one place its parts are chosen and wired.

``publisher serve`` and ``publisher render`` both build here, so the command
line renders with the pool, limits and tiers the server uses.
"""

from __future__ import annotations

import time

from .cache import DiskCache, MemoryCache
from .catalog import Catalog
from .pipeline import Clock, Flights, Freshness, Layer, Pipeline, Render, Stored
from .pool import KernelPool
from .redis_shared import RedisLayer, RedisShared
from .render import Renderer
from .service import Publisher
from .settings import Settings


def build(
    settings: Settings, *, clock: Clock = time.time, pool: KernelPool | None = None
) -> Publisher:
    """The service these settings describe; ``clock`` and ``pool`` are for tests to replace."""
    freshness = Freshness(settings.max_stale, clock, data_interval=settings.scan_interval)
    below: Layer = Render()
    redis = RedisShared(settings) if settings.redis_url else None
    if redis is not None:
        below = RedisLayer(redis, below, freshness)
    disk = DiskCache(settings.cache_dir, max_bytes=settings.disk_cache_bytes)
    below = Flights(Stored(disk, below, freshness))
    memory = MemoryCache(settings.memory_cache_bytes)
    catalog = Catalog(settings.notebook_dir, settings.scan_interval)
    pool = pool or KernelPool.from_settings(settings)
    return Publisher(
        settings,
        catalog,
        Pipeline(memory, below, freshness, settings.error_ttl),
        Renderer(settings, pool, catalog, clock),
        disk=disk,
        redis=redis,
    )

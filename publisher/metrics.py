"""Prometheus metrics, one registry per application so several can live in one process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .outcome import Outcome
from .pool import KernelPool

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _PoolCollector(Collector):
    """Reads the pool's own counters at scrape time, so the pool knows nothing of Prometheus."""

    def __init__(self, pool: KernelPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        pool = self.pool
        yield GaugeMetricFamily(
            "publisher_queue_depth", "Renders waiting for a kernel.", value=pool.waiting
        )
        yield GaugeMetricFamily("publisher_kernels_busy", "Kernels rendering now.", value=pool.busy)
        yield GaugeMetricFamily(
            "publisher_kernels_idle", "Warm kernels waiting for work.", value=pool.idle
        )
        yield CounterMetricFamily(
            "publisher_renders", "Renders started on a kernel.", value=pool.renders
        )
        yield CounterMetricFamily(
            "publisher_kernel_restarts",
            "Kernels replaced after an error, a timeout or their quota.",
            value=pool.restarts,
        )


class Metrics:
    def __init__(self, pool: KernelPool) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "publisher_requests",
            "HTTP requests answered, by status.",
            ["status"],
            registry=self.registry,
        )
        self.cache = Counter(
            "publisher_chart_cache",
            "Chart answers by cache result.",
            ["result"],
            registry=self.registry,
        )
        self.render_seconds = Histogram(
            "publisher_render_seconds",
            "Seconds from the start of a render a request waited for to its image.",
            buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(pool))
        self._by_status: dict[int, Counter] = {}
        self._by_cache: dict[str, Counter] = {}

    def answered(self, status: int, outcome: Outcome | None) -> None:
        """Count one answer (a chart's with its outcome); each label's child is looked up once."""
        requests = self._by_status.get(status)
        if requests is None:
            requests = self._by_status[status] = self.requests.labels(str(status))
        requests.inc()
        if outcome is None:
            return
        cache = outcome.cache
        cached = self._by_cache.get(cache)
        if cached is None:
            cached = self._by_cache[cache] = self.cache.labels(cache)
        cached.inc()
        if outcome.render_seconds is not None:
            self.render_seconds.observe(outcome.render_seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

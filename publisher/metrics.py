"""Prometheus metrics, one registry per application so several can live in one process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .outcome import Outcome
from .pool import KernelPool

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Collector(Collector):
    """Reads plain counters at scrape time: the pool's own, and the answers counted.

    A prometheus ``Counter`` takes a lock on every increment, a few percent
    of a cache hit; a dict of ints, read here, does not.
    """

    def __init__(self, pool: KernelPool, metrics: Metrics) -> None:
        self.pool = pool
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "publisher_requests", "HTTP requests answered, by status.", labels=["status"]
        )
        for status, count in sorted(self.metrics.by_status.items()):
            requests.add_metric([str(status)], count)
        yield requests
        cache = CounterMetricFamily(
            "publisher_chart_cache", "Chart answers by cache result.", labels=["result"]
        )
        for result, count in sorted(self.metrics.by_cache.items()):
            cache.add_metric([result], count)
        yield cache
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
        self.by_status: dict[int, int] = {}
        self.by_cache: dict[str, int] = {}
        self.render_seconds = Histogram(
            "publisher_render_seconds",
            "Seconds from the start of a render a request waited for to its image.",
            buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.registry.register(_Collector(pool, self))

    def answered(self, status: int, outcome: Outcome | None) -> None:
        """Count one answer, a chart's with its outcome."""
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if outcome is None:
            return
        self.by_cache[outcome.cache] = self.by_cache.get(outcome.cache, 0) + 1
        if outcome.render_seconds is not None:
            self.render_seconds.observe(outcome.render_seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

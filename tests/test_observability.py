"""What operators see: /healthz, /metrics in Prometheus format, one access-log line a request."""

from __future__ import annotations

import io

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from publisher.cache import DiskCache
from publisher.logs import ACCESS_LOG, BATCH, AccessLog
from publisher.state import SERVICE

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_healthz_reports_kernels_and_cache(client: TestClient) -> None:
    response = await client.get("/healthz")
    health = await response.json()
    assert response.status == 200 and health["ok"] is True and health["ready"] is True
    assert health["kernels"]["size"] == 2
    assert health["cache"]["disk_writable"] is True


async def test_metrics_count_requests_cache_results_and_renders(client: TestClient) -> None:
    await client.get("/charts/echo.png?count=301")
    await client.get("/charts/echo.png?count=301")
    await client.get("/charts/echo.png?count=bad")
    m = await metrics(client)
    assert m[("publisher_requests_total", (("status", "200"),))] >= 2
    assert m[("publisher_requests_total", (("status", "400"),))] >= 1
    assert m[("publisher_chart_cache_total", (("result", "hit"),))] >= 1
    assert m[("publisher_chart_cache_total", (("result", "miss"),))] >= 1
    assert m[("publisher_render_seconds_count", ())] == client.app[SERVICE].pool.renders
    assert m[("publisher_kernels_idle", ())] + m[("publisher_kernels_busy", ())] == 2
    assert ("publisher_queue_depth", ()) in m
    assert ("publisher_kernel_restarts_total", ()) in m


async def test_one_access_log_line_per_request_with_cache_and_render_time(
    client: TestClient,
) -> None:
    ACCESS_LOG.lines.clear()
    await client.get("/charts/echo.png?count=302")
    await client.get("/charts/echo.png?count=302")
    lines = list(ACCESS_LOG.lines)
    assert len(lines) == 2
    assert '"GET /charts/echo.png?count=302" 200 cache=miss render_ms=' in lines[0]
    assert "render_ms=-" not in lines[0]
    assert " 200 cache=hit render_ms=- total_ms=" in lines[1]


async def test_the_access_log_is_written_in_batches() -> None:
    stream = io.StringIO()
    log = AccessLog(stream)
    log.add("one")
    log.add("two")
    assert stream.getvalue() == ""
    log.flush()
    assert stream.getvalue() == "one\ntwo\n" and log.lines == []
    for i in range(BATCH):
        log.add(str(i))
    assert stream.getvalue().count("\n") == BATCH + 2  # a full batch goes out at once


async def test_a_memory_hit_touches_no_disk(client: TestClient, monkeypatch) -> None:
    await client.get("/charts/echo.png?count=303")
    calls = []
    original = DiskCache.get

    async def counting(self: DiskCache, key: str):  # noqa: ANN202
        calls.append(key)
        return await original(self, key)

    monkeypatch.setattr(DiskCache, "get", counting)
    response = await client.get("/charts/echo.png?count=303")
    assert response.headers["X-Publisher-Cache"] == "hit"
    assert calls == []


async def test_healthz_is_503_when_the_disk_cache_cannot_be_written(client: TestClient) -> None:
    settings = client.app[SERVICE].settings
    settings.cache_dir.rename(settings.cache_dir.with_name("moved"))
    try:
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["cache"]["disk_writable"] is False
    finally:
        settings.cache_dir.with_name("moved").rename(settings.cache_dir)

"""Property: whatever text a query string holds, the kernel sees exactly that string.

Hypothesis drives a real server and real kernels. Hypothesis itself is
synchronous, so it runs in a worker thread and sends each request to the
server's event loop.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_http import echoed

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Every code point a URL can carry: all of unicode but lone surrogates, which have no UTF-8.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


async def test_any_unicode_string_reaches_the_kernel_unchanged(client: TestClient) -> None:
    loop = asyncio.get_running_loop()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(text=TEXT)
    def round_trip(text: str) -> None:
        query = "text=" + quote(text, safe="")
        future = asyncio.run_coroutine_threadsafe(echoed(client, query), loop)
        seen = future.result(timeout=60)
        assert seen[0] == text

    await asyncio.to_thread(round_trip)


async def test_code_like_strings_stay_data(client: TestClient) -> None:
    for text in ["'); import os; os._exit(1); ('", '"""', "\\", "{count}", "__import__('os')"]:
        seen = await echoed(client, "text=" + quote(text, safe=""))
        assert seen[0] == text

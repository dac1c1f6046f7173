"""Hostile input never yields a 500 or a hang: generated requests against a live server.

Requests go out over a raw socket, so the path and query reach the server
byte for byte as generated, percent-encoded or not.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher import errors
from publisher.state import SERVICE

pytestmark = pytest.mark.asyncio(loop_scope="module")

DELIBERATE = {200, 304, 400, 403, 404, 413, 414}
CODES = {
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.PublisherError)
} | {"not_found", "method_not_allowed"}

NASTY = [
    "..", "../..", "%2e%2e", "%2F", "\x00", "%00", "\u202e", "\ufeff", "\u0085", "nan", "NaN",
    "inf", "-inf", "1e309", "9" * 5000, "-" + "9" * 30, "0x10", "1_000", "", " ", "true", ",",
    ",,,", "%", "%zz", "%c0%af", "\\", "'", '"', "${x}", "{{x}}", "<script>", "\r\nX: y",
]  # fmt: skip
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
KEYS = st.one_of(
    st.sampled_from(["text", "count", "ratio", "flag", "names", "numbers", "anything"]),
    st.sampled_from(["_dpi", "_width", "_height", "_sig", "_expires", "_x", "__class__"]),
    TEXT,
)
PATHS = st.one_of(
    st.builds(lambda s, ext: f"/charts/{s}.{ext}", TEXT, st.sampled_from(["png", "svg", "pdf"])),
    st.builds(lambda s: f"/charts/echo/{s}.png", TEXT),
    st.builds(lambda s: f"/api/notebooks/{s}", TEXT),
    st.builds(lambda s: f"/{s}", TEXT),
    st.just("/charts/echo.png"),
)


def encode(text: str, raw: bool) -> str:
    """Percent-encoded, or as raw as a request line can carry (non-ASCII as UTF-8 escapes)."""
    if not raw:
        return quote(text, safe="/")
    return "".join(c if c.isascii() and c not in " \r\n" else quote(c) for c in text)


@st.composite
def requests(draw: st.DrawFn) -> str:
    raw = draw(st.booleans())
    path = encode(draw(PATHS), raw)
    pairs = draw(st.lists(st.tuples(KEYS, TEXT), max_size=6))
    query = "&".join(f"{encode(k, raw)}={encode(v, raw)}" for k, v in pairs)
    if draw(st.integers(0, 20)) == 0:
        query += "&text=" + "x" * 5000
    if draw(st.integers(0, 20)) == 0:
        query = "&".join(f"k{i}=1" for i in range(100))
    return path + ("?" + query if query else "")


async def send(port: int, target: str) -> tuple[int, bytes, str]:
    """One request over a raw connection; (status, body, content type)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), body, headers.get("Content-Type", "")


def check(status: int, body: bytes, content_type: str) -> None:
    assert status in DELIBERATE, (status, body[:300])
    if status >= 400 and content_type.startswith("application/json"):
        error = json.loads(body)
        assert error["error"]["code"] in CODES
    elif status >= 400:
        assert status == 400  # only the HTTP parser itself answers without our JSON


async def test_generated_requests_get_deliberate_answers(client: TestClient) -> None:
    loop = asyncio.get_running_loop()
    port = client.server.port
    assert port is not None

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(target=requests())
    def probe(target: str) -> None:
        future = asyncio.run_coroutine_threadsafe(send(port, target), loop)
        check(*future.result(timeout=60))

    await asyncio.to_thread(probe)
    assert (await client.get("/charts/echo.png")).status == 200  # and the server still serves


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/charts/echo.png?text=" + "x" * 5000, 414),
        ("/charts/echo.png?" + "&".join(f"k{i}=1" for i in range(40)), 400),
        ("/charts/echo.png?text=" + "x" * 1001, 400),
        ("/charts/echo.png?count=" + "9" * 19, 400),
        ("/charts/echo.png?numbers=" + ",".join(["1"] * 101), 400),
        ("/charts/echo.png?ratio=nan", 400),
        ("/charts/echo.png?ratio=1e309", 400),
        ("/charts/echo.png?_dpi=601", 400),
        ("/charts/echo.png?_width=4097", 400),
        ("/charts/%2e%2e/%2e%2e/etc/passwd.png", 404),
        ("/charts/echo%00.png", 404),
    ],
)
async def test_limits_are_refused_before_any_render(
    client: TestClient, target: str, status: int
) -> None:
    before = client.app[SERVICE].pool.renders
    got, body, content_type = await send(client.server.port or 0, target)
    assert got == status, body[:300]
    check(got, body, content_type)
    assert client.app[SERVICE].pool.renders == before

"""Connections over raw sockets: the header deadline, and answers to requests aiohttp cannot parse.

A client here is a socket that sends exactly the bytes a test says, as slowly as
it says: what a slow or broken client does, which an HTTP client library would not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from .conftest import error_of, serve, test_settings
from .test_gallery_browser import _serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADER_TIMEOUT = 0.5
MARGIN = 2.0  # a loaded machine's lateness; the default keep-alive would hold the socket 75 s
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    settings = test_settings(
        reference_dir, tmp_path_factory.mktemp("cache"), header_timeout=HEADER_TIMEOUT, kernels=1
    )
    async with serve(settings) as client:
        yield client


@pytest.fixture(scope="module")
def served(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``publisher serve`` itself, whose connections ``web.run_app`` makes."""
    yield from _serve(
        reference_dir,
        tmp_path_factory.mktemp("served"),
        "--header-timeout", str(HEADER_TIMEOUT), "--kernels", "1", "--preload", "",
    )  # fmt: skip


async def connect(
    client: TestClient,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(client.host, client.port)


async def answer_and_close(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + MARGIN)
    return data, time.monotonic() - started


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def json_error(answer: bytes, status: int) -> dict[str, Any]:
    """The error of a raw answer, with the status and the shape every error has."""
    got, headers, body = parse(answer)
    assert got == status, answer[:300]
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    error = json.loads(body)
    assert set(error) == {"error"} and {"code", "message"} <= set(error["error"])
    return dict(error["error"])


async def test_a_header_left_unfinished_gets_408_and_the_connection_closes(
    client: TestClient,
) -> None:
    reader, writer = await connect(client)
    writer.write(PARTIAL)
    answer, seconds = await answer_and_close(reader)
    writer.close()

    error = json_error(answer, 408)
    assert error["code"] == "request_timeout"
    assert "headers" in error["message"]
    assert seconds >= HEADER_TIMEOUT * 0.8


async def test_a_pipelined_header_left_unfinished_gets_408_too(client: TestClient) -> None:
    """One chunk: a whole request, then the start of the next, then silence."""
    reader, writer = await connect(client)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + PARTIAL)
    answer, _ = await answer_and_close(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    late = answer[answer.rindex(b"HTTP/1.") :]
    assert json_error(late, 408)["code"] == "request_timeout"


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    client: TestClient,
) -> None:
    reader, writer = await connect(client)
    answer, _ = await answer_and_close(reader)
    writer.close()
    assert answer == b""


async def test_a_header_drip_fed_a_byte_at_a_time_is_cut_off(client: TestClient) -> None:
    reader, writer = await connect(client)
    closed = asyncio.ensure_future(answer_and_close(reader))
    header = PARTIAL + b"X-Slow: " + b"a" * 1000
    sent = 0
    while not closed.done() and sent < len(header):
        try:
            writer.write(header[sent : sent + 1])
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        await asyncio.wait([closed], timeout=0.2)  # the client's pace, or the server's close
    answer, seconds = await closed
    writer.close()

    assert json_error(answer, 408)["code"] == "request_timeout"
    assert seconds < HEADER_TIMEOUT + MARGIN
    assert sent < len(header)


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_clock(
    client: TestClient,
) -> None:
    reader, writer = await connect(client)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(2):
        writer.write(request)
        status, headers, _ = parse(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(int(headers["content-length"]))
        assert status == 200
        with pytest.raises(TimeoutError):  # idle between requests: keep-alive's business
            await asyncio.wait_for(reader.read(1), HEADER_TIMEOUT * 3)
    writer.close()


async def test_a_render_longer_than_the_header_timeout_is_answered(client: TestClient) -> None:
    response = await client.get(f"/charts/slow.png?seconds={HEADER_TIMEOUT * 3}")
    assert response.status == 200, await response.text()


async def test_an_oversized_header_line_gets_the_json_error_shape(client: TestClient) -> None:
    response = await client.get("/healthz", headers={"X-Big": "a" * 9000})
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "bad_request"
    assert "longer than 8190 bytes" in error["message"] and "aaaa" not in error["message"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_too_many_headers_get_the_json_error_shape(client: TestClient) -> None:
    response = await client.get("/healthz", headers={f"X-H{i}": "v" for i in range(200)})
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "bad_request"
    assert "headers" in error["message"].lower()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_request_line_that_does_not_parse_gets_the_json_error_shape(
    client: TestClient,
) -> None:
    reader, writer = await connect(client)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    answer, _ = await answer_and_close(reader)
    writer.close()
    assert json_error(answer, 400)["code"] == "bad_request"


async def test_publisher_serve_answers_the_same_way(served: str) -> None:
    host, port = served.removeprefix("http://").split(":")
    answers = []
    for request in (PARTIAL, PARTIAL + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        answers.append((await answer_and_close(reader))[0])
        writer.close()

    assert json_error(answers[0], 408)["code"] == "request_timeout"
    assert "longer than 8190 bytes" in json_error(answers[1], 400)["message"]


async def test_answers_given_before_routing_are_counted_in_metrics(client: TestClient) -> None:
    async def counted(status: int) -> float:
        text = await (await client.get("/metrics")).text()
        line = f'publisher_requests_total{{status="{status}"}} '
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    before = {status: await counted(status) for status in (400, 408)}
    for request in (PARTIAL, b"NOT HTTP AT ALL\r\n\r\n"):
        reader, writer = await connect(client)
        writer.write(request)
        await answer_and_close(reader)
        writer.close()
    assert await counted(408) == before[408] + 1
    assert await counted(400) == before[400] + 1

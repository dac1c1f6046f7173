"""What reaches the log from a request or a notebook cannot forge a line, nor flood one."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from publisher import logs
from publisher.logs import ACCESS_LOG, MAX_REQUEST, TRACEBACK_PREFIX, AccessLogger, Formatter

FORGED = "\n2026-01-01 00:00:00,000 CRITICAL publisher forged"


def formatted(message: str, *args: object, exc_info: Any = None) -> str:
    record = logging.LogRecord("publisher", logging.INFO, __file__, 1, message, args, exc_info)
    return Formatter(logs.FORMAT).format(record)


def test_a_forged_line_in_a_message_stays_on_its_records_line() -> None:
    line = formatted("render failed: %s", ValueError(f"bad value 'x{FORGED}'"))
    assert "\n" not in line
    assert line.endswith(
        "render failed: bad value 'x\\n2026-01-01 00:00:00,000 CRITICAL publisher forged'"
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\r", "\\r"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\t", "\\t"),
    ],
)
def test_control_characters_are_written_as_escapes(raw: str, shown: str) -> None:
    assert formatted("value %s", f"a{raw}b").endswith(f"value a{shown}b")


def test_printable_text_is_left_as_it_is() -> None:
    text = "Q1 (draft) café 日本語 \\n ✓"
    assert logs.escape(text) is text


def test_a_traceback_keeps_its_lines_and_none_passes_for_a_record() -> None:
    try:
        raise ValueError(f"from a notebook{FORGED}")
    except ValueError:
        text = formatted("unexpected error on %s", "/charts/x.png", exc_info=sys.exc_info())
    first, *rest = text.split("\n")
    assert first.endswith("unexpected error on /charts/x.png")
    assert rest[0] == f"{TRACEBACK_PREFIX}Traceback (most recent call last):"
    assert any(line.startswith(f'{TRACEBACK_PREFIX}  File "{__file__}"') for line in rest)
    assert len(rest) >= 4 and all(line.startswith(TRACEBACK_PREFIX) for line in rest)
    assert f"{TRACEBACK_PREFIX}2026-01-01 00:00:00,000 CRITICAL publisher forged" in rest


def test_configure_writes_every_record_through_the_formatter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as in a fresh ``publisher serve``
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    logs.configure(stream)
    logging.getLogger("publisher.service").info("render failed: %s", f"boom{FORGED}")
    assert stream.getvalue().count("\n") == 1
    assert "render failed: boom\\n2026-01-01" in stream.getvalue()


async def access_lines(*targets: bytes) -> list[str]:
    """The access log lines of raw requests, sent as bytes so nothing on the way tidies them."""
    server = TestServer(web.Application())
    await server.start_server(access_log_class=AccessLogger)
    ACCESS_LOG.lines.clear()
    try:
        for target in targets:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await reader.read()  # the server logs before it closes
            writer.close()
            await writer.wait_closed()
        return list(ACCESS_LOG.lines)
    finally:
        await server.close()


async def test_an_access_line_is_one_line_and_capped() -> None:
    query = "q=" + "a" * 4998
    [line] = await access_lines(f"/charts/x%0A2026-01-01%0Dforged.png?{query}".encode())
    assert "\n" not in line and "\r" not in line
    assert '"GET /charts/x%0A2026-01-01%0Dforged.png?q=aaa' in line
    cut = len("GET /charts/x%0A2026-01-01%0Dforged.png?") + len(query) - MAX_REQUEST
    assert f'...[{cut} more characters]" 404 cache=- render_ms=- total_ms=' in line
    assert len(line) < MAX_REQUEST + 200


async def test_a_quote_in_a_request_cannot_end_the_request_field() -> None:
    [line] = await access_lines(b'/a"b?c="d')
    assert '"GET /a\\"b?c=\\"d" 404 ' in line


def test_a_request_field_that_holds_raw_controls_is_escaped() -> None:
    # the HTTP parser refuses these today; the access log must not depend on it
    field = logs.request_field("GET", "/a\nb\x1b[2J?c=\u2028")
    assert field == "GET /a\\nb\\x1b[2J?c=\\u2028"


async def test_an_ordinary_access_line_is_unchanged() -> None:
    [line] = await access_lines(b"/charts/echo.png?count=3")
    assert '"GET /charts/echo.png?count=3" 404 cache=- render_ms=- total_ms=' in line

"""Logging for ``publisher serve``, and the access log: one line a request, written in batches.

A cache hit costs tens of microseconds; a ``logging`` record per request
would cost about as much again (the profile of a hit showed it). Access lines
are therefore formatted with one f-string, kept in memory and written out in
one ``write`` when ``BATCH`` lines are waiting, and by the app every
``FLUSH_SECONDS`` and when it stops. Everything else goes through ``logging`` as usual.

Text from a request or a notebook (a path, a parameter value inside an
exception message) is escaped before it is written, in the access log and in
every record's message alike: a newline in it cannot start a line that passes
for a record of its own, nor can an escape sequence repaint the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .outcome import OUTCOME

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FLUSH_SECONDS = 0.5
BATCH = 1024
MAX_REQUEST = 512  # characters of an access log's request field; a longer one is cut
# C0 and C1 controls, DEL, and the two separators some viewers break lines at
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
TRACEBACK_PREFIX = "  | "  # on every line of a traceback, which no record's first line has


def escape(text: str) -> str:
    """``text`` on one line, its control characters written as Python escapes (``\\n``)."""
    if text.isprintable():  # the usual case, and a fast test
        return text
    return CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def cap(text: str, limit: int) -> str:
    """At most ``limit`` characters, and a marker that says how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


class Formatter(logging.Formatter):
    """A record's message is one line; its traceback, if any, follows on prefixed lines.

    The message (and whatever it quotes from a request or a notebook) is
    escaped. A traceback keeps its line breaks to stay readable, but every
    line of it starts with ``TRACEBACK_PREFIX``, so an exception message that
    holds a newline cannot make a line that looks like a new record.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _prefixed(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _prefixed(super().formatStack(stack_info))


def _prefixed(text: str) -> str:
    return "\n".join(TRACEBACK_PREFIX + escape(line) for line in text.split("\n"))


def configure(stream: TextIO | None = None) -> None:
    """Records at INFO and above to ``stream`` (stderr), each through the escaping Formatter."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(Formatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


class AccessLog:
    """Lines waiting to be written, and where they go."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def stamp(self) -> str:
        """The current second, formatted once a second rather than once a line."""
        now = int(time.time())
        if now != self._second:
            self._second, self._stamp = now, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        return self._stamp

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.lines:
            return
        stream = self.stream or sys.stderr
        stream.write("\n".join(self.lines) + "\n")
        stream.flush()
        self.lines.clear()


ACCESS_LOG = AccessLog()


class AccessLogger(AbstractAccessLogger):
    """One line a request: client, request line, status, cache result, render and total time."""

    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        outcome = request.get(OUTCOME)
        cache, render = "-", "-"
        if outcome is not None:
            cache = outcome.cache
            if outcome.render_seconds is not None:
                render = f"{outcome.render_seconds * 1000:.1f}"
        ACCESS_LOG.add(
            f"{ACCESS_LOG.stamp()} {escape(str(request.remote))}"
            f' "{request_field(request.method, request.raw_path)}"'
            f" {response.status} cache={cache} render_ms={render} total_ms={elapsed * 1000:.1f}"
        )


def request_field(method: str, target: str) -> str:
    """The quoted request field: escaped, its own quotes too, and capped at ``MAX_REQUEST``."""
    field = f"{method} {target}"
    if '"' in field:
        field = field.replace('"', '\\"')
    return cap(escape(field), MAX_REQUEST)

"""One client connection: a clock on its request headers, and protocol errors in our shape.

aiohttp waits for a request's headers as long as a connection lives (its
keep-alive timeout, 75 s under ``run_app``), so a client that sends a header a
byte at a time, or half a header and then nothing, holds a connection and its
memory that long; a few hundred such clients hold them all. Here the headers
must be complete within ``--header-timeout`` seconds of the connection opening,
or of the first byte of a later request on it. A client that sent part of a
request then gets a 408; one that sent nothing is just disconnected.

A request aiohttp cannot parse (a header line past 8190 bytes, more than 128
headers) never reaches the app or its error middleware: aiohttp answers it from
the protocol, in text. ``Connection.handle_error`` gives those answers the one
error shape, the same as every other error.

aiohttp has no option for the class of its connections: the ``Server`` an
``AppRunner`` gets from ``Application._make_handler`` makes a ``RequestHandler``
for each. ``use_connections`` wraps that method on one app, so every runner of it
(``run_app``'s, the tests' ``TestServer``) makes ``Connection``s. The protocol
state this reads (``_messages``, ``_request_count``, ``_waiter``, ``_ErrInfo``)
is aiohttp's; tests/test_connections.py fails if it moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _ErrInfo

from .errors import BadRequest, PublisherError, RequestTimeout
from .headers import NOSNIFF
from .responses import error_response, status_error


class HeaderTimeout(Exception):
    """A request's headers did not arrive in time."""


class Connection(web.RequestHandler):
    """aiohttp's connection, with a deadline for each request's headers."""

    __slots__ = ("header_timeout", "_clock", "_heard", "_body", "_timed_out", "_server")

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self.header_timeout = header_timeout
        self._clock: float | None = None  # loop time the awaited headers' clock started
        self._heard = False  # a byte of the headers the clock waits for has arrived
        self._body: StreamReader | None = None  # the last request's body, until it is all in
        self._timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_clock()
        if isinstance(self._server, Connections):
            self._server.watch()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._timed_out:
            return  # the 408 is queued; what follows is not read
        if data and self._clock is None and self._awaits_headers():
            self._start_clock()  # the first byte of a later request on this connection
        self._heard = self._heard or bool(data)
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # headers complete, or unparseable: either ends them
            self._stop_clock()
            self._body = self._messages[-1][1] if self._messages else None
            if not data.endswith(b"\r\n\r\n") and self._awaits_headers():
                # the chunk went on past that request: the start of a pipelined next one
                self._start_clock()
                self._heard = True

    def _awaits_headers(self) -> bool:
        """Whether bytes arriving now begin a request, rather than a body or an upgrade."""
        if self._upgraded or self._payload_parser is not None:
            return False
        return self._body is None or self._body.is_eof()

    def _start_clock(self) -> None:
        """A timestamp, not a timer: one sweep a server checks every connection's."""
        if self.header_timeout > 0 and self._clock is None:
            self._heard = False
            self._clock = self._loop.time()

    def _stop_clock(self) -> None:
        self._clock = None

    def late(self, now: float) -> bool:
        return self._clock is not None and now - self._clock >= self.header_timeout

    def headers_late(self) -> None:
        self._clock = None
        if self._force_close or self._close:
            return
        if not self._heard:
            self.force_close()  # nothing was asked, so there is nothing to answer
            return
        self._timed_out = True
        message = f"the request's headers did not arrive within {self.header_timeout:g} s"
        # queued like a request aiohttp could not parse: answered in turn, then closed
        late = _ErrInfo(
            status=HTTPStatus.REQUEST_TIMEOUT, exc=HeaderTimeout(message), message=message
        )
        self._request_count += 1
        self._messages.append((late, EMPTY_PAYLOAD))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request the app never saw, or that failed past its middleware."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response is sent already: no room for the error")
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:  # a client's mistake: the access log has its line, a traceback would add nothing
            self.logger.debug("bad request from %s: %s", request.remote, message)
        response = error_response(
            _error(status, exc, message), request.headers.get(hdrs.ACCEPT, "")
        )
        response.headers.update(NOSNIFF)
        response.force_close()
        if isinstance(self._server, Connections):
            self._server.answered(response.status)
        return response


def _error(status: int, exc: BaseException | None, message: str | None) -> PublisherError:
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        return PublisherError("internal server error")
    if isinstance(exc, HeaderTimeout):
        return RequestTimeout(message or "the request's headers came too late")
    if isinstance(exc, LineTooLong):  # aiohttp's message quotes 100 bytes of the line
        return BadRequest(f"a request line or header is longer than {exc.args[1]} bytes")
    return status_error(status, message or "")


class Connections(web.Server):
    """The runner's server for one app: aiohttp's, making a ``Connection`` for each client.

    A timer per request would cost a heap push and a cancel on every cache hit;
    instead one sweep, every quarter of the timeout while connections are open,
    cuts off those whose headers are late (so a late one goes at 1 to 1.25 times
    the timeout).
    """

    def __init__(
        self,
        server: web.Server,
        header_timeout: float,
        handler: Handler,
        answered: Callable[[int], None],
    ) -> None:
        super().__init__(
            handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.header_timeout = header_timeout
        self.answered = answered  # counts an answer the app's own handler never gave
        self._sweep: asyncio.TimerHandle | None = None

    def watch(self) -> None:
        """Sweep while there are connections; called as each one opens."""
        if self._sweep is None and self.header_timeout > 0:
            self._sweep = self._loop.call_later(self.header_timeout / 4, self._cut_off_late)

    def _cut_off_late(self) -> None:
        self._sweep = None
        now = self._loop.time()
        for connection in list(self._connections):
            if isinstance(connection, Connection) and connection.late(now):
                connection.headers_late()
        if self._connections:
            self.watch()

    def __call__(self) -> Connection:
        return Connection(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def use_connections(
    app: web.Application,
    header_timeout: float,
    front: Callable[[Handler], Handler],
    answered: Callable[[int], None],
) -> None:
    """Every runner of ``app`` serves it through ``Connection``s with this header deadline,
    and hands each request to ``front(the app's own handler)``; ``answered`` counts the
    answers given without it (a 400 for what aiohttp could not parse, a 408)."""
    make_server = app._make_handler

    def make_handler(**kwargs: Any) -> web.Server:
        server = make_server(**kwargs)
        return Connections(server, header_timeout, front(server.request_handler), answered)

    app._make_handler = make_handler  # type: ignore[method-assign]

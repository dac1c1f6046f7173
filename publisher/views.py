"""HTTP handlers: read the URL, call the service, shape the answer."""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from . import state
from .api import folder_json, notebook_json, page_json
from .browse import Listing, api_criteria, one_value, page_of
from .errors import RequestTooLarge
from .headers import CHART_HEADERS
from .outcome import HIT, OUTCOME, STALE, Outcome
from .signing import EXPIRES, Signer

CACHE_HEADER = "X-Publisher-Cache"


async def chart(request: web.Request) -> web.StreamResponse:
    settings = request.app[state.SETTINGS]
    query = request.rel_url.raw_query_string
    if len(query) > settings.max_query_length:
        raise RequestTooLarge(
            f"query string is {len(query)} characters (at most {settings.max_query_length})"
        )
    request.app[state.SIGNER].check(request)
    service = request.app[state.SERVICE]
    catalog = service.catalog
    if catalog.latest is None and catalog.watched:  # the server's first seconds only
        await catalog.current()  # a lookup now would walk the folder on the event loop
    notebook, chart_ = catalog.find(request.match_info["path"])
    render = service.resolve(notebook, chart_, query, request.match_info["fmt"])
    outcome = request[OUTCOME] = await service.get(render)
    entry = outcome.entry
    headers = _chart_headers(outcome, settings.browser_max_age, service.clock())
    if "If-None-Match" in request.headers and _matches(request, entry.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = entry.content_type
    if _repeatable(request, outcome):
        request.app[state.HITS].remember(request, render, outcome, headers)
    return web.Response(body=entry.body, headers=headers)


def _chart_headers(outcome: Outcome, max_age: int, now: float) -> dict[str, str]:
    entry = outcome.entry
    left = entry.fresh_for(now)
    if outcome.cache == STALE:  # past its ttl, or its data changed: a new one is on its way
        max_age = 0
    elif left is not None:
        max_age = max(0, int(left))
    headers = {
        "ETag": entry.etag,
        "Last-Modified": entry.last_modified,
        "Cache-Control": f"public, max-age={max_age}",
        CACHE_HEADER: outcome.cache,
        **CHART_HEADERS[entry.content_type],
    }
    if outcome.render_seconds is not None:
        headers["Server-Timing"] = f"render;dur={outcome.render_seconds * 1000:.1f}"
    return headers


def _repeatable(request: web.Request, outcome: Outcome) -> bool:
    """A memory hit whose next answer is byte for byte this one (see ``hits``)."""
    return (
        outcome.cache == HIT
        and outcome.entry.ttl is None
        and request.method == "GET"
        and EXPIRES not in request.query
    )


def _matches(request: web.Request, etag: str) -> bool:
    """If-None-Match names this ETag, or is ``*`` (any current representation)."""
    if request.headers["If-None-Match"].strip() == "*":
        return True
    return any(tag.value == etag.strip('"') for tag in request.if_none_match or ())


async def notebooks(request: web.Request) -> web.Response:
    """Every notebook, or one page of those a search and a folder select, in natural order."""
    listing = await request.app[state.SERVICE].catalog.current()
    signer = request.app[state.SIGNER]
    criteria = api_criteria(request.query)
    if criteria is None:  # every notebook: built once per listing, not once per request
        body = _every_notebook(listing, signer)
        return web.Response(body=body, content_type="application/json", charset="utf-8")
    found = listing.find(criteria.query, criteria.folder)
    page = page_of(found, criteria.offset, criteria.limit)

    def link(offset: int) -> str:
        return str(request.rel_url.update_query(offset=offset, limit=criteria.limit))

    return web.json_response(page_json(page, signer, link), dumps=_dumps)


@functools.lru_cache(maxsize=2)
def _every_notebook(listing: Listing, signer: Signer) -> bytes:
    """The bare URL's answer: megabytes at thousands of notebooks, and only a scan changes it."""
    page = page_of(listing.notebooks, 0, max(1, len(listing)))
    return _dumps(page_json(page, signer, lambda offset: "")).encode()


async def folders(request: web.Request) -> web.Response:
    """The folder tree (below ``?folder=``), with how many notebooks each folder holds."""
    folder = one_value(request.query, "folder")
    listing = await request.app[state.SERVICE].catalog.current()
    tree = folder_json(listing, listing.folder(folder))
    return web.Response(text=tree, content_type="application/json")


async def one_notebook(request: web.Request) -> web.Response:
    service = request.app[state.SERVICE]
    notebook = service.catalog.get(request.match_info["id"])
    body = notebook_json(notebook, request.app[state.SIGNER], service.last_data(notebook))
    return web.json_response(body, dumps=_dumps)


async def healthz(request: web.Request) -> web.Response:
    health = await request.app[state.HEALTH]()
    return web.json_response(health, status=200 if health["ok"] else 503)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

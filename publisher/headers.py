"""What a browser may do with an answer: ``nosniff`` on every one, a policy by content type.

Charts, errors and JSON must never be read as HTML or script, whatever a
browser guesses from their bytes, so every answer says ``nosniff``. The gallery
page runs only its own files and may be framed only where
``--frame-ancestors`` allows. An SVG chart is markup a notebook wrote, served
from this origin: its policy runs no script and loads nothing from anywhere
(``sandbox`` gives it an origin of its own too), so a notebook cannot run script
as the server through it, while its inline styles and embedded ``data:`` images
still draw.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from .extract import FORMATS

NOSNIFF_HEADER = "X-Content-Type-Options"
NOSNIFF = {NOSNIFF_HEADER: "nosniff"}
CSP = "Content-Security-Policy"

# by content type; ``{frame_ancestors}`` is the setting of that name
POLICIES: dict[str, str] = {
    "text/html": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; base-uri 'none';"
        " frame-ancestors {frame_ancestors}"
    ),
    "image/svg+xml": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; sandbox"
    ),
}


# A chart's, by its content type: its view sets them itself, so the hook, on the hot
# path of a cache hit, only has to see that they are there.
CHART_HEADERS: dict[str, dict[str, str]] = {
    mime: {**NOSNIFF, CSP: POLICIES[mime]} if mime in POLICIES else dict(NOSNIFF)
    for mime in FORMATS.values()
}


def security_headers(frame_ancestors: str) -> dict[str, dict[str, str]]:
    """The headers an answer carries, by its content type; ``""`` for any other type."""
    by_type = {
        kind: {**NOSNIFF, CSP: policy.format(frame_ancestors=frame_ancestors)}
        for kind, policy in POLICIES.items()
    }
    by_type[""] = dict(NOSNIFF)
    return by_type


def setup_headers(app: web.Application, frame_ancestors: str) -> None:
    """Every answer the app prepares (routes, static files, errors, 304s) gets its headers."""
    by_type = security_headers(frame_ancestors)

    async def secure(request: web.Request, response: web.StreamResponse) -> None:
        if NOSNIFF_HEADER in response.headers:
            return  # a chart, whose view set its own
        headers = by_type.get(_content_type(request, response), by_type[""])
        for name, value in headers.items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(secure)


def _content_type(request: web.Request, response: web.StreamResponse) -> str:
    declared = response.headers.get(hdrs.CONTENT_TYPE)
    if declared is None:
        # a 304 has no body to type: it stands for the chart its URL names
        return FORMATS.get(request.match_info.get("fmt", ""), "")
    return declared.partition(";")[0].strip().lower()

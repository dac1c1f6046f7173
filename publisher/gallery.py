"""The gallery page at ``/``: every notebook's charts, a form to try values, embed snippets.

The page is the ``/api/notebooks`` JSON rendered for people. It works without
JavaScript (the default images, the snippets of their URLs); ``gallery.js`` adds
the live preview, the copy buttons and the server's error messages.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import state
from .api import chart_path, notebook_json
from .signing import Signer

HIDPI = 200  # the ``_dpi`` of a snippet's 2x image: twice matplotlib's default 100
STATIC = Path(__file__).parent / "static"

# input type and step for a parameter type; every other type is a text field
INPUTS: dict[str, tuple[str, str | None]] = {
    "int": ("number", "1"),
    "float": ("number", "any"),
    "bool": ("checkbox", None),
}
_MARKDOWN_SPECIAL = re.compile(r"([\\\[\]])")
_SCHEME = re.compile(r"https?")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class Field:
    """One parameter as a form control, prefilled with its default as the URL would spell it."""

    name: str
    type: str
    help: str
    input: str
    step: str | None
    value: str
    checked: bool


@dataclass(frozen=True)
class ChartView:
    name: str
    alt: str
    url: str  # as the JSON has it: signed when the server signs
    url2x: str  # the same chart at ``_dpi=HIDPI``, signed too when the server signs
    urls: dict[str, str]  # by format
    snippets: dict[str, str]  # url, markdown, html: absolute, for a page without JavaScript


@dataclass(frozen=True)
class NotebookView:
    id: str
    title: str
    ttl: float | None
    error: str | None
    fields: tuple[Field, ...]
    charts: tuple[ChartView, ...]


def setup_gallery(app: web.Application) -> None:
    """Templates, the ``/`` route and the page's static files, on an app from ``create_app``."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("publisher", "templates"),
        autoescape=True,
    )
    app.router.add_get("/", gallery, name="gallery")
    # ?v=<hash of the file> on every asset URL, so a new version is never read from a stale cache
    app.router.add_static("/static/", STATIC, name="static", append_version=True)
    app.on_response_prepare.append(_cache_versioned_assets)


async def _cache_versioned_assets(request: web.Request, response: web.StreamResponse) -> None:
    """A versioned asset URL never changes content, so caches may keep it for good."""
    if request.path.startswith("/static/") and "v" in request.query and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


async def gallery(request: web.Request) -> web.Response:
    signer = request.app[state.SIGNER]
    base = public_base(request)
    notebooks = [
        _notebook_view(notebook_json(nb, signer), signer, base)
        for nb in request.app[state.SERVICE].catalog.all()
    ]
    static = request.app.router["static"]
    context = {
        "public_url": base,
        "notebooks": notebooks,
        "chart_count": sum(len(nb.charts) for nb in notebooks),
        "signed": signer.enabled,
        "hidpi": HIDPI,
        "assets": {
            name: static.url_for(filename=name)
            for name in ("gallery.css", "gallery.js", "favicon.svg")
        },
    }
    response = aiohttp_jinja2.render_template("gallery.html", request, context)
    response.headers["Cache-Control"] = "no-cache"
    return response


def public_base(request: web.Request) -> str:
    """Where people reach this server, to which a chart's path is appended in a snippet.

    ``--public-url`` when it is set (a path prefix and all); else the request's
    scheme and Host, or a proxy's ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
    with ``--trust-forwarded``. A client can send those headers too, so they are
    read only when a proxy is known to set them.
    """
    settings = request.app[state.SETTINGS]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme, host = request.scheme, request.host
    if settings.trust_forwarded:
        scheme = _forwarded(request, "X-Forwarded-Proto", _SCHEME) or scheme
        host = _forwarded(request, "X-Forwarded-Host", _HOST) or host
    return f"{scheme}://{host}"


def _forwarded(request: web.Request, name: str, valid: re.Pattern[str]) -> str | None:
    """The value the nearest proxy gave: the last in a list, when it reads as one."""
    value = ",".join(request.headers.getall(name, [])).rpartition(",")[2].strip().lower()
    return value if valid.fullmatch(value) else None


def _notebook_view(body: dict[str, Any], signer: Signer, base: str) -> NotebookView:
    charts = body["charts"]
    views = []
    for chart in charts:
        alt = body["title"] if len(charts) == 1 else f"{body['title']}: {chart['name']}"
        url2x = signer.sign(f"{chart_path(body['id'], chart['name'])}?_dpi={HIDPI}")
        views.append(
            ChartView(
                name=chart["name"],
                alt=alt,
                url=chart["url"],
                url2x=url2x,
                urls=chart["urls"],
                snippets=_snippets(base + chart["url"], base + url2x, alt),
            )
        )
    return NotebookView(
        id=body["id"],
        title=body["title"],
        ttl=body["ttl"],
        error=body["error"]["message"] if body["error"] else None,
        fields=tuple(_field(p) for p in body["parameters"]),
        charts=tuple(views),
    )


def _field(param: dict[str, Any]) -> Field:
    kind, step = INPUTS.get(param["type"], ("text", None))
    return Field(
        name=param["name"],
        type=param["type"],
        help=param["help"],
        input=kind,
        step=step,
        value=_text(param["default"], param["type"]),
        checked=param["default"] is True,
    )


def _text(value: Any, kind: str) -> str:
    """A default as query text: lists comma-separated, ``True``/``None`` as papermill's ``-p`` reads them."""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if value is None:
        return "None" if kind == "any" else ""
    return str(value)


def _snippets(url: str, url2x: str, alt: str) -> dict[str, str]:
    """The three embed forms; ``gallery.js`` builds the same ones for the values a person picks."""
    attr = html.escape
    label = _MARKDOWN_SPECIAL.sub(r"\\\1", alt)
    return {
        "url": url,
        "markdown": f"![{label}]({url})",
        "html": f'<img src="{attr(url)}" srcset="{attr(url2x)} 2x" alt="{attr(alt)}">',
    }

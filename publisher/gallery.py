"""The gallery at ``/``: folders to walk, a search, and a page of notebooks' charts at a time.

A page is the ``/api/notebooks`` JSON rendered for people: each notebook's
charts, a form to try values, embed snippets. ``/?folder=PATH`` is a folder,
``/?q=TEXT`` a search (in a folder too, when both are given), ``&page=N`` a
later page; each is a plain link, so it can be bookmarked. The page works
without JavaScript; ``gallery.js`` adds the live preview, the copy buttons, the
server's error messages, and a search that refines the results as one types
by fetching this same page.

The page is served at ``/`` only, and every link on it (charts, assets, the
API, other gallery pages) is relative to it, ``./charts/...`` rather than
``/charts/...``, so it works unchanged behind a proxy that serves the server
under a path prefix. Snippets are for pasting elsewhere: they are absolute, on
``public_base``.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import state
from .api import chart_path, notebook_json
from .browse import MAX_QUERY_LENGTH, Folder, Listing, Page, page_criteria, page_of
from .catalog import Notebook
from .errors import BadRequest, NotFound
from .signing import Signer

HIDPI = 200  # the ``_dpi`` of a snippet's 2x image: twice matplotlib's default 100
PER_PAGE = 50  # notebooks on one page: each brings a card per chart, its form and snippets
FOLDER_MATCHES = 24  # folders a search shows above its notebooks
TOP = "All notebooks"
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
    data: str | None = None  # "data: sales.csv, changed 3 min ago", from its last render


@dataclass(frozen=True)
class NotebookView:
    id: str
    title: str
    ttl: float | None
    error: str | None
    fields: tuple[Field, ...]
    charts: tuple[ChartView, ...]
    folder: Link | None  # where it lives, shown on a search's results


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class FolderLink:
    label: str  # a subfolder's name; a found folder's whole path
    url: str
    total: int  # notebooks at any depth below it


@dataclass(frozen=True)
class Pager:
    number: int
    pages: int
    first: int  # the 1-based positions of the page's first and last notebooks
    last: int
    total: int
    previous: str | None
    next: str | None


@dataclass(frozen=True)
class Place:
    """What one gallery page shows: a folder, or a search's results, a page at a time."""

    heading: str
    summary: str  # what the page holds, in a sentence
    crumbs: tuple[Link, ...]  # the folders above, from the top; the heading is the last crumb
    folder: str  # the folder browsed, or the one a search is limited to
    query: str
    folders: tuple[FolderLink, ...]
    notebooks: tuple[NotebookView, ...]
    pager: Pager | None
    problem: str | None = None


def gallery_url(folder: str = "", query: str = "", page: int = 1) -> str:
    """A gallery page's address relative to the page, so it holds behind a path prefix too."""
    keys = [("folder", folder), ("q", query), ("page", str(page) if page > 1 else "")]
    given = [(key, value) for key, value in keys if value]
    return "?" + urlencode(given, quote_via=quote, safe="/") if given else "./"


ASSETS: web.AppKey[dict[str, str]] = web.AppKey("assets")


def setup_gallery(app: web.Application) -> None:
    """Templates, the ``/`` route and the page's static files, on an app from ``create_app``."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("publisher", "templates"),
        autoescape=True,
        trim_blocks=True,  # a line that only holds a tag leaves nothing: pages are ~25% smaller
        lstrip_blocks=True,
        auto_reload=False,  # the templates ship with the package: no stat per page
    )
    app.router.add_get("/", gallery, name="gallery")
    # ?v=<hash of the file> on every asset URL, so a new version is never read from a stale cache
    static = app.router.add_static("/static/", STATIC, name="static", append_version=True)
    # url_for reads and hashes the file on every call: once per server is enough
    app[ASSETS] = {
        name: "." + str(static.url_for(filename=name))  # relative to the page: see above
        for name in ("gallery.css", "gallery.js", "favicon.svg")
    }
    app.on_response_prepare.append(_cache_versioned_assets)


async def _cache_versioned_assets(request: web.Request, response: web.StreamResponse) -> None:
    """A versioned asset URL never changes content, so caches may keep it for good."""
    if request.path.startswith("/static/") and "v" in request.query and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


async def gallery(request: web.Request) -> web.Response:
    """A folder's page or a search's, for people: a bad value is a page that says so."""
    listing = await request.app[state.SERVICE].catalog.current()
    status = 200
    try:
        place = _place(request, listing)
    except (BadRequest, NotFound) as e:
        status = e.status
        place = Place(
            heading="Not found" if isinstance(e, NotFound) else "Bad request",
            summary="",
            crumbs=(Link(TOP, gallery_url()),),
            folder="",
            query="",
            folders=(),
            notebooks=(),
            pager=None,
            problem=e.message,
        )
    context = {
        "public_url": public_base(request),
        "place": place,
        "notebook_count": len(listing),
        "chart_count": listing.chart_count,
        "signed": request.app[state.SIGNER].enabled,
        "hidpi": HIDPI,
        "max_query_length": MAX_QUERY_LENGTH,
        "assets": request.app[ASSETS],
    }
    response = aiohttp_jinja2.render_template("gallery.html", request, context, status=status)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _place(request: web.Request, listing: Listing) -> Place:
    criteria = page_criteria(request.query, PER_PAGE)
    folder = listing.folder(criteria.folder)
    query = criteria.query.strip()
    crumbs = [Link(TOP, gallery_url())]
    crumbs += [Link(path.rpartition("/")[2], gallery_url(path)) for path in folder.parents[1:]]
    found: Sequence[Notebook]
    if query:
        if folder.path:
            crumbs.append(Link(folder.name, gallery_url(folder.path)))
        found = listing.find(query, folder.path)
        matched = listing.find_folders(query, folder.path)[:FOLDER_MATCHES]
        folders = [FolderLink(f.path, gallery_url(f.path), f.total) for f in matched]
        heading = f"Search: {query}"
    else:
        found = folder.notebooks
        folders = [_subfolder(listing.folders[path]) for path in folder.folders]
        heading = folder.name or TOP
        crumbs = crumbs if folder.path else []  # the top is where the crumbs start
    last = max(0, (len(found) - 1) // PER_PAGE) * PER_PAGE
    page = page_of(found, min(criteria.offset, last), PER_PAGE)  # past the end: the last page

    def link(offset: int | None) -> str | None:
        return None if offset is None else gallery_url(folder.path, query, offset // PER_PAGE + 1)

    signer, base = request.app[state.SIGNER], public_base(request)
    service = request.app[state.SERVICE]
    return Place(
        heading=heading,
        summary=_summary(page, query, folder.path, len(folders), empty=not listing),
        crumbs=tuple(crumbs),
        folder=folder.path,
        query=query,
        folders=tuple(folders),
        notebooks=tuple(
            _notebook_view(
                notebook_json(nb, signer, service.last_data(nb)), signer, base, bool(query)
            )
            for nb in page.items
        ),
        pager=Pager(
            number=page.number,
            pages=page.pages,
            first=page.offset + 1 if page.items else 0,
            last=page.offset + len(page.items),
            total=page.total,
            previous=link(page.previous_offset),
            next=link(page.next_offset),
        ),
    )


def _summary(page: Page[Notebook], query: str, folder: str, folders: int, empty: bool) -> str:
    """One sentence on what the page holds, which the live search announces as it changes."""
    if query:
        where = f" in {folder}" if folder else ""
        matches = f"{_count(page.total)} match{'es' if page.total == 1 else ''}"
        said = f"{matches if page.total else 'No notebook matches'} “{query}”{where}"
    elif empty:
        said = (
            "No notebooks are published yet. Put .ipynb files in the notebook folder;"
            " they show up here without a restart"
        )
    else:
        parts = [_count(folders, "folder")] if folders else []
        if page.total:
            parts.append(f"{_count(page.total)} here")
        said = ", ".join(parts)
    if page.pages > 1:
        said += f" ({page.offset + 1:,}–{page.offset + len(page.items):,} shown)"
    return said + "."


def _count(number: int, noun: str = "notebook") -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _subfolder(folder: Folder) -> FolderLink:
    return FolderLink(folder.name, gallery_url(folder.path), folder.total)


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


def _notebook_view(
    body: dict[str, Any], signer: Signer, base: str, in_folder: bool = False
) -> NotebookView:
    """``in_folder``: say which folder the notebook is in, for a page that mixes folders."""
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
                data=data_line(chart["data"], time.time()) if chart["data"] else None,
            )
        )
    return NotebookView(
        id=body["id"],
        title=body["title"],
        ttl=body["ttl"],
        error=body["error"]["message"] if body["error"] else None,
        fields=tuple(_field(p) for p in body["parameters"]),
        charts=tuple(views),
        folder=_folder_link(body["id"]) if in_folder else None,
    )


def data_line(data: dict[str, Any], now: float, shown: int = 3) -> str | None:
    """The files a chart's last render read, and how long ago the newest changed."""
    files = data["files"]
    if not files:
        return None
    names = [f["path"] for f in files[:shown]]
    more = len(files) - shown + data["dropped"]
    listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    return f"data: {listed}, changed {_ago(now - max(f['modified'] for f in files))}"


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"


def _folder_link(notebook_id: str) -> Link:
    path = notebook_id.rpartition("/")[0]
    return Link(path or TOP, gallery_url(path))


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

"""How an error looks on the wire: JSON for programs, a PNG for an ``<img>`` tag.

A chart embedded in a wiki page that fails should say why, in the page, so a
request whose ``Accept`` header prefers images gets the same status with a
small picture of the message.
"""

from __future__ import annotations

import functools
import io
import json
import textwrap
from http import HTTPStatus
from pathlib import Path

import matplotlib
from aiohttp import web
from PIL import Image, ImageDraw, ImageFont

from .errors import Overloaded, PublisherError

_FONT = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


def error_response(error: PublisherError, accept: str = "") -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(error.retry_after)
    if prefers_image(accept):
        body = error_png(error.status, error.message)
        return web.Response(
            status=error.status, body=body, content_type="image/png", headers=headers
        )
    return web.Response(
        status=error.status,
        text=json.dumps(error.body(), ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def status_error(status: int, message: str = "") -> PublisherError:
    """An error whose status aiohttp chose (a 405, a request it could not parse), named for it."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    error = PublisherError(message or phrase)
    error.status, error.code = status, phrase.lower().replace(" ", "_")
    return error


def prefers_image(accept: str) -> bool:
    """True when the client ranks a PNG above JSON, as browsers do for ``<img>``."""
    return _quality(accept, "image/png") > _quality(accept, "application/json")


def _quality(accept: str, mime: str) -> float:
    """The q of the most specific media range in ``accept`` that matches ``mime``."""
    kind = mime.split("/")[0]
    best, best_rank = 0.0, -1
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        rank = 2 if media == mime else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if rank <= best_rank:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best, best_rank = q, rank
    return best


@functools.lru_cache(maxsize=64)
def error_png(status: int, message: str) -> bytes:
    """A 640-pixel-wide picture of the status and message."""
    font = ImageFont.truetype(str(_FONT), 15)
    title = ImageFont.truetype(str(_FONT), 18)
    lines = textwrap.wrap(message, width=70, max_lines=8, placeholder=" ...") or [""]
    height = 60 + 22 * len(lines)
    image = Image.new("RGB", (640, height), (255, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 639, height - 1), outline=(200, 60, 60), width=2)
    draw.text((16, 12), f"Chart unavailable ({status})", fill=(160, 30, 30), font=title)
    for i, line in enumerate(lines):
        draw.text((16, 44 + 22 * i), line, fill=(40, 40, 40), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()

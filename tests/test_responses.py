"""Error answers: one JSON shape for programs, a PNG for browsers' image requests."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from publisher import errors
from publisher.responses import error_png, error_response, prefers_image

BROWSER_IMG = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "image"),
    [
        (BROWSER_IMG, True),
        ("image/png", True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, image/png;q=0.5", False),
        ("image/*;q=0.9, application/json;q=0.1", True),
        ("image/png;q=bad", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),
    ],
)
def test_prefers_image_follows_accept_qualities(accept: str, image: bool) -> None:
    assert prefers_image(accept) is image


ALL_ERRORS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.PublisherError)
]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_has_the_one_json_shape(cls: type[errors.PublisherError]) -> None:
    response = error_response(cls("something went wrong"))
    body = json.loads(response.text or "")
    assert response.status == cls.status
    assert body == {"error": {"code": cls.code, "message": "something went wrong"}}
    assert response.headers["Cache-Control"] == "no-store"


def test_overloaded_carries_retry_after() -> None:
    response = error_response(errors.Overloaded("busy", retry_after=7))
    assert response.status == 503 and response.headers["Retry-After"] == "7"


def test_image_request_gets_a_png_with_the_same_status() -> None:
    response = error_response(errors.UnknownNotebook("no notebook 'x'"), BROWSER_IMG)
    assert response.status == 404 and response.content_type == "image/png"
    assert isinstance(response.body, bytes)
    assert Image.open(io.BytesIO(response.body)).size[0] == 640


def test_error_png_wraps_a_long_message() -> None:
    short = Image.open(io.BytesIO(error_png(500, "short")))
    long = Image.open(io.BytesIO(error_png(500, "word " * 200)))
    assert long.size[1] > short.size[1]

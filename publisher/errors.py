"""Every failure a client can see, each knowing its HTTP status.

The web layer maps these to responses in one place (``responses.error_response``,
called by the app's error middleware);
the command line prints their message. Nothing else decides a status code.
"""

from __future__ import annotations

from typing import Any


class PublisherError(Exception):
    """Base of every error that reaches a user; ``status`` and ``code`` shape the answer."""

    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error body: the one shape every error answer has."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.details)
        return {"error": error}


class BadRequest(PublisherError):
    status, code = 400, "bad_request"


class InvalidParameter(BadRequest):
    """A query value that does not read as the parameter's declared type."""

    code = "invalid_parameter"


class UnknownParameter(BadRequest):
    code = "unknown_parameter"


class InvalidOption(BadRequest):
    """A render option (``_dpi``, ``_width``, ...) out of range or unknown."""

    code = "invalid_option"


class RequestTooLarge(PublisherError):
    status, code = 414, "request_too_large"


class RequestTimeout(PublisherError):
    """A client did not send a request's headers within ``--header-timeout``."""

    status, code = 408, "request_timeout"


class Forbidden(PublisherError):
    status, code = 403, "forbidden"


class NotFound(PublisherError):
    status, code = 404, "not_found"


class UnknownNotebook(NotFound):
    code = "unknown_notebook"


class UnknownChart(NotFound):
    code = "unknown_chart"


class BrokenNotebook(PublisherError):
    """The notebook file cannot be read, or its parameters cell cannot be parsed."""

    code = "broken_notebook"


class NotebookFailed(PublisherError):
    """The notebook raised while it ran; carries the exception's type and message."""

    code = "notebook_error"


class NoImage(PublisherError):
    """The chart cell ran but displayed no image in the requested format."""

    code = "no_image"


class ImageTooLarge(PublisherError):
    """The figure itself, at its own size and dpi, is past the server's pixel limit."""

    code = "image_too_large"


class KernelDied(PublisherError):
    code = "kernel_died"


class Overloaded(PublisherError):
    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(Overloaded):
    code = "shutting_down"


class NotebooksUnreadable(Overloaded):
    """The notebook folder cannot be read now: a listing before any read, a render at all.

    An ``Overloaded`` in how it is handled: the server's state, not the notebook's
    fault, so it is not remembered as a render's failure, and says when to ask again.
    """

    code = "notebooks_unreadable"

    def __init__(self, message: str, retry_after: int = 5) -> None:  # a scan or a few later
        super().__init__(message, retry_after)


class RenderTimeout(PublisherError):
    status, code = 504, "timeout"
